#include "kernels/device.cuh"
#include "kernels/pool.cuh"

namespace mg::kern {
namespace {

__global__ void maxpool2x2_forward_kernel(const float* x, PoolDims d, float* y, int32_t* argmax) {
  for_each_strided(grid_first(), grid_stride(), d.out_count(), [&](int64_t o) {
    const PoolPick<float> pick = maxpool2x2_at(x, d, o);
    y[o] = pick.value;
    argmax[o] = pick.arg;
  });
}

__global__ void maxpool2x2_backward_kernel(const float* dy, const int32_t* argmax, PoolDims d,
                                           float* dx) {
  for_each_strided(grid_first(), grid_stride(), d.in_count(),
                   [&](int64_t e) { dx[e] = maxpool2x2_grad_at(dy, argmax, d, e); });
}

}  // namespace

void maxpool2x2_forward(const float* x, const PoolDims& d, float* y, int32_t* argmax,
                        cudaStream_t stream) {
  const int64_t count = d.out_count();
  if (count == 0) return;
  maxpool2x2_forward_kernel<<<grid_for(count), kBlock, 0, stream>>>(x, d, y, argmax);
  MG_CHECK_LAUNCH("maxpool2x2_forward_kernel");
}

void maxpool2x2_backward(const float* dy, const int32_t* argmax, const PoolDims& d, float* dx,
                         cudaStream_t stream) {
  const int64_t count = d.in_count();
  if (count == 0) return;
  maxpool2x2_backward_kernel<<<grid_for(count), kBlock, 0, stream>>>(dy, argmax, d, dx);
  MG_CHECK_LAUNCH("maxpool2x2_backward_kernel");
}

}  // namespace mg::kern
