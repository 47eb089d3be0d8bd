#include "kernels/conv.cuh"
#include "kernels/device.cuh"
#include "kernels/gemm.cuh"

namespace mg::kern {
namespace {

__global__ void im2col_3x3_kernel(const float* x, ConvDims d, float* col) {
  for_each_strided(grid_first(), grid_stride(), d.k() * d.cols(),
                   [&](int64_t i) { col[i] = im2col_3x3_at(x, d, i); });
}

__global__ void col2im_3x3_kernel(const float* col, ConvDims d, float* dx) {
  for_each_strided(grid_first(), grid_stride(), d.n * d.c_in * d.hw(),
                   [&](int64_t i) { dx[i] = col2im_3x3_at(col, d, i); });
}

__global__ void im2col_kernel(const float* x, ConvDims d, float* col) {
  for_each_strided(grid_first(), grid_stride(), d.k() * d.cols(),
                   [&](int64_t i) { col[i] = im2col_at(x, d, i); });
}

__global__ void col2im_kernel(const float* col, ConvDims d, float* dx) {
  for_each_strided(grid_first(), grid_stride(), d.n * d.c_in * d.hw(),
                   [&](int64_t i) { dx[i] = col2im_at(col, d, i); });
}

__global__ void conv_output_kernel(const float* tmp, const float* b, int64_t n, int64_t c,
                                   int64_t s, bool relu, float* y) {
  for_each_strided(grid_first(), grid_stride(), n * c * s,
                   [&](int64_t i) { y[i] = conv_output_at(tmp, b, n, c, s, relu, i); });
}

// Threads per block of conv_grad_prepare: a layer has only tens of channels, so each channel's
// block is made as wide as a block goes, to keep enough loads in flight.
constexpr int kChannelBlock = 1024;

// Block per channel (strided, so any grid size works); threads stride over the channel's n*s
// elements, reading dy with unit stride within each image's plane and writing dy_cn contiguously.
__global__ void __launch_bounds__(kChannelBlock)
    conv_grad_prepare_kernel(const float* y, const float* dy, int64_t n, int64_t c, int64_t s,
                             bool relu, float* dy_cn, float* db) {
  __shared__ double partial[kChannelBlock];
  const int64_t per_channel = n * s;
  for (int64_t j = blockIdx.x; j < c; j += gridDim.x) {
    float* row = dy_cn + j * per_channel;
    double sum = 0;
    for_each_strided(threadIdx.x, blockDim.x, per_channel, [&](int64_t e) {
      const float g = conv_grad_cn_at(y, dy, c, s, relu, j, e);
      row[e] = g;
      sum += g;
    });
    sum = block_sum(sum, partial);
    if (threadIdx.x == 0) db[j] = static_cast<float>(sum);
  }
}

}  // namespace

void im2col_3x3(const float* x, const ConvDims& d, float* col, cudaStream_t stream) {
  const int64_t count = d.k() * d.cols();
  if (count == 0) return;
  im2col_3x3_kernel<<<grid_for(count), kBlock, 0, stream>>>(x, d, col);
  MG_CHECK_LAUNCH("im2col_3x3_kernel");
}

void col2im_3x3(const float* col, const ConvDims& d, float* dx, cudaStream_t stream) {
  const int64_t count = d.n * d.c_in * d.hw();
  if (count == 0) return;
  col2im_3x3_kernel<<<grid_for(count), kBlock, 0, stream>>>(col, d, dx);
  MG_CHECK_LAUNCH("col2im_3x3_kernel");
}

void im2col(const float* x, const ConvDims& d, float* col, cudaStream_t stream) {
  if (d.is_3x3_same()) return im2col_3x3(x, d, col, stream);
  const int64_t count = d.k() * d.cols();
  if (count == 0) return;
  im2col_kernel<<<grid_for(count), kBlock, 0, stream>>>(x, d, col);
  MG_CHECK_LAUNCH("im2col_kernel");
}

void col2im(const float* col, const ConvDims& d, float* dx, cudaStream_t stream) {
  if (d.is_3x3_same()) return col2im_3x3(col, d, dx, stream);
  const int64_t count = d.n * d.c_in * d.hw();
  if (count == 0) return;
  col2im_kernel<<<grid_for(count), kBlock, 0, stream>>>(col, d, dx);
  MG_CHECK_LAUNCH("col2im_kernel");
}

void conv_output(const float* tmp, const float* b, int64_t n, int64_t c, int64_t s, bool relu,
                 float* y, cudaStream_t stream) {
  const int64_t count = n * c * s;
  if (count == 0) return;
  conv_output_kernel<<<grid_for(count), kBlock, 0, stream>>>(tmp, b, n, c, s, relu, y);
  MG_CHECK_LAUNCH("conv_output_kernel");
}

void conv_grad_prepare(const float* y, const float* dy, int64_t n, int64_t c, int64_t s, bool relu,
                       float* dy_cn, float* db, cudaStream_t stream) {
  if (c == 0) return;
  const int blocks = blocks_for(c, 1, cuda::max_grid_blocks());
  conv_grad_prepare_kernel<<<blocks, kChannelBlock, 0, stream>>>(y, dy, n, c, s, relu, dy_cn, db);
  MG_CHECK_LAUNCH("conv_grad_prepare_kernel");
}

void conv3x3_forward(cublasHandle_t handle, cudaStream_t stream, const ConvDims& d, bool relu,
                     const float* x, const float* w, const float* b, float* y, float* col,
                     float* tmp) {
  im2col(x, d, col, stream);
  // tmp [c_out, cols] = w [c_out, k] * col [k, cols]
  gemm_row_major(handle, stream, false, false, d.c_out, d.cols(), d.k(), 1.0f, w, d.k(), col,
                 d.cols(), 0.0f, tmp, d.cols());
  conv_output(tmp, b, d.n, d.c_out, d.ohw(), relu, y, stream);
}

void conv3x3_backward(cublasHandle_t handle, cudaStream_t stream, const ConvDims& d, bool relu,
                      const float* w, const float* y, const float* dy, float* dx, float* dw,
                      float* db, float* col, float* tmp) {
  conv_grad_prepare(y, dy, d.n, d.c_out, d.ohw(), relu, tmp, db, stream);
  // dw [c_out, k] = dy_cn [c_out, cols] * col [k, cols]^T, col = im2col(x) from the forward pass
  gemm_row_major(handle, stream, false, true, d.c_out, d.k(), d.cols(), 1.0f, tmp, d.cols(), col,
                 d.cols(), 0.0f, dw, d.k());
  if (dx == nullptr) return;
  // d(col) [k, cols] = w [c_out, k]^T * dy_cn [c_out, cols], over the column matrix
  gemm_row_major(handle, stream, true, false, d.k(), d.cols(), d.c_out, 1.0f, w, d.k(), tmp,
                 d.cols(), 0.0f, col, d.cols());
  col2im(col, d, dx, stream);
}

}  // namespace mg::kern
