#include <thrust/execution_policy.h>
#include <thrust/sort.h>

#include <climits>
#include <stdexcept>

#include "kernels/batch.cuh"
#include "kernels/batch_math.cuh"
#include "kernels/device.cuh"

namespace mg::kern {
namespace {

__global__ void gather_batch_kernel(const uint8_t* images, const uint8_t* labels,
                                    int64_t sample_size, const int32_t* order,
                                    const int64_t* cursor, int64_t n, float* x, int32_t* y) {
  const int32_t* idx = order + *cursor;
  for_each_strided(grid_first(), grid_stride(), n * sample_size, [&](int64_t e) {
    x[e] = gather_pixel_at<float>(images, idx, sample_size, e);
    if (e < n) y[e] = labels[idx[e]];
  });
}

// counters = {step, cursor}, as in engine/network.hpp. A block per image (strided over the batch,
// so any grid size works): thread 0 draws the image's transform once, as the CPU does, and the
// block's threads map the pixels.
__global__ void gather_augmented_kernel(const uint8_t* images, const uint8_t* labels, int rows,
                                        int cols, const int32_t* order, const int64_t* counters,
                                        int64_t n, AugmentConfig augment, uint64_t seed, float* x,
                                        int32_t* y) {
  __shared__ AugmentTransform transform;
  const auto step = static_cast<uint64_t>(counters[0]);
  const int32_t* idx = order + counters[1];
  const int64_t size = static_cast<int64_t>(rows) * cols;
  for (int64_t i = blockIdx.x; i < n; i += gridDim.x) {
    if (threadIdx.x == 0) {
      transform = augment_transform(augment, seed, step, static_cast<uint64_t>(i));
      y[i] = labels[idx[i]];
    }
    __syncthreads();
    const AugmentTransform t = transform;
    const uint8_t* src = images + static_cast<int64_t>(idx[i]) * size;
    float* dst = x + i * size;
    for_each_strided(threadIdx.x, blockDim.x, size, [&](int64_t p) {
      dst[p] = augmented_pixel(src, rows, cols, t, static_cast<int>(p / cols),
                               static_cast<int>(p % cols));
    });
    __syncthreads();  // everyone has read transform before thread 0 draws the next image's
  }
}

__global__ void end_step_kernel(int64_t* step, int64_t* cursor, int64_t n) {
  if (blockIdx.x == 0 && threadIdx.x == 0) end_step_on(step, cursor, n);
}

__global__ void advance_cursor_kernel(int64_t* cursor, int64_t n) {
  if (blockIdx.x == 0 && threadIdx.x == 0) *cursor += n;
}

__global__ void shuffle_keys_kernel(uint64_t seed, int64_t epoch, int64_t n, uint32_t* keys,
                                    int32_t* positions) {
  for_each_strided(grid_first(), grid_stride(), n, [&](int64_t i) {
    keys[i] = shuffle_key_at(seed, epoch, i);
    positions[i] = static_cast<int32_t>(i);
  });
}

__global__ void permute_kernel(const int32_t* indices, const int32_t* positions, int64_t n,
                               int32_t* order) {
  for_each_strided(grid_first(), grid_stride(), n,
                   [&](int64_t i) { order[i] = indices[positions[i]]; });
}

}  // namespace

void gather_batch(const uint8_t* images, const uint8_t* labels, int64_t sample_size,
                  const int32_t* order, const int64_t* cursor, int64_t n, float* x, int32_t* y,
                  cudaStream_t stream) {
  const int64_t count = n * sample_size;
  if (count == 0) return;
  gather_batch_kernel<<<grid_for(count), kBlock, 0, stream>>>(images, labels, sample_size, order,
                                                              cursor, n, x, y);
  MG_CHECK_LAUNCH("gather_batch_kernel");
}

void gather_batch_augmented(const uint8_t* images, const uint8_t* labels, int rows, int cols,
                            const int32_t* order, const int64_t* counters, int64_t n,
                            const AugmentConfig& augment, uint64_t seed, float* x, int32_t* y,
                            cudaStream_t stream) {
  if (n == 0 || rows == 0 || cols == 0) return;
  const int blocks = blocks_for(n, 1, cuda::max_grid_blocks());
  gather_augmented_kernel<<<blocks, kBlock, 0, stream>>>(images, labels, rows, cols, order,
                                                         counters, n, augment, seed, x, y);
  MG_CHECK_LAUNCH("gather_augmented_kernel");
}

void end_step(int64_t* step, int64_t* cursor, int64_t n, cudaStream_t stream) {
  end_step_kernel<<<1, 1, 0, stream>>>(step, cursor, n);
  MG_CHECK_LAUNCH("end_step_kernel");
}

void advance_cursor(int64_t* cursor, int64_t n, cudaStream_t stream) {
  advance_cursor_kernel<<<1, 1, 0, stream>>>(cursor, n);
  MG_CHECK_LAUNCH("advance_cursor_kernel");
}

void epoch_shuffle(const int32_t* indices, int64_t n, uint64_t seed, int64_t epoch, int32_t* order,
                   uint32_t* keys, int32_t* positions, cudaStream_t stream) {
  if (n == 0) return;
  if (n > INT_MAX) throw std::length_error("epoch_shuffle: more than 2^31 - 1 samples");
  shuffle_keys_kernel<<<grid_for(n), kBlock, 0, stream>>>(seed, epoch, n, keys, positions);
  MG_CHECK_LAUNCH("shuffle_keys_kernel");
  // Stable: equal keys keep their positions' order, the tie rule of epoch_order().
  thrust::stable_sort_by_key(thrust::cuda::par_nosync.on(stream), keys, keys + n, positions);
  MG_CHECK_LAUNCH("thrust::stable_sort_by_key");
  permute_kernel<<<grid_for(n), kBlock, 0, stream>>>(indices, positions, n, order);
  MG_CHECK_LAUNCH("permute_kernel");
}

}  // namespace mg::kern
