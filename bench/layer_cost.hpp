// What each op of a training step must compute and move, from the shapes alone: the numerator of
// every FLOP/s and bytes/s counter of bench_kernels and of the floors in docs/performance.md.
// Plain C++ (no CUDA), shared by bench/bench_cpu.cpp and bench/bench_cuda.cu.
//
// Conventions, written once (docs/performance.md repeats them):
// - FLOP: 2 per multiply-add of a GEMM (the convolution counted as the direct one: 9 * c_in * c_out
//   multiply-adds per output pixel); 1 per elementwise add, multiply, divide, compare, max, exp,
//   log or sqrt. Integer work (the Philox draw of dropout, index arithmetic) is not counted, so
//   max-pool backward is 0 FLOP.
// - Minimum bytes: every tensor of the layer's interface read once and written once, at its stored
//   size (float 4, int32 4, uint8 1), and nothing else: no re-reads, no write-allocate traffic, no
//   backend workspace (the conv im2col matrix and GEMM scratch are an implementation's choice, not
//   the layer's). The tensors are those Network<> passes: activations, parameters, gradients, the
//   pool argmax. An in-place update (ReLU masking dy) counts as a read.
// - train_step is the sum of its ops: every op's tensors go through memory once. A fused step could
//   go below it; this engine runs op by op, so this is its floor.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/graph.hpp"

namespace mg::bench {

struct OpCost {
  double flop = 0;
  double bytes = 0;
  OpCost& operator+=(const OpCost& o) {
    flop += o.flop;
    bytes += o.bytes;
    return *this;
  }
};

enum class Pass { kForward, kBackward };

inline constexpr double kF32 = 4, kI32 = 4, kU8 = 1;

// The lowest time the hardware allows for a cost: the slower of its compute and its traffic.
inline double floor_seconds(const OpCost& c, double peak_flops, double peak_bytes_per_s) {
  return std::max(c.flop / peak_flops, c.bytes / peak_bytes_per_s);
}

// First layer of the graph: nobody needs d(input), so its backward computes no dx.
inline bool has_input_grad(const Layer& l) { return l.index > 0; }

inline OpCost conv_cost(const Layer& l, int64_t n, Pass pass) {
  const double hw = static_cast<double>(l.out.h * l.out.w);
  const double in = static_cast<double>(n) * static_cast<double>(l.in.size());
  const double out = static_cast<double>(n) * static_cast<double>(l.out.size());
  const double macs =
      static_cast<double>(n) * hw * static_cast<double>(l.out.c * l.in.c * l.kernel * l.kernel);
  const double w = static_cast<double>(l.weight_size), b = static_cast<double>(l.bias_size);
  OpCost c;
  if (pass == Pass::kForward) {
    c.flop = 2 * macs + out * (l.relu ? 2 : 1);  // GEMM, bias, ReLU
    c.bytes = kF32 * (in + w + b + out);
  } else {
    const bool dx = has_input_grad(l);
    c.flop = 2 * macs * (dx ? 2 : 1) + out * (l.relu ? 2 : 1);       // dW (and dx) GEMMs, db, mask
    c.bytes = kF32 * (in + (dx ? w : 0) + out * (l.relu ? 2 : 1)) +  // x, (w), (y), dy
              kF32 * (w + b + (dx ? in : 0));                        // dw, db, (dx)
  }
  return c;
}

inline OpCost pool_cost(const Layer& l, int64_t n, Pass pass) {
  const double in = static_cast<double>(n) * static_cast<double>(l.in.size());
  const double out = static_cast<double>(n) * static_cast<double>(l.out.size());
  if (pass == Pass::kForward) return {3 * out, kF32 * in + (kF32 + kI32) * out};  // x; y, argmax
  return {0, (kF32 + kI32) * out + kF32 * in};                                    // dy, argmax; dx
}

inline OpCost dropout_cost(const Layer& l, int64_t n, Pass /*either*/) {
  const double count = static_cast<double>(n) * static_cast<double>(l.in.size());
  return {2 * count, 2 * kF32 * count};  // compare and scale; read x, write y
}

inline OpCost dense_cost(const Layer& l, int64_t n, Pass pass) {
  const double in = static_cast<double>(n) * static_cast<double>(l.in.size());
  const double out = static_cast<double>(n) * static_cast<double>(l.out.c);
  const double w = static_cast<double>(l.weight_size), b = static_cast<double>(l.bias_size);
  const double macs = static_cast<double>(n) * w;
  OpCost c;
  if (pass == Pass::kForward) {
    c.flop = 2 * macs + out * (l.relu ? 2 : 1);
    c.bytes = kF32 * (in + w + b + out);
  } else {
    const bool dx = has_input_grad(l);
    c.flop = 2 * macs * (dx ? 2 : 1) + out * (l.relu ? 2 : 1);
    c.bytes = kF32 * (in + (dx ? w : 0) + out * (l.relu ? 2 : 1)) +  // x, (w), (y), dy
              kF32 * (w + b + (dx ? in : 0));                        // dw, db, (dx)
  }
  return c;
}

// A convolution and the 2x2 max-pool after it as one op (CpuFastBackend's fused training path):
// the FLOPs of both, as if each ran alone (the convolution's dense GEMMs: the fused backward
// skips the zeros the pool leaves and does at most a quarter of them, but the floor counts the
// layer's work, not one implementation's), and only the fused op's interface as bytes. Forward:
// x, w, b in; the pooled output and argmax out. Backward: x, (w,) pooled, argmax, d(pooled) in;
// dw, db (and dx) out.
inline OpCost conv_pool_cost(const Layer& conv, const Layer& pool, int64_t n, Pass pass) {
  const double in = static_cast<double>(n) * static_cast<double>(conv.in.size());
  const double pooled = static_cast<double>(n) * static_cast<double>(pool.out.size());
  const double w = static_cast<double>(conv.weight_size), b = static_cast<double>(conv.bias_size);
  OpCost c;
  c.flop = conv_cost(conv, n, pass).flop + pool_cost(pool, n, pass).flop;
  if (pass == Pass::kForward) {
    c.bytes = kF32 * (in + w + b) + (kF32 + kI32) * pooled;
  } else {
    const bool dx = has_input_grad(conv);
    c.bytes = kF32 * (in + (dx ? w : 0)) + (2 * kF32 + kI32) * pooled +  // x, (w), y, argmax, dy
              kF32 * (w + b + (dx ? in : 0));                            // dw, db, (dx)
  }
  return c;
}

// Fused softmax + cross-entropy with the logit gradient: per logit the max, exp, sum, then
// exp, divide, subtract and scale again for the gradient (9); per sample a log and two subtracts.
inline OpCost softmax_xent_cost(int64_t n, int64_t classes) {
  const double z = static_cast<double>(n * classes);
  return {9 * z + 3 * static_cast<double>(n),
          kF32 * z + kI32 * static_cast<double>(n) + kF32 * z + 3 * 8};  // logits, labels; dz, sums
}

// Adam over the flat buffer: m (3), v (4), p (sqrt, add, divide, multiply, subtract: 5) per
// parameter; reads p, g, m, v and writes p, m, v.
inline OpCost adam_cost(int64_t params) {
  const double p = static_cast<double>(params);
  return {12 * p, (4 + 3) * kF32 * p};
}

// x = images[order[cursor + i]] / 255 and the labels: reads the order, the uint8 images and labels,
// writes the float batch and the int32 labels.
inline OpCost gather_cost(int64_t n, int64_t sample_size) {
  const double px = static_cast<double>(n * sample_size), nn = static_cast<double>(n);
  return {px, kI32 * nn + kU8 * (px + nn) + kF32 * px + kI32 * nn};
}

inline OpCost layer_cost(const Layer& l, int64_t n, Pass pass) {
  switch (l.kind) {
    case LayerKind::kConv2d:
      return conv_cost(l, n, pass);
    case LayerKind::kMaxPool:
      return pool_cost(l, n, pass);
    case LayerKind::kDropout:
      return dropout_cost(l, n, pass);
    case LayerKind::kDense:
      return dense_cost(l, n, pass);
    case LayerKind::kFlatten:
      return {};  // an alias: no work
    case LayerKind::kRelu: {
      const double e = static_cast<double>(n) * static_cast<double>(l.in.size());
      return pass == Pass::kForward ? OpCost{e, 2 * kF32 * e} : OpCost{e, 3 * kF32 * e};
    }
    case LayerKind::kBatchNorm: {
      // Forward: two reads of x for the statistics, one to normalize, one write; backward: two
      // reads of x and dy, one write of dx. About 3 and 8 flops per element.
      const double e = static_cast<double>(n) * static_cast<double>(l.in.size());
      return pass == Pass::kForward ? OpCost{5 * e, 4 * kF32 * e} : OpCost{8 * e, 5 * kF32 * e};
    }
  }
  return {};
}

// Whether Network<>::backward calls the layer's backward op at all.
inline bool has_backward(const Layer& l) {
  switch (l.kind) {
    case LayerKind::kConv2d:
    case LayerKind::kDense:
    case LayerKind::kBatchNorm:
      return true;  // parameter gradients even without dx
    case LayerKind::kMaxPool:
    case LayerKind::kDropout:
    case LayerKind::kRelu:
      return has_input_grad(l);
    case LayerKind::kFlatten:
      return false;
  }
  return false;
}

// One whole training step (Network<>::train_step): gather, forward, loss, backward, Adam.
inline OpCost train_step_cost(const Graph& g, int64_t n) {
  OpCost c = gather_cost(n, g.input().size());
  for (const Layer& l : g.layers()) {
    c += layer_cost(l, n, Pass::kForward);
    if (has_backward(l)) c += layer_cost(l, n, Pass::kBackward);
  }
  c += softmax_xent_cost(n, g.classes());
  c += adam_cost(g.param_count());
  return c;
}

// --- the kernels with numbered variants (cuda/<layer>/<kernel>/v<N>/<batch>) -------------------
// The cost of one kernel of a conv layer, by the conventions above applied to the kernel's own
// interface: here the im2col matrix and the GEMM's channel-major scratch are the kernel's input
// or output, so they count (each read or written once).
enum class ConvKernel { kIm2col, kCol2im, kConvOutput, kConvGradPrepare };

inline OpCost conv_kernel_cost(const Layer& l, int64_t n, ConvKernel k) {
  const double in = static_cast<double>(n) * static_cast<double>(l.in.size());
  const double out = static_cast<double>(n) * static_cast<double>(l.out.size());
  const double col = static_cast<double>(n) * static_cast<double>(l.in.c * l.kernel * l.kernel) *
                     static_cast<double>(l.out.h * l.out.w);
  const double b = static_cast<double>(l.bias_size);
  switch (k) {
    case ConvKernel::kIm2col:
      return {0, kF32 * (in + col)};  // read x, write col
    case ConvKernel::kCol2im:
      return {col, kF32 * (col + in)};  // one add per column entry; read col, write dx
    case ConvKernel::kConvOutput:
      return {out * (l.relu ? 2 : 1), kF32 * (2 * out + b)};  // bias, ReLU; tmp, b -> y
    case ConvKernel::kConvGradPrepare:
      // mask and the bias sum; read (y,) dy, write dy_cn and db
      return {out * (l.relu ? 2 : 1), kF32 * (out * (l.relu ? 3 : 2) + b)};
  }
  return {};
}

}  // namespace mg::bench
