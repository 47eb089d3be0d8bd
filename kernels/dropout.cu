#include "kernels/device.cuh"
#include "kernels/dropout.cuh"

namespace mg::kern {
namespace {

__global__ void dropout_kernel(const float* x, float* y, int64_t count, uint64_t seed,
                               uint32_t layer, const int64_t* step, float rate, float scale) {
  const auto s = static_cast<uint64_t>(*step);
  for_each_strided(grid_first(), grid_stride(), dropout_quads(count),
                   [&](int64_t q) { dropout_quad(x, y, count, q, seed, layer, s, rate, scale); });
}

}  // namespace

void dropout_apply(const float* x, float* y, int64_t count, uint64_t seed, uint32_t layer,
                   const int64_t* step, float rate, cudaStream_t stream) {
  if (count == 0) return;
  // One thread per four elements: a Philox block (ten rounds) serves four of them.
  dropout_kernel<<<grid_for(dropout_quads(count)), kBlock, 0, stream>>>(
      x, y, count, seed, layer, step, rate, dropout_scale<float>(rate));
  MG_CHECK_LAUNCH("dropout_kernel");
}

}  // namespace mg::kern
