// Per-element arithmetic of batch normalization, shared by kernels/batchnorm.cu and the CPU tests
// (tests/test_kernel_math.cpp), which check it against the independent reference in
// engine/cpu_batchnorm.hpp. No CUDA here.
//
// x is [n, c, s] (NCHW, s = h * w; 1 after a dense layer); channel ch holds m = n * s values.
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/philox.cuh"  // MG_HOST_DEVICE

namespace mg::kern {

// The k-th value (0 <= k < n * s) of channel ch, in sample-then-position order.
MG_HOST_DEVICE int64_t bn_channel_index(int64_t k, int64_t ch, int64_t c, int64_t s) {
  return ((k / s) * c + ch) * s + k % s;
}

// The channel of element idx of the [n, c, s] tensor.
MG_HOST_DEVICE int64_t bn_channel_of(int64_t idx, int64_t c, int64_t s) {
  return (idx / s) % c;
}

// 1 / sqrt(var + epsilon), in double, as the reference computes it.
MG_HOST_DEVICE double bn_inv_std(double var, double epsilon) {
  return 1.0 / sqrt(var + epsilon);
}

// y = gamma * ((x - mean) * inv_std) + beta.
template <class T>
MG_HOST_DEVICE T bn_forward_at(T x, T mean, T inv_std, T gamma, T beta) {
  return gamma * ((x - mean) * inv_std) + beta;
}

// Keras' moving update: moving * momentum + batch * (1 - momentum); rest = 1 - momentum, rounded
// from double by the caller.
template <class T>
MG_HOST_DEVICE T bn_moving_update(T moving, T batch, T momentum, T rest) {
  return moving * momentum + batch * rest;
}

// dx = gamma * inv_std * (dy - mean_dy - xhat * mean_dy_xhat); scale = gamma * inv_std. In
// inference mean_dy = mean_dy_xhat = 0 (the moving statistics do not depend on x).
template <class T>
MG_HOST_DEVICE T bn_dx_at(T dy, T xhat, T scale, T mean_dy, T mean_dy_xhat) {
  return scale * (dy - mean_dy - xhat * mean_dy_xhat);
}

}  // namespace mg::kern
