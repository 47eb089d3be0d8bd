// The CPU reference ops: the specification every other backend is tested against, and itself
// tested against finite differences (tests/test_gradients.cpp). Plain loops a reader can check by
// eye, OpenMP over the outer loop, GEMMs through BLAS. Templated on the scalar: float to train,
// double for gradient checks.
//
// Conventions, written once:
// - Tensors are NCHW, contiguous. Per-op sizes are int64_t.
// - Backward functions OVERWRITE their gradient outputs (dx, dw, db); nothing accumulates.
// - Buffers may alias only where a function says so.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "engine/blas.hpp"
#include "kernels/philox.cuh"

namespace mg::cpu {

// Below this many elements an elementwise op runs on the calling thread: waking the OpenMP team
// (microseconds) costs more than the work. The small layers of a step (the last dense layers,
// their dropout, the loss) stay serial; the results are the same either way.
inline constexpr int64_t kParallelMin = int64_t{1} << 14;

// A K x K convolution, stride 1, zero padding `pad` on each side, over a batch: 'same' is
// pad = (K-1)/2 (the output keeps H x W), 'valid' is pad = 0. The default is the seed model's 3x3
// 'same'. h, w are the input's; oh(), ow() the output's.
struct ConvDims {
  int64_t n, c_in, h, w, c_out;
  int64_t kernel = 3, pad = 1;
  int64_t oh() const { return h + 2 * pad - kernel + 1; }
  int64_t ow() const { return w + 2 * pad - kernel + 1; }
  int64_t taps() const { return kernel * kernel; }
  int64_t k() const { return c_in * taps(); }       // GEMM inner size: rows of the column matrix
  int64_t cols() const { return n * oh() * ow(); }  // one column per output pixel of the batch
  bool is_3x3_same() const { return kernel == 3 && pad == 1; }
};

// col[(c*9 + ky*3 + kx), (n*H + y)*W + x] = x[n, c, y+ky-1, x+kx-1], zero outside the image.
// One matrix for the whole batch, so the layer is a single GEMM.
template <class T>
void im2col_3x3(const T* x, const ConvDims& d, T* col) {
  const int64_t hw = d.h * d.w, cols = d.cols();
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t c = 0; c < d.c_in; ++c) {
    for (int64_t kk = 0; kk < 9; ++kk) {
      const int64_t oy = kk / 3 - 1, ox = kk % 3 - 1;
      T* row = col + (c * 9 + kk) * cols;
      for (int64_t n = 0; n < d.n; ++n) {
        const T* plane = x + (n * d.c_in + c) * hw;
        for (int64_t y = 0; y < d.h; ++y) {
          T* out = row + n * hw + y * d.w;
          const int64_t sy = y + oy;
          if (sy < 0 || sy >= d.h) {
            std::fill(out, out + d.w, T(0));
            continue;
          }
          for (int64_t x0 = 0; x0 < d.w; ++x0) {
            const int64_t sx = x0 + ox;
            out[x0] = (sx >= 0 && sx < d.w) ? plane[sy * d.w + sx] : T(0);
          }
        }
      }
    }
  }
}

// The adjoint of im2col, as a gather: each input pixel sums the (up to 9) columns that read it.
template <class T>
void col2im_3x3(const T* col, const ConvDims& d, T* dx) {
  const int64_t hw = d.h * d.w, cols = d.cols();
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t n = 0; n < d.n; ++n) {
    for (int64_t c = 0; c < d.c_in; ++c) {
      T* plane = dx + (n * d.c_in + c) * hw;
      for (int64_t y = 0; y < d.h; ++y) {
        for (int64_t x0 = 0; x0 < d.w; ++x0) {
          T sum = 0;
          for (int64_t kk = 0; kk < 9; ++kk) {
            const int64_t ty = y - (kk / 3 - 1), tx = x0 - (kk % 3 - 1);
            if (ty < 0 || ty >= d.h || tx < 0 || tx >= d.w) continue;
            sum += col[(c * 9 + kk) * cols + n * hw + ty * d.w + tx];
          }
          plane[y * d.w + x0] = sum;
        }
      }
    }
  }
}

// The general K x K form of im2col:
// col[(c*K*K + ky*K + kx), (n*OH + y)*OW + x] = x[n, c, y+ky-pad, x+kx-pad], zero outside.
template <class T>
void im2col_general(const T* x, const ConvDims& d, T* col) {
  const int64_t hw = d.h * d.w, oh = d.oh(), ow = d.ow(), ohw = oh * ow, cols = d.cols();
  const int64_t K = d.kernel, taps = d.taps();
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t c = 0; c < d.c_in; ++c) {
    for (int64_t kk = 0; kk < taps; ++kk) {
      const int64_t oy = kk / K - d.pad, ox = kk % K - d.pad;
      T* row = col + (c * taps + kk) * cols;
      for (int64_t n = 0; n < d.n; ++n) {
        const T* plane = x + (n * d.c_in + c) * hw;
        for (int64_t y = 0; y < oh; ++y) {
          T* out = row + n * ohw + y * ow;
          const int64_t sy = y + oy;
          if (sy < 0 || sy >= d.h) {
            std::fill(out, out + ow, T(0));
            continue;
          }
          for (int64_t x0 = 0; x0 < ow; ++x0) {
            const int64_t sx = x0 + ox;
            out[x0] = (sx >= 0 && sx < d.w) ? plane[sy * d.w + sx] : T(0);
          }
        }
      }
    }
  }
}

// Its adjoint as a gather: each input pixel sums the (up to K*K) columns that read it, in the
// order kk = 0..K*K-1.
template <class T>
void col2im_general(const T* col, const ConvDims& d, T* dx) {
  const int64_t hw = d.h * d.w, oh = d.oh(), ow = d.ow(), ohw = oh * ow, cols = d.cols();
  const int64_t K = d.kernel, taps = d.taps();
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t n = 0; n < d.n; ++n) {
    for (int64_t c = 0; c < d.c_in; ++c) {
      T* plane = dx + (n * d.c_in + c) * hw;
      for (int64_t y = 0; y < d.h; ++y) {
        for (int64_t x0 = 0; x0 < d.w; ++x0) {
          T sum = 0;
          for (int64_t kk = 0; kk < taps; ++kk) {
            const int64_t ty = y - (kk / K - d.pad), tx = x0 - (kk % K - d.pad);
            if (ty < 0 || ty >= oh || tx < 0 || tx >= ow) continue;
            sum += col[(c * taps + kk) * cols + n * ohw + ty * ow + tx];
          }
          plane[y * d.w + x0] = sum;
        }
      }
    }
  }
}

// What the layers call: the seed model's 3x3 'same' keeps its own loops, every other shape takes
// the general ones (the same values: tests/test_ops.cpp checks both against a direct convolution).
template <class T>
void im2col(const T* x, const ConvDims& d, T* col) {
  if (d.is_3x3_same()) {
    im2col_3x3(x, d, col);
  } else {
    im2col_general(x, d, col);
  }
}

template <class T>
void col2im(const T* col, const ConvDims& d, T* dx) {
  if (d.is_3x3_same()) {
    col2im_3x3(col, d, dx);
  } else {
    col2im_general(col, d, dx);
  }
}

// [C, N, S] <-> [N, C, S]: the conv GEMM produces channel-major rows; activations are NCHW.
template <class T>
void cnhw_to_nchw(const T* src, int64_t n, int64_t c, int64_t s, T* dst) {
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < c; ++j) std::copy_n(src + (j * n + i) * s, s, dst + (i * c + j) * s);
}

template <class T>
void nchw_to_cnhw(const T* src, int64_t n, int64_t c, int64_t s, T* dst) {
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t j = 0; j < c; ++j)
    for (int64_t i = 0; i < n; ++i) std::copy_n(src + (i * c + j) * s, s, dst + (j * n + i) * s);
}

// The CPU backend's fused conv epilogue: y[n, c, s] = act(src[c, n, s] + b[c]) in one pass.
template <class T>
void cnhw_bias_act_to_nchw(const T* src, const T* b, bool relu, int64_t n, int64_t c, int64_t s,
                           T* y) {
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < c; ++j) {
      const T* in = src + (j * n + i) * s;
      T* out = y + (i * c + j) * s;
      const T bj = b[j];
      if (relu) {
        for (int64_t k = 0; k < s; ++k) out[k] = std::max(in[k] + bj, T(0));
      } else {
        for (int64_t k = 0; k < s; ++k) out[k] = in[k] + bj;
      }
    }
}

// Its backward in one pass: dz[c, n, s] = dy[n, c, s] masked by y > 0 (when relu), db[c] = sum dz.
// The sum runs in eight interleaved partial sums so the loop vectorizes (a single running sum is
// a serial dependency chain).
template <class T>
void nchw_act_grad_to_cnhw(const T* y, const T* dy, bool relu, int64_t n, int64_t c, int64_t s,
                           T* dz, T* db) {
  constexpr int kLanes = 8;
#pragma omp parallel for schedule(static)
  for (int64_t j = 0; j < c; ++j) {
    T part[kLanes] = {};
    for (int64_t i = 0; i < n; ++i) {
      const T* g = dy + (i * c + j) * s;
      const T* out = y + (i * c + j) * s;
      T* d = dz + (j * n + i) * s;
      if (relu) {
        // Both loads unconditional: the select then vectorizes instead of branching on the sign.
        for (int64_t k = 0; k < s; ++k) {
          const T gk = g[k];
          d[k] = out[k] > T(0) ? gk : T(0);
        }
      } else {
        std::copy_n(g, s, d);
      }
      int64_t k = 0;
      for (; k + kLanes <= s; k += kLanes)
        for (int m = 0; m < kLanes; ++m) part[m] += d[k + m];
      for (; k < s; ++k) part[0] += d[k];
    }
    T sum = 0;
    for (int m = 0; m < kLanes; ++m) sum += part[m];
    db[j] = sum;
  }
}

// y = conv(x, w) without bias. w is [c_out, c_in, K, K]. col: k()*cols(), tmp: c_out*cols().
template <class T>
void conv2d_forward(const T* x, const T* w, T* y, const ConvDims& d, T* col, T* tmp) {
  im2col(x, d, col);
  gemm(false, false, d.c_out, d.cols(), d.k(), T(1), w, d.k(), col, d.cols(), T(0), tmp, d.cols());
  cnhw_to_nchw(tmp, d.n, d.c_out, d.oh() * d.ow(), y);
}

// dw = dy (x) im2col(x); dx = col2im(w^T dy) when dx is not null.
template <class T>
void conv2d_backward(const T* x, const T* w, const T* dy, T* dx, T* dw, const ConvDims& d, T* col,
                     T* tmp) {
  nchw_to_cnhw(dy, d.n, d.c_out, d.oh() * d.ow(), tmp);
  im2col(x, d, col);
  gemm(false, true, d.c_out, d.k(), d.cols(), T(1), tmp, d.cols(), col, d.cols(), T(0), dw, d.k());
  if (dx == nullptr) return;
  // The column matrix is no longer needed: reuse it for d(col).
  gemm(true, false, d.k(), d.cols(), d.c_out, T(1), w, d.k(), tmp, d.cols(), T(0), col, d.cols());
  col2im(col, d, dx);
}

// y[n, c, s] += b[c] (in place). Dense layers use s = 1.
template <class T>
void bias_add_forward(T* y, const T* b, int64_t n, int64_t c, int64_t s) {
#pragma omp parallel for collapse(2) schedule(static) if (n * c * s >= kParallelMin)
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < c; ++j) {
      T* p = y + (i * c + j) * s;
      for (int64_t k = 0; k < s; ++k) p[k] += b[j];
    }
}

template <class T>
void bias_add_backward(const T* dy, T* db, int64_t n, int64_t c, int64_t s) {
#pragma omp parallel for schedule(static) if (n * c * s >= kParallelMin)
  for (int64_t j = 0; j < c; ++j) {
    T sum = 0;
    for (int64_t i = 0; i < n; ++i) {
      const T* p = dy + (i * c + j) * s;
      for (int64_t k = 0; k < s; ++k) sum += p[k];
    }
    db[j] = sum;
  }
}

// y = max(x, 0); y may alias x.
template <class T>
void relu_forward(const T* x, T* y, int64_t count) {
#pragma omp parallel for schedule(static) if (count >= kParallelMin)
  for (int64_t i = 0; i < count; ++i) y[i] = x[i] > T(0) ? x[i] : T(0);
}

// dx = dy where the OUTPUT y is positive (the same test as x > 0); dx may alias dy.
template <class T>
void relu_backward(const T* y, const T* dy, T* dx, int64_t count) {
#pragma omp parallel for schedule(static) if (count >= kParallelMin)
  for (int64_t i = 0; i < count; ++i) {
    const T g = dy[i];  // loaded unconditionally, so the select vectorizes
    dx[i] = y[i] > T(0) ? g : T(0);
  }
}

// Max pool 2x2, stride 2, 'valid' (an odd last row/column is dropped). argmax holds, per output,
// the winning input's offset within its plane (y*W + x); the first maximum in row-major order wins.
template <class T>
void maxpool2x2_forward(const T* x, T* y, int32_t* argmax, int64_t n, int64_t c, int64_t h,
                        int64_t w) {
  const int64_t oh = h / 2, ow = w / 2;
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < n * c; ++p) {
    const T* in = x + p * h * w;
    for (int64_t oy = 0; oy < oh; ++oy) {
      for (int64_t ox = 0; ox < ow; ++ox) {
        int64_t best = (2 * oy) * w + 2 * ox;
        for (int64_t k = 1; k < 4; ++k) {
          const int64_t idx = (2 * oy + k / 2) * w + 2 * ox + k % 2;
          if (in[idx] > in[best]) best = idx;
        }
        y[p * oh * ow + oy * ow + ox] = in[best];
        argmax[p * oh * ow + oy * ow + ox] = static_cast<int32_t>(best);
      }
    }
  }
}

// Each input element takes the gradient of the window it won, or zero. The windows do not
// overlap, so walking them writes every input element exactly once (no accumulation); an odd last
// row or column belongs to no window and gets zero.
template <class T>
void maxpool2x2_backward(const T* dy, const int32_t* argmax, T* dx, int64_t n, int64_t c, int64_t h,
                         int64_t w) {
  const int64_t oh = h / 2, ow = w / 2;
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < n * c; ++p) {
    T* plane = dx + p * h * w;
    if (h % 2) std::fill_n(plane + (h - 1) * w, w, T(0));
    for (int64_t oy = 0; oy < oh; ++oy) {
      T* row0 = plane + 2 * oy * w;
      T* row1 = row0 + w;
      if (w % 2) row0[w - 1] = row1[w - 1] = T(0);
      for (int64_t ox = 0; ox < ow; ++ox) {
        const int64_t o = p * oh * ow + oy * ow + ox;
        const int64_t win = 2 * oy * w + 2 * ox;
        const T g = dy[o];
        const int32_t a = argmax[o];
        row0[2 * ox] = a == win ? g : T(0);
        row0[2 * ox + 1] = a == win + 1 ? g : T(0);
        row1[2 * ox] = a == win + w ? g : T(0);
        row1[2 * ox + 1] = a == win + w + 1 ? g : T(0);
      }
    }
  }
}

// Which dropout mask: the element index is the flat NCHW index within the batch.
struct DropoutKey {
  uint64_t seed;
  uint32_t layer;
  uint64_t step;
  float rate;
};

// Inverted dropout (Keras): kept elements are scaled by 1/(1-rate). y may alias x. One Philox
// block serves eight elements, 16 bits each: element dropout_index(b, l) takes lane l of block b
// (dropout_keep in kernels/philox.cuh).
template <class T>
void dropout_forward(const T* x, T* y, int64_t count, const DropoutKey& k) {
  const T scale = T(1) / (T(1) - T(k.rate));
  const uint32_t threshold = dropout_threshold(k.rate);
  const int64_t blocks = (count + kDropoutGroup - 1) / kDropoutGroup * kDropoutGroupBlocks;
#pragma omp parallel for schedule(static) if (count >= kParallelMin)
  for (int64_t b = 0; b < blocks; ++b) {
    const Philox4 r = philox_block(k.seed, RngStream::kDropout, k.layer, k.step, static_cast<uint64_t>(b));
    for (int lane = 0; lane < kDropoutLanes; ++lane) {
      const auto i = static_cast<int64_t>(dropout_index(static_cast<uint64_t>(b), lane));
      if (i >= count) continue;
      const T v = x[i] * scale;  // unconditional, so the mask is a select, not a branch
      y[i] = dropout_bits(r, lane) >= threshold ? v : T(0);
    }
  }
}

// The mask is drawn again rather than stored. dx may alias dy.
template <class T>
void dropout_backward(const T* dy, T* dx, int64_t count, const DropoutKey& k) {
  dropout_forward(dy, dx, count, k);
}

// y[n, out] = x[n, in] * w[out, in]^T (no bias).
template <class T>
void dense_forward(const T* x, const T* w, T* y, int64_t n, int64_t in, int64_t out) {
  gemm(false, true, n, out, in, T(1), x, in, w, in, T(0), y, out);
}

// dw = dy^T x; dx = dy w when dx is not null.
template <class T>
void dense_backward(const T* x, const T* w, const T* dy, T* dx, T* dw, int64_t n, int64_t in,
                    int64_t out) {
  gemm(true, false, out, in, n, T(1), dy, out, x, in, T(0), dw, in);
  if (dx != nullptr) gemm(false, false, n, in, out, T(1), dy, out, w, in, T(0), dx, in);
}

struct LossSums {
  double loss = 0;     // sum of per-sample cross-entropy
  int64_t correct = 0; // samples whose argmax (first maximum) equals the label
};

// Fused softmax + categorical cross-entropy, mean over the batch. Writes dlogits = (softmax - onehot)/n
// (when not null) and returns the sums for metrics. Stable for any finite logits: everything is
// relative to the row maximum, and the loss is log-sum-exp minus the label's logit.
template <class T>
LossSums softmax_xent(const T* logits, const int32_t* labels, int64_t n, int64_t classes,
                      T* dlogits) {
  LossSums sums;
  // Per-sample losses summed afterwards in index order: an OpenMP reduction would add partial
  // sums in an order that depends on the thread count (docs/reliability.md).
  std::vector<double> losses(static_cast<size_t>(n));
  int64_t correct = 0;
#pragma omp parallel for reduction(+ : correct) schedule(static) if (n * classes >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const T* z = logits + i * classes;
    int64_t best = 0;
    for (int64_t j = 1; j < classes; ++j)
      if (z[j] > z[best]) best = j;
    const T m = z[best];
    T sum = 0;
    for (int64_t j = 0; j < classes; ++j) sum += std::exp(z[j] - m);
    const T log_sum = std::log(sum);
    losses[static_cast<size_t>(i)] = static_cast<double>(log_sum - (z[labels[i]] - m));
    correct += best == labels[i] ? 1 : 0;
    if (dlogits != nullptr) {
      const T inv_n = T(1) / static_cast<T>(n);
      for (int64_t j = 0; j < classes; ++j) {
        const T p = std::exp(z[j] - m) / sum;
        dlogits[i * classes + j] = (p - (j == labels[i] ? T(1) : T(0))) * inv_n;
      }
    }
  }
  for (const double l : losses) sums.loss += l;
  sums.correct = correct;
  return sums;
}

// Row-wise softmax probabilities (evaluation output).
template <class T>
void softmax(const T* logits, T* probs, int64_t n, int64_t classes) {
#pragma omp parallel for schedule(static) if (n * classes >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const T* z = logits + i * classes;
    const T m = *std::max_element(z, z + classes);
    T sum = 0;
    for (int64_t j = 0; j < classes; ++j) sum += std::exp(z[j] - m);
    for (int64_t j = 0; j < classes; ++j) probs[i * classes + j] = std::exp(z[j] - m) / sum;
  }
}

// One Adam update over a flat buffer (see engine/adam.hpp for the formula); alpha is adam_alpha().
// decay = lr * weight_decay, applied where kernel_mask[i] is 1 (AdamW); 0 or a null mask: Adam.
template <class T>
void adam_update(T* p, const T* g, T* m, T* v, int64_t count, T alpha, T beta1, T beta2, T eps,
                 T decay = T(0), const uint8_t* kernel_mask = nullptr) {
  const bool decays = decay != T(0) && kernel_mask != nullptr;
#pragma omp parallel for schedule(static) if (count >= kParallelMin)
  for (int64_t i = 0; i < count; ++i) {
    if (decays && kernel_mask[i]) p[i] -= decay * p[i];
    m[i] = beta1 * m[i] + (T(1) - beta1) * g[i];
    v[i] = beta2 * v[i] + (T(1) - beta2) * g[i] * g[i];
    p[i] -= alpha * m[i] / (std::sqrt(v[i]) + eps);
  }
}

// Keras' kernel_regularizer l2 over the parameters where kernel_mask[i] is 1: returns
// l2 * sum(p^2) (accumulated in double, in index order, so the value does not depend on the thread
// count) and, when g is given, adds its gradient 2 * l2 * p to g.
template <class T>
double l2_penalty(const T* p, T* g, const uint8_t* kernel_mask, int64_t count, double l2) {
  if (g != nullptr) {
    const T two_l2 = static_cast<T>(2 * l2);
#pragma omp parallel for schedule(static) if (count >= kParallelMin)
    for (int64_t i = 0; i < count; ++i) {
      if (kernel_mask[i]) g[i] += two_l2 * p[i];
    }
  }
  double sum = 0;
  for (int64_t i = 0; i < count; ++i) {
    if (kernel_mask[i]) sum += static_cast<double>(p[i]) * static_cast<double>(p[i]);
  }
  return l2 * sum;
}

}  // namespace mg::cpu
