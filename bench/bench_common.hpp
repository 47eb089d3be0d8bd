// What the CPU and CUDA benchmarks share: the list of ops of a training step and their names, the
// batch sizes, the layer call itself (the same switch as Network<>::forward/backward), and the
// counters every benchmark reports. No CUDA here: bench/bench_cuda.cu includes it too.
#pragma once

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "bench/layer_cost.hpp"
#include "engine/graph.hpp"
#include "engine/network.hpp"

namespace mg::bench {

// Every op at these batch sizes; 128 is the seed protocol's. Adam does not depend on the batch
// and runs once.
inline const std::vector<int64_t> kBatchSizes = {1, 8, 32, 128, 512, 1024};
inline constexpr int64_t kSeedBatch = 128;

// The training set's size in the seed protocol: the gather and the whole step walk through a
// random permutation of this many random images, as an epoch does.
inline constexpr int64_t kTrainImages = 49'000;

// A device's limits, and where they come from (measured, or a table of known parts).
struct Peak {
  double flops = 0;        // FP32 FLOP/s
  double bytes_per_s = 0;  // memory bandwidth, read + write counted
  std::string source;
};

// One benchmarked op. Names read <backend>/<op>/<batch>, with <op> one of
//   <layer>/forward, <layer>/backward   Keras layer names: conv2d_1, max_pooling2d, dense_1, ...
//   softmax_xent/forward_backward       the fused loss and logit gradient
//   gather/forward                      the batch: uint8 images by index, scaled to [0, 1]
//   train_step                          Network<>::train_step, everything above plus Adam
//   adam/update                         (no batch: the update is over the parameters)
//   <conv>+<pool>/forward, .../backward  a conv and the pool after it as one op, where the
//                                       backend fuses them in training (CPU; CUDA with
//                                       conv_pool = 1)
enum class OpKind { kLayer, kSoftmaxXent, kGather, kTrainStep, kAdam, kConvPool };

struct BenchOp {
  OpKind kind = OpKind::kLayer;
  size_t layer = 0;  // kLayer: index into Graph::layers(); kConvPool: the conv's (the pool's + 1)
  Pass pass = Pass::kForward;
  std::string name;
};

// The ops of one training step at one batch size, in execution order: gather, every layer's
// forward, the loss, every backward Network<>::backward calls, then the whole step.
inline std::vector<BenchOp> step_ops(const Graph& g) {
  std::vector<BenchOp> ops;
  ops.push_back({OpKind::kGather, 0, Pass::kForward, "gather/forward"});
  const auto& layers = g.layers();
  for (size_t i = 0; i < layers.size(); ++i) {
    if (layers[i].kind == LayerKind::kFlatten) continue;  // an alias, no op
    ops.push_back({OpKind::kLayer, i, Pass::kForward, layers[i].name + "/forward"});
  }
  ops.push_back({OpKind::kSoftmaxXent, 0, Pass::kForward, "softmax_xent/forward_backward"});
  for (size_t i = layers.size(); i-- > 0;) {
    if (!has_backward(layers[i])) continue;
    ops.push_back({OpKind::kLayer, i, Pass::kBackward, layers[i].name + "/backward"});
  }
  ops.push_back({OpKind::kTrainStep, 0, Pass::kForward, "train_step"});
  return ops;
}

inline BenchOp adam_op() { return {OpKind::kAdam, 0, Pass::kForward, "adam/update"}; }

// The fused conv + pool ops of a network whose training step fuses them, forward then backward.
template <class Net>
std::vector<BenchOp> conv_pool_ops(const Net& net) {
  std::vector<BenchOp> ops;
  const auto& layers = net.graph().layers();
  for (const Pass pass : {Pass::kForward, Pass::kBackward}) {
    for (size_t i = 0; i + 1 < layers.size(); ++i) {
      if (!net.fused_with_pool(i)) continue;
      const std::string name = layers[i].name + "+" + layers[i + 1].name;
      ops.push_back({OpKind::kConvPool, i, pass,
                     name + (pass == Pass::kForward ? "/forward" : "/backward")});
    }
  }
  return ops;
}

inline OpCost op_cost(const Graph& g, const BenchOp& op, int64_t n) {
  switch (op.kind) {
    case OpKind::kLayer:
      return layer_cost(g.layers()[op.layer], n, op.pass);
    case OpKind::kSoftmaxXent:
      return softmax_xent_cost(n, g.classes());
    case OpKind::kGather:
      return gather_cost(n, g.input().size());
    case OpKind::kTrainStep:
      return train_step_cost(g, n);
    case OpKind::kAdam:
      return adam_cost(g.param_count());
    case OpKind::kConvPool:
      return conv_pool_cost(g.layers()[op.layer], g.layers()[op.layer + 1], n, op.pass);
  }
  return {};
}

inline std::string bench_name(const std::string& backend, const BenchOp& op, int64_t n) {
  if (op.kind == OpKind::kAdam) return backend + "/" + op.name;
  return backend + "/" + op.name + "/" + std::to_string(n);
}

// One layer op exactly as Network<>::forward (training) and Network<>::backward call it, with the
// network's own activations, parameters, gradients and argmax; only the conv scratch is the
// caller's (Network keeps its own private).
template <class Backend>
void call_layer(Network<Backend>& net, size_t i, Pass pass, int64_t n,
                ConvScratch<typename Backend::Scalar> s) {
  Backend& be = net.backend();
  const Layer& l = net.graph().layers()[i];
  auto* x = net.activation(i);
  auto* y = net.activation(i + 1);
  auto* p = net.params();
  auto* gr = net.grads();
  if (pass == Pass::kForward) {
    switch (l.kind) {
      case LayerKind::kConv2d:
        be.conv_forward(l, n, x, p + l.weight_offset, p + l.bias_offset, y, s);
        break;
      case LayerKind::kMaxPool:
        be.pool_forward(l, n, x, y, net.pool_argmax(i));
        break;
      case LayerKind::kDropout:
        be.dropout_forward(l, n, x, y, net.seed(), net.counters());
        break;
      case LayerKind::kFlatten:
        break;
      case LayerKind::kRelu:
        be.relu_forward(l, n, x, y);
        break;
      case LayerKind::kBatchNorm:
        be.batchnorm_forward(l, n, x, p + l.weight_offset, p + l.bias_offset, p + l.stats_offset, y,
                             net.batchnorm_saved(i), true);
        break;
      case LayerKind::kDense:
        be.dense_forward(l, n, x, p + l.weight_offset, p + l.bias_offset, y);
        break;
    }
    return;
  }
  auto* dy = net.activation_grad(i + 1);
  auto* dx = net.activation_grad(i);
  switch (l.kind) {
    case LayerKind::kConv2d:
      be.conv_backward(l, n, x, p + l.weight_offset, y, dy, dx, gr + l.weight_offset,
                       gr + l.bias_offset, s);
      break;
    case LayerKind::kMaxPool:
      be.pool_backward(l, n, dy, net.pool_argmax(i), dx);
      break;
    case LayerKind::kDropout:
      be.dropout_backward(l, n, dy, dx, net.seed(), net.counters());
      break;
    case LayerKind::kFlatten:
      break;
    case LayerKind::kRelu:
      be.relu_backward(l, n, y, dy, dx);
      break;
    case LayerKind::kBatchNorm:
      be.batchnorm_backward(l, n, x, p + l.weight_offset, dy, net.batchnorm_saved(i), true, dx,
                            gr + l.weight_offset, gr + l.bias_offset);
      break;
    case LayerKind::kDense:
      be.dense_backward(l, n, x, p + l.weight_offset, y, dy, dx, gr + l.weight_offset,
                        gr + l.bias_offset);
      break;
  }
}

// A fused conv + pool op (the conv is layer i, the pool i + 1) exactly as Network<>::forward
// (training) and Network<>::backward call it, on the network's own tensors; only the conv scratch
// is the caller's. The first layer computes no dx, as in training.
template <class Backend>
void call_conv_pool(Network<Backend>& net, size_t i, Pass pass, int64_t n,
                    ConvScratch<typename Backend::Scalar> s) {
  Backend& be = net.backend();
  const Layer& c = net.graph().layers()[i];
  const Layer& p = net.graph().layers()[i + 1];
  auto* w = net.params() + c.weight_offset;
  if (pass == Pass::kForward) {
    be.conv_pool_forward(c, p, n, net.activation(i), w, net.params() + c.bias_offset,
                         net.activation(i + 2), net.pool_argmax(i + 1), s);
  } else {
    be.conv_pool_backward(c, p, n, net.activation(i), w, net.activation(i + 2),
                          net.activation_grad(i + 2), net.pool_argmax(i + 1),
                          has_input_grad(c) ? net.activation_grad(i) : nullptr,
                          net.grads() + c.weight_offset, net.grads() + c.bias_offset, s);
  }
}

// The sizes of Network<>'s conv scratch: one im2col matrix per conv layer and one shared GEMM
// scratch (see Network::plan_memory). Benchmarks allocate their own of the same sizes.
inline int64_t conv_col_count(const Layer& l, int64_t n) {
  return n * l.in.c * l.kernel * l.kernel * l.out.h * l.out.w;
}
inline int64_t conv_tmp_count(const Graph& g, int64_t n) {
  int64_t t = 1;
  for (const Layer& l : g.layers())
    if (l.kind == LayerKind::kConv2d) t = std::max(t, n * l.out.size());
  return t;
}

// The counters of every benchmark, from the op's cost per call and the run's timed seconds (the
// sum of its manual times: wall clock on the CPU, CUDA events on the GPU):
//   FLOP/s, B/s           cost / time (rates: Google Benchmark divides by the manual time)
//   pct_peak_flop/_bw     the same as a percentage of the device's peak
//   pct_roof              the floor, max(flop / peak FLOP/s, bytes / peak B/s), over the time, in
//                         %: 100 means the op runs at the roofline
//   images/s              for ops that take a batch
// The percentages are computed here, not as rates, so the console does not print them as "/s".
inline void set_counters(benchmark::State& state, const OpCost& c, const Peak& peak, int64_t n,
                         double timed_seconds) {
  using benchmark::Counter;
  state.counters["FLOP/s"] = Counter(c.flop, Counter::kIsIterationInvariantRate);
  state.counters["B/s"] = Counter(c.bytes, Counter::kIsIterationInvariantRate);
  if (n > 0) {
    state.counters["images/s"] =
        Counter(static_cast<double>(n), Counter::kIsIterationInvariantRate);
  }
  if (peak.flops > 0 && peak.bytes_per_s > 0 && timed_seconds > 0) {
    const double per_call = timed_seconds / static_cast<double>(state.iterations());
    state.counters["pct_peak_flop"] = 100 * c.flop / per_call / peak.flops;
    state.counters["pct_peak_bw"] = 100 * c.bytes / per_call / peak.bytes_per_s;
    state.counters["pct_roof"] = 100 * floor_seconds(c, peak.flops, peak.bytes_per_s) / per_call;
  }
}

// Fresh random data: never zeros, never a pattern a branch predictor or a cache could learn.
inline std::vector<uint8_t> random_images(int64_t count, int64_t sample_size, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<uint8_t> v(static_cast<size_t>(count * sample_size));
  for (auto& b : v) b = static_cast<uint8_t>(rng() >> 56);
  return v;
}

inline std::vector<uint8_t> random_labels(int64_t count, int classes, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<uint8_t> v(static_cast<size_t>(count));
  for (auto& b : v) b = static_cast<uint8_t>(rng() % static_cast<uint64_t>(classes));
  return v;
}

inline std::vector<int32_t> random_order(int64_t count, uint64_t seed) {
  std::vector<int32_t> v(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) v[static_cast<size_t>(i)] = static_cast<int32_t>(i);
  std::shuffle(v.begin(), v.end(), std::mt19937_64(seed));
  return v;
}

}  // namespace mg::bench
