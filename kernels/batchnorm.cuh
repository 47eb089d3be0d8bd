// Batch normalization on the GPU: the forward (training and inference) and the backward, with the
// semantics of the CPU reference engine/cpu_batchnorm.hpp (Keras' BatchNormalization). Element
// arithmetic in kernels/batchnorm_math.cuh.
//
// The per-channel reductions (mean, variance, the two backward sums) run one block per channel:
// each thread sums a fixed strided subset in double, then a fixed tree (block_sum) adds the
// partials, so every sum is the same bit for bit on every run, and no float atomics are used.
// The variance is two-pass (mean first, then squared deviations), never E[x^2] - E[x]^2.
// The moving statistics are updated on the device, by the statistics kernel itself, so a captured
// training step updates them on every replay.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/batchnorm_math.cuh"

namespace mg::kern {

// x, y: [n, c, s]. saved_mean, saved_inv_std: [c], what the backward needs.
struct BatchNormShape {
  int64_t n, c, s;
};

// Training: batch mean and biased variance per channel normalize x; moving_mean and moving_var
// ([c] each) become moving * momentum + batch * (1 - momentum).
void batchnorm_forward_training(const float* x, const float* gamma, const float* beta,
                                BatchNormShape d, double momentum, double epsilon,
                                float* moving_mean, float* moving_var, float* y, float* saved_mean,
                                float* saved_inv_std, cudaStream_t stream);

// Inference: the moving statistics normalize x; they are not changed.
void batchnorm_forward_inference(const float* x, const float* gamma, const float* beta,
                                 BatchNormShape d, double epsilon, const float* moving_mean,
                                 const float* moving_var, float* y, float* saved_mean,
                                 float* saved_inv_std, cudaStream_t stream);

// dgamma = sum dy * xhat, dbeta = sum dy per channel (overwritten), and dx (when not null; it may
// not alias dy) as cpu::batchnorm_backward: with the batch statistics' terms in training, without
// them in inference.
void batchnorm_backward(const float* x, const float* gamma, const float* dy, BatchNormShape d,
                        const float* saved_mean, const float* saved_inv_std, bool training,
                        float* dx, float* dgamma, float* dbeta, cudaStream_t stream);

}  // namespace mg::kern
