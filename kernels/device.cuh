// Device-side helpers shared by the kernels: the grid-stride thread mapping and a block-wide sum.
// CUDA only: included by .cu files (the mapping itself is kernels/launch.cuh, which CPU tests run).
#pragma once

#if defined(__CUDACC__)

#include <cstdint>

#include "kernels/cuda_check.cuh"
#include "kernels/launch.cuh"

namespace mg::kern {

// Threads per block of the reducing kernels (conv_grad_prepare uses its own, wider block);
// block_sum needs a power of two.
inline constexpr int kReduceBlock = 256;

// This thread's first element and the grid's stride, for for_each_strided.
__device__ __forceinline__ int64_t grid_first() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t grid_stride() {
  return static_cast<int64_t>(gridDim.x) * blockDim.x;
}

// Blocks of kBlock threads for count elements, capped by cuda::max_grid_blocks().
inline int grid_for(int64_t count) { return blocks_for(count, kBlock, cuda::max_grid_blocks()); }

// The sum of v over the block, returned to every thread: a fixed tree over shared memory, so the
// sum is the same bit for bit on every run (no atomics inside a sum). All threads of the block must
// call it; shared holds blockDim.x values. Ends with a barrier, so shared may be reused right
// after.
template <class T>
__device__ T block_sum(T v, T* shared) {
  shared[threadIdx.x] = v;
  __syncthreads();
  for (unsigned stride = blockDim.x / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) shared[threadIdx.x] += shared[threadIdx.x + stride];
    __syncthreads();
  }
  const T total = shared[0];
  __syncthreads();
  return total;
}

}  // namespace mg::kern

#endif  // __CUDACC__
