#include "kernels/device.cuh"
#include "kernels/pool.cuh"
#include "kernels/variants.hpp"

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

// Variant 1 (kernels/variants.hpp): the plane in blockIdx.y, the offset within it along x, 32-bit
// indices; a thread divides only its offset by the row width.
__global__ void maxpool2x2_forward_v1_kernel(const float* x, PoolDims32 d, Box3 box, float* y,
                                             int32_t* argmax) {
  for_each_in_box(box, [&](int32_t r, int32_t p, int32_t /*z*/) {
    const PoolPick<float> pick = maxpool2x2_v1_at(x, d, p, r);
    const int32_t o = p * (d.oh * d.ow) + r;
    y[o] = pick.value;
    argmax[o] = pick.arg;
  });
}

__global__ void maxpool2x2_backward_v1_kernel(const float* dy, const int32_t* argmax, PoolDims32 d,
                                              Box3 box, float* dx) {
  for_each_in_box(box, [&](int32_t r, int32_t p, int32_t /*z*/) {
    dx[p * (d.h * d.w) + r] = maxpool2x2_grad_v1_at(dy, argmax, d, p, r);
  });
}

bool v1(VariantOp op, const PoolDims& d) {
  return kernel_variants()[op] == 1 && pool_fits_int32(d);  // else variant 0
}

}  // namespace

void maxpool2x2_forward(const float* x, const PoolDims& d, float* y, int32_t* argmax,
                        cudaStream_t stream) {
  const int64_t count = d.out_count();
  if (count == 0) return;
  if (v1(VariantOp::kPoolForward, d)) {
    const PoolDims32 d32 = pool_dims32(d);
    const Box3 box{d32.oh * d32.ow, d32.planes, 1};
    const int block = plane_block(box.nx);
    maxpool2x2_forward_v1_kernel<<<grid_for_box(box, block), block, 0, stream>>>(x, d32, box, y,
                                                                                 argmax);
    MG_CHECK_LAUNCH("maxpool2x2_forward_v1_kernel");
    return;
  }
  maxpool2x2_forward_kernel<<<grid_for(count), kBlock, 0, stream>>>(x, d, y, argmax);
  MG_CHECK_LAUNCH("maxpool2x2_forward_kernel");
}

void maxpool2x2_backward(const float* dy, const int32_t* argmax, const PoolDims& d, float* dx,
                         cudaStream_t stream) {
  const int64_t count = d.in_count();
  if (count == 0) return;
  if (v1(VariantOp::kPoolBackward, d)) {
    const PoolDims32 d32 = pool_dims32(d);
    const Box3 box{d32.h * d32.w, d32.planes, 1};
    const int block = plane_block(box.nx);
    maxpool2x2_backward_v1_kernel<<<grid_for_box(box, block), block, 0, stream>>>(dy, argmax, d32,
                                                                                  box, dx);
    MG_CHECK_LAUNCH("maxpool2x2_backward_v1_kernel");
    return;
  }
  maxpool2x2_backward_kernel<<<grid_for(count), kBlock, 0, stream>>>(dy, argmax, d, dx);
  MG_CHECK_LAUNCH("maxpool2x2_backward_kernel");
}

}  // namespace mg::kern
