// Per-element arithmetic of Adam, shared by kernels/adam.cu and the CPU tests. The formula is the
// one written in engine/adam.hpp (Keras' bias correction, epsilon added to sqrt(v)). No CUDA here.
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/philox.cuh"  // MG_HOST_DEVICE
#include "kernels/scalar_math.cuh"

namespace mg::kern {

// adam_alpha() of engine/adam.hpp, callable on the device: the kernel computes it from the step
// counter in device memory, so a captured step needs no host value. Double, rounded once by the
// caller, as the CPU backend does.
MG_HOST_DEVICE double adam_alpha_at(double lr, double beta1, double beta2, int64_t step) {
  const double t = static_cast<double>(step + 1);
  return lr * sqrt(1.0 - pow(beta2, t)) / (1.0 - pow(beta1, t));
}

// A step's two scalars, as every Adam kernel rounds them: alpha_t in double, rounded once to
// float, and AdamW's decay lr * weight_decay (0 without a kernel mask: plain Adam).
struct AdamStepScalars {
  float alpha, decay;
};

MG_HOST_DEVICE AdamStepScalars adam_step_scalars(double lr, double weight_decay, bool decayed,
                                                 double beta1, double beta2, int64_t step) {
  return {static_cast<float>(adam_alpha_at(lr, beta1, beta2, step)),
          decayed ? static_cast<float>(lr * weight_decay) : 0.0f};
}

// Element i of the flat parameter buffer; the same expressions as cpu::adam_update. decay is
// lr * weight_decay for a kernel weight, 0 for any other parameter (AdamW's decoupled decay first).
template <class T>
MG_HOST_DEVICE void adam_at(T* p, const T* g, T* m, T* v, int64_t i, T alpha, T beta1, T beta2,
                            T eps, T decay = T(0)) {
  if (decay != T(0)) p[i] -= decay * p[i];
  m[i] = beta1 * m[i] + (T(1) - beta1) * g[i];
  v[i] = beta2 * v[i] + (T(1) - beta2) * g[i] * g[i];
  p[i] -= alpha * m[i] / (sqrt_of(v[i]) + eps);
}

}  // namespace mg::kern
