// Per-element arithmetic of the dense layer's bias and ReLU, shared by kernels/dense.cu and the CPU
// tests. The GEMMs themselves are cuBLAS (kernels/gemm.cuh). No CUDA here.
#pragma once

#include <cstdint>

#include "kernels/philox.cuh"  // MG_HOST_DEVICE

namespace mg::kern {

// y[idx] + b[column], then ReLU when asked; y is [n, out] row-major.
template <class T>
MG_HOST_DEVICE T bias_relu_at(const T* y, const T* b, int64_t out, bool relu, int64_t idx) {
  const T v = y[idx] + b[idx % out];
  return relu ? (v > T(0) ? v : T(0)) : v;
}

// Column j of dy [n, out]: applies the ReLU mask in place (dy = 0 where y <= 0) and returns the
// column sum, the bias gradient. Rows are summed in order, as cpu::bias_add_backward does, so one
// thread per column reproduces the CPU's float sum exactly.
template <class T>
MG_HOST_DEVICE T dense_bias_grad_column(const T* y, T* dy, int64_t n, int64_t out, bool relu,
                                        int64_t j) {
  T sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t idx = i * out + j;
    if (relu && !(y[idx] > T(0))) dy[idx] = T(0);
    sum += dy[idx];
  }
  return sum;
}

}  // namespace mg::kern
