// Per-element arithmetic of the K x K convolution (stride 1, zero padding `pad` each side: 'same'
// is (K-1)/2, 'valid' 0), with the seed model's 3x3 'same' kept as its own path, shared by the
// CUDA kernels (kernels/conv.cu) and the CPU tests (tests/test_kernel_math.cpp), which call these
// over every index and compare with cpu::im2col_3x3 and friends. No CUDA here.
//
// Layouts (the same as engine/cpu_ops.hpp):
//   x, dx       [N, C_in, H, W]
//   col         [C_in*K*K, N*OH*OW]   row c*K*K + ky*K + kx, column (n*OH + y)*OW + x
//   tmp         [C_out, N*OH*OW]      the GEMM's output, channel-major
//   y, dy       [N, C_out, OH, OW]    OH = H + 2*pad - K + 1 (H for 'same'), OW likewise
#pragma once

#include <cstdint>

#include "kernels/philox.cuh"  // MG_HOST_DEVICE
#include "kernels/pool_math.cuh"  // PoolPick: the fused conv + pool (conv_pool variant 1)

namespace mg::kern {

struct ConvDims {
  int64_t n = 0, c_in = 0, h = 0, w = 0, c_out = 0;
  int64_t kernel = 3, pad = 1;
  MG_HOST_DEVICE int64_t hw() const { return h * w; }  // the input's plane
  MG_HOST_DEVICE int64_t oh() const { return h + 2 * pad - kernel + 1; }
  MG_HOST_DEVICE int64_t ow() const { return w + 2 * pad - kernel + 1; }
  MG_HOST_DEVICE int64_t ohw() const { return oh() * ow(); }  // the output's plane
  MG_HOST_DEVICE int64_t taps() const { return kernel * kernel; }
  MG_HOST_DEVICE int64_t k() const { return c_in * taps(); }  // GEMM inner size, rows of col
  MG_HOST_DEVICE int64_t cols() const { return n * ohw(); }   // one column per output pixel
  MG_HOST_DEVICE bool is_3x3_same() const { return kernel == 3 && pad == 1; }
};

// col[idx], idx in [0, k()*cols()): the input pixel the column reads, or zero in the padding.
template <class T>
MG_HOST_DEVICE T im2col_3x3_at(const T* x, const ConvDims& d, int64_t idx) {
  const int64_t cols = d.cols(), hw = d.hw();
  const int64_t row = idx / cols, col = idx - row * cols;
  const int64_t c = row / 9, kk = row - c * 9;
  const int64_t n = col / hw, p = col - n * hw;
  const int64_t y = p / d.w, x0 = p - y * d.w;
  const int64_t sy = y + kk / 3 - 1, sx = x0 + kk % 3 - 1;
  if (sy < 0 || sy >= d.h || sx < 0 || sx >= d.w) return T(0);
  return x[(n * d.c_in + c) * hw + sy * d.w + sx];
}

// dx[idx], idx in [0, n*c_in*h*w): the adjoint of im2col as a gather. The pixel sums the (up to 9)
// column entries that read it, in the order kk = 0..8 the CPU reference uses, so the sums agree
// bit for bit.
template <class T>
MG_HOST_DEVICE T col2im_3x3_at(const T* col, const ConvDims& d, int64_t idx) {
  const int64_t cols = d.cols(), hw = d.hw();
  const int64_t plane = idx / hw, p = idx - plane * hw;
  const int64_t n = plane / d.c_in, c = plane - n * d.c_in;
  const int64_t y = p / d.w, x0 = p - y * d.w;
  T sum = 0;
  for (int64_t kk = 0; kk < 9; ++kk) {
    const int64_t ty = y - (kk / 3 - 1), tx = x0 - (kk % 3 - 1);
    if (ty < 0 || ty >= d.h || tx < 0 || tx >= d.w) continue;
    sum += col[(c * 9 + kk) * cols + n * hw + ty * d.w + tx];
  }
  return sum;
}

// The general K x K forms of the two above (cpu::im2col_general, cpu::col2im_general): col2im
// sums in the order kk = 0..K*K-1, as the CPU does.
template <class T>
MG_HOST_DEVICE T im2col_at(const T* x, const ConvDims& d, int64_t idx) {
  const int64_t cols = d.cols(), ohw = d.ohw(), ow = d.ow(), taps = d.taps();
  const int64_t row = idx / cols, col = idx - row * cols;
  const int64_t c = row / taps, kk = row - c * taps;
  const int64_t n = col / ohw, p = col - n * ohw;
  const int64_t y = p / ow, x0 = p - y * ow;
  const int64_t sy = y + kk / d.kernel - d.pad, sx = x0 + kk % d.kernel - d.pad;
  if (sy < 0 || sy >= d.h || sx < 0 || sx >= d.w) return T(0);
  return x[(n * d.c_in + c) * d.hw() + sy * d.w + sx];
}

template <class T>
MG_HOST_DEVICE T col2im_at(const T* col, const ConvDims& d, int64_t idx) {
  const int64_t cols = d.cols(), hw = d.hw(), ohw = d.ohw(), oh = d.oh(), ow = d.ow();
  const int64_t taps = d.taps();
  const int64_t plane = idx / hw, p = idx - plane * hw;
  const int64_t n = plane / d.c_in, c = plane - n * d.c_in;
  const int64_t y = p / d.w, x0 = p - y * d.w;
  T sum = 0;
  for (int64_t kk = 0; kk < taps; ++kk) {
    const int64_t ty = y - (kk / d.kernel - d.pad), tx = x0 - (kk % d.kernel - d.pad);
    if (ty < 0 || ty >= oh || tx < 0 || tx >= ow) continue;
    sum += col[(c * taps + kk) * cols + n * ohw + ty * ow + tx];
  }
  return sum;
}

// y[idx] for y [n, c, s] from the channel-major GEMM output tmp [c, n, s]: permute, add the bias,
// then ReLU when asked, as cpu::cnhw_bias_act_to_nchw does (std::max(v, 0): a NaN passes through).
template <class T>
MG_HOST_DEVICE T conv_output_at(const T* tmp, const T* b, int64_t n, int64_t c, int64_t s,
                                bool relu, int64_t idx) {
  const int64_t i = idx / (c * s), r = idx - i * c * s;
  const int64_t j = r / s, k = r - j * s;
  const T v = tmp[(j * n + i) * s + k] + b[j];
  return (relu && v < T(0)) ? T(0) : v;
}

// The channel-major output gradient, element e in [0, n*s) of channel j: dy[i, j, k] (e = i*s + k),
// masked by the ReLU where the output y was not positive (cpu::nchw_act_grad_to_cnhw's test).
template <class T>
MG_HOST_DEVICE T conv_grad_cn_at(const T* y, const T* dy, int64_t c, int64_t s, bool relu,
                                 int64_t j, int64_t e) {
  const int64_t i = e / s, k = e - i * s;
  const int64_t src = (i * c + j) * s + k;
  return (!relu || y[src] > T(0)) ? dy[src] : T(0);
}

// --- variant 1: 32-bit indices over 2D/3D grids (kernels/conv.cu, docs/cuda.md) ----------------
//
// The v1 kernels put the row (or channel) in blockIdx.y and the image in blockIdx.z, so a thread
// only divides its plane offset p by the row width, in 32 bits; the functions below take the
// coordinates the grid hands out. ConvDims32 is made once per launch, after conv_fits_int32 has
// checked that every index of the layer stays below kIndex32Limit (else the launcher runs
// variant 0, with 64-bit indices).

// 2^30, not 2^31 - 1: a grid-stride step (at most 2^23 threads, or 65535 blocks along y and z)
// past the last index must not overflow an int32 either.
inline constexpr int64_t kIndex32Limit = int64_t{1} << 30;

struct ConvDims32 {
  int32_t n, c_in, h, w, c_out, kernel, pad, oh, ow;
};

inline bool conv_fits_int32(const ConvDims& d) {
  return d.k() * d.cols() < kIndex32Limit && d.n * d.c_in * d.hw() < kIndex32Limit &&
         d.n * d.c_out * d.ohw() < kIndex32Limit;
}

inline ConvDims32 conv_dims32(const ConvDims& d) {
  return {static_cast<int32_t>(d.n),      static_cast<int32_t>(d.c_in),
          static_cast<int32_t>(d.h),      static_cast<int32_t>(d.w),
          static_cast<int32_t>(d.c_out),  static_cast<int32_t>(d.kernel),
          static_cast<int32_t>(d.pad),    static_cast<int32_t>(d.oh()),
          static_cast<int32_t>(d.ow())};
}

// col[row, img*oh*ow + p] for row in [0, c_in*K*K), img in [0, n), p in [0, oh*ow). K and PAD
// fixed at compile time (3, 1 for the seed model's 'same' 3x3, so the divisions by K are by a
// constant), or 0, 0 to read them from d.
template <class T, int K = 0, int PAD = 0>
MG_HOST_DEVICE T im2col_v1_at(const T* x, const ConvDims32& d, int32_t row, int32_t img,
                              int32_t p) {
  const int32_t k = K > 0 ? K : d.kernel, pad = K > 0 ? PAD : d.pad;
  const int32_t c = row / (k * k), kk = row - c * (k * k);
  const int32_t y = p / d.ow, x0 = p - y * d.ow;
  const int32_t sy = y + kk / k - pad, sx = x0 + kk % k - pad;
  if (sy < 0 || sy >= d.h || sx < 0 || sx >= d.w) return T(0);
  return x[(img * d.c_in + c) * (d.h * d.w) + sy * d.w + sx];
}

// dx[img, c, p] for p in [0, h*w): the taps summed in the order kk = 0..K*K-1, as col2im_at and the
// CPU reference do, so the result is the same bit for bit.
template <class T, int K = 0, int PAD = 0>
MG_HOST_DEVICE T col2im_v1_at(const T* col, const ConvDims32& d, int32_t c, int32_t img,
                              int32_t p) {
  const int32_t k = K > 0 ? K : d.kernel, pad = K > 0 ? PAD : d.pad;
  const int32_t taps = k * k, ohw = d.oh * d.ow, cols = d.n * ohw;
  const int32_t y = p / d.w, x0 = p - y * d.w;
  T sum = 0;
  for (int32_t kk = 0; kk < taps; ++kk) {
    const int32_t ty = y - (kk / k - pad), tx = x0 - (kk % k - pad);
    if (ty < 0 || ty >= d.oh || tx < 0 || tx >= d.ow) continue;
    sum += col[(c * taps + kk) * cols + img * ohw + ty * d.ow + tx];
  }
  return sum;
}

// y[i, j, k] from tmp [c, n, s]: conv_output_at with the coordinates given.
template <class T>
MG_HOST_DEVICE T conv_output_v1_at(const T* tmp, T bias, int32_t n, int32_t s, bool relu,
                                   int32_t i, int32_t j, int32_t k) {
  const T v = tmp[(j * n + i) * s + k] + bias;
  return (relu && v < T(0)) ? T(0) : v;
}

// The masked gradient from both values, both always read (no load behind a branch).
template <class T>
MG_HOST_DEVICE T conv_grad_mask(T y, T dy, bool relu) {
  return (!relu || y > T(0)) ? dy : T(0);
}

// --- conv_gemm variant 1: the batch in chunks whose column matrix stays in L2 -----------------
//
// Variant 0 unfolds the whole batch into one column matrix (conv2d_1 at batch 128: 288 x 25088
// floats, 29 MB) and runs one GEMM over it; variant 1 walks the batch in chunks of images, each
// unfolded into the front of the same buffer and multiplied at once, so the matrix a GEMM reads
// was just written and is still in L2. The plan is host arithmetic, tested on the CPU.

// Bytes of one chunk's column matrix that variant 1 aims to stay under: a fifth of an H100's or
// H200's 50 MB L2, so the chunk's input, its slice of the GEMM output and the weights fit beside
// it.
inline constexpr int64_t kConvChunkBytes = int64_t{8} << 20;

struct ConvChunks {
  int64_t images;  // per chunk (the last may have fewer); n when the layer is not chunked
  int64_t count;   // chunks
};

// Chunks of at most `budget` bytes of column matrix each (at least one image), as even as they
// go: ceil(n / chunks) images, so chunk sizes differ by at most the last one's remainder.
inline ConvChunks conv_chunks(const ConvDims& d, int64_t budget = kConvChunkBytes) {
  const int64_t per_image = d.k() * d.ohw() * static_cast<int64_t>(sizeof(float));
  if (d.n <= 1 || per_image <= 0) return {d.n, d.n > 0 ? 1 : 0};
  const int64_t fit = budget / per_image < 1 ? 1 : budget / per_image;
  if (fit >= d.n) return {d.n, 1};
  const int64_t count = (d.n + fit - 1) / fit;
  const int64_t images = (d.n + count - 1) / count;
  return {images, (d.n + images - 1) / images};
}

// --- conv_gemm variant 2: the forward as one implicit GEMM -------------------------------------
//
// y = relu(w * col + b) with col never stored: a tile of it is gathered from x into shared memory
// when the GEMM needs it, and the output goes straight to y [n, c_out, oh, ow] with the bias and
// ReLU (no tmp, no conv_output). The GEMM's column j is image j / (oh*ow), offset j % (oh*ow).

// col[row, j] of the whole batch's column matrix, read from x.
template <class T, int K = 0, int PAD = 0>
MG_HOST_DEVICE T implicit_col_at(const T* x, const ConvDims32& d, int32_t row, int32_t j) {
  const int32_t ohw = d.oh * d.ow;
  const int32_t img = j / ohw;
  return im2col_v1_at<T, K, PAD>(x, d, row, img, j - img * ohw);
}

// Where the GEMM's output (channel co, column j) lands in y [n, c_out, oh*ow].
MG_HOST_DEVICE int32_t implicit_output_index(const ConvDims32& d, int32_t co, int32_t j) {
  const int32_t ohw = d.oh * d.ow;
  const int32_t img = j / ohw;
  return (img * d.c_out + co) * ohw + (j - img * ohw);
}

// --- conv_pool variant 1: the 2x2 max-pool in the conv's epilogue, its backward in the prologue --
//
// In training, a conv layer and the 2x2 max-pool right after it run as one op
// (Network::fused_with_pool). The forward's epilogue reads the GEMM's channel-major output tmp
// [c_out, n*oh*ow], adds the bias, applies the ReLU and takes each window's first maximum, writing
// only the pooled values and argmax (the conv's output y is never written); the backward's
// prologue builds the channel-major dz [c_out, n*oh*ow] straight from the pool's output gradient,
// winner by winner. Both give the unfused path's values bit for bit (conv_output_at then
// maxpool2x2_at; maxpool2x2_grad_at then conv_grad_cn_at).

// Whether the fused kernels take the layer: 32-bit indices (conv_fits_int32) and a non-empty
// pooled map (a pool layer needs a 2x2 map at least; the spec refuses less).
inline bool conv_pool_fits(const ConvDims& d) {
  return conv_fits_int32(d) && d.oh() >= 2 && d.ow() >= 2;
}

// The pooled output r in [0, (oh/2)*(ow/2)) of image i, channel j: relu?(tmp + bias) over the
// window, the first maximum in row-major order (strict >), argmax its offset in the conv's output
// plane. The same values and comparisons as conv_output_v1_at followed by maxpool2x2_v1_at.
template <class T>
MG_HOST_DEVICE PoolPick<T> conv_pool_pick_at(const T* tmp, T bias, const ConvDims32& d, bool relu,
                                             int32_t i, int32_t j, int32_t r) {
  const int32_t pw = d.ow / 2;
  const int32_t oy = r / pw, ox = r - oy * pw;
  const T* plane = tmp + (j * d.n + i) * (d.oh * d.ow);
  int32_t best = (2 * oy) * d.ow + 2 * ox;
  T best_v = plane[best] + bias;
  if (relu && best_v < T(0)) best_v = T(0);
  for (int32_t k = 1; k < 4; ++k) {
    const int32_t idx = (2 * oy + k / 2) * d.ow + 2 * ox + k % 2;
    T v = plane[idx] + bias;
    if (relu && v < T(0)) v = T(0);
    if (v > best_v) {
      best = idx;
      best_v = v;
    }
  }
  return {best_v, best};
}

// The backward of window r of image i, channel j: the gradient its winner passes (dpooled where,
// with the ReLU, pooled > 0; the ReLU's mask at the winner, whose output is the pooled value), into
// dz_row, channel j's row of dz [c_out, n*oh*ow]: the window's four pixels (the winner g, the rest
// 0) and, in the last window of a row or column of windows, the odd last column or row of the
// output that no window covers (0). So the windows together write every entry of the row once.
// Returns g, the window's share of the bias gradient.
template <class T>
MG_HOST_DEVICE T conv_pool_window_grad(const T* pooled, const T* dpooled, const int32_t* argmax,
                                       const ConvDims32& d, bool relu, int32_t i, int32_t j,
                                       int32_t r, T* dz_row) {
  const int32_t ph = d.oh / 2, pw = d.ow / 2;
  const int32_t oy = r / pw, ox = r - oy * pw;
  const int32_t o = (i * d.c_out + j) * (ph * pw) + r;
  const int32_t win = (2 * oy) * d.ow + 2 * ox, arg = argmax[o];
  const T g = (!relu || pooled[o] > T(0)) ? dpooled[o] : T(0);
  T* out = dz_row + i * (d.oh * d.ow);
  out[win] = arg == win ? g : T(0);
  out[win + 1] = arg == win + 1 ? g : T(0);
  out[win + d.ow] = arg == win + d.ow ? g : T(0);
  out[win + d.ow + 1] = arg == win + d.ow + 1 ? g : T(0);
  const bool last_col = ox == pw - 1 && d.ow % 2 != 0, last_row = oy == ph - 1 && d.oh % 2 != 0;
  if (last_col) out[win + 2] = out[win + d.ow + 2] = T(0);
  if (last_row) out[win + 2 * d.ow] = out[win + 2 * d.ow + 1] = T(0);
  if (last_col && last_row) out[win + 2 * d.ow + 2] = T(0);
  return g;
}

}  // namespace mg::kern
