// Per-element arithmetic of max pool 2x2 / stride 2 ('valid': an odd last row or column is
// dropped), shared by kernels/pool.cu and the CPU tests. The same tie rule as
// cpu::maxpool2x2_forward: the first maximum in row-major order wins (strict >), and argmax is the
// winner's offset y*W + x within its input plane. No CUDA here.
#pragma once

#include <cstdint>

#include "kernels/philox.cuh"  // MG_HOST_DEVICE

namespace mg::kern {

struct PoolDims {
  int64_t planes = 0, h = 0, w = 0;  // planes = N * C
  MG_HOST_DEVICE int64_t oh() const { return h / 2; }
  MG_HOST_DEVICE int64_t ow() const { return w / 2; }
  MG_HOST_DEVICE int64_t out_count() const { return planes * oh() * ow(); }
  MG_HOST_DEVICE int64_t in_count() const { return planes * h * w; }
};

template <class T>
struct PoolPick {
  T value;
  int32_t arg;  // offset of the winner within its input plane
};

// Output o in [0, out_count()).
template <class T>
MG_HOST_DEVICE PoolPick<T> maxpool2x2_at(const T* x, const PoolDims& d, int64_t o) {
  const int64_t oh = d.oh(), ow = d.ow();
  const int64_t p = o / (oh * ow), r = o - p * (oh * ow);
  const int64_t oy = r / ow, ox = r - oy * ow;
  const T* in = x + p * d.h * d.w;
  int64_t best = (2 * oy) * d.w + 2 * ox;
  for (int64_t k = 1; k < 4; ++k) {
    const int64_t idx = (2 * oy + k / 2) * d.w + 2 * ox + k % 2;
    if (in[idx] > in[best]) best = idx;
  }
  return {in[best], static_cast<int32_t>(best)};
}

// dx[e], e in [0, in_count()): a gather. The input takes its window's gradient if it won the
// window, else zero (also in a dropped odd edge).
template <class T>
MG_HOST_DEVICE T maxpool2x2_grad_at(const T* dy, const int32_t* argmax, const PoolDims& d,
                                    int64_t e) {
  const int64_t oh = d.oh(), ow = d.ow(), hw = d.h * d.w;
  const int64_t p = e / hw, r = e - p * hw;
  const int64_t y = r / d.w, x0 = r - y * d.w;
  const int64_t oy = y / 2, ox = x0 / 2;
  if (oy >= oh || ox >= ow) return T(0);
  const int64_t o = p * oh * ow + oy * ow + ox;
  return argmax[o] == r ? dy[o] : T(0);
}

// --- variant 1: 32-bit indices, the plane in blockIdx.y (kernels/pool.cu) ----------------------

struct PoolDims32 {
  int32_t planes, h, w, oh, ow;
};

// Every index below 2^30 (kernels/conv_math.cuh's kIndex32Limit says why not 2^31).
inline bool pool_fits_int32(const PoolDims& d) { return d.in_count() < (int64_t{1} << 30); }

inline PoolDims32 pool_dims32(const PoolDims& d) {
  return {static_cast<int32_t>(d.planes), static_cast<int32_t>(d.h), static_cast<int32_t>(d.w),
          static_cast<int32_t>(d.oh()), static_cast<int32_t>(d.ow())};
}

// Output r in [0, oh*ow) of plane p: maxpool2x2_at's window, scan order and tie rule.
template <class T>
MG_HOST_DEVICE PoolPick<T> maxpool2x2_v1_at(const T* x, const PoolDims32& d, int32_t p,
                                            int32_t r) {
  const int32_t oy = r / d.ow, ox = r - oy * d.ow;
  const T* in = x + p * (d.h * d.w);
  int32_t best = (2 * oy) * d.w + 2 * ox;
  for (int32_t k = 1; k < 4; ++k) {
    const int32_t idx = (2 * oy + k / 2) * d.w + 2 * ox + k % 2;
    if (in[idx] > in[best]) best = idx;
  }
  return {in[best], best};
}

// dx at offset r in [0, h*w) of plane p: maxpool2x2_grad_at's gather.
template <class T>
MG_HOST_DEVICE T maxpool2x2_grad_v1_at(const T* dy, const int32_t* argmax, const PoolDims32& d,
                                       int32_t p, int32_t r) {
  const int32_t y = r / d.w, x0 = r - y * d.w;
  const int32_t oy = y / 2, ox = x0 / 2;
  if (oy >= d.oh || ox >= d.ow) return T(0);
  const int32_t o = p * (d.oh * d.ow) + oy * d.ow + ox;
  return argmax[o] == r ? dy[o] : T(0);
}

}  // namespace mg::kern
