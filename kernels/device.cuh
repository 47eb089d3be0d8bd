// Device-side helpers shared by the kernels: the grid-stride thread mapping and a block-wide sum.
// CUDA only: included by .cu files (the mapping itself is kernels/launch.cuh, which CPU tests run).
#pragma once

#if defined(__CUDACC__)

#include <algorithm>
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

// --- 2D/3D grids with 32-bit indices (the v1 kernels, kernels/variants.hpp) --------------------
//
// A v1 kernel covers an [nz][ny][nx] box: z and y (image, channel, row or plane) come from
// blockIdx.z and blockIdx.y, x (the offset in a plane) from the threads along x. Each axis is a
// grid-stride loop, so a capped grid (max_grid_blocks() per axis, 65535 for y and z) still covers
// the box. The launcher has checked that every index fits in 32 bits.
struct Box3 {
  int32_t nx, ny, nz;
};

// Threads per block along x for a plane of `plane` elements: narrow blocks for the small planes
// of this model (49 to 784 elements), so few threads idle past a plane's end.
inline int plane_block(int64_t plane) { return plane >= 512 ? 128 : 64; }

inline dim3 grid_for_box(const Box3& b, int block) {
  const int cap = cuda::max_grid_blocks();
  return dim3(static_cast<unsigned>(blocks_for(b.nx, block, cap)),
              static_cast<unsigned>(std::clamp(b.ny, 1, std::min(cap, 65535))),
              static_cast<unsigned>(std::clamp(b.nz, 1, std::min(cap, 65535))));
}

// Calls f(x, y, z) for every point of the box this thread is given.
template <class F>
__device__ __forceinline__ void for_each_in_box(const Box3& b, F&& f) {
  for (int32_t z = static_cast<int32_t>(blockIdx.z); z < b.nz; z += static_cast<int32_t>(gridDim.z))
    for (int32_t y = static_cast<int32_t>(blockIdx.y); y < b.ny;
         y += static_cast<int32_t>(gridDim.y))
      for (int32_t x = static_cast<int32_t>(blockIdx.x * blockDim.x + threadIdx.x); x < b.nx;
           x += static_cast<int32_t>(gridDim.x * blockDim.x))
        f(x, y, z);
}

// Four floats moved as one 16-byte access (ld/st.global.v4 when the address is 16-byte aligned,
// which the caller checks).
struct alignas(16) Float4 {
  float a, b, c, d;
};

inline bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace mg::kern

#endif  // __CUDACC__
