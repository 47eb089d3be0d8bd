// Keras' kernel_regularizer l2 on the GPU: the penalty l2 * sum(w^2) over the kernel weights
// (ParamRole::kKernel) of the flat parameter buffer, and its gradient 2 * l2 * w added to the
// gradient buffer. Element arithmetic in kernels/regularize_math.cuh.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace mg::kern {

// Blocks of the first pass (at most; fewer under cuda::max_grid_blocks()): the size of the
// partials buffer l2_penalty needs.
inline constexpr int kL2Blocks = 160;

// Where kernel_mask[i] is 1: g[i] += 2 * l2 * p[i] (g may be null: the penalty only), and
// *loss_sum += n * l2 * sum(p[i]^2) (n: the batch size, so the sum is per sample as the metric
// sums are). Deterministic: per-block sums into partials[kL2Blocks] (device memory), then one
// block adds them in a fixed order. No allocation, no synchronization (capturable).
void l2_penalty(const float* p, float* g, const uint8_t* kernel_mask, int64_t count, double l2,
                int64_t n, double* partials, double* loss_sum, cudaStream_t stream);

}  // namespace mg::kern
