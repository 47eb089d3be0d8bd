#include "kernels/device.cuh"
#include "kernels/dropout.cuh"

namespace mg::kern {
namespace {

__global__ void dropout_kernel(const float* x, float* y, int64_t count, uint64_t seed,
                               uint32_t layer, const int64_t* step, uint32_t threshold,
                               float scale) {
  const auto s = static_cast<uint64_t>(*step);
  for_each_strided(grid_first(), grid_stride(), dropout_blocks(count), [&](int64_t b) {
    dropout_block(x, y, count, b, seed, layer, s, threshold, scale);
  });
}

}  // namespace

void dropout_apply(const float* x, float* y, int64_t count, uint64_t seed, uint32_t layer,
                   const int64_t* step, float rate, cudaStream_t stream) {
  if (count == 0) return;
  // One thread per eight elements: a Philox block (ten rounds) serves eight of them.
  dropout_kernel<<<grid_for(dropout_blocks(count)), kBlock, 0, stream>>>(
      x, y, count, seed, layer, step, dropout_threshold(rate), dropout_scale<float>(rate));
  MG_CHECK_LAUNCH("dropout_kernel");
}

}  // namespace mg::kern
