#include "engine/cpu_fast_conv.hpp"

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>

#include "engine/cpu_simd.hpp"

namespace mg::cpu::fast {
namespace {

using simd::F16;
using simd::I16;
using simd::kLanes;

int round_up(int v, int m) { return (v + m - 1) / m * m; }

// The sizes of one layer as the kernels index them (32-bit: conv_supported checks they fit).
struct Geometry {
  int ci, h, w, co, k, pad;
  int oh, ow, hp, wp;  // output, and the zero-bordered input tile
  int ohw, ph, pw, pq; // output pixels; the 2x2 pool's output
  int taps() const { return k * k; }
  int kdim() const { return k * k * ci; }  // a column's length: (ky, kx, ci), ci fastest
  // Wide layers (C_in a multiple of 16) read a pixel's column straight from the tile, K rows of
  // K * C_in contiguous floats; narrow ones (the first layer, C_in = 1) from a column matrix whose
  // rows are padded to whole vectors.
  bool wide() const { return ci % kLanes == 0; }
  // Narrow rows have room for fill_columns' overrun of up to three floats past kdim().
  int row() const { return wide() ? kdim() : round_up(kdim() + 3, kLanes); }
  int tile() const { return hp * wp * ci; }
  int tile_alloc() const { return tile() + kLanes; }  // with room for that overrun's reads
};

Geometry geometry(const ConvDims& d) {
  Geometry g{};
  g.ci = static_cast<int>(d.c_in);
  g.h = static_cast<int>(d.h);
  g.w = static_cast<int>(d.w);
  g.co = static_cast<int>(d.c_out);
  g.k = static_cast<int>(d.kernel);
  g.pad = static_cast<int>(d.pad);
  g.oh = static_cast<int>(d.oh());
  g.ow = static_cast<int>(d.ow());
  g.hp = g.h + 2 * g.pad;
  g.wp = g.w + 2 * g.pad;
  g.ohw = g.oh * g.ow;
  g.ph = g.oh / 2;
  g.pw = g.ow / 2;
  g.pq = g.ph * g.pw;
  return g;
}

// The images of chunk c: [c * per, min(n, (c + 1) * per)). The chunks depend on n only.
struct Chunks {
  int64_t per = 1, count = 0;
};
Chunks chunks_of(int64_t n) {
  Chunks c;
  c.per = (n + kMaxChunks - 1) / kMaxChunks;
  c.count = (n + c.per - 1) / c.per;
  return c;
}

template <class V>
void ensure(V& v, int64_t size) {
  if (static_cast<int64_t>(v.size()) < size) v.resize(static_cast<size_t>(size));
}

ConvWorkspace::Thread& thread_space(ConvWorkspace& ws) {
  return ws.threads[static_cast<size_t>(omp_get_thread_num())];
}

void prepare_threads(ConvWorkspace& ws) {
  const auto t = static_cast<size_t>(std::max(omp_get_max_threads(), 1));
  if (ws.threads.size() < t) ws.threads.resize(t);
}

// One image x [ci][h][w] into its channel-last tile [(y + pad)][(x + pad)][ci], zero border.
MG_SIMD_INLINE void fill_tile(const Geometry& g, const float* x, float* t) {
  std::fill_n(t, g.tile_alloc(), 0.0f);
  for (int c = 0; c < g.ci; ++c)
    for (int y = 0; y < g.h; ++y) {
      const float* src = x + (c * g.h + y) * g.w;
      float* dst = t + ((y + g.pad) * g.wp + g.pad) * g.ci + c;
      for (int i = 0; i < g.w; ++i) dst[i * g.ci] = src[i];
    }
}

// ---- forward --------------------------------------------------------------------------------

// P output pixels (their offsets in the tile in base[0, P)) by NVB vectors of output channels:
// z[p][0, 16 NVB) = sum over (ky, kx, ci) of tile[base[p] + (ky wp + kx) ci + ci] * w_kc[k][...].
// w_kc and z start at the block's first channel; both have rows of g.co floats.
template <int P, int NVB>
MG_SIMD_INLINE void conv_tile(const Geometry& g, const float* tile, const int32_t* base,
                              const float* w_kc, float* z) {
  F16 acc[P][NVB];
#pragma GCC unroll 16
  for (int p = 0; p < P; ++p)
#pragma GCC unroll 8
    for (int v = 0; v < NVB; ++v) acc[p][v] = F16{};
  for (int ky = 0; ky < g.k; ++ky) {
    for (int kx = 0; kx < g.k; ++kx) {
      const float* src = tile + (ky * g.wp + kx) * g.ci;
      const float* wrow = w_kc + (ky * g.k + kx) * g.ci * g.co;
      for (int c = 0; c < g.ci; ++c) {
        F16 wv[NVB];
#pragma GCC unroll 8
        for (int v = 0; v < NVB; ++v) simd::load(wv[v], wrow + c * g.co + kLanes * v);
#pragma GCC unroll 16
        for (int p = 0; p < P; ++p) {
          const F16 xs = src[base[p] + c] - F16{};
#pragma GCC unroll 8
          for (int v = 0; v < NVB; ++v) acc[p][v] += xs * wv[v];
        }
      }
    }
  }
#pragma GCC unroll 16
  for (int p = 0; p < P; ++p)
#pragma GCC unroll 8
    for (int v = 0; v < NVB; ++v) simd::store(z + p * g.co + kLanes * v, acc[p][v]);
}

template <int P, int NVB>
MG_SIMD_INLINE void conv_pixels(const Geometry& g, const float* tile, const int32_t* base,
                                int pixels, const float* w_kc, float* z) {
  for (int co0 = 0; co0 < g.co; co0 += NVB * kLanes)
    for (int j = 0; j < pixels; j += P)
      conv_tile<P, NVB>(g, tile, base + j, w_kc + co0, z + j * g.co + co0);
}

// The convolution of one image, without bias: z[pixel][co] for every output pixel, rounded up to
// a multiple of 8 pixels (base holds offset 0 for the extra ones; their values are not used).
MG_CPU_KERNEL void conv_image(const Geometry& g, const float* x, const float* w_kc,
                              const int32_t* base, float* tile, float* z) {
  fill_tile(g, x, tile);
  const int pixels = round_up(g.ohw, 8);
  const int vectors = g.co / kLanes;
  if (vectors % 4 == 0) {
    conv_pixels<4, 4>(g, tile, base, pixels, w_kc, z);
  } else if (vectors % 2 == 0) {
    conv_pixels<8, 2>(g, tile, base, pixels, w_kc, z);
  } else {
    conv_pixels<8, 1>(g, tile, base, pixels, w_kc, z);
  }
}

// y[co][pixel] = act(z[pixel][co] + b[co]), as cpu::cnhw_bias_act_to_nchw rounds it.
MG_CPU_KERNEL void store_output(const Geometry& g, const float* z, const float* b, bool relu,
                                float* y) {
  for (int o = 0; o < g.co; ++o) {
    const float bo = b[o];
    float* out = y + o * g.ohw;
    if (relu) {
      for (int j = 0; j < g.ohw; ++j) out[j] = std::max(z[j * g.co + o] + bo, 0.0f);
    } else {
      for (int j = 0; j < g.ohw; ++j) out[j] = z[j * g.co + o] + bo;
    }
  }
}

// The 2x2 max-pool of act(z + b): per window the first maximum in row-major order, as
// cpu::maxpool2x2_forward; argmax is the winner's offset in the convolution's output plane.
// Sixteen channels at a time, each lane stored to its channel's plane.
MG_CPU_KERNEL void store_pooled(const Geometry& g, const float* z, const float* b, bool relu,
                                float* pooled, int32_t* argmax) {
  for (int py = 0; py < g.ph; ++py) {
    for (int px = 0; px < g.pw; ++px) {
      const int q = py * g.pw + px;
      const int j[4] = {2 * py * g.ow + 2 * px, 2 * py * g.ow + 2 * px + 1,
                        (2 * py + 1) * g.ow + 2 * px, (2 * py + 1) * g.ow + 2 * px + 1};
      for (int o = 0; o < g.co; o += kLanes) {
        F16 bias, best;
        simd::load(bias, b + o);
        simd::load(best, z + j[0] * g.co + o);
        best += bias;
        if (relu) simd::relu(best);
        I16 at = I16{} + j[0];
        for (int k = 1; k < 4; ++k) {
          F16 v;
          simd::load(v, z + j[k] * g.co + o);
          v += bias;
          if (relu) simd::relu(v);
          const I16 wins = v > best;
          simd::select_into(best, wins, v);
          simd::select_into_i(at, wins, I16{} + j[k]);
        }
        float* py_out = pooled + o * g.pq + q;
        int32_t* pa_out = argmax + o * g.pq + q;
#pragma GCC unroll 16
        for (int l = 0; l < kLanes; ++l) {
          py_out[l * g.pq] = best[l];
          pa_out[l * g.pq] = at[l];
        }
      }
    }
  }
}

// Each output pixel's offset in the tile (where its receptive field starts), for a multiple of 8
// pixels: the extra ones get 0.
void prepare_offsets(const Geometry& g, ConvWorkspace& ws) {
  const int pixels = round_up(g.ohw, 8);
  ensure(ws.base, pixels);
  for (int p = 0; p < pixels; ++p)
    ws.base[static_cast<size_t>(p)] = p < g.ohw ? ((p / g.ow) * g.wp + p % g.ow) * g.ci : 0;
}

// w_kc[(t * ci + c) * co + o] = w[o][c][t] (t = ky K + kx), and the pixels' tile offsets.
void prepare_forward(const Geometry& g, const float* w, ConvWorkspace& ws) {
  ensure(ws.w_kc, int64_t{g.kdim()} * g.co);
  for (int o = 0; o < g.co; ++o)
    for (int c = 0; c < g.ci; ++c)
      for (int t = 0; t < g.taps(); ++t)
        ws.w_kc[static_cast<size_t>((t * g.ci + c) * g.co + o)] = w[(o * g.ci + c) * g.taps() + t];
  prepare_offsets(g, ws);
}

template <class Epilogue>
void forward_images(const ConvDims& d, const float* x, const float* w, ConvWorkspace& ws,
                    Epilogue&& epilogue) {
  const Geometry g = geometry(d);
  prepare_forward(g, w, ws);
  prepare_threads(ws);
  const int64_t in_size = int64_t{g.ci} * g.h * g.w;
#pragma omp parallel
  {
    ConvWorkspace::Thread& t = thread_space(ws);
    ensure(t.tile, g.tile_alloc());
    ensure(t.out, int64_t{round_up(g.ohw, 8)} * g.co);
#pragma omp for schedule(static)
    for (int64_t i = 0; i < d.n; ++i) {
      conv_image(g, x + i * in_size, ws.w_kc.data(), ws.base.data(), t.tile.data(), t.out.data());
      epilogue(g, i, t);
    }
  }
}

// ---- backward of the fused conv + pool ------------------------------------------------------

// dst[0, 16 NVB) (+)= sum over the list of g[i] * src[off[i] + (0, 16 NVB)], in registers. With
// fewer than four vectors the entries take turns over S sets of accumulators (summed in a fixed
// order at the end), so consecutive multiply-adds do not wait on each other.
template <int NVB>
MG_SIMD_INLINE void sum_list(const int32_t* off, const float* gs, int count, const float* src,
                             float* dst, bool accumulate) {
  constexpr int S = NVB >= 4 ? 1 : NVB == 3 ? 2 : 4 / NVB;
  F16 acc[S][NVB];
#pragma GCC unroll 8
  for (int j = 0; j < S; ++j)
#pragma GCC unroll 8
    for (int v = 0; v < NVB; ++v) acc[j][v] = F16{};
  int i = 0;
  for (; i + S <= count; i += S) {
#pragma GCC unroll 8
    for (int j = 0; j < S; ++j) {
      const F16 gv = gs[i + j] - F16{};
      const float* sp = src + off[i + j];
#pragma GCC unroll 8
      for (int v = 0; v < NVB; ++v) {
        F16 sv;
        simd::load(sv, sp + kLanes * v);
        acc[j][v] += gv * sv;
      }
    }
  }
  for (int j = 0; i < count; ++i, ++j) {
    const F16 gv = gs[i] - F16{};
    const float* sp = src + off[i];
#pragma GCC unroll 8
    for (int v = 0; v < NVB; ++v) {
      F16 sv;
      simd::load(sv, sp + kLanes * v);
      acc[j][v] += gv * sv;
    }
  }
#pragma GCC unroll 8
  for (int v = 0; v < NVB; ++v) {
#pragma GCC unroll 8
    for (int j = 1; j < S; ++j) acc[0][v] += acc[j][v];
    float* p = dst + kLanes * v;
    if (accumulate) {
      F16 old;
      simd::load(old, p);
      acc[0][v] += old;
    }
    simd::store(p, acc[0][v]);
  }
}

// sum_list over a span of len floats (a multiple of 16), eight vectors at a time.
MG_SIMD_INLINE void sum_list_span(const int32_t* off, const float* gs, int count, const float* src,
                                  float* dst, int len, bool accumulate) {
  for (int f = 0; f < len; f += 8 * kLanes) {
    switch (std::min(8, (len - f) / kLanes)) {
      case 1: sum_list<1>(off, gs, count, src + f, dst + f, accumulate); break;
      case 2: sum_list<2>(off, gs, count, src + f, dst + f, accumulate); break;
      case 3: sum_list<3>(off, gs, count, src + f, dst + f, accumulate); break;
      case 4: sum_list<4>(off, gs, count, src + f, dst + f, accumulate); break;
      case 5: sum_list<5>(off, gs, count, src + f, dst + f, accumulate); break;
      case 6: sum_list<6>(off, gs, count, src + f, dst + f, accumulate); break;
      case 7: sum_list<7>(off, gs, count, src + f, dst + f, accumulate); break;
      default: sum_list<8>(off, gs, count, src + f, dst + f, accumulate); break;
    }
  }
}

// A pixel's column as pieces: wide layers K pieces (one per kernel row) of K * C_in floats, each
// piece `stride` floats after the previous one in the tile; narrow ones a single padded row.
struct Pieces {
  int count, len, stride;
};
Pieces pieces_of(const Geometry& g) {
  if (g.wide()) return {g.k, g.k * g.ci, g.wp * g.ci};
  return {1, g.row(), 0};
}

// The column matrix of one image for narrow layers: cols[p][(t * ci + c)]. A kernel row's K * C_in
// inputs are contiguous in the tile; they are copied four floats at a time, the last copy running
// up to three floats into the next kernel row's place (written next) or, after the last one, into
// the row's padding: its values (finite tile values) meet only padding weights and gradients,
// never read.
MG_SIMD_INLINE void fill_columns(const Geometry& g, const float* x, const int32_t* tile_offset,
                                 float* tile, float* cols) {
  fill_tile(g, x, tile);
  const int row = g.row(), piece = g.k * g.ci;
  for (int p = 0; p < g.ohw; ++p) {
    float* r = cols + p * row;
    const float* src = tile + tile_offset[p];
    for (int ky = 0; ky < g.k; ++ky) {
      const float* s = src + ky * g.wp * g.ci;
      float* d = r + ky * piece;
      for (int c = 0; c < piece; c += 4) std::memcpy(d + c, s + c, 4 * sizeof(float));
    }
  }
}

// The pooled gradient that reaches the convolution's output: none where the ReLU was closed.
// A bit mask, not a branch (the ReLU is closed about half the time, at random, and a compiler
// may turn a select back into a branch).
MG_SIMD_INLINE float gradient_at(const float* pooled, const float* dpooled, int64_t i, bool relu) {
  uint32_t bits;
  std::memcpy(&bits, dpooled + i, sizeof bits);
  bits &= relu ? 0u - static_cast<uint32_t>(pooled[i] > 0.0f) : ~0u;
  float gv;
  std::memcpy(&gv, &bits, sizeof gv);
  return gv;
}

// Channel o's non-zero gradients of one image: off[] (where the winner's column starts: in the
// tile for wide layers, in the column matrix for narrow ones) and gs[] from off + count on.
// Returns the new count and adds the channel's gradients to *sum. Every entry is written and the
// count advances only past non-zero ones (whether a window passes a gradient is a coin toss a
// branch predictor cannot learn), so the buffers need one slot more than the most entries.
template <bool kWide>
MG_SIMD_INLINE int channel_list(const Geometry& g, const float* pooled, const float* dpooled,
                                const int32_t* argmax, bool relu, const int32_t* tile_offset,
                                int64_t plane, int32_t* off, float* gs, int count, float* sum) {
  const int row = g.row();
  float s = 0;
  for (int q = 0; q < g.pq; ++q) {
    const float gv = gradient_at(pooled, dpooled, plane + q, relu);
    const int p = argmax[plane + q];
    off[count] = kWide ? tile_offset[p] : p * row;
    gs[count] = gv;
    count += gv != 0.0f;
    s += gv;
  }
  *sum = s;
  return count;
}

struct BackwardArgs {
  const float* x;
  const float* pooled;
  const float* dpooled;
  const int32_t* argmax;
  bool relu;
  float* dx;
  const int32_t* tile_offset;  // per output pixel: where its receptive field starts in the tile
};

// One chunk's partial weight and bias gradients, and its images' dx, image by image (so that the
// image's tile or column matrix stays in the L1 or L2 cache while its lists are summed).
MG_CPU_KERNEL void backward_chunk(const Geometry& g, const BackwardArgs& a, int64_t first,
                                  int images, const float* w_ck, float* dw_part, float* db_part,
                                  ConvWorkspace::Thread& t) {
  const int row = g.row();
  const int64_t in_size = int64_t{g.ci} * g.h * g.w;
  const int most = g.co * g.pq;
  ensure(t.tile, g.wide() ? g.tile_alloc() : int64_t{g.ohw} * row);
  ensure(t.dtile, g.tile_alloc());
  ensure(t.row, row);
  ensure(t.off, most + 1);
  ensure(t.g, most + 1);
  ensure(t.start, std::max(g.co, g.ohw) + 1);
  int32_t* off = t.off.data();
  float* gs = t.g.data();
  int32_t* start = t.start.data();
  const Pieces pc = pieces_of(g);
  for (int b = 0; b < images; ++b) {
    const int64_t planes = (first + b) * g.co * g.pq;
    const float* xb = a.x + (first + b) * in_size;
    if (g.wide()) {
      fill_tile(g, xb, t.tile.data());
    } else {
      fill_columns(g, xb, a.tile_offset, t.dtile.data(), t.tile.data());
    }

    // Each channel's non-zero gradients: (where the winner's column starts, g).
    int count = 0;
    for (int o = 0; o < g.co; ++o) {
      start[o] = count;
      float sum = 0;
      const int64_t plane = planes + o * g.pq;
      count = g.wide() ? channel_list<true>(g, a.pooled, a.dpooled, a.argmax, a.relu,
                                            a.tile_offset, plane, off, gs, count, &sum)
                       : channel_list<false>(g, a.pooled, a.dpooled, a.argmax, a.relu,
                                             a.tile_offset, plane, off, gs, count, &sum);
      db_part[o] = b == 0 ? sum : db_part[o] + sum;
    }
    start[g.co] = count;
    for (int o = 0; o < g.co; ++o) {
      const int s = start[o], e = start[o + 1];
      for (int i = 0; i < pc.count; ++i)
        sum_list_span(off + s, gs + s, e - s, t.tile.data() + i * pc.stride,
                      dw_part + o * row + i * pc.len, pc.len, b > 0);
    }
    if (a.dx == nullptr) continue;

    // dx: each pixel's list of (w_ck row, g) over the channels it won, in channel order, summed
    // into the pixel's receptive field in a channel-last d(tile). Entries whose gradient is zero
    // go to the spare slot at `most`.
    std::fill_n(start, g.ohw + 1, 0);
    for (int64_t i = planes; i < planes + most; ++i)
      start[a.argmax[i] + 1] += gradient_at(a.pooled, a.dpooled, i, a.relu) != 0.0f;
    for (int p = 0; p < g.ohw; ++p) start[p + 1] += start[p];
    for (int o = 0; o < g.co; ++o)
      for (int q = 0; q < g.pq; ++q) {
        const int64_t i = planes + o * g.pq + q;
        const float gv = gradient_at(a.pooled, a.dpooled, i, a.relu);
        const bool live = gv != 0.0f;
        int32_t& next = start[a.argmax[i]];  // runs to the next pixel's start
        const int at = live ? next : most;
        off[at] = o * row;
        gs[at] = gv;
        next += live;
      }
    // start[p] is now the end of pixel p's list, start[p - 1] its beginning.
    float* dtile = t.dtile.data();
    std::fill_n(dtile, g.tile(), 0.0f);
    for (int p = 0; p < g.ohw; ++p) {
      const int s = p == 0 ? 0 : start[p - 1], e = start[p];
      if (s == e) continue;
      float* field = dtile + a.tile_offset[p];
      if (g.wide()) {
        for (int ky = 0; ky < g.k; ++ky)
          sum_list_span(off + s, gs + s, e - s, w_ck + ky * pc.len, field + ky * pc.stride,
                        pc.len, true);
      } else {
        float* r = t.row.data();
        sum_list_span(off + s, gs + s, e - s, w_ck, r, row, false);
        for (int tap = 0; tap < g.taps(); ++tap) {
          float* dst = field + ((tap / g.k) * g.wp + tap % g.k) * g.ci;
          for (int c = 0; c < g.ci; ++c) dst[c] += r[tap * g.ci + c];
        }
      }
    }
    float* dxb = a.dx + (first + b) * in_size;
    for (int c = 0; c < g.ci; ++c)
      for (int y = 0; y < g.h; ++y) {
        const float* src = dtile + ((y + g.pad) * g.wp + g.pad) * g.ci + c;
        float* dst = dxb + (c * g.h + y) * g.w;
        for (int i = 0; i < g.w; ++i) dst[i] = src[i * g.ci];
      }
  }
}

// The chunks' partial sums added in chunk order (into the first chunk's rows), then dw in its
// [c_out][c_in][K][K] layout.
MG_CPU_KERNEL void reduce_chunks(const Geometry& g, int64_t chunks, float* dw_parts,
                                 const float* db_parts, int o, float* dw, float* db) {
  const int row = g.row();
  float* acc = dw_parts + int64_t{o} * row;
  float bsum = db_parts[o];
  for (int64_t part = 1; part < chunks; ++part) {
    const float* r = dw_parts + (part * g.co + o) * row;
    for (int k = 0; k < row; ++k) acc[k] += r[k];
    bsum += db_parts[part * g.co + o];
  }
  for (int c = 0; c < g.ci; ++c)
    for (int tap = 0; tap < g.taps(); ++tap)
      dw[(o * g.ci + c) * g.taps() + tap] = acc[tap * g.ci + c];
  db[o] = bsum;
}

}  // namespace

bool conv_supported(const ConvDims& d) {
  if (d.c_out % kLanes != 0 || d.kernel < 1 || d.oh() < 1 || d.ow() < 1) return false;
  constexpr int64_t kMax = std::numeric_limits<int32_t>::max();
  const int64_t hp = d.h + 2 * d.pad, wp = d.w + 2 * d.pad;
  const int64_t row = (d.k() + kLanes - 1) / kLanes * kLanes;
  const int64_t per = chunks_of(std::max<int64_t>(d.n, 1)).per;
  const int64_t image = std::max(hp * wp * d.c_in, d.oh() * d.ow() * row);
  return per * image < kMax && per * d.c_out * d.oh() * d.ow() < kMax && d.c_out * row < kMax &&
         d.k() * d.c_out < kMax;
}

void conv_forward(const float* x, const float* w, const float* b, bool relu, const ConvDims& d,
                  float* y, ConvWorkspace& ws) {
  const int64_t out_size = d.c_out * d.oh() * d.ow();
  forward_images(d, x, w, ws, [&](const Geometry& g, int64_t i, ConvWorkspace::Thread& t) {
    store_output(g, t.out.data(), b, relu, y + i * out_size);
  });
}

void conv_pool_forward(const float* x, const float* w, const float* b, bool relu,
                       const ConvDims& d, float* pooled, int32_t* argmax, ConvWorkspace& ws) {
  const int64_t out_size = d.c_out * (d.oh() / 2) * (d.ow() / 2);
  forward_images(d, x, w, ws, [&](const Geometry& g, int64_t i, ConvWorkspace::Thread& t) {
    store_pooled(g, t.out.data(), b, relu, pooled + i * out_size, argmax + i * out_size);
  });
}

void conv_pool_backward(const float* x, const float* w, const float* pooled,
                        const float* dpooled, const int32_t* argmax, bool relu,
                        const ConvDims& d, float* dx, float* dw, float* db, ConvWorkspace& ws) {
  const Geometry g = geometry(d);
  const int row = g.row();
  if (dx != nullptr) {  // w_ck[o][t * ci + c] = w[o][c][t], rows padded with zeros
    ensure(ws.w_ck, int64_t{g.co} * row);
    for (int o = 0; o < g.co; ++o) {
      float* r = ws.w_ck.data() + o * row;
      for (int c = 0; c < g.ci; ++c)
        for (int t = 0; t < g.taps(); ++t) r[t * g.ci + c] = w[(o * g.ci + c) * g.taps() + t];
      std::fill(r + g.kdim(), r + row, 0.0f);
    }
  }
  const Chunks ch = chunks_of(d.n);
  ensure(ws.dw_parts, ch.count * g.co * row);
  ensure(ws.db_parts, ch.count * g.co);
  prepare_offsets(g, ws);
  prepare_threads(ws);
  const BackwardArgs args{x, pooled, dpooled, argmax, relu, dx, ws.base.data()};
#pragma omp parallel
  {
    ConvWorkspace::Thread& t = thread_space(ws);
#pragma omp for schedule(static)
    for (int64_t c = 0; c < ch.count; ++c) {
      const int64_t first = c * ch.per;
      const auto images = static_cast<int>(std::min(ch.per, d.n - first));
      backward_chunk(g, args, first, images, ws.w_ck.data(), ws.dw_parts.data() + c * g.co * row,
                     ws.db_parts.data() + c * g.co, t);
    }
#pragma omp for schedule(static)
    for (int o = 0; o < g.co; ++o)
      reduce_chunks(g, ch.count, ws.dw_parts.data(), ws.db_parts.data(), o, dw, db);
  }
}

}  // namespace mg::cpu::fast
