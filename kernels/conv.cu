#include <algorithm>
#include <atomic>
#include <stdexcept>
#include <string>

#include "kernels/conv.cuh"
#include "kernels/device.cuh"
#include "kernels/gemm.cuh"
#include "kernels/variants.hpp"

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

// --- variant 1 (kernels/variants.hpp; docs/cuda.md "Kernel variants") ---------------------------
// 3D grids with 32-bit indices: im2col's box is [image][row of col][offset in the output plane],
// col2im's [image][input channel][offset in the input plane], the epilogue's [image][channel]
// [offset], so a thread divides only its plane offset by the row width. Writes and reads run along
// a plane, contiguous in both layouts.

template <int K, int PAD>
__global__ void im2col_v1_kernel(const float* x, ConvDims32 d, Box3 box, float* col) {
  const int32_t ohw = d.oh * d.ow, cols = d.n * ohw;
  for_each_in_box(box, [&](int32_t p, int32_t row, int32_t img) {
    col[row * cols + img * ohw + p] = im2col_v1_at<float, K, PAD>(x, d, row, img, p);
  });
}

template <int K, int PAD>
__global__ void col2im_v1_kernel(const float* col, ConvDims32 d, Box3 box, float* dx) {
  const int32_t hw = d.h * d.w;
  for_each_in_box(box, [&](int32_t p, int32_t c, int32_t img) {
    dx[(img * d.c_in + c) * hw + p] = col2im_v1_at<float, K, PAD>(col, d, c, img, p);
  });
}

__global__ void conv_output_v1_kernel(const float* tmp, const float* b, int32_t n, int32_t c,
                                      int32_t s, bool relu, Box3 box, float* y) {
  for_each_in_box(box, [&](int32_t k, int32_t j, int32_t i) {
    y[(i * c + j) * s + k] = conv_output_v1_at(tmp, b[j], n, s, relu, i, j, k);
  });
}

// conv_grad_prepare v1, stage 1: the permute and mask over the whole grid, box [image][channel]
// [offset in the plane], both inputs loaded unconditionally; with `vec` (s % 4 == 0 and every
// pointer 16-byte aligned) the offsets count float4s and each thread moves 16 bytes per access.
__global__ void conv_grad_permute_v1_kernel(const float* y, const float* dy, int32_t n, int32_t c,
                                            int32_t s, bool relu, bool vec, Box3 box,
                                            float* dy_cn) {
  for_each_in_box(box, [&](int32_t k, int32_t j, int32_t i) {
    const int32_t src = (i * c + j) * s, dst = j * (n * s) + i * s;
    if (vec) {
      const Float4 yv = reinterpret_cast<const Float4*>(y + src)[k];
      const Float4 gv = reinterpret_cast<const Float4*>(dy + src)[k];
      reinterpret_cast<Float4*>(dy_cn + dst)[k] = {
          conv_grad_mask(yv.a, gv.a, relu), conv_grad_mask(yv.b, gv.b, relu),
          conv_grad_mask(yv.c, gv.c, relu), conv_grad_mask(yv.d, gv.d, relu)};
    } else {
      dy_cn[dst + k] = conv_grad_mask(y[src + k], dy[src + k], relu);
    }
  });
}

// Stage 2: db[j] = the sum of row j of dy_cn (contiguous, just written, so mostly in L2). Each
// thread sums a fixed stride of the row in double, then a fixed tree over the block: the same
// order on every run, whatever the timing (no atomics).
__global__ void __launch_bounds__(kChannelBlock)
    conv_bias_grad_v1_kernel(const float* dy_cn, int32_t c, int32_t per_channel, bool vec,
                             float* db) {
  __shared__ double partial[kChannelBlock];
  for (int32_t j = static_cast<int32_t>(blockIdx.x); j < c; j += static_cast<int32_t>(gridDim.x)) {
    const float* row = dy_cn + static_cast<int64_t>(j) * per_channel;
    double sum = 0;
    if (vec) {
      const Float4* row4 = reinterpret_cast<const Float4*>(row);
      for (int32_t e = static_cast<int32_t>(threadIdx.x); e < per_channel / 4;
           e += static_cast<int32_t>(blockDim.x)) {
        const Float4 v = row4[e];
        sum += static_cast<double>(v.a) + v.b + v.c + v.d;
      }
    } else {
      for (int32_t e = static_cast<int32_t>(threadIdx.x); e < per_channel;
           e += static_cast<int32_t>(blockDim.x))
        sum += row[e];
    }
    sum = block_sum(sum, partial);
    if (threadIdx.x == 0) db[j] = static_cast<float>(sum);
  }
}

// --- conv_gemm variant 2 (kernels/variants.hpp; docs/cuda.md "Kernel variants") -----------------
// The forward as one implicit GEMM in FP32 FMA: a block computes a 64 x 64 tile of
// y^T = w [c_out, k] * col [k, n*oh*ow], 16 steps of k at a time: the weights' 64 x 16 and the
// column matrix's 16 x 64 are loaded into shared memory (the latter gathered from x with
// implicit_col_at, zeros in the padding and past the edges), then each of 256 threads adds the
// products into its 4 x 4 outputs. The tile is written to y with the bias and ReLU. Tiles are
// grid-strided, so any grid covers the output.
constexpr int kIgTile = 64, kIgStep = 16, kIgThreads = 256, kIgPer = 4;

template <int K, int PAD>
__global__ void __launch_bounds__(kIgThreads)
    conv_implicit_gemm_kernel(const float* x, const float* w, const float* b, ConvDims32 d,
                              bool relu, float* y) {
  __shared__ float ws[kIgStep][kIgTile];  // ws[kk][co - m0]
  __shared__ float cs[kIgStep][kIgTile];  // cs[kk][j - n0]
  const int32_t kdim = d.c_in * d.kernel * d.kernel, cols = d.n * d.oh * d.ow;
  const int32_t m_tiles = (d.c_out + kIgTile - 1) / kIgTile,
                n_tiles = (cols + kIgTile - 1) / kIgTile;
  const int32_t tiles = m_tiles * n_tiles;
  const int32_t t = static_cast<int32_t>(threadIdx.x);
  const int32_t tx = t % (kIgTile / kIgPer), ty = t / (kIgTile / kIgPer);
  for (int32_t tile = static_cast<int32_t>(blockIdx.x); tile < tiles;
       tile += static_cast<int32_t>(gridDim.x)) {
    const int32_t m0 = (tile % m_tiles) * kIgTile, n0 = (tile / m_tiles) * kIgTile;
    float acc[kIgPer][kIgPer] = {};
    for (int32_t k0 = 0; k0 < kdim; k0 += kIgStep) {
      // w [c_out, kdim] row-major: consecutive threads read consecutive k of one channel.
      for (int32_t e = t; e < kIgStep * kIgTile; e += kIgThreads) {
        const int32_t co = e / kIgStep, kk = e - co * kIgStep;
        ws[kk][co] = m0 + co < d.c_out && k0 + kk < kdim ? w[(m0 + co) * kdim + k0 + kk] : 0.0f;
      }
      // Consecutive threads gather consecutive columns (pixels of a row of x).
      for (int32_t e = t; e < kIgStep * kIgTile; e += kIgThreads) {
        const int32_t kk = e / kIgTile, j = e - kk * kIgTile;
        cs[kk][j] = k0 + kk < kdim && n0 + j < cols
                        ? implicit_col_at<float, K, PAD>(x, d, k0 + kk, n0 + j)
                        : 0.0f;
      }
      __syncthreads();
      for (int32_t kk = 0; kk < kIgStep; ++kk) {
        float a[kIgPer], c[kIgPer];
        for (int32_t i = 0; i < kIgPer; ++i) {
          a[i] = ws[kk][ty * kIgPer + i];
          c[i] = cs[kk][tx * kIgPer + i];
        }
        for (int32_t i = 0; i < kIgPer; ++i)
          for (int32_t jj = 0; jj < kIgPer; ++jj) acc[i][jj] += a[i] * c[jj];
      }
      __syncthreads();
    }
    for (int32_t i = 0; i < kIgPer; ++i) {
      const int32_t co = m0 + ty * kIgPer + i;
      if (co >= d.c_out) continue;
      const float bias = b[co];
      for (int32_t jj = 0; jj < kIgPer; ++jj) {
        const int32_t j = n0 + tx * kIgPer + jj;
        if (j >= cols) continue;
        const float v = acc[i][jj] + bias;
        y[implicit_output_index(d, co, j)] = relu && v < 0.0f ? 0.0f : v;
      }
    }
  }
}

// --- conv_pool variant 1 (kernels/variants.hpp; docs/cuda.md "Kernel variants") ---------------
// The forward's epilogue over the box [image][channel][pooled offset]: each thread reads its
// window's four GEMM outputs from tmp, adds the bias, applies the ReLU and writes the window's
// maximum and argmax (conv_pool_pick_at); the conv's output is never written.
__global__ void conv_pool_output_kernel(const float* tmp, const float* b, ConvDims32 d, bool relu,
                                        Box3 box, float* pooled, int32_t* argmax) {
  for_each_in_box(box, [&](int32_t r, int32_t j, int32_t i) {
    const PoolPick<float> pick = conv_pool_pick_at(tmp, b[j], d, relu, i, j, r);
    const int32_t o = (i * d.c_out + j) * box.nx + r;
    pooled[o] = pick.value;
    argmax[o] = pick.arg;
  });
}

// The backward's prologue: a block per channel (grid-strided over channels), its threads strided
// over the channel's n * (oh/2) * (ow/2) windows; each writes its window's entries of the
// channel-major dz (conv_pool_window_grad) and adds the winner's gradient to its sum, in double;
// then a fixed tree over the block (block_sum) gives db. Deterministic: no atomics, the same order
// on every run.
__global__ void __launch_bounds__(kChannelBlock)
    conv_pool_grad_kernel(const float* pooled, const float* dpooled, const int32_t* argmax,
                          ConvDims32 d, bool relu, float* dz, float* db) {
  __shared__ double partial[kChannelBlock];
  const int32_t windows = (d.oh / 2) * (d.ow / 2), per_channel = d.n * windows;
  for (int32_t j = static_cast<int32_t>(blockIdx.x); j < d.c_out;
       j += static_cast<int32_t>(gridDim.x)) {
    float* row = dz + static_cast<int64_t>(j) * d.n * (d.oh * d.ow);
    double sum = 0;
    for (int32_t e = static_cast<int32_t>(threadIdx.x); e < per_channel;
         e += static_cast<int32_t>(blockDim.x)) {
      const int32_t i = e / windows;
      sum += conv_pool_window_grad(pooled, dpooled, argmax, d, relu, i, j, e - i * windows, row);
    }
    sum = block_sum(sum, partial);
    if (threadIdx.x == 0) db[j] = static_cast<float>(sum);
  }
}

bool v1(VariantOp op) { return kernel_variants()[op] == 1; }

}  // namespace

// Variant 1 launchers; false when the sizes need 64-bit indices (the caller then runs variant 0).
namespace {

bool im2col_v1(const float* x, const ConvDims& d, float* col, cudaStream_t stream) {
  if (!conv_fits_int32(d)) return false;
  const ConvDims32 d32 = conv_dims32(d);
  const Box3 box{d32.oh * d32.ow, static_cast<int32_t>(d.k()), d32.n};
  const int block = plane_block(box.nx);
  if (d.is_3x3_same()) {
    im2col_v1_kernel<3, 1><<<grid_for_box(box, block), block, 0, stream>>>(x, d32, box, col);
  } else {
    im2col_v1_kernel<0, 0><<<grid_for_box(box, block), block, 0, stream>>>(x, d32, box, col);
  }
  MG_CHECK_LAUNCH("im2col_v1_kernel");
  return true;
}

bool col2im_v1(const float* col, const ConvDims& d, float* dx, cudaStream_t stream) {
  if (!conv_fits_int32(d)) return false;
  const ConvDims32 d32 = conv_dims32(d);
  const Box3 box{d32.h * d32.w, d32.c_in, d32.n};
  const int block = plane_block(box.nx);
  if (d.is_3x3_same()) {
    col2im_v1_kernel<3, 1><<<grid_for_box(box, block), block, 0, stream>>>(col, d32, box, dx);
  } else {
    col2im_v1_kernel<0, 0><<<grid_for_box(box, block), block, 0, stream>>>(col, d32, box, dx);
  }
  MG_CHECK_LAUNCH("col2im_v1_kernel");
  return true;
}

bool fits_int32(int64_t n, int64_t c, int64_t s) { return n * c * s < kIndex32Limit; }

bool conv_output_v1(const float* tmp, const float* b, int64_t n, int64_t c, int64_t s, bool relu,
                    float* y, cudaStream_t stream) {
  if (!fits_int32(n, c, s)) return false;
  const Box3 box{static_cast<int32_t>(s), static_cast<int32_t>(c), static_cast<int32_t>(n)};
  const int block = plane_block(s);
  conv_output_v1_kernel<<<grid_for_box(box, block), block, 0, stream>>>(
      tmp, b, box.nz, box.ny, box.nx, relu, box, y);
  MG_CHECK_LAUNCH("conv_output_v1_kernel");
  return true;
}

bool conv_grad_prepare_v1(const float* y, const float* dy, int64_t n, int64_t c, int64_t s,
                          bool relu, float* dy_cn, float* db, cudaStream_t stream) {
  if (!fits_int32(n, c, s)) return false;
  const bool vec = s % 4 == 0 && aligned16(y) && aligned16(dy) && aligned16(dy_cn);
  const Box3 box{static_cast<int32_t>(vec ? s / 4 : s), static_cast<int32_t>(c),
                 static_cast<int32_t>(n)};
  const int block = plane_block(box.nx);
  conv_grad_permute_v1_kernel<<<grid_for_box(box, block), block, 0, stream>>>(
      y, dy, static_cast<int32_t>(n), box.ny, static_cast<int32_t>(s), relu, vec, box, dy_cn);
  MG_CHECK_LAUNCH("conv_grad_permute_v1_kernel");
  const int blocks = blocks_for(c, 1, cuda::max_grid_blocks());
  conv_bias_grad_v1_kernel<<<blocks, kChannelBlock, 0, stream>>>(
      dy_cn, static_cast<int32_t>(c), static_cast<int32_t>(n * s), vec && (n * s) % 4 == 0, db);
  MG_CHECK_LAUNCH("conv_bias_grad_v1_kernel");
  return true;
}

// False when the sizes need 64-bit indices (the caller then runs the explicit GEMM).
bool conv_implicit_forward(const float* x, const float* w, const float* b, const ConvDims& d,
                           bool relu, float* y, cudaStream_t stream) {
  if (!conv_fits_int32(d)) return false;
  const ConvDims32 d32 = conv_dims32(d);
  const int64_t tiles = (d.c_out + kIgTile - 1) / kIgTile * ((d.cols() + kIgTile - 1) / kIgTile);
  const int blocks = blocks_for(tiles, 1, cuda::max_grid_blocks());
  if (d.is_3x3_same()) {
    conv_implicit_gemm_kernel<3, 1><<<blocks, kIgThreads, 0, stream>>>(x, w, b, d32, relu, y);
  } else {
    conv_implicit_gemm_kernel<0, 0><<<blocks, kIgThreads, 0, stream>>>(x, w, b, d32, relu, y);
  }
  MG_CHECK_LAUNCH("conv_implicit_gemm_kernel");
  return true;
}

}  // namespace

void im2col_3x3(const float* x, const ConvDims& d, float* col, cudaStream_t stream) {
  const int64_t count = d.k() * d.cols();
  if (count == 0) return;
  if (v1(VariantOp::kIm2col) && im2col_v1(x, d, col, stream)) return;
  im2col_3x3_kernel<<<grid_for(count), kBlock, 0, stream>>>(x, d, col);
  MG_CHECK_LAUNCH("im2col_3x3_kernel");
}

void col2im_3x3(const float* col, const ConvDims& d, float* dx, cudaStream_t stream) {
  const int64_t count = d.n * d.c_in * d.hw();
  if (count == 0) return;
  if (v1(VariantOp::kCol2im) && col2im_v1(col, d, dx, stream)) return;
  col2im_3x3_kernel<<<grid_for(count), kBlock, 0, stream>>>(col, d, dx);
  MG_CHECK_LAUNCH("col2im_3x3_kernel");
}

void im2col(const float* x, const ConvDims& d, float* col, cudaStream_t stream) {
  if (d.is_3x3_same()) return im2col_3x3(x, d, col, stream);
  const int64_t count = d.k() * d.cols();
  if (count == 0) return;
  if (v1(VariantOp::kIm2col) && im2col_v1(x, d, col, stream)) return;
  im2col_kernel<<<grid_for(count), kBlock, 0, stream>>>(x, d, col);
  MG_CHECK_LAUNCH("im2col_kernel");
}

void col2im(const float* col, const ConvDims& d, float* dx, cudaStream_t stream) {
  if (d.is_3x3_same()) return col2im_3x3(col, d, dx, stream);
  const int64_t count = d.n * d.c_in * d.hw();
  if (count == 0) return;
  if (v1(VariantOp::kCol2im) && col2im_v1(col, d, dx, stream)) return;
  col2im_kernel<<<grid_for(count), kBlock, 0, stream>>>(col, d, dx);
  MG_CHECK_LAUNCH("col2im_kernel");
}

void conv_output(const float* tmp, const float* b, int64_t n, int64_t c, int64_t s, bool relu,
                 float* y, cudaStream_t stream) {
  const int64_t count = n * c * s;
  if (count == 0) return;
  if (v1(VariantOp::kConvOutput) && conv_output_v1(tmp, b, n, c, s, relu, y, stream)) return;
  conv_output_kernel<<<grid_for(count), kBlock, 0, stream>>>(tmp, b, n, c, s, relu, y);
  MG_CHECK_LAUNCH("conv_output_kernel");
}

void conv_grad_prepare(const float* y, const float* dy, int64_t n, int64_t c, int64_t s, bool relu,
                       float* dy_cn, float* db, cudaStream_t stream) {
  if (c == 0) return;
  if (v1(VariantOp::kConvGradPrepare) && n * s > 0 &&
      conv_grad_prepare_v1(y, dy, n, c, s, relu, dy_cn, db, stream))
    return;
  const int blocks = blocks_for(c, 1, cuda::max_grid_blocks());
  conv_grad_prepare_kernel<<<blocks, kChannelBlock, 0, stream>>>(y, dy, n, c, s, relu, dy_cn, db);
  MG_CHECK_LAUNCH("conv_grad_prepare_kernel");
}

namespace {

std::atomic<int64_t> g_conv_chunk_bytes{kConvChunkBytes};

int conv_gemm_variant() { return kernel_variants()[VariantOp::kConvGemm]; }

// The chunks the layer's explicit GEMMs run in: variant 0's whole batch, or variant 1's (and
// variant 2's backward, and under variant 2 the fused conv + pool's forward too) chunks, one when
// the layer's column matrix fits the budget anyway.
ConvChunks chunks_for(const ConvDims& d) {
  if (conv_gemm_variant() == 0) return {d.n, 1};
  return conv_chunks(d, conv_chunk_bytes());
}

// Whether the forward left the whole batch's im2col(x) in col for the backward.
bool forward_keeps_col(const ConvDims& d) {
  return conv_gemm_variant() == 0 || (conv_gemm_variant() == 1 && chunks_for(d).count <= 1) ||
         (conv_gemm_variant() == 2 && !conv_fits_int32(d) && chunks_for(d).count <= 1);
}

// Calls f(i0, part) for each chunk in batch order: images [i0, i0 + part.n). Once, with part = d,
// for an empty batch (so the GEMMs still write their outputs, as variant 0 does).
template <class F>
void for_each_chunk(const ConvDims& d, const ConvChunks& chunks, F&& f) {
  const int64_t step = std::max<int64_t>(chunks.images, 1);
  for (int64_t i0 = 0; i0 == 0 || i0 < d.n; i0 += step) {
    ConvDims part = d;
    part.n = std::min(step, d.n - i0);
    f(i0, part);
  }
}

}  // namespace

int64_t conv_chunk_bytes() { return g_conv_chunk_bytes.load(std::memory_order_relaxed); }

void set_conv_chunk_bytes(int64_t bytes) {
  if (bytes < 1) throw std::invalid_argument("set_conv_chunk_bytes: need at least one byte");
  g_conv_chunk_bytes.store(bytes, std::memory_order_relaxed);
}

bool conv_keeps_col(const ConvDims& d) { return forward_keeps_col(d); }

namespace {

// tmp [c_out, n*ohw] = w * im2col(x): per chunk of images [i0, i0 + nc) (one chunk: the whole
// batch), its column matrix [k, nc*ohw] at the front of col, then the SGEMM into the chunk's
// column block of tmp.
void gemm_forward(cublasHandle_t handle, cudaStream_t stream, const ConvDims& d, const float* x,
                  const float* w, float* col, float* tmp) {
  for_each_chunk(d, chunks_for(d), [&](int64_t i0, const ConvDims& part) {
    im2col(x + i0 * d.c_in * d.hw(), part, col, stream);
    // tmp [c_out, cols] = w [c_out, k] * col [k, cols]
    gemm_row_major(handle, stream, false, false, d.c_out, part.cols(), d.k(), 1.0f, w, d.k(), col,
                   part.cols(), 0.0f, tmp + i0 * d.ohw(), d.cols());
  });
}

// From the channel-major output gradient dy_cn [c_out, n*ohw] (in tmp): dw, and dx when not null.
// col_ready: col holds the whole batch's im2col(x) from the forward; else each chunk unfolds x
// again.
void gemm_backward(cublasHandle_t handle, cudaStream_t stream, const ConvDims& d, const float* x,
                   const float* w, float* dx, float* dw, float* col, const float* tmp,
                   bool col_ready) {
  for_each_chunk(d, chunks_for(d), [&](int64_t i0, const ConvDims& part) {
    const float* dy_cn = tmp + i0 * d.ohw();  // the chunk's columns of dy_cn [c_out, cols]
    // col still holds im2col(x) from the forward pass, or this chunk is unfolded now.
    if (!col_ready) im2col(x + i0 * d.c_in * d.hw(), part, col, stream);
    // dw [c_out, k] (+)= dy_cn [c_out, cols] * col [k, cols]^T, the chunks added in batch order
    gemm_row_major(handle, stream, false, true, d.c_out, d.k(), part.cols(), 1.0f, dy_cn, d.cols(),
                   col, part.cols(), i0 == 0 ? 0.0f : 1.0f, dw, d.k());
    if (dx == nullptr) return;
    // d(col) [k, cols] = w [c_out, k]^T * dy_cn [c_out, cols], over the column matrix
    gemm_row_major(handle, stream, true, false, d.k(), part.cols(), d.c_out, 1.0f, w, d.k(), dy_cn,
                   d.cols(), 0.0f, col, part.cols());
    col2im(col, part, dx + i0 * d.c_in * d.hw(), stream);
  });
}

// Where the fused op needs 64-bit indices or has no pooled map, it cannot run: the backend does
// not fuse such a layer (fuses_conv_pool), so this is a caller's error.
void check_conv_pool(const ConvDims& d, const char* what) {
  if (!conv_pool_fits(d))
    throw std::invalid_argument(std::string(what) +
                                ": the layer needs 64-bit indices or has no 2x2 window; run the "
                                "conv and the pool apart");
}

}  // namespace

void conv3x3_forward(cublasHandle_t handle, cudaStream_t stream, const ConvDims& d, bool relu,
                     const float* x, const float* w, const float* b, float* y, float* col,
                     float* tmp) {
  // Variant 2: one implicit GEMM, col untouched.
  if (conv_gemm_variant() == 2 && d.n > 0 && conv_implicit_forward(x, w, b, d, relu, y, stream))
    return;
  gemm_forward(handle, stream, d, x, w, col, tmp);
  conv_output(tmp, b, d.n, d.c_out, d.ohw(), relu, y, stream);
}

void conv3x3_backward(cublasHandle_t handle, cudaStream_t stream, const ConvDims& d, bool relu,
                      const float* x, const float* w, const float* y, const float* dy, float* dx,
                      float* dw, float* db, float* col, float* tmp) {
  conv_grad_prepare(y, dy, d.n, d.c_out, d.ohw(), relu, tmp, db, stream);
  gemm_backward(handle, stream, d, x, w, dx, dw, col, tmp, forward_keeps_col(d));
}

bool conv_pool_keeps_col(const ConvDims& d) { return chunks_for(d).count <= 1; }

void conv_pool_forward(cublasHandle_t handle, cudaStream_t stream, const ConvDims& d, bool relu,
                       const float* x, const float* w, const float* b, float* pooled,
                       int32_t* argmax, float* col, float* tmp) {
  check_conv_pool(d, "conv_pool_forward");
  gemm_forward(handle, stream, d, x, w, col, tmp);
  if (d.n == 0 || d.c_out == 0) return;
  const ConvDims32 d32 = conv_dims32(d);
  const Box3 box{(d32.oh / 2) * (d32.ow / 2), d32.c_out, d32.n};
  const int block = plane_block(box.nx);
  conv_pool_output_kernel<<<grid_for_box(box, block), block, 0, stream>>>(tmp, b, d32, relu, box,
                                                                          pooled, argmax);
  MG_CHECK_LAUNCH("conv_pool_output_kernel");
}

void conv_pool_backward(cublasHandle_t handle, cudaStream_t stream, const ConvDims& d, bool relu,
                        const float* x, const float* w, const float* pooled, const float* dpooled,
                        const int32_t* argmax, float* dx, float* dw, float* db, float* col,
                        float* tmp) {
  check_conv_pool(d, "conv_pool_backward");
  if (d.c_out > 0) {
    const int blocks = blocks_for(d.c_out, 1, cuda::max_grid_blocks());
    conv_pool_grad_kernel<<<blocks, kChannelBlock, 0, stream>>>(pooled, dpooled, argmax,
                                                                conv_dims32(d), relu, tmp, db);
    MG_CHECK_LAUNCH("conv_pool_grad_kernel");
  }
  gemm_backward(handle, stream, d, x, w, dx, dw, col, tmp, conv_pool_keeps_col(d));
}

}  // namespace mg::kern
