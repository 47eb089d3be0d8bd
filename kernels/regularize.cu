#include "kernels/regularize.cuh"

#include <algorithm>

#include "kernels/device.cuh"
#include "kernels/regularize_math.cuh"

namespace mg::kern {
namespace {

// Pass 1: each block's sum of the masked squares into partials[blockIdx.x]; the gradient term on
// the way.
__global__ void l2_partial_kernel(const float* p, float* g, const uint8_t* kernel_mask,
                                  int64_t count, float two_l2, double* partials) {
  __shared__ double shared[kReduceBlock];
  double sum = 0;
  for_each_strided(grid_first(), grid_stride(), count,
                   [&](int64_t i) { sum += l2_at(p, g, kernel_mask, i, two_l2); });
  sum = block_sum(sum, shared);
  if (threadIdx.x == 0) partials[blockIdx.x] = sum;
}

// Pass 2, one block: the partials in a fixed tree, then the metric sum.
__global__ void l2_finish_kernel(const double* partials, int blocks, double scale,
                                 double* loss_sum) {
  __shared__ double shared[kReduceBlock];
  double sum = 0;
  for_each_strided(threadIdx.x, blockDim.x, blocks, [&](int64_t b) { sum += partials[b]; });
  sum = block_sum(sum, shared);
  if (threadIdx.x == 0) *loss_sum += scale * sum;
}

}  // namespace

void l2_penalty(const float* p, float* g, const uint8_t* kernel_mask, int64_t count, double l2,
                int64_t n, double* partials, double* loss_sum, cudaStream_t stream) {
  if (count == 0) return;
  const int blocks = blocks_for(count, kReduceBlock, std::min(kL2Blocks, cuda::max_grid_blocks()));
  l2_partial_kernel<<<blocks, kReduceBlock, 0, stream>>>(p, g, kernel_mask, count,
                                                          static_cast<float>(2 * l2), partials);
  MG_CHECK_LAUNCH("l2_partial_kernel");
  l2_finish_kernel<<<1, kReduceBlock, 0, stream>>>(partials, blocks,
                                                    static_cast<double>(n) * l2, loss_sum);
  MG_CHECK_LAUNCH("l2_finish_kernel");
}

}  // namespace mg::kern
