// The CUDA rows of bench_kernels: every op of the training step through CudaBackend, as Network<>
// calls it, at every batch size of kBatchSizes. Registered only when cuda_usable() says a GPU is
// there; otherwise the run's context says why they are absent.
//
// How an op is timed: a Network at the batch size holds real weights (Glorot, seed 42) and the
// activations and gradients of one real step on a random batch, all on the device. Each benchmark
// runs the op a few times first (warm-up: cuBLAS heuristics, first-touch, clocks), then per
// iteration: overwrite a buffer twice the size of L2 (so no input is served from L2), record an
// event, the op, an event, wait; the events' elapsed time is the iteration's (manual) time.
// train_step replays the step's CUDA graph back to back, without flushing, as the engine does;
// train_step_eager launches the same step kernel by kernel (so it includes launch gaps). The
// fused conv + pool ops (conv_pool variant 1), <conv>+<pool>/forward and /backward, run at every
// batch size as the CPU's do, whether or not the process's set fuses them in its steps.
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdio>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "bench/bench_common.hpp"
#include "bench/bench_cuda.hpp"
#include "engine/cuda_backend.cuh"
#include "engine/cuda_engine.hpp"
#include "engine/init.hpp"
#include "kernels/conv.cuh"
#include "kernels/cuda_check.cuh"
#include "kernels/variants.hpp"

namespace mg::bench {
namespace {

constexpr uint64_t kSeed = 42;
constexpr int kWarmup = 3;

// --- the device's peak: a table of known parts, else measured --------------------------------

struct KnownGpu {
  const char* match;    // a substring of cudaDeviceProp::name
  const char* exclude;  // a substring that rules the entry out (another variant), or null
  const char* part;
  double flops, bytes_per_s;  // FP32 without tensor cores; HBM bandwidth (vendor datasheets)
};

// Ordered: the first match wins. H100/H200 NVL, GH200 and anything else are measured instead.
const KnownGpu kKnownGpus[] = {
    {"NVIDIA H200", "NVL", "H200 SXM", 67e12, 4.8e12},
    {"NVIDIA H100 PCIe", nullptr, "H100 PCIe", 51e12, 2.0e12},
    {"NVIDIA H100 80GB HBM3", nullptr, "H100 SXM", 67e12, 3.35e12},
    {"NVIDIA H100 SXM", nullptr, "H100 SXM", 67e12, 3.35e12},
    {"NVIDIA A100-SXM4-80GB", nullptr, "A100 SXM 80GB", 19.5e12, 2.039e12},
    {"NVIDIA A100 80GB", nullptr, "A100 PCIe 80GB", 19.5e12, 1.935e12},
    {"NVIDIA A100", nullptr, "A100 40GB", 19.5e12, 1.555e12},
};

float elapsed_ms(cudaEvent_t a, cudaEvent_t b) {
  float ms = 0;
  CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
  return ms;
}

// FP32: the best of several cublasSgemm at 8192^3 (no TF32: default math mode); bandwidth: the best
// of several device-to-device copies of 1 GiB, counted as read + write.
Peak measure_cuda_peak() {
  constexpr int kRepeats = 5;
  constexpr int64_t n = 8192;
  constexpr size_t kCopyBytes = size_t{1} << 30;
  cudaStream_t stream = nullptr;
  cublasHandle_t handle = nullptr;
  cudaEvent_t e0 = nullptr, e1 = nullptr;
  CUDA_CHECK(cudaStreamCreate(&stream));
  CUBLAS_CHECK(cublasCreate(&handle));
  CUBLAS_CHECK(cublasSetStream(handle, stream));
  CUBLAS_CHECK(cublasSetMathMode(handle, CUBLAS_DEFAULT_MATH));
  CUDA_CHECK(cudaEventCreate(&e0));
  CUDA_CHECK(cudaEventCreate(&e1));
  Peak p;
  {
    DeviceBuffer<float> a(n * n, stream), b(n * n, stream), c(n * n, stream);
    CUDA_CHECK(cudaMemsetAsync(a.data(), 0x3c, static_cast<size_t>(n * n) * 4, stream));  // ~0.01
    CUDA_CHECK(cudaMemsetAsync(b.data(), 0x3c, static_cast<size_t>(n * n) * 4, stream));
    const float one = 1, zero = 0;
    const int dim = static_cast<int>(n);
    float best = 1e30f;
    for (int r = 0; r <= kRepeats; ++r) {  // r == 0: warm-up
      CUDA_CHECK(cudaEventRecord(e0, stream));
      CUBLAS_CHECK(cublasSgemm(handle, CUBLAS_OP_N, CUBLAS_OP_N, dim, dim, dim, &one, a.data(), dim,
                               b.data(), dim, &zero, c.data(), dim));
      CUDA_CHECK(cudaEventRecord(e1, stream));
      CUDA_CHECK(cudaEventSynchronize(e1));
      if (r > 0) best = std::min(best, elapsed_ms(e0, e1));
    }
    p.flops = 2.0 * static_cast<double>(n) * static_cast<double>(n) * static_cast<double>(n) /
              (best * 1e-3);
  }
  {
    DeviceBuffer<char> src(static_cast<int64_t>(kCopyBytes), stream),
        dst(static_cast<int64_t>(kCopyBytes), stream);
    float best = 1e30f;
    for (int r = 0; r <= kRepeats; ++r) {
      CUDA_CHECK(cudaEventRecord(e0, stream));
      CUDA_CHECK(
          cudaMemcpyAsync(dst.data(), src.data(), kCopyBytes, cudaMemcpyDeviceToDevice, stream));
      CUDA_CHECK(cudaEventRecord(e1, stream));
      CUDA_CHECK(cudaEventSynchronize(e1));
      if (r > 0) best = std::min(best, elapsed_ms(e0, e1));
    }
    p.bytes_per_s = 2.0 * static_cast<double>(kCopyBytes) / (best * 1e-3);
  }
  CUDA_CHECK(cudaEventDestroy(e0));
  CUDA_CHECK(cudaEventDestroy(e1));
  CUBLAS_CHECK(cublasDestroy(handle));
  CUDA_CHECK(cudaStreamDestroy(stream));
  p.source =
      "measured at start: FP32 = best of 5 cublasSgemm 8192^3 (no TF32); bandwidth = best "
      "of 5 device-to-device copies of 1 GiB, counted as read + write";
  return p;
}

Peak cuda_peak(const std::string& name) {
  for (const KnownGpu& g : kKnownGpus) {
    if (name.find(g.match) == std::string::npos) continue;
    if (g.exclude != nullptr && name.find(g.exclude) != std::string::npos) continue;
    return {g.flops, g.bytes_per_s,
            std::string("table: ") + g.part + " datasheet (FP32 non-tensor, HBM), matched on '" +
                g.match + "'"};
  }
  return measure_cuda_peak();
}

// --- the fixture: a Network on the device at one batch size ----------------------------------

// The training images, labels and one epoch's order, random, on the device.
struct DeviceDataset {
  DeviceBuffer<uint8_t> images, labels;
  DeviceBuffer<int32_t> order;
  int64_t sample_size = 0;
};

class Fixture {
 public:
  // Built, and its step captured, under the process's kernel variant set at the time; `set` is
  // that set, kept to tell fixtures apart.
  Fixture(int64_t n, const kern::KernelVariants& set)
      : n_(n),
        set_(set),
        be_(/*use_graphs=*/true),
        net_(be_, Graph::build(ModelSpec::seed()), n, kSeed) {
    const Graph& g = net_.graph();
    std::vector<float> init(static_cast<size_t>(g.param_count()));
    glorot_uniform_init<float>(g, kSeed, init);
    be_.upload(net_.params(), init.data(), g.param_count());

    data_.sample_size = g.input().size();
    const std::vector<uint8_t> images = random_images(kTrainImages, data_.sample_size, kSeed);
    const std::vector<uint8_t> labels = random_labels(kTrainImages, g.classes(), kSeed + 1);
    const std::vector<int32_t> order = random_order(kTrainImages, kSeed + 2);
    data_.images = be_.alloc<uint8_t>(static_cast<int64_t>(images.size()));
    data_.labels = be_.alloc<uint8_t>(kTrainImages);
    data_.order = be_.alloc<int32_t>(kTrainImages);
    be_.upload(data_.images.data(), images.data(), static_cast<int64_t>(images.size()));
    be_.upload(data_.labels.data(), labels.data(), kTrainImages);
    be_.upload(data_.order.data(), order.data(), kTrainImages);

    // Our own conv scratch, of Network's sizes (Network keeps its own private).
    int64_t col_total = 0;
    std::vector<int64_t> col_off(g.layers().size(), -1);
    for (const Layer& l : g.layers()) {
      if (l.kind != LayerKind::kConv2d) continue;
      col_off[static_cast<size_t>(l.index)] = col_total;
      col_total += conv_col_count(l, n);
    }
    col_arena_ = be_.alloc<float>(std::max<int64_t>(col_total, 1));
    tmp_ = be_.alloc<float>(conv_tmp_count(g, n));
    col_.assign(g.layers().size(), nullptr);
    for (size_t i = 0; i < col_off.size(); ++i)
      if (col_off[i] >= 0) col_[i] = col_arena_.data() + col_off[i];

    // Twice L2, overwritten before every timed call.
    int device = 0, l2 = 0;
    CUDA_CHECK(cudaGetDevice(&device));
    CUDA_CHECK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, device));
    flush_ = be_.alloc<char>(std::max<int64_t>(2 * int64_t{l2}, 1 << 20));

    // One real step, so every activation and gradient holds live data; then our scratch holds
    // what each conv forward leaves for its backward.
    be_.gather(data_.images.data(), data_.labels.data(), data_.sample_size, data_.order.data(),
               net_.counters(), n, net_.input(), net_.labels());
    net_.forward(n, true);
    net_.loss(n);
    net_.backward(n);
    for (size_t i = 0; i < col_.size(); ++i)
      if (col_[i]) call_layer(net_, i, Pass::kForward, n, scratch(i));
    be_.synchronize();

    CUDA_CHECK(cudaEventCreate(&start_));
    CUDA_CHECK(cudaEventCreate(&stop_));
  }
  ~Fixture() {
    (void)cudaEventDestroy(start_);
    (void)cudaEventDestroy(stop_);
  }
  Fixture(const Fixture&) = delete;
  Fixture& operator=(const Fixture&) = delete;

  int64_t batch() const { return n_; }
  const kern::KernelVariants& variants() const { return set_; }
  CudaBackend& backend() { return be_; }
  Network<CudaBackend>& net() { return net_; }
  const DeviceDataset& data() const { return data_; }
  ConvScratch<float> scratch(size_t layer) { return {col_[layer], tmp_.data()}; }

  void flush_l2() {
    ++flush_value_;
    CUDA_CHECK(cudaMemsetAsync(flush_.data(), flush_value_ & 0xff,
                               static_cast<size_t>(flush_.size()), be_.stream()));
  }

  // Every timed call: before() (untimed, on the stream), then call() between two events.
  template <class Before, class Call>
  double timed_loop(benchmark::State& state, Before&& before, Call&& call) {
    for (int i = 0; i < kWarmup; ++i) {
      before();
      call();
    }
    be_.synchronize();
    double total = 0;
    for (auto _ : state) {
      before();
      CUDA_CHECK(cudaEventRecord(start_, be_.stream()));
      call();
      CUDA_CHECK(cudaEventRecord(stop_, be_.stream()));
      CUDA_CHECK(cudaEventSynchronize(stop_));
      const double s = 1e-3 * static_cast<double>(elapsed_ms(start_, stop_));
      state.SetIterationTime(s);
      total += s;
    }
    return total;
  }

 private:
  int64_t n_;
  kern::KernelVariants set_;
  CudaBackend be_;
  Network<CudaBackend> net_;
  DeviceDataset data_;
  DeviceBuffer<float> col_arena_, tmp_;
  DeviceBuffer<char> flush_;
  std::vector<float*> col_;
  cudaEvent_t start_ = nullptr, stop_ = nullptr;
  int flush_value_ = 0;
};

// One fixture at a time; released by release_cuda_benchmarks() while CUDA is still up (not by a
// static destructor, which may run after the runtime has begun to shut down).
std::unique_ptr<Fixture>& current_fixture() {
  static std::unique_ptr<Fixture> current;
  return current;
}

// The fixture at batch n built under the current variant set.
Fixture& fixture(int64_t n) {
  const kern::KernelVariants set = kern::kernel_variants();
  std::unique_ptr<Fixture>& current = current_fixture();
  if (!current || current->batch() != n || !(current->variants() == set)) {
    current.reset();
    current = std::make_unique<Fixture>(n, set);
  }
  return *current;
}

// The batch cursor lives on the device; the host keeps its own copy to wrap it at the epoch's end
// (a memset on the stream, before the timed region).
class Cursor {
 public:
  explicit Cursor(Fixture& f) : f_(f) {
    f_.backend().fill_zero(f_.net().counters() + kCursorCounter, 1);
  }
  // Before each step: wraps when the next batch would run past the epoch.
  void wrap() {
    if (host_ + f_.batch() > kTrainImages) {
      f_.backend().fill_zero(f_.net().counters() + kCursorCounter, 1);
      host_ = 0;
    }
  }
  // The step moved the device's cursor on (end_step), or we do it for a gather alone.
  void stepped() { host_ += f_.batch(); }
  void advance() {
    f_.backend().advance_cursor(f_.net().counters(), f_.batch());
    stepped();
  }

 private:
  Fixture& f_;
  int64_t host_ = 0;
};

double run_layer(benchmark::State& state, Fixture& f, size_t i, Pass pass) {
  Network<CudaBackend>& net = f.net();
  const int64_t n = f.batch();
  const Layer& l = net.graph().layers()[i];
  // conv_backward overwrites the forward's im2col matrix with d(col) when it computes dx: run the
  // forward again first, as the training step does.
  const bool refill_col =
      l.kind == LayerKind::kConv2d && pass == Pass::kBackward && has_input_grad(l);
  return f.timed_loop(
      state,
      [&] {
        if (refill_col) call_layer(net, i, Pass::kForward, n, f.scratch(i));
        f.flush_l2();
      },
      [&] { call_layer(net, i, pass, n, f.scratch(i)); });
}

// The fused conv + pool op (conv_pool variant 1), whatever the fixture's network fuses: it runs on
// the network's tensors of one real step (the pool's output and argmax are the same fused or
// not). Its backward overwrites the forward's column matrix with d(col) when it computes dx: run
// the fused forward again first, untimed, as the training step does.
double run_conv_pool(benchmark::State& state, Fixture& f, size_t i, Pass pass) {
  Network<CudaBackend>& net = f.net();
  const int64_t n = f.batch();
  const bool refill_col = pass == Pass::kBackward && has_input_grad(net.graph().layers()[i]);
  return f.timed_loop(
      state,
      [&] {
        if (refill_col) call_conv_pool(net, i, Pass::kForward, n, f.scratch(i));
        f.flush_l2();
      },
      [&] { call_conv_pool(net, i, pass, n, f.scratch(i)); });
}

// The seed model's conv + pool pairs the fused op takes at batch n (every one: conv_pool_fits),
// forward then backward, named as the CPU's fused rows: <conv>+<pool>/forward.
std::vector<BenchOp> conv_pool_pair_ops(const Graph& g, int64_t n) {
  std::vector<BenchOp> ops;
  const auto& layers = g.layers();
  for (const Pass pass : {Pass::kForward, Pass::kBackward}) {
    for (size_t i = 0; i + 1 < layers.size(); ++i) {
      const Layer& c = layers[i];
      if (c.kind != LayerKind::kConv2d || layers[i + 1].kind != LayerKind::kMaxPool) continue;
      if (!kern::conv_pool_fits({n, c.in.c, c.in.h, c.in.w, c.out.c, c.kernel, c.pad})) continue;
      ops.push_back({OpKind::kConvPool, i, pass,
                     c.name + "+" + layers[i + 1].name +
                         (pass == Pass::kForward ? "/forward" : "/backward")});
    }
  }
  return ops;
}

double run_softmax_xent(benchmark::State& state, Fixture& f) {
  Network<CudaBackend>& net = f.net();
  const int64_t n = f.batch(), classes = net.graph().classes();
  return f.timed_loop(
      state, [&] { f.flush_l2(); },
      [&] {
        f.backend().softmax_xent(n, classes, net.logits(), net.labels(), net.logits_grad(),
                                 net.metric_sums());
      });
}

double run_adam(benchmark::State& state, Fixture& f) {
  Network<CudaBackend>& net = f.net();
  return f.timed_loop(
      state, [&] { f.flush_l2(); }, [&] { net.adam_update(); });
}

double run_gather(benchmark::State& state, Fixture& f) {
  Network<CudaBackend>& net = f.net();
  const DeviceDataset& d = f.data();
  const int64_t n = f.batch();
  Cursor cursor(f);
  return f.timed_loop(
      state,
      [&] {
        cursor.advance();  // the next batch of the epoch, as end_step would move on
        cursor.wrap();
        f.flush_l2();
      },
      [&] {
        f.backend().gather(d.images.data(), d.labels.data(), d.sample_size, d.order.data(),
                           net.counters(), n, net.input(), net.labels());
      });
}

double run_train_step(benchmark::State& state, Fixture& f, bool graph) {
  Network<CudaBackend>& net = f.net();
  const DeviceDataset& d = f.data();
  const int64_t n = f.batch();
  Cursor cursor(f);
  auto step = [&] { net.train_step(d.images.data(), d.labels.data(), d.order.data(), n); };
  return f.timed_loop(
      state, [&] { cursor.wrap(); },
      [&] {
        if (graph) {
          f.backend().run_step(n, step);
        } else {
          step();
        }
        cursor.stepped();
      });
}

// --- the kernel variants (kernels/variants.hpp) ----------------------------------------------

// One kernel of one layer at one variant: cuda/<layer>/<kernel>/v<N>/<batch>. The ops whose
// variant 1 has no kernel of its own (bias_relu and dense_grad_prepare move into the GEMM's
// epilogue, conv_gemm changes how the GEMMs meet the column matrix) time the layer's whole pass
// instead, and Adam the whole update (cuda/adam/update/v<N>).
struct VariantRow {
  size_t layer = 0;
  kern::VariantOp op = kern::VariantOp::kIm2col;
  int variant = 0;
  Pass pass = Pass::kForward;  // for the rows that time a layer's pass
};

const char* variant_op_name(kern::VariantOp op) {
  for (const kern::VariantOpInfo& info : kern::kVariantOps)
    if (info.op == op) return info.name;
  return "?";
}

OpCost variant_row_cost(const Graph& g, const Layer& l, int64_t n, const VariantRow& r) {
  switch (r.op) {
    case kern::VariantOp::kIm2col:
      return conv_kernel_cost(l, n, ConvKernel::kIm2col);
    case kern::VariantOp::kCol2im:
      return conv_kernel_cost(l, n, ConvKernel::kCol2im);
    case kern::VariantOp::kConvOutput:
      return conv_kernel_cost(l, n, ConvKernel::kConvOutput);
    case kern::VariantOp::kConvGradPrepare:
      return conv_kernel_cost(l, n, ConvKernel::kConvGradPrepare);
    case kern::VariantOp::kPoolForward:
      return pool_cost(l, n, Pass::kForward);
    case kern::VariantOp::kPoolBackward:
      return pool_cost(l, n, Pass::kBackward);
    case kern::VariantOp::kAdam:
      return op_cost(g, adam_op(), n);
    case kern::VariantOp::kBiasRelu:
    case kern::VariantOp::kDenseGradPrepare:
    case kern::VariantOp::kConvGemm:
      return layer_cost(l, n, r.pass);
    case kern::VariantOp::kConvPool:  // the pair's interface, the same for both variants
      return conv_pool_cost(l, g.layers()[r.layer + 1], n, r.pass);
  }
  return {};
}

// The kernel alone, on the network's own tensors of one real step (the fixture's), between two
// events after an L2 flush, with the row's variant for its op and the process's set elsewhere.
double run_variant_kernel(benchmark::State& state, Fixture& f, const VariantRow& r) {
  Network<CudaBackend>& net = f.net();
  const int64_t n = f.batch();
  const size_t i = r.layer;
  const Layer& l = net.graph().layers()[i];
  kern::KernelVariants set = kern::kernel_variants();
  set[r.op] = r.variant;
  const kern::ScopedKernelVariants scoped(set);
  cudaStream_t stream = f.backend().stream();
  const kern::ConvDims d{n, l.in.c, l.in.h, l.in.w, l.out.c, l.kernel, l.pad};
  const ConvScratch<float> s = f.scratch(i);
  float* x = net.activation(i);
  float* y = net.activation(i + 1);
  std::function<void()> call, before = [&f] { f.flush_l2(); };
  switch (r.op) {
    case kern::VariantOp::kIm2col:
      call = [=] { kern::im2col(x, d, s.col, stream); };
      break;
    case kern::VariantOp::kCol2im:
      call = [=, &net] { kern::col2im(s.col, d, net.activation_grad(i), stream); };
      break;
    case kern::VariantOp::kConvOutput:
      call = [=, &net] {
        kern::conv_output(s.tmp, net.params() + l.bias_offset, n, d.c_out, d.ohw(), l.relu, y,
                          stream);
      };
      break;
    case kern::VariantOp::kConvGradPrepare:
      call = [=, &net] {
        kern::conv_grad_prepare(y, net.activation_grad(i + 1), n, d.c_out, d.ohw(), l.relu, s.tmp,
                                net.grads() + l.bias_offset, stream);
      };
      break;
    case kern::VariantOp::kPoolForward:
      call = [=, &net] { call_layer(net, i, Pass::kForward, n, s); };
      break;
    case kern::VariantOp::kPoolBackward:
      call = [=, &net] { call_layer(net, i, Pass::kBackward, n, s); };
      break;
    case kern::VariantOp::kAdam:
      call = [&net] { net.adam_update(); };
      break;
    case kern::VariantOp::kBiasRelu:
    case kern::VariantOp::kDenseGradPrepare:
      // The backward masks dy in place: again and again the same mask, the same work.
      call = [=, &net] { call_layer(net, i, r.pass, n, s); };
      break;
    case kern::VariantOp::kConvGemm:
      call = [=, &net] { call_layer(net, i, r.pass, n, s); };
      // The backward overwrites the forward's column matrix with d(col): refill it (untimed).
      if (r.pass == Pass::kBackward && has_input_grad(l)) {
        before = [=, &f, &net] {
          call_layer(net, i, Pass::kForward, n, s);
          f.flush_l2();
        };
      }
      break;
    case kern::VariantOp::kConvPool:
      // v0: the pair as two ops (conv then pool forward; pool then conv backward), v1: one.
      if (r.variant == 0 && r.pass == Pass::kForward) {
        call = [=, &net] {
          call_layer(net, i, Pass::kForward, n, s);
          call_layer(net, i + 1, Pass::kForward, n, s);
        };
      } else if (r.variant == 0) {
        call = [=, &net] {
          call_layer(net, i + 1, Pass::kBackward, n, s);
          call_layer(net, i, Pass::kBackward, n, s);
        };
      } else {
        call = [=, &net] { call_conv_pool(net, i, r.pass, n, s); };
      }
      // Either backward overwrites the column matrix with d(col) when it computes dx: refill it
      // with the forward of the same variant (untimed).
      if (r.pass == Pass::kBackward && has_input_grad(l)) {
        before = [=, &f, &net] {
          if (r.variant == 0) {
            call_layer(net, i, Pass::kForward, n, s);
          } else {
            call_conv_pool(net, i, Pass::kForward, n, s);
          }
          f.flush_l2();
        };
      }
      break;
  }
  return f.timed_loop(state, before, call);
}

void register_variant_row(const Graph& g, int64_t n, const Peak& peak, double min_time,
                          const VariantRow& row, const std::string& op_name) {
  const Layer& l = g.layers()[row.layer];
  const std::string name =
      "cuda/" + op_name + "/v" + std::to_string(row.variant) + "/" + std::to_string(n);
  const OpCost cost = variant_row_cost(g, l, n, row);
  benchmark::RegisterBenchmark(name.c_str(),
                               [row, n, peak, cost](benchmark::State& st) {
                                 try {
                                   Fixture& f = fixture(n);
                                   const double seconds = run_variant_kernel(st, f, row);
                                   set_counters(st, cost, peak,
                                                row.op == kern::VariantOp::kAdam ? 0 : n, seconds);
                                 } catch (const std::exception& e) {
                                   st.SkipWithError(e.what());
                                 }
                               })
      ->UseManualTime()
      ->MinTime(min_time)
      ->Unit(benchmark::kMicrosecond);
}

void register_variant_rows(const Graph& g, int64_t n, const Peak& peak, double min_time) {
  auto count = [](kern::VariantOp op) { return kern::kVariantOps[static_cast<size_t>(op)].count; };
  const auto& layers = g.layers();
  for (const Layer& l : layers) {
    // (op, pass, the row's op name: <layer>/<kernel>, or <conv>+<pool>/<kernel> for the pair)
    std::vector<std::tuple<kern::VariantOp, Pass, std::string>> ops;
    const std::string layer = l.name + "/";
    if (l.kind == LayerKind::kConv2d) {
      for (const kern::VariantOp op : {kern::VariantOp::kIm2col, kern::VariantOp::kConvOutput,
                                       kern::VariantOp::kConvGradPrepare})
        ops.emplace_back(op, Pass::kForward, layer + variant_op_name(op));
      if (has_input_grad(l))
        ops.emplace_back(kern::VariantOp::kCol2im, Pass::kForward, layer + "col2im");
      ops.emplace_back(kern::VariantOp::kConvGemm, Pass::kForward, layer + "conv_gemm_forward");
      ops.emplace_back(kern::VariantOp::kConvGemm, Pass::kBackward, layer + "conv_gemm_backward");
      const auto next = static_cast<size_t>(l.index) + 1;
      if (next < layers.size() && layers[next].kind == LayerKind::kMaxPool &&
          kern::conv_pool_fits({n, l.in.c, l.in.h, l.in.w, l.out.c, l.kernel, l.pad})) {
        const std::string pair = l.name + "+" + layers[next].name + "/";
        ops.emplace_back(kern::VariantOp::kConvPool, Pass::kForward, pair + "conv_pool_forward");
        ops.emplace_back(kern::VariantOp::kConvPool, Pass::kBackward, pair + "conv_pool_backward");
      }
    } else if (l.kind == LayerKind::kMaxPool) {
      ops = {{kern::VariantOp::kPoolForward, Pass::kForward, layer + "maxpool_forward"},
             {kern::VariantOp::kPoolBackward, Pass::kBackward, layer + "maxpool_backward"}};
    } else if (l.kind == LayerKind::kDense) {
      ops = {{kern::VariantOp::kBiasRelu, Pass::kForward, layer + "bias_relu"},
             {kern::VariantOp::kDenseGradPrepare, Pass::kBackward, layer + "dense_grad_prepare"}};
    }
    for (const auto& [op, pass, name] : ops)
      for (int v = 0; v < count(op); ++v)
        register_variant_row(g, n, peak, min_time, {static_cast<size_t>(l.index), op, v, pass},
                             name);
  }
  for (int v = 0; v < count(kern::VariantOp::kAdam); ++v)
    register_variant_row(g, n, peak, min_time, {0, kern::VariantOp::kAdam, v, Pass::kForward},
                         "adam/update");
}

// `set`: run the op (the whole step) under this variant set, on a fixture built under it, so the
// captured graph holds those kernels.
void run_op(benchmark::State& state, const BenchOp& op, int64_t n, const Peak& peak, bool graph,
            const std::optional<kern::KernelVariants>& set = std::nullopt) {
  std::optional<kern::ScopedKernelVariants> scoped;
  try {
    if (set) scoped.emplace(*set);
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
        seconds = run_train_step(state, f, graph);
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
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

void register_one(const std::string& name, const BenchOp& op, int64_t n, const Peak& peak,
                  bool graph, double min_time,
                  const std::optional<kern::KernelVariants>& set = std::nullopt) {
  benchmark::RegisterBenchmark(name.c_str(),
                               [op, n, peak, graph, set](benchmark::State& s) {
                                 run_op(s, op, n, peak, graph, set);
                               })
      ->UseManualTime()
      ->MinTime(min_time)
      ->Unit(benchmark::kMicrosecond);
}

}  // namespace

void register_cuda_benchmarks(double min_time, const kern::KernelVariants& step_set) {
  std::string why;
  if (!cuda_usable(&why)) {
    benchmark::AddCustomContext("cuda", "absent: " + why);
    return;
  }
  int device = 0;
  cudaDeviceProp prop{};
  Peak peak;
  try {
    CUDA_CHECK(cudaGetDevice(&device));
    CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
    peak = cuda_peak(prop.name);
  } catch (const std::exception& e) {
    benchmark::AddCustomContext("cuda",
                                std::string("absent: the peak could not be had: ") + e.what());
    return;
  }
  const std::string name = prop.name;
  char buf[64];
  benchmark::AddCustomContext("cuda", name + " (sm_" + std::to_string(prop.major) +
                                          std::to_string(prop.minor) + ", " +
                                          std::to_string(prop.multiProcessorCount) + " SMs)");
  std::snprintf(buf, sizeof buf, "%.4g", peak.flops);
  benchmark::AddCustomContext("cuda_peak_flops", buf);
  std::snprintf(buf, sizeof buf, "%.4g", peak.bytes_per_s);
  benchmark::AddCustomContext("cuda_peak_bytes_per_s", buf);
  benchmark::AddCustomContext("cuda_peak_source", peak.source);
  benchmark::AddCustomContext(
      "cuda_timing", "CUDA events around each call on the backend's stream (manual time), after " +
                         std::to_string(kWarmup) + " warm-up calls; per-op benchmarks overwrite " +
                         std::to_string(2 * prop.l2CacheSize >> 20) +
                         " MiB (2x L2) before every call; train_step replays the step's CUDA "
                         "graph, train_step_eager launches it kernel by kernel; each benchmark "
                         "runs until it has " +
                         std::to_string(min_time) + " s of GPU time");

  const Graph g = Graph::build(ModelSpec::seed());
  for (const int64_t n : kBatchSizes) {
    std::vector<BenchOp> ops = step_ops(g);
    const std::vector<BenchOp> fused = conv_pool_pair_ops(g, n);
    ops.insert(ops.end() - 1, fused.begin(), fused.end());  // before train_step, as on the CPU
    for (const BenchOp& op : ops) {
      register_one(bench_name("cuda", op, n), op, n, peak, /*graph=*/true, min_time);
      if (op.kind == OpKind::kTrainStep) {
        BenchOp eager = op;
        eager.name = "train_step_eager";
        register_one(bench_name("cuda", eager, n), op, n, peak, /*graph=*/false, min_time);
      }
    }
    if (n == kSeedBatch) {
      register_one(bench_name("cuda", adam_op(), n), adam_op(), n, peak, false, min_time);
    }
  }

  // The variants, at the seed batch: every kernel at every variant, then the whole step (graph
  // replay) with every op at variant 0 and with the chosen set.
  const std::string process_set = kern::kernel_variants().spec();
  benchmark::AddCustomContext("cuda_variants", process_set);
  benchmark::AddCustomContext("cuda_step_variants", step_set.spec());
  register_variant_rows(g, kSeedBatch, peak, min_time);
  BenchOp step;
  for (const BenchOp& op : step_ops(g))
    if (op.kind == OpKind::kTrainStep) step = op;
  std::vector<kern::KernelVariants> sets = {kern::KernelVariants{}};
  if (!(step_set == kern::KernelVariants{})) sets.push_back(step_set);
  for (const kern::KernelVariants& set : sets) {
    register_one("cuda/train_step/" + set.label() + "/" + std::to_string(kSeedBatch), step,
                 kSeedBatch, peak, /*graph=*/true, min_time, set);
  }
}

void release_cuda_benchmarks() { current_fixture().reset(); }

}  // namespace mg::bench
