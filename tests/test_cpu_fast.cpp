// The CPU backend's fast kernels (engine/cpu_fast_*, CpuFastBackend) against the reference ops of
// engine/cpu_ops.hpp, which stay the specification: op by op at the seed model's production
// shapes (batch 128) and at odd ones (5x5 and 7x7 kernels, 'valid' padding, odd maps, 1x1, channel
// counts that are not a multiple of 16, a batch that splits into uneven chunks), then whole
// training steps. Results at 1, 2 and 3 threads must be identical, bit for bit.
//
// Tolerances. The references run in double on the same float inputs. A convolution output sums
// K*K*C_in products (up to 833 here) in float, in another order than the reference's GEMM:
// |got - ref| <= 1e-5 * max|ref| + 1e-5 * |ref| per element, about a hundred times float's
// rounding of the largest value. Weight and bias gradients sum up to n * H * W / 4 products, in
// chunks: 1e-5 * max|ref| + 1e-4 * |ref|. Dropout and Adam are compared bit for bit: the same
// operations in the same order, without fused multiply-adds.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "engine/basic_engine.hpp"
#include "engine/cpu_backend.hpp"
#include "engine/cpu_fast_backend.hpp"
#include "engine/init.hpp"
#include "engine/model_spec.hpp"
#include "engine/network.hpp"
#include "test_util.hpp"

namespace mg {
namespace {

using test::random_floats;
using Floats = std::vector<float>;
using Doubles = std::vector<double>;
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

Doubles to_double(const Floats& v) { return Doubles(v.begin(), v.end()); }

double max_abs(const Doubles& v) {
  double m = 0;
  for (const double x : v) m = std::max(m, std::abs(x));
  return m;
}

// Every element within atol_scale * max|ref| + rtol * |ref|; the first few failures are named.
void expect_close(const char* what, const Floats& got, const Doubles& ref, double atol_scale,
                  double rtol) {
  ASSERT_EQ(got.size(), ref.size()) << what;
  const double atol = atol_scale * max_abs(ref);
  int bad = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double d = std::abs(static_cast<double>(got[i]) - ref[i]);
    if (!(d <= atol + rtol * std::abs(ref[i]))) {
      if (++bad <= 5) ADD_FAILURE() << what << "[" << i << "]: " << got[i] << " vs " << ref[i];
    }
  }
  EXPECT_EQ(bad, 0) << what << ": " << bad << " of " << ref.size() << " elements off";
}

bool same_bits(const Floats& a, const Floats& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// Runs fn at `threads` OpenMP threads, restoring the count after.
template <class Fn>
void at_threads(int threads, Fn&& fn) {
  const int saved = omp_get_max_threads();
  omp_set_num_threads(threads);
  fn();
  omp_set_num_threads(saved);
}

struct ConvCase {
  const char* name;
  int64_t n, c_in, h, w, c_out, kernel, pad;
  bool relu;
  cpu::ConvDims dims() const { return {n, c_in, h, w, c_out, kernel, pad}; }
};

std::string PrintToString(const ConvCase& c) { return c.name; }

const ConvCase kConvCases[] = {
    {"seed_conv2d", 128, 1, 28, 28, 32, 3, 1, true},
    {"seed_conv2d_1", 128, 32, 14, 14, 64, 3, 1, true},
    {"k5_same_odd_map", 3, 16, 9, 7, 16, 5, 2, true},
    {"k3_valid_narrow_no_relu", 2, 8, 10, 11, 32, 3, 0, false},
    {"k5_valid_first_layer", 5, 1, 28, 28, 16, 5, 0, true},
    {"k1_48_channels", 3, 48, 6, 6, 48, 1, 0, true},
    {"k7_same_17_channels", 2, 17, 8, 8, 64, 7, 3, true},
    {"batch_33_uneven_chunks", 33, 32, 7, 7, 16, 3, 1, true},
};

// The reference forward in double: im2col, one GEMM, bias and ReLU (CpuBackend's conv_forward).
struct RefConv {
  Doubles x, w, b, col, y;
};
RefConv reference_conv(const ConvCase& c, const Floats& x, const Floats& w, const Floats& b) {
  const cpu::ConvDims d = c.dims();
  RefConv r{to_double(x), to_double(w), to_double(b), {}, {}};
  r.col.resize(static_cast<size_t>(d.k() * d.cols()));
  Doubles tmp(static_cast<size_t>(d.c_out * d.cols()));
  r.y.resize(static_cast<size_t>(d.n * d.c_out * d.oh() * d.ow()));
  cpu::im2col(r.x.data(), d, r.col.data());
  cpu::gemm(false, false, d.c_out, d.cols(), d.k(), 1.0, r.w.data(), d.k(), r.col.data(),
            d.cols(), 0.0, tmp.data(), d.cols());
  cpu::cnhw_bias_act_to_nchw(tmp.data(), r.b.data(), c.relu, d.n, d.c_out, d.oh() * d.ow(),
                             r.y.data());
  return r;
}

struct ConvInputs {
  Floats x, w, b;
  explicit ConvInputs(const ConvCase& c)
      : x(random_floats(c.n * c.c_in * c.h * c.w, 1)),
        w(random_floats(c.c_out * c.c_in * c.kernel * c.kernel, 2, -0.3f, 0.3f)),
        b(random_floats(c.c_out, 3, -0.1f, 0.1f)) {}
};

class FastConv : public ::testing::TestWithParam<ConvCase> {};

TEST_P(FastConv, ForwardMatchesTheReference) {
  const ConvCase& c = GetParam();
  const cpu::ConvDims d = c.dims();
  ASSERT_TRUE(cpu::fast::conv_supported(d));
  const ConvInputs in(c);
  const RefConv ref = reference_conv(c, in.x, in.w, in.b);
  Floats y(ref.y.size(), kNaN);
  cpu::fast::ConvWorkspace ws;
  cpu::fast::conv_forward(in.x.data(), in.w.data(), in.b.data(), c.relu, d, y.data(), ws);
  expect_close("y", y, ref.y, 1e-5, 1e-5);
}

// The pooled values and argmax against the reference's maxpool2x2_forward of its own output.
// Where the two argmaxes differ, the reference's values at both must be a tie within the
// tolerance (float and double round a near-tie differently), and that must be rare.
TEST_P(FastConv, FusedPoolForwardMatchesTheReference) {
  const ConvCase& c = GetParam();
  const cpu::ConvDims d = c.dims();
  const ConvInputs in(c);
  const RefConv ref = reference_conv(c, in.x, in.w, in.b);
  const int64_t oh = d.oh(), ow = d.ow(), pooled_count = d.n * d.c_out * (oh / 2) * (ow / 2);
  Doubles ref_pooled(static_cast<size_t>(pooled_count));
  std::vector<int32_t> ref_arg(ref_pooled.size());
  cpu::maxpool2x2_forward(ref.y.data(), ref_pooled.data(), ref_arg.data(), d.n, d.c_out, oh, ow);

  Floats pooled(ref_pooled.size(), kNaN);
  std::vector<int32_t> arg(ref_pooled.size(), -1);
  cpu::fast::ConvWorkspace ws;
  cpu::fast::conv_pool_forward(in.x.data(), in.w.data(), in.b.data(), c.relu, d, pooled.data(),
                               arg.data(), ws);
  expect_close("pooled", pooled, ref_pooled, 1e-5, 1e-5);
  const double tol = 1e-5 * max_abs(ref.y);
  int64_t ties = 0;
  const int64_t per_plane = (oh / 2) * (ow / 2);
  for (int64_t i = 0; i < pooled_count; ++i) {
    const size_t k = static_cast<size_t>(i);
    if (arg[k] == ref_arg[k]) continue;
    const int64_t plane = i / per_plane, q = i % per_plane;
    const int64_t py = q / (ow / 2), px = q % (ow / 2);
    const int32_t a = arg[k];
    ASSERT_TRUE(a / ow / 2 == py && a % ow / 2 == px) << "argmax " << a << " outside window " << i;
    const double* yp = ref.y.data() + plane * oh * ow;
    ASSERT_LE(std::abs(yp[a] - yp[ref_arg[k]]), tol) << "not a tie at " << i;
    ++ties;
  }
  EXPECT_LE(ties, pooled_count / 1000 + 2) << ties << " near-ties of " << pooled_count;
}

// The fused backward from the reference forward's pooled output, argmax and a random pooled
// gradient, against the reference's pool backward, ReLU mask and conv backward (CpuBackend<double>).
TEST_P(FastConv, FusedPoolBackwardMatchesTheReference) {
  const ConvCase& c = GetParam();
  const cpu::ConvDims d = c.dims();
  const ConvInputs in(c);
  RefConv ref = reference_conv(c, in.x, in.w, in.b);
  const int64_t oh = d.oh(), ow = d.ow(), pooled_count = d.n * d.c_out * (oh / 2) * (ow / 2);
  Doubles ref_pooled(static_cast<size_t>(pooled_count));
  std::vector<int32_t> arg(ref_pooled.size());
  cpu::maxpool2x2_forward(ref.y.data(), ref_pooled.data(), arg.data(), d.n, d.c_out, oh, ow);
  const Floats dpooled = random_floats(pooled_count, 4);

  Layer l;
  l.kind = LayerKind::kConv2d;
  l.in = {c.c_in, c.h, c.w};
  l.out = {c.c_out, oh, ow};
  l.relu = c.relu;
  l.kernel = static_cast<int>(c.kernel);
  l.pad = static_cast<int>(c.pad);
  Doubles dconv(ref.y.size());
  cpu::maxpool2x2_backward(to_double(dpooled).data(), arg.data(), dconv.data(), d.n, d.c_out, oh,
                           ow);
  Doubles rdx(ref.x.size()), rdw(ref.w.size()), rdb(ref.b.size());
  Doubles tmp(static_cast<size_t>(d.c_out * d.cols()));
  CpuBackend<double>().conv_backward(l, d.n, ref.x.data(), ref.w.data(), ref.y.data(),
                                     dconv.data(), rdx.data(), rdw.data(), rdb.data(),
                                     {ref.col.data(), tmp.data()});

  const Floats pooled(ref_pooled.begin(), ref_pooled.end());
  Floats dx(rdx.size(), kNaN), dw(rdw.size(), kNaN), db(rdb.size(), kNaN);
  cpu::fast::ConvWorkspace ws;
  cpu::fast::conv_pool_backward(in.x.data(), in.w.data(), pooled.data(), dpooled.data(),
                                arg.data(), c.relu, d, dx.data(), dw.data(), db.data(), ws);
  expect_close("dx", dx, rdx, 1e-5, 1e-4);
  expect_close("dw", dw, rdw, 1e-5, 1e-4);
  expect_close("db", db, rdb, 1e-5, 1e-4);

  // Without dx (the first layer): the same dw and db, bit for bit.
  Floats dw2(rdw.size(), kNaN), db2(rdb.size(), kNaN);
  cpu::fast::conv_pool_backward(in.x.data(), in.w.data(), pooled.data(), dpooled.data(),
                                arg.data(), c.relu, d, nullptr, dw2.data(), db2.data(), ws);
  EXPECT_TRUE(same_bits(dw, dw2));
  EXPECT_TRUE(same_bits(db, db2));
}

// 1, 2 and 3 threads give the same bits: the work is split by image (forward) and by fixed chunk
// (backward), never by thread.
TEST_P(FastConv, ResultsDoNotDependOnTheThreadCount) {
  const ConvCase& c = GetParam();
  const cpu::ConvDims d = c.dims();
  const ConvInputs in(c);
  const int64_t out = d.n * d.c_out * d.oh() * d.ow(), pooled = d.n * d.c_out * (d.oh() / 2) *
                                                                 (d.ow() / 2);
  const Floats dpooled = random_floats(pooled, 5);
  struct Run {
    Floats y, p, dx, dw, db;
    std::vector<int32_t> arg;
  };
  auto run = [&](int threads) {
    Run r{Floats(static_cast<size_t>(out)), Floats(static_cast<size_t>(pooled)),
          Floats(in.x.size()), Floats(in.w.size()), Floats(in.b.size()),
          std::vector<int32_t>(static_cast<size_t>(pooled))};
    at_threads(threads, [&] {
      cpu::fast::ConvWorkspace ws;
      cpu::fast::conv_forward(in.x.data(), in.w.data(), in.b.data(), c.relu, d, r.y.data(), ws);
      cpu::fast::conv_pool_forward(in.x.data(), in.w.data(), in.b.data(), c.relu, d, r.p.data(),
                                   r.arg.data(), ws);
      cpu::fast::conv_pool_backward(in.x.data(), in.w.data(), r.p.data(), dpooled.data(),
                                    r.arg.data(), c.relu, d, r.dx.data(), r.dw.data(), r.db.data(),
                                    ws);
    });
    return r;
  };
  const Run one = run(1);
  for (const int threads : {2, 3}) {
    const Run r = run(threads);
    EXPECT_TRUE(same_bits(r.y, one.y)) << threads << " threads";
    EXPECT_TRUE(same_bits(r.p, one.p)) << threads << " threads";
    EXPECT_EQ(r.arg, one.arg) << threads << " threads";
    EXPECT_TRUE(same_bits(r.dx, one.dx)) << threads << " threads";
    EXPECT_TRUE(same_bits(r.dw, one.dw)) << threads << " threads";
    EXPECT_TRUE(same_bits(r.db, one.db)) << threads << " threads";
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, FastConv, ::testing::ValuesIn(kConvCases),
                         [](const auto& p) { return std::string(p.param.name); });

TEST(FastConvSupport, TakesMultiplesOfSixteenOutputChannelsOnly) {
  EXPECT_TRUE(cpu::fast::conv_supported({128, 1, 28, 28, 32, 3, 1}));
  EXPECT_TRUE(cpu::fast::conv_supported({128, 32, 14, 14, 64, 3, 1}));
  EXPECT_FALSE(cpu::fast::conv_supported({128, 1, 28, 28, 10, 3, 1}));
  EXPECT_FALSE(cpu::fast::conv_supported({128, 1, 28, 28, 8, 3, 1}));
}

TEST(FastDropout, EqualsTheReferenceBitForBit) {
  for (const int64_t count : {int64_t{1}, int64_t{7}, int64_t{127}, int64_t{128}, int64_t{129},
                              int64_t{4099}, int64_t{128 * 3136 + 5}}) {
    for (const float rate : {0.0f, 0.25f, 0.3f, 0.5f, 0.9f}) {
      // A seed with both 32-bit halves set, a layer and a step past 2^32 in no part.
      const cpu::DropoutKey key{0x123456789abcdefull, 6, 1234567, rate};
      const Floats x = random_floats(count, 7);
      Floats ref(x.size(), kNaN), got(x.size(), kNaN);
      cpu::dropout_forward(x.data(), ref.data(), count, key);
      cpu::fast::dropout(x.data(), got.data(), count, key);
      EXPECT_TRUE(same_bits(got, ref)) << "count " << count << " rate " << rate;
      Floats in_place = x;
      cpu::fast::dropout(in_place.data(), in_place.data(), count, key);
      EXPECT_TRUE(same_bits(in_place, ref)) << "in place, count " << count << " rate " << rate;
    }
  }
  // At 1 and 3 threads too (the groups are split over threads, never the draws).
  const int64_t count = 128 * 3136;
  const cpu::DropoutKey key{42, 6, 9, 0.25f};
  const Floats x = random_floats(count, 8);
  Floats one(x.size()), three(x.size());
  at_threads(1, [&] { cpu::fast::dropout(x.data(), one.data(), count, key); });
  at_threads(3, [&] { cpu::fast::dropout(x.data(), three.data(), count, key); });
  EXPECT_TRUE(same_bits(one, three));
}

TEST(FastAdam, EqualsTheReferenceBitForBitWithAndWithoutWeightDecay) {
  const int64_t count = 421'642;  // the seed model: spans of 8,192 and a partial last one
  const Floats p0 = random_floats(count, 9), g = random_floats(count, 10, -0.01f, 0.01f);
  const Floats m0 = random_floats(count, 11, -0.001f, 0.001f);
  const Floats v0 = random_floats(count, 12, 0.0f, 1e-5f);
  std::vector<uint8_t> mask(static_cast<size_t>(count));
  for (size_t i = 0; i < mask.size(); ++i) mask[i] = (i / 1000) % 3 != 0;
  for (const float decay : {0.0f, 4e-6f}) {
    Floats p = p0, m = m0, v = v0, rp = p0, rm = m0, rv = v0;
    cpu::adam_update(rp.data(), g.data(), rm.data(), rv.data(), count, 1e-3f, 0.9f, 0.999f, 1e-7f,
                     decay, mask.data());
    cpu::fast::adam_update(p.data(), g.data(), m.data(), v.data(), count, 1e-3f, 0.9f, 0.999f,
                           1e-7f, decay, mask.data());
    EXPECT_TRUE(same_bits(p, rp)) << "decay " << decay;
    EXPECT_TRUE(same_bits(m, rm)) << "decay " << decay;
    EXPECT_TRUE(same_bits(v, rv)) << "decay " << decay;
  }
}

// --- whole steps --------------------------------------------------------------------------------

struct Batch {
  std::vector<uint8_t> images, labels;
  std::vector<int32_t> order;
  explicit Batch(int64_t n) {
    std::mt19937 rng(77);
    images.resize(static_cast<size_t>(n * 784));
    labels.resize(static_cast<size_t>(n));
    order.resize(static_cast<size_t>(n));
    for (auto& p : images) p = static_cast<uint8_t>(rng() % 256);
    for (auto& l : labels) l = static_cast<uint8_t>(rng() % 10);
    std::iota(order.begin(), order.end(), 0);
  }
};

template <class Net>
void init_params(Net& net) {
  std::vector<float> init(static_cast<size_t>(net.graph().param_count()));
  glorot_uniform_init<float>(net.graph(), 42, init);
  std::copy(init.begin(), init.end(), net.params());
}

// One training step of the seed model at batch 128 (dropout on) through Network<CpuFastBackend>,
// with both conv + pool pairs fused, against Network<CpuBackend<double>> from the same parameters
// and batch: the logits, the loss and every parameter's gradient.
TEST(FastBackend, SeedModelStepMatchesTheDoubleReference) {
  const int64_t n = 128;
  const Graph g = Graph::build(ModelSpec::seed());
  const Batch batch(n);
  CpuFastBackend fb;
  Network<CpuFastBackend> fast(fb, g, n, 42);
  CpuBackend<double> db;
  Network<CpuBackend<double>> ref(db, g, n, 42);
  init_params(fast);
  std::vector<float> init(fast.params(), fast.params() + g.param_count());
  std::copy(init.begin(), init.end(), ref.params());
  ASSERT_TRUE(fast.fused_with_pool(0));
  ASSERT_TRUE(fast.fused_with_pool(2));

  fb.gather(batch.images.data(), batch.labels.data(), 784, batch.order.data(), fast.counters(), n,
            fast.input(), fast.labels());
  db.gather(batch.images.data(), batch.labels.data(), 784, batch.order.data(), ref.counters(), n,
            ref.input(), ref.labels());
  // The fused forward leaves the convolutions' outputs alone: poison them to show it.
  std::fill_n(fast.activation(1), n * g.layers()[0].out.size(), kNaN);
  fast.forward(n, true);
  ref.forward(n, true);
  EXPECT_TRUE(std::isnan(fast.activation(1)[0]));
  const int64_t classes = g.classes();
  Floats logits(fast.logits(), fast.logits() + n * classes);
  Doubles ref_logits(ref.logits(), ref.logits() + n * classes);
  expect_close("logits", logits, ref_logits, 1e-5, 1e-4);
  fast.loss(n);
  ref.loss(n);
  EXPECT_NEAR(fast.metric_sums()[kLossSum], ref.metric_sums()[kLossSum],
              1e-5 * ref.metric_sums()[kLossSum]);
  fast.backward(n);
  ref.backward(n);
  for (const ParamTensor& t : g.param_tensors()) {
    const Floats got(fast.grads() + t.offset, fast.grads() + t.offset + t.size);
    const Doubles want(ref.grads() + t.offset, ref.grads() + t.offset + t.size);
    expect_close((g.layers()[static_cast<size_t>(t.layer)].name + " gradient").c_str(), got, want,
                 1e-5, 1e-4);
  }
}

// ||a - b|| / ||b||.
double relative_distance(const std::vector<float>& a, const std::vector<float>& b) {
  double d = 0, n = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    d += (double{a[i]} - b[i]) * (double{a[i]} - b[i]);
    n += double{b[i]} * b[i];
  }
  return std::sqrt(d / n);
}

// Whole epochs on the engine: the fast backend against the float reference backend, which takes
// every op from engine/cpu_ops.hpp. Same data, seed and shuffle; after 20 steps the loss and
// accuracy agree, and so do the parameters as a whole. (Not element by element: Adam divides by
// the root of the gradient's second moment, so a weight whose gradient is near zero may step
// either way on a rounding difference, by up to the learning rate.)
TEST(FastBackend, TrainsLikeTheReferenceBackendOverManySteps) {
  const Graph g = Graph::build(ModelSpec::seed());
  const int64_t count = 20 * 32;
  const Batch data(count);
  EngineOptions eo;
  eo.batch_size = 32;
  BasicEngine<CpuFastBackend> fast(g, eo);
  BasicEngine<CpuBackend<float>> ref(g, eo);
  for (Engine* e : {static_cast<Engine*>(&fast), static_cast<Engine*>(&ref)})
    e->set_dataset({data.images.data(), data.labels.data(), count, Shape{1, 28, 28}});
  std::vector<int32_t> idx(static_cast<size_t>(count));
  std::iota(idx.begin(), idx.end(), 0);
  const Metrics a = fast.train_epoch(idx, 0), b = ref.train_epoch(idx, 0);
  EXPECT_NEAR(a.loss, b.loss, 1e-4 * b.loss);
  EXPECT_NEAR(a.accuracy, b.accuracy, 2.0 / count);
  EXPECT_LT(relative_distance(fast.parameters(), ref.parameters()), 1e-3);
  // And they moved: 20 Adam steps of 1e-3 are far more than that from the start.
  BasicEngine<CpuFastBackend> start(g, eo);
  EXPECT_GT(relative_distance(start.parameters(), ref.parameters()), 1e-2);
}

// Layers the fast kernels do not take go to the reference ops, and train the same.
TEST(FastBackend, OtherShapesTakeTheReferencePath) {
  const Graph g = Graph::build(ModelSpec::parse("conv10,pool,conv16,conv16,pool,dense8"));
  CpuFastBackend fb;
  Network<CpuFastBackend> net(fb, g, 8, 1);
  EXPECT_FALSE(net.fused_with_pool(0));  // 10 output channels
  EXPECT_FALSE(net.fused_with_pool(2));  // not followed by a pool
  EXPECT_TRUE(net.fused_with_pool(3));
  EngineOptions eo;
  eo.batch_size = 8;
  BasicEngine<CpuFastBackend> fast(g, eo);
  BasicEngine<CpuBackend<float>> ref(g, eo);
  const Batch data(24);
  for (Engine* e : {static_cast<Engine*>(&fast), static_cast<Engine*>(&ref)})
    e->set_dataset({data.images.data(), data.labels.data(), 24, Shape{1, 28, 28}});
  std::vector<int32_t> idx(24);
  std::iota(idx.begin(), idx.end(), 0);
  const Metrics a = fast.train_epoch(idx, 0), b = ref.train_epoch(idx, 0);
  EXPECT_NEAR(a.loss, b.loss, 1e-4 * b.loss);
  EXPECT_LT(relative_distance(fast.parameters(), ref.parameters()), 1e-3);
  // Inference never fuses: every activation is written (explain and saliency read them).
  const std::vector<uint8_t> one(data.images.begin(), data.images.begin() + 784);
  const auto fa = fast.activations(one), ra = ref.activations(one);
  ASSERT_EQ(fa.size(), ra.size());
  for (size_t i = 0; i < fa.size(); ++i)
    expect_close(("activation " + std::to_string(i)).c_str(), fa[i],
                 Doubles(ra[i].begin(), ra[i].end()), 1e-4, 1e-3);
}

}  // namespace
}  // namespace mg
