// The CPU rows of bench_kernels: every op of the training step through CpuFastBackend (the
// backend `mnist_gpu train --device cpu` uses), as Network<> calls it, at every batch size of
// kBatchSizes: each layer's own forward and backward (what inference, and training where nothing
// is fused, run) and the fused conv + pool ops that training runs instead of the pairs.
//
// How an op is timed: a Network at the batch size holds real weights (Glorot, seed 42) and the
// activations and gradients of one real step on a random batch. Before every timed call the op's
// buffers (inputs, outputs, parameters, the conv scratch) are flushed from the caches with clflush,
// so every byte comes from memory, as the floor assumes; then the call alone is timed by the wall
// clock (manual time: the op runs on every OpenMP thread, so the main thread's CPU time would
// undercount). train_step is timed back to back without flushing: the real thing, step after step.
#include "bench/bench_cpu.hpp"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <emmintrin.h>
#define MG_BENCH_HAVE_CLFLUSH 1
#else
#define MG_BENCH_HAVE_CLFLUSH 0
#endif

#include "engine/cpu_fast_backend.hpp"
#include "engine/init.hpp"

namespace mg::bench {
namespace {

using Backend = CpuFastBackend;

constexpr uint64_t kSeed = 42;

struct Bytes {
  const void* p;
  int64_t size;
};

template <class T>
Bytes bytes_of(const T* p, int64_t count) {
  return {p, count * static_cast<int64_t>(sizeof(T))};
}

void flush(const std::vector<Bytes>& buffers) {
#if MG_BENCH_HAVE_CLFLUSH
  for (const Bytes& b : buffers) {
    if (b.p == nullptr) continue;
    const auto* first = static_cast<const char*>(b.p);
    const char* line = first - (reinterpret_cast<uintptr_t>(first) % 64);
    for (; line < first + b.size; line += 64) _mm_clflush(line);
  }
  _mm_mfence();
#else
  (void)buffers;
#endif
}

// The training images every batch-dependent fixture gathers from, built once.
struct Dataset {
  std::vector<uint8_t> images, labels;
  std::vector<int32_t> order;  // one epoch's random permutation
  int64_t sample_size = 0;
};

const Dataset& dataset(const Graph& g) {
  static const Dataset d = [&] {
    Dataset s;
    s.sample_size = g.input().size();
    s.images = random_images(kTrainImages, s.sample_size, kSeed);
    s.labels = random_labels(kTrainImages, g.classes(), kSeed + 1);
    s.order = random_order(kTrainImages, kSeed + 2);
    return s;
  }();
  return d;
}

// A Network at one batch size, after one real step: every activation and gradient is live data.
class Fixture {
 public:
  explicit Fixture(int64_t n) : n_(n), net_(be_, Graph::build(ModelSpec::seed()), n, kSeed) {
    const Graph& g = net_.graph();
    std::vector<float> init(static_cast<size_t>(g.param_count()));
    glorot_uniform_init<float>(g, kSeed, init);
    std::copy(init.begin(), init.end(), net_.params());

    int64_t col_total = 0;
    std::vector<int64_t> col_off(g.layers().size(), -1);
    for (const Layer& l : g.layers()) {
      if (l.kind != LayerKind::kConv2d) continue;
      col_off[static_cast<size_t>(l.index)] = col_total;
      col_total += conv_col_count(l, n);
    }
    col_arena_.assign(static_cast<size_t>(std::max<int64_t>(col_total, 1)), 0.0f);
    tmp_.assign(static_cast<size_t>(conv_tmp_count(g, n)), 0.0f);
    col_.assign(g.layers().size(), nullptr);
    for (size_t i = 0; i < col_off.size(); ++i)
      if (col_off[i] >= 0) col_[i] = col_arena_.data() + col_off[i];

    const Dataset& d = dataset(g);
    be_.gather(d.images.data(), d.labels.data(), d.sample_size, d.order.data(), net_.counters(), n,
               net_.input(), net_.labels());
    net_.forward(n, true);
    net_.loss(n);
    net_.backward(n);
    // Our conv scratch holds what the forward leaves for the backward, as Network's does.
    for (size_t i = 0; i < col_.size(); ++i)
      if (col_[i]) call_layer(net_, i, Pass::kForward, n, scratch(i));
  }
  Fixture(const Fixture&) = delete;
  Fixture& operator=(const Fixture&) = delete;

  int64_t batch() const { return n_; }
  Backend& backend() { return be_; }
  Network<Backend>& net() { return net_; }
  ConvScratch<float> scratch(size_t layer) { return {col_[layer], tmp_.data()}; }
  int64_t tmp_count() const { return static_cast<int64_t>(tmp_.size()); }

 private:
  int64_t n_;
  Backend be_;
  Network<Backend> net_;
  std::vector<float> col_arena_, tmp_;
  std::vector<float*> col_;
};

// One fixture at a time (the largest is about 1.3 GB); benchmarks run grouped by batch size.
Fixture& fixture(int64_t n) {
  static std::unique_ptr<Fixture> current;
  if (!current || current->batch() != n) {
    current.reset();
    current = std::make_unique<Fixture>(n);
  }
  return *current;
}

// Every buffer a layer op touches on the CPU backend.
std::vector<Bytes> layer_buffers(Fixture& f, size_t i, Pass pass) {
  Network<Backend>& net = f.net();
  const Layer& l = net.graph().layers()[i];
  const int64_t n = f.batch(), in = n * l.in.size(), out = n * l.out.size();
  std::vector<Bytes> b;
  const bool fwd = pass == Pass::kForward;
  b.push_back(bytes_of(fwd ? net.activation(i) : net.activation_grad(i), in));
  b.push_back(bytes_of(fwd ? net.activation(i + 1) : net.activation_grad(i + 1), out));
  if (!fwd && l.kind != LayerKind::kDropout && l.kind != LayerKind::kMaxPool) {
    b.push_back(bytes_of(net.activation(i), in));
    b.push_back(bytes_of(net.activation(i + 1), out));
  }
  if (l.has_params()) {
    b.push_back(bytes_of(net.params() + l.weight_offset, l.weight_size + l.bias_size));
    if (!fwd) b.push_back(bytes_of(net.grads() + l.weight_offset, l.weight_size + l.bias_size));
  }
  if (l.kind == LayerKind::kMaxPool) b.push_back(bytes_of(net.pool_argmax(i), out));
  if (l.kind == LayerKind::kConv2d) {
    b.push_back(bytes_of(f.scratch(i).col, conv_col_count(l, n)));
    b.push_back(bytes_of(f.scratch(i).tmp, f.tmp_count()));
  }
  return b;
}

double seconds_between(std::chrono::steady_clock::time_point a,
                       std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// before() runs untimed (restore state, flush), then call() alone is timed. Returns the timed
// seconds of the run.
template <class Before, class Call>
double timed_loop(benchmark::State& state, Before&& before, Call&& call) {
  double total = 0;
  for (auto _ : state) {
    before();
    // Wake the OpenMP workers the flush left idle (they may have gone to sleep): the timed call
    // starts with warm threads and cold caches, as it would inside a training step.
#pragma omp parallel
    { benchmark::ClobberMemory(); }
    const auto t0 = std::chrono::steady_clock::now();
    call();
    const auto t1 = std::chrono::steady_clock::now();
    benchmark::ClobberMemory();
    const double s = seconds_between(t0, t1);
    state.SetIterationTime(s);
    total += s;
  }
  return total;
}

double run_layer(benchmark::State& state, Fixture& f, size_t i, Pass pass) {
  Network<Backend>& net = f.net();
  const int64_t n = f.batch();
  const std::vector<Bytes> buffers = layer_buffers(f, i, pass);
  const Layer& l = net.graph().layers()[i];
  // CpuBackend::conv_backward overwrites the forward's im2col matrix with d(col) when it computes
  // dx: run the forward again first, as the training step does.
  const bool refill_col =
      l.kind == LayerKind::kConv2d && pass == Pass::kBackward && has_input_grad(l);
  return timed_loop(
      state,
      [&] {
        if (refill_col) call_layer(net, i, Pass::kForward, n, f.scratch(i));
        flush(buffers);
      },
      [&] { call_layer(net, i, pass, n, f.scratch(i)); });
}

// Every buffer a fused conv + pool op touches (the conv is layer i, the pool i + 1).
std::vector<Bytes> conv_pool_buffers(Fixture& f, size_t i, Pass pass) {
  Network<Backend>& net = f.net();
  const Layer& c = net.graph().layers()[i];
  const Layer& p = net.graph().layers()[i + 1];
  const int64_t n = f.batch(), in = n * c.in.size(), out = n * p.out.size();
  std::vector<Bytes> b = {bytes_of(net.activation(i), in), bytes_of(net.activation(i + 2), out),
                          bytes_of(net.pool_argmax(i + 1), out),
                          bytes_of(net.params() + c.weight_offset, c.weight_size + c.bias_size)};
  if (pass == Pass::kBackward) {
    b.push_back(bytes_of(net.activation_grad(i + 2), out));
    b.push_back(bytes_of(net.grads() + c.weight_offset, c.weight_size + c.bias_size));
    if (has_input_grad(c)) b.push_back(bytes_of(net.activation_grad(i), in));
  }
  return b;
}

double run_conv_pool(benchmark::State& state, Fixture& f, size_t i, Pass pass) {
  const std::vector<Bytes> buffers = conv_pool_buffers(f, i, pass);
  return timed_loop(
      state, [&] { flush(buffers); },
      [&] { call_conv_pool(f.net(), i, pass, f.batch(), f.scratch(i)); });
}

double run_softmax_xent(benchmark::State& state, Fixture& f) {
  Network<Backend>& net = f.net();
  const int64_t n = f.batch(), classes = net.graph().classes();
  const std::vector<Bytes> buffers = {
      bytes_of(net.logits(), n * classes), bytes_of(net.labels(), n),
      bytes_of(net.logits_grad(), n * classes), bytes_of(net.metric_sums(), kMetricCount)};
  return timed_loop(
      state, [&] { flush(buffers); },
      [&] {
        f.backend().softmax_xent(n, classes, net.logits(), net.labels(), net.logits_grad(),
                                 net.metric_sums());
      });
}

double run_adam(benchmark::State& state, Fixture& f) {
  Network<Backend>& net = f.net();
  const int64_t p = net.graph().param_count();
  const std::vector<Bytes> buffers = {bytes_of(net.params(), p), bytes_of(net.grads(), p),
                                      bytes_of(net.adam_m(), p), bytes_of(net.adam_v(), p)};
  return timed_loop(
      state, [&] { flush(buffers); }, [&] { net.adam_update(); });
}

// Each call gathers the next batch of the epoch's order, wrapping at its end.
void next_cursor(int64_t* counters, int64_t n) {
  if (counters[kCursorCounter] + n > kTrainImages) counters[kCursorCounter] = 0;
}

double run_gather(benchmark::State& state, Fixture& f) {
  Network<Backend>& net = f.net();
  const Dataset& d = dataset(net.graph());
  const int64_t n = f.batch();
  int64_t* counters = net.counters();
  std::vector<Bytes> buffers;
  return timed_loop(
      state,
      [&] {
        counters[kCursorCounter] += n;
        next_cursor(counters, n);
        const int32_t* idx = d.order.data() + counters[kCursorCounter];
        buffers = {bytes_of(idx, n), bytes_of(net.input(), n * d.sample_size),
                   bytes_of(net.labels(), n), bytes_of(counters, kCounterCount)};
        for (int64_t i = 0; i < n; ++i) {
          buffers.push_back(
              bytes_of(d.images.data() + int64_t{idx[i]} * d.sample_size, d.sample_size));
          buffers.push_back(bytes_of(d.labels.data() + idx[i], 1));
        }
        flush(buffers);
      },
      [&] {
        f.backend().gather(d.images.data(), d.labels.data(), d.sample_size, d.order.data(),
                           counters, n, net.input(), net.labels());
      });
}

double run_train_step(benchmark::State& state, Fixture& f) {
  Network<Backend>& net = f.net();
  const Dataset& d = dataset(net.graph());
  const int64_t n = f.batch();
  return timed_loop(
      state, [&] { next_cursor(net.counters(), n); },
      [&] { net.train_step(d.images.data(), d.labels.data(), d.order.data(), n); });
}

void run_op(benchmark::State& state, const BenchOp& op, int64_t n, const Peak& peak) {
  Fixture& f = fixture(n);
  double seconds = 0;
  switch (op.kind) {
    case OpKind::kLayer:
      seconds = run_layer(state, f, op.layer, op.pass);
      break;
    case OpKind::kSoftmaxXent:
      seconds = run_softmax_xent(state, f);
      break;
    case OpKind::kGather:
      seconds = run_gather(state, f);
      break;
    case OpKind::kTrainStep:
      seconds = run_train_step(state, f);
      break;
    case OpKind::kAdam:
      seconds = run_adam(state, f);
      break;
    case OpKind::kConvPool:
      seconds = run_conv_pool(state, f, op.layer, op.pass);
      break;
  }
  set_counters(state, op_cost(f.net().graph(), op, n), peak, op.kind == OpKind::kAdam ? 0 : n,
               seconds);
}

}  // namespace

const char* cpu_cache_policy() {
#if MG_BENCH_HAVE_CLFLUSH
  return "per-op benchmarks flush the op's buffers from the caches (clflush) before every timed "
         "call; train_step runs back to back";
#else
  return "caches NOT flushed (no clflush on this architecture): small ops may run from cache";
#endif
}

void register_cpu_benchmarks(const Peak& peak) {
  const Graph g = Graph::build(ModelSpec::seed());
  Backend probe_backend;
  const Network<Backend> probe(probe_backend, g, 1, kSeed);
  std::vector<BenchOp> ops = step_ops(g);
  const std::vector<BenchOp> fused = conv_pool_ops(probe);
  ops.insert(ops.end() - 1, fused.begin(), fused.end());  // before train_step
  for (const int64_t n : kBatchSizes) {
    for (const BenchOp& op : ops) {
      benchmark::RegisterBenchmark(bench_name("cpu", op, n).c_str(),
                                   [op, n, peak](benchmark::State& s) { run_op(s, op, n, peak); })
          ->UseManualTime()
          ->Unit(op.kind == OpKind::kTrainStep ? benchmark::kMillisecond : benchmark::kMicrosecond);
    }
    if (n == kSeedBatch) {  // once, while the batch-128 fixture is live
      const BenchOp op = adam_op();
      benchmark::RegisterBenchmark(bench_name("cpu", op, n).c_str(),
                                   [op, n, peak](benchmark::State& s) { run_op(s, op, n, peak); })
          ->UseManualTime()
          ->Unit(benchmark::kMicrosecond);
    }
  }
}

}  // namespace mg::bench
