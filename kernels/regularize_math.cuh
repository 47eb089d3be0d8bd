// Per-element arithmetic of the L2 kernel regularizer, shared by kernels/regularize.cu and the CPU
// tests; the same expressions as cpu::l2_penalty. No CUDA here.
#pragma once

#include <cstdint>

#include "kernels/philox.cuh"  // MG_HOST_DEVICE

namespace mg::kern {

// Element i: g[i] += 2 * l2 * p[i] where the mask is set (two_l2 = 2 * l2, rounded once); returns
// p[i]^2 in double for the penalty's sum (0 outside the mask). g may be null (no gradient).
template <class T>
MG_HOST_DEVICE double l2_at(const T* p, T* g, const uint8_t* kernel_mask, int64_t i, T two_l2) {
  if (!kernel_mask[i]) return 0.0;
  if (g != nullptr) g[i] += two_l2 * p[i];
  return static_cast<double>(p[i]) * static_cast<double>(p[i]);
}

}  // namespace mg::kern
