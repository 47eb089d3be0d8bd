// The executor as a whole: the model's gradient against finite differences with dropout on, the
// epoch shuffle, determinism, and that training on a small synthetic task learns.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>

#include "engine/basic_engine.hpp"
#include "engine/cpu_backend.hpp"
#include "engine/init.hpp"
#include "engine/network.hpp"
#include "test_util.hpp"

namespace mg {
namespace {

using DoubleNet = Network<CpuBackend<double>>;

// Which ReLUs are open and which pool inputs won: the piecewise-linear region the input lies in.
std::vector<int64_t> region(DoubleNet& net, int64_t n) {
  std::vector<int64_t> sig;
  const auto& layers = net.graph().layers();
  for (size_t i = 0; i < layers.size(); ++i) {
    const Layer& l = layers[i];
    if (l.relu) {
      const double* y = net.activation(i + 1);
      for (int64_t j = 0; j < n * l.out.size(); ++j) sig.push_back(y[j] > 0);
    }
    if (l.kind == LayerKind::kMaxPool) {
      const int32_t* a = net.pool_argmax(i);
      sig.insert(sig.end(), a, a + n * l.out.size());
    }
  }
  return sig;
}

// The L2 penalty computed here from the graph's tensor roles, independently of the engine.
double kernel_penalty(DoubleNet& net) {
  double sum = 0;
  for (const ParamTensor& t : net.graph().param_tensors()) {
    if (t.role != ParamRole::kKernel) continue;
    for (int64_t i = t.offset; i < t.offset + t.size; ++i) sum += net.params()[i] * net.params()[i];
  }
  return net.l2() * sum;
}

// Checks d(mean loss)/d(param) for the chosen parameters (with the network's L2 penalty, if any). A central difference that moves the
// input across a ReLU kink or a pooling tie measures no derivative, so such parameters are
// skipped (as Caffe's checker does), and the test asserts that few were.
void check_model_gradient(DoubleNet& net, int64_t n, const std::vector<int64_t>& which) {
  const int64_t classes = net.graph().classes();
  auto loss = [&] {
    net.forward(n, true);
    return cpu::softmax_xent<double>(net.logits(), net.labels(), n, classes, nullptr).loss /
               static_cast<double>(n) +
           kernel_penalty(net);
  };
  net.forward(n, true);
  const std::vector<int64_t> base = region(net, n);
  net.loss(n);
  net.backward(n);
  net.regularize(n, true);
  const std::vector<double> analytic(net.grads(), net.grads() + net.graph().param_count());
  const test::FdTolerance tol;
  int skipped = 0, failures = 0;
  for (const int64_t i : which) {
    double& p = net.params()[i];
    const double saved = p;
    p = saved + tol.h;
    const double up = loss();
    const bool up_same = region(net, n) == base;
    p = saved - tol.h;
    const double down = loss();
    const bool down_same = region(net, n) == base;
    p = saved;
    if (!up_same || !down_same) {
      ++skipped;
      continue;
    }
    const double numeric = (up - down) / (2 * tol.h);
    const double bound = tol.atol + tol.rtol * std::max(std::abs(analytic[i]), std::abs(numeric));
    if (std::abs(analytic[i] - numeric) > bound && ++failures <= 5) {
      ADD_FAILURE() << "param " << i << ": analytic " << analytic[i] << " vs numeric " << numeric;
    }
  }
  EXPECT_EQ(failures, 0);
  EXPECT_LE(skipped, static_cast<int>(which.size()) / 10) << "too many kinks to trust the check";
}

// Every index of the flat parameter buffer, the moving statistics' tail included.
std::vector<int64_t> every_param(const Graph& g) {
  std::vector<int64_t> all(static_cast<size_t>(g.param_count()));
  std::iota(all.begin(), all.end(), 0);
  return all;
}

void fill_batch(DoubleNet& net, int64_t n, uint64_t seed) {
  const auto x = test::random_vector(n * net.graph().input().size(), seed, 0.0, 1.0);
  std::copy(x.begin(), x.end(), net.input());
  for (int64_t i = 0; i < n; ++i) net.labels()[i] = static_cast<int32_t>((i * 3 + 1) % net.graph().classes());
}

TEST(ModelGradient, SmallModelEveryParameterWithDropout) {
  const Graph g = Graph::build(ModelSpec::parse("conv3,pool,conv5,pool,drop0.3,dense7,drop0.5"),
                               Shape{2, 8, 6}, 4);
  CpuBackend<double> be;
  DoubleNet net(be, g, 3, 99);
  glorot_uniform_init<double>(g, 99, {net.params(), static_cast<size_t>(g.param_count())});
  for (int64_t i = 0; i < g.param_count(); ++i) net.params()[i] += 0.01 * std::sin(double(i));  // nonzero biases
  net.counters()[kStepCounter] = 5;  // a step whose masks drop some of these few elements
  fill_batch(net, 3, 7);
  const std::vector<int64_t> all = every_param(g);
  check_model_gradient(net, 3, all);
}

// Kernel sizes 1, 5, 7 and 3, 'same' and 'valid', activation-free conv and dense layers and the
// ReLU layer, every parameter.
TEST(ModelGradient, KernelSizesPaddingsAndTheReluLayer) {
  for (const char* spec : {"conv3k5,pool,conv4k3vn,relu,dense5n,relu,drop0.2",
                           "conv2k7v,conv3k1n,relu,dense6", "conv2k7n,relu,pool,conv3k3vn,dense4n"}) {
    const Graph g = Graph::build(ModelSpec::parse(spec), Shape{2, 10, 9}, 4);
    CpuBackend<double> be;
    DoubleNet net(be, g, 3, 17);
    glorot_uniform_init<double>(g, 17, {net.params(), static_cast<size_t>(g.param_count())});
    for (int64_t i = 0; i < g.param_count(); ++i) net.params()[i] += 0.01 * std::sin(double(i));
    net.counters()[kStepCounter] = 2;
    fill_batch(net, 3, 8);
    const std::vector<int64_t> all = every_param(g);
    SCOPED_TRACE(spec);
    check_model_gradient(net, 3, all);
  }
}

// Keras' kernel_regularizer l2: d/dw of l2 * sum(w^2) = 2 l2 w on every conv and dense kernel,
// nothing on biases. A large factor, so the penalty is a sizeable part of every kernel gradient.
TEST(ModelGradient, L2PenaltyOnKernelsOnly) {
  const Graph g = Graph::build(ModelSpec::parse("conv3k5,pool,conv4n,relu,drop0.3,dense7"),
                               Shape{2, 8, 6}, 4);
  CpuBackend<double> be;
  DoubleNet net(be, g, 3, 41, {}, {}, 0.05);
  glorot_uniform_init<double>(g, 41, {net.params(), static_cast<size_t>(g.param_count())});
  for (int64_t i = 0; i < g.param_count(); ++i) net.params()[i] += 0.01 * std::sin(double(i));
  net.counters()[kStepCounter] = 3;
  fill_batch(net, 3, 9);
  const std::vector<int64_t> all = every_param(g);
  check_model_gradient(net, 3, all);

  // The term itself: exactly 2 l2 w added on kernels, biases untouched.
  net.forward(3, true);
  net.loss(3);
  net.backward(3);
  const std::vector<double> data_grad(net.grads(), net.grads() + g.param_count());
  net.regularize(3, true);
  int kernels = 0, biases = 0;
  for (const ParamTensor& t : g.param_tensors()) {
    for (int64_t i = t.offset; i < t.offset + t.size; ++i) {
      const double want = data_grad[i] + (t.role == ParamRole::kKernel ? 0.1 * net.params()[i] : 0.0);
      EXPECT_DOUBLE_EQ(net.grads()[i], want) << i;
    }
    (t.role == ParamRole::kKernel ? kernels : biases) += 1;
  }
  EXPECT_EQ(kernels, 4);  // conv2d, conv2d_1, dense, dense_1 (the classifier)
  EXPECT_EQ(biases, 4);
}

// Batch normalization after a conv and after a dense layer, with the ReLU layer after it and
// dropout: every parameter (the moving statistics of the tail included: the training loss does not
// depend on them, so both gradients are 0), for a full batch of 2, a partial batch (3 of a planned
// 4), and a dense BN over a batch of one sample (variance 0: output beta, Keras' behaviour).
TEST(ModelGradient, BatchNormalizationAfterConvAndDense) {
  struct Case {
    const char* spec;
    int64_t planned, n;
  };
  for (const Case& c : {Case{"conv3n,bn,relu,pool,conv4k5n,bn,relu,dense5n,bn,relu,drop0.2", 2, 2},
                        Case{"conv3n,bn,relu,pool,dense5n,bn,relu", 4, 3},
                        Case{"conv2,pool,dense6n,bn,relu,dense4", 3, 1}}) {
    const Graph g = Graph::build(ModelSpec::parse(c.spec), Shape{2, 8, 6}, 4);
    CpuBackend<double> be;
    DoubleNet net(be, g, c.planned, 23);
    glorot_uniform_init<double>(g, 23, {net.params(), static_cast<size_t>(g.param_count())});
    // Not the initial gamma 1 / beta 0 / moving 0 and 1: nothing cancels by accident.
    for (int64_t i = 0; i < g.param_count(); ++i) net.params()[i] += 0.05 * std::sin(double(i));
    net.counters()[kStepCounter] = 3;
    fill_batch(net, c.n, 31);
    const std::vector<int64_t> all = every_param(g);
    SCOPED_TRACE(c.spec);
    check_model_gradient(net, c.n, all);
    net.forward(c.n, true);
    for (int64_t i = 0; i < c.n * g.classes(); ++i) ASSERT_TRUE(std::isfinite(net.logits()[i]));
    for (const Layer& l : g.layers()) {
      if (l.kind != LayerKind::kBatchNorm) continue;
      for (int64_t k = 0; k < l.stats_size; ++k) EXPECT_EQ(net.grads()[l.stats_offset + k], 0.0);
    }
  }
}

// The whole model's gradient with batch normalization and the L2 penalty together: the penalty's
// 2 l2 w lands on the conv and dense kernels only, never on BN's gamma and beta or the moving
// statistics.
TEST(ModelGradient, BatchNormalizationWithL2) {
  const Graph g = Graph::build(ModelSpec::parse("conv3n,bn,relu,pool,dense5n,bn,relu,drop0.2"),
                               Shape{2, 8, 6}, 4);
  CpuBackend<double> be;
  DoubleNet net(be, g, 3, 43, {}, {}, 0.05);
  glorot_uniform_init<double>(g, 43, {net.params(), static_cast<size_t>(g.param_count())});
  for (int64_t i = 0; i < g.param_count(); ++i) net.params()[i] += 0.05 * std::sin(double(i));
  net.counters()[kStepCounter] = 3;
  fill_batch(net, 3, 17);
  const std::vector<int64_t> all = every_param(g);
  check_model_gradient(net, 3, all);

  net.forward(3, true);
  net.loss(3);
  net.backward(3);
  const std::vector<double> data_grad(net.grads(), net.grads() + g.param_count());
  net.regularize(3, true);
  const std::vector<uint8_t> mask = g.kernel_mask();
  int bn_layers = 0;
  for (const Layer& l : g.layers()) {
    if (l.kind != LayerKind::kBatchNorm) continue;
    ++bn_layers;
    for (int64_t i = l.weight_offset; i < l.bias_offset + l.bias_size; ++i) {
      EXPECT_EQ(mask[static_cast<size_t>(i)], 0) << l.name << " " << i;
      EXPECT_EQ(net.grads()[i], data_grad[i]) << l.name << " " << i;
    }
    for (int64_t i = l.stats_offset; i < l.stats_offset + l.stats_size; ++i) {
      EXPECT_EQ(mask[static_cast<size_t>(i)], 0) << l.name << " " << i;
    }
  }
  EXPECT_EQ(bn_layers, 2);
}

TEST(ModelGradient, SeedModelSampledParametersWithDropout) {
  const Graph g = Graph::build(ModelSpec::seed());
  CpuBackend<double> be;
  DoubleNet net(be, g, 2, 42);
  glorot_uniform_init<double>(g, 42, {net.params(), static_cast<size_t>(g.param_count())});
  for (const Layer& l : g.layers())
    for (int64_t i = 0; i < l.bias_size; ++i) net.params()[l.bias_offset + i] = 0.05 * std::cos(double(i));
  fill_batch(net, 2, 8);
  // 24 parameters from every weight and bias tensor of every layer.
  std::mt19937_64 rng(3);
  std::vector<int64_t> which;
  for (const Layer& l : g.layers()) {
    for (const auto& [off, size] : {std::pair{l.weight_offset, l.weight_size}, std::pair{l.bias_offset, l.bias_size}}) {
      if (size == 0) continue;
      for (int k = 0; k < 24; ++k) which.push_back(off + static_cast<int64_t>(rng() % static_cast<uint64_t>(size)));
    }
  }
  check_model_gradient(net, 2, which);
}

TEST(ModelGradient, DropoutChangesTheGradientOnlyThroughItsMask) {
  // Training and inference differ exactly by the dropout layers.
  const Graph g = Graph::build(ModelSpec::parse("conv2,pool,drop0.5,dense4"), Shape{1, 4, 4}, 3);
  CpuBackend<double> be;
  DoubleNet net(be, g, 2, 1);
  glorot_uniform_init<double>(g, 1, {net.params(), static_cast<size_t>(g.param_count())});
  fill_batch(net, 2, 9);
  net.forward(2, false);
  const std::vector<double> eval(net.logits(), net.logits() + 6);
  net.forward(2, true);
  const std::vector<double> train(net.logits(), net.logits() + 6);
  EXPECT_NE(eval, train);
  net.forward(2, false);
  EXPECT_EQ(eval, std::vector<double>(net.logits(), net.logits() + 6));
}

// The saliency (d(predicted logit)/d(input) by the backward pass, dropout off) against central
// differences of that logit in double, over every input pixel; kinks are skipped as above. A
// model that starts with flatten (whose input gradient is the dense layer's) as well.
TEST(Saliency, MatchesFiniteDifferencesOfThePredictedLogit) {
  for (const char* spec : {"conv3,pool,conv4,pool,drop0.5,dense6", "dense6,drop0.5"}) {
  SCOPED_TRACE(spec);
  const Graph g = Graph::build(ModelSpec::parse(spec), Shape{1, 8, 8}, 4);
  CpuBackend<double> be;
  DoubleNet net(be, g, 2, 5);
  glorot_uniform_init<double>(g, 5, {net.params(), static_cast<size_t>(g.param_count())});
  for (int64_t i = 0; i < g.param_count(); ++i) net.params()[i] += 0.01 * std::sin(double(i));
  const int64_t n = 2, size = g.input().size(), classes = g.classes();
  fill_batch(net, n, 13);
  const std::vector<double> x(net.input(), net.input() + n * size);
  std::vector<double> grad(static_cast<size_t>(n * size));
  int32_t predicted[2];
  const std::vector<double> params(net.params(), net.params() + g.param_count());
  net.saliency(n, grad.data(), predicted);
  EXPECT_EQ(std::vector<double>(net.params(), net.params() + g.param_count()), params);
  EXPECT_EQ(net.counters()[kStepCounter], 0);
  net.forward(n, false);
  const std::vector<int64_t> base = region(net, n);
  for (int64_t i = 0; i < n; ++i) {
    const double* row = net.logits() + i * classes;
    EXPECT_EQ(predicted[i], std::max_element(row, row + classes) - row);
  }
  auto logit = [&](int64_t img) {
    net.forward(n, false);
    return net.logits()[img * classes + predicted[img]];
  };
  const test::FdTolerance tol;
  int skipped = 0, failures = 0, nonzero = 0;
  for (int64_t j = 0; j < n * size; ++j) {
    const int64_t img = j / size;
    double& p = net.input()[j];
    p = x[j] + tol.h;
    const double up = logit(img);
    const bool up_same = region(net, n) == base;
    p = x[j] - tol.h;
    const double down = logit(img);
    const bool down_same = region(net, n) == base;
    p = x[j];
    if (!up_same || !down_same) {
      ++skipped;
      continue;
    }
    const double numeric = (up - down) / (2 * tol.h);
    nonzero += grad[j] != 0;
    const double bound = tol.atol + tol.rtol * std::max(std::abs(grad[j]), std::abs(numeric));
    if (std::abs(grad[j] - numeric) > bound && ++failures <= 5) {
      ADD_FAILURE() << "pixel " << j << ": analytic " << grad[j] << " vs numeric " << numeric;
    }
  }
  EXPECT_EQ(failures, 0);
  EXPECT_LE(skipped, static_cast<int>(n * size) / 10);
  EXPECT_GT(nonzero, static_cast<int>(n * size) / 4)
      << "the input gradient should reach most pixels";
  }
}

// activations() runs the evaluate path's forward: its last layer is the logits, whose softmax is
// evaluate()'s probabilities, and the training state does not move.
TEST(CpuEngine, ActivationsAndSaliencyUseTheEvaluatePathAndKeepTheTrainingState) {
  const Graph g = Graph::build(ModelSpec::parse("conv4,pool,drop0.3,dense16"), Shape{1, 8, 8}, 4);
  EngineOptions opt;
  opt.batch_size = 3;  // five images: two batches, the last partial
  opt.seed = 21;
  auto engine = make_cpu_engine(g, opt);
  const int64_t count = 5, size = g.input().size(), classes = g.classes();
  std::vector<uint8_t> images(static_cast<size_t>(count * size)), labels(count, 0);
  for (size_t i = 0; i < images.size(); ++i)
    images[i] = static_cast<uint8_t>((i * 37 + i / 7) % 256);
  engine->set_dataset({images.data(), labels.data(), count, g.input()});
  const std::vector<int32_t> idx = {0, 1, 2, 3, 4};
  engine->train_epoch(idx, 0);
  const TrainingState before = engine->state();
  std::vector<float> probs;
  engine->evaluate(idx, &probs);
  const auto acts = engine->activations(images);
  ASSERT_EQ(acts.size(), g.layers().size());
  for (size_t i = 0; i < acts.size(); ++i) {
    EXPECT_EQ(static_cast<int64_t>(acts[i].size()), count * g.layers()[i].out.size());
  }
  const std::vector<float>& logits = acts.back();
  std::vector<int> predicted;
  const std::vector<float> sal = engine->saliency(images, &predicted);
  EXPECT_EQ(static_cast<int64_t>(sal.size()), count * size);
  EXPECT_TRUE(std::any_of(sal.begin(), sal.end(), [](float v) { return v != 0; }));
  for (int64_t i = 0; i < count; ++i) {
    const float* row = logits.data() + i * classes;
    const float top = *std::max_element(row, row + classes);
    double z = 0;
    for (int64_t k = 0; k < classes; ++k) z += std::exp(double(row[k]) - top);
    for (int64_t k = 0; k < classes; ++k) {
      EXPECT_NEAR(std::exp(double(row[k]) - top) / z, probs[i * classes + k], 1e-6);
    }
    EXPECT_EQ(predicted[i], std::max_element(row, row + classes) - row);
  }
  const TrainingState after = engine->state();
  EXPECT_EQ(after.params, before.params);
  EXPECT_EQ(after.adam_m, before.adam_m);
  EXPECT_EQ(after.adam_v, before.adam_v);
  EXPECT_EQ(after.step, before.step);
  EXPECT_THROW(engine->activations(std::span<const uint8_t>(images.data(), size - 1)),
               std::invalid_argument);
  // Training goes on exactly as if nothing had been asked in between.
  auto twin = make_cpu_engine(g, opt);
  twin->set_dataset({images.data(), labels.data(), count, g.input()});
  twin->train_epoch(idx, 0);
  twin->train_epoch(idx, 1);
  engine->train_epoch(idx, 1);
  EXPECT_EQ(engine->parameters(), twin->parameters());
}

TEST(EpochOrder, IsADeterministicPermutationThatChangesPerEpoch) {
  std::vector<int32_t> idx(1000);
  std::iota(idx.begin(), idx.end(), 5000);
  const auto a = epoch_order(idx, 42, 0);
  const auto b = epoch_order(idx, 42, 0);
  const auto c = epoch_order(idx, 42, 1);
  const auto d = epoch_order(idx, 43, 0);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  EXPECT_NE(a, d);
  EXPECT_EQ(std::set<int32_t>(a.begin(), a.end()), std::set<int32_t>(idx.begin(), idx.end()));
  EXPECT_NE(a, idx);
}

// A tiny task every working CNN learns: the label is the quadrant holding a bright square.
struct Quadrants {
  std::vector<uint8_t> images, labels;
  explicit Quadrants(int64_t n) : images(static_cast<size_t>(n) * 64), labels(static_cast<size_t>(n)) {
    std::mt19937 rng(5);
    for (int64_t i = 0; i < n; ++i) {
      const int q = static_cast<int>(rng() % 4);
      labels[i] = static_cast<uint8_t>(q);
      uint8_t* img = images.data() + i * 64;
      for (int p = 0; p < 64; ++p) img[p] = static_cast<uint8_t>(rng() % 40);
      const int oy = (q / 2) * 4 + static_cast<int>(rng() % 2), ox = (q % 2) * 4 + static_cast<int>(rng() % 2);
      for (int y = 0; y < 3; ++y)
        for (int x = 0; x < 3; ++x) img[(oy + y) * 8 + ox + x] = 255;
    }
  }
};

TEST(CpuEngine, LearnsASmallTaskAndIsDeterministic) {
  const Graph g = Graph::build(ModelSpec::parse("conv4,pool,drop0.1,dense16"), Shape{1, 8, 8}, 4);
  const Quadrants data(600);
  std::vector<int32_t> train(500), test(100);
  std::iota(train.begin(), train.end(), 0);
  std::iota(test.begin(), test.end(), 500);
  EngineOptions opt;
  opt.batch_size = 32;
  opt.seed = 11;
  opt.adam.lr = 3e-3;
  auto run = [&](std::vector<float>* params) {
    auto e = make_cpu_engine(g, opt);
    e->set_dataset({data.images.data(), data.labels.data(), 600, Shape{1, 8, 8}});
    const Metrics before = e->evaluate(test, nullptr);
    Metrics last;
    for (int epoch = 0; epoch < 8; ++epoch) last = e->train_epoch(train, epoch);
    EXPECT_EQ(e->step(), 8 * 16);  // 500 / 32 -> 15 full batches and one of 20
    EXPECT_EQ(last.count, 500);
    std::vector<float> probs;
    const Metrics after = e->evaluate(test, &probs);
    EXPECT_LT(after.loss, 0.5 * before.loss);
    EXPECT_GT(after.accuracy, 0.9);
    EXPECT_EQ(probs.size(), 400u);
    EXPECT_NEAR(std::accumulate(probs.begin(), probs.begin() + 4, 0.0), 1.0, 1e-5);
    *params = e->parameters();
  };
  std::vector<float> p1, p2;
  run(&p1);
  run(&p2);
  EXPECT_EQ(p1, p2);  // same seed, same bits: shuffles, masks and reductions are all deterministic
}

// Training updates the moving statistics (in the non-trainable tail) and inference uses them:
// after steps on one batch, the inference forward of that batch differs from the training one
// (which normalizes by the batch), and Adam never touches the tail except through the forward.
TEST(CpuEngine, BatchNormMovingStatisticsAreUpdatedInTrainingOnly) {
  const Graph g = Graph::build(ModelSpec::parse("conv4n,bn,relu,pool,dense8"), Shape{1, 8, 8}, 4);
  const Quadrants data(64);
  EngineOptions opt;
  opt.batch_size = 16;
  auto e = make_cpu_engine(g, opt);
  e->set_dataset({data.images.data(), data.labels.data(), 64, Shape{1, 8, 8}});
  const Layer& bn = g.layers()[1];
  const std::vector<float> p0 = e->parameters();
  for (int64_t k = 0; k < bn.out.c; ++k) {
    EXPECT_EQ(p0[bn.stats_offset + k], 0.0f);             // moving_mean
    EXPECT_EQ(p0[bn.stats_offset + bn.out.c + k], 1.0f);  // moving_var
    EXPECT_EQ(p0[bn.weight_offset + k], 1.0f);            // gamma
    EXPECT_EQ(p0[bn.bias_offset + k], 0.0f);              // beta
  }
  std::vector<int32_t> idx(64);
  std::iota(idx.begin(), idx.end(), 0);
  e->evaluate(idx, nullptr);
  EXPECT_EQ(e->parameters(), p0);  // inference changes nothing
  e->train_epoch(idx, 0);          // 4 steps
  const std::vector<float> p1 = e->parameters();
  // Four updates moved the moving mean 1 - 0.99^4 of the way to the batch means: nonzero.
  int moved = 0;
  for (int64_t k = 0; k < 2 * bn.out.c; ++k) moved += p1[bn.stats_offset + k] != p0[bn.stats_offset + k];
  EXPECT_EQ(moved, 2 * bn.out.c);
  for (int64_t k = 0; k < bn.out.c; ++k) EXPECT_GT(p1[bn.stats_offset + bn.out.c + k], 0.0f);
  const TrainingState s = e->state();
  for (int64_t k = 0; k < 2 * bn.out.c; ++k) {
    EXPECT_EQ(s.adam_m[bn.stats_offset + k], 0.0f);
    EXPECT_EQ(s.adam_v[bn.stats_offset + k], 0.0f);
  }
}

// Counter-based RNG + saved moments and step: 2 epochs, save, a fresh engine, 2 more == 4 epochs.
TEST(CpuEngine, ResumeFromStateIsBitwiseExact) {
  for (const char* spec : {"conv4,pool,drop0.3,dense16,drop0.5",
                           "conv4n,bn,relu,pool,drop0.3,dense16n,bn,relu,drop0.5"}) {
  SCOPED_TRACE(spec);
  const Graph g = Graph::build(ModelSpec::parse(spec), Shape{1, 8, 8}, 4);
  const Quadrants data(300);
  std::vector<int32_t> train(300);
  std::iota(train.begin(), train.end(), 0);
  EngineOptions opt;
  opt.batch_size = 64;
  opt.seed = 5;
  const Dataset ds{data.images.data(), data.labels.data(), 300, Shape{1, 8, 8}};
  auto straight = make_cpu_engine(g, opt);
  straight->set_dataset(ds);
  for (int e = 0; e < 4; ++e) straight->train_epoch(train, e);

  auto first = make_cpu_engine(g, opt);
  first->set_dataset(ds);
  for (int e = 0; e < 2; ++e) first->train_epoch(train, e);
  const TrainingState saved = first->state();
  EXPECT_EQ(saved.step, 2 * 5);
  auto resumed = make_cpu_engine(g, opt);
  resumed->set_dataset(ds);
  resumed->set_state(saved);
  for (int e = 2; e < 4; ++e) resumed->train_epoch(train, e);

  const TrainingState a = straight->state(), b = resumed->state();
  EXPECT_EQ(a.step, b.step);
  EXPECT_EQ(a.params, b.params);
  EXPECT_EQ(a.adam_m, b.adam_m);
  EXPECT_EQ(a.adam_v, b.adam_v);
  TrainingState wrong = saved;
  wrong.adam_v.pop_back();
  EXPECT_THROW(resumed->set_state(wrong), std::invalid_argument);
  }
}

// A learning rate set between steps is the one the next step uses: Adam's first update is about
// lr * sign(g), so twice the rate moves every parameter twice as far.
// Stopped after any step (the first, one in the middle, the last but one) and continued by a
// fresh engine from the TrainingState and the EpochPosition: the epoch's metrics and the state
// after the next epoch are those of an engine that never stopped, bit for bit. Dropout and
// augmentation on, a partial last batch (300 = 4 * 64 + 44).
TEST(CpuEngine, EpochStoppedAfterAnyStepContinuesBitwiseExactly) {
  const Graph g = Graph::build(ModelSpec::parse("conv4,pool,drop0.3,dense16,drop0.5"), Shape{1, 8, 8}, 4);
  const Quadrants data(300);
  std::vector<int32_t> train(300);
  std::iota(train.begin(), train.end(), 0);
  EngineOptions opt;
  opt.batch_size = 64;
  opt.seed = 9;
  opt.augment.enabled = true;
  const Dataset ds{data.images.data(), data.labels.data(), 300, Shape{1, 8, 8}};
  auto straight = make_cpu_engine(g, opt);
  straight->set_dataset(ds);
  straight->train_epoch(train, 0);
  const Metrics want = straight->train_epoch(train, 1);
  straight->train_epoch(train, 2);
  const TrainingState a = straight->state();
  for (const int64_t stop_after : {1, 2, 4}) {
    SCOPED_TRACE(stop_after);
    auto first = make_cpu_engine(g, opt);
    first->set_dataset(ds);
    first->train_epoch(train, 0);
    std::vector<int64_t> seen;
    const EpochPosition at = first->train_steps(
        train, 1, {}, [&](int64_t done, int64_t) { seen.push_back(done); },
        [&] { return static_cast<int64_t>(seen.size()) == stop_after; });
    ASSERT_EQ(at.steps_done, stop_after);
    EXPECT_EQ(at.sample_sum, static_cast<double>(stop_after * 64));
    auto resumed = make_cpu_engine(g, opt);
    resumed->set_dataset(ds);
    resumed->set_state(first->state());
    seen.clear();
    const EpochPosition end = resumed->train_steps(
        train, 1, at, [&](int64_t done, int64_t) { seen.push_back(done); }, {});
    EXPECT_EQ(end.steps_done, 5);
    EXPECT_EQ(seen.front(), stop_after + 1);  // the steps go on counting from the position
    const Metrics got = metrics_of(end);
    EXPECT_EQ(got.loss, want.loss);
    EXPECT_EQ(got.accuracy, want.accuracy);
    EXPECT_EQ(got.count, want.count);
    resumed->train_epoch(train, 2);
    const TrainingState b = resumed->state();
    EXPECT_EQ(a.step, b.step);
    EXPECT_EQ(a.params, b.params);
    EXPECT_EQ(a.adam_m, b.adam_m);
    EXPECT_EQ(a.adam_v, b.adam_v);
  }
  // stop() true from the start: one step runs; a position past the epoch's end is refused.
  auto e = make_cpu_engine(g, opt);
  e->set_dataset(ds);
  EXPECT_EQ(e->train_steps(train, 0, {}, {}, [] { return true; }).steps_done, 1);
  EpochPosition past;
  past.steps_done = 6;
  EXPECT_THROW(e->train_steps(train, 0, past, {}, {}), std::invalid_argument);
}

TEST(CpuEngine, SetLearningRateScalesTheNextUpdate) {
  const Graph g = Graph::build(ModelSpec::parse("conv4,pool,dense16"), Shape{1, 8, 8}, 4);
  const Quadrants data(64);
  const std::vector<int32_t> batch = [] {
    std::vector<int32_t> v(32);
    std::iota(v.begin(), v.end(), 0);
    return v;
  }();
  EngineOptions opt;
  opt.batch_size = 32;
  const Dataset ds{data.images.data(), data.labels.data(), 64, Shape{1, 8, 8}};
  auto moved = [&](double lr) {
    auto e = make_cpu_engine(g, opt);
    e->set_dataset(ds);
    EXPECT_EQ(e->learning_rate(), opt.adam.lr);
    const std::vector<float> p0 = e->parameters();
    if (lr != opt.adam.lr) e->set_learning_rate(lr);
    EXPECT_EQ(e->learning_rate(), lr);
    e->train_epoch(batch, 0);
    const std::vector<float> p1 = e->parameters();
    std::vector<double> d(p0.size());
    for (size_t i = 0; i < d.size(); ++i) d[i] = static_cast<double>(p1[i]) - p0[i];
    return d;
  };
  const std::vector<double> base = moved(opt.adam.lr), twice = moved(2 * opt.adam.lr);
  double worst = 0, largest = 0;
  for (size_t i = 0; i < base.size(); ++i) {
    worst = std::max(worst, std::abs(twice[i] - 2 * base[i]));
    largest = std::max(largest, std::abs(base[i]));
  }
  EXPECT_GT(largest, 0.5 * opt.adam.lr);
  EXPECT_LT(worst, 1e-3 * largest);
  auto e = make_cpu_engine(g, opt);
  EXPECT_THROW(e->set_learning_rate(0), std::invalid_argument);
  EXPECT_THROW(e->set_learning_rate(-1e-3), std::invalid_argument);
}

// Weight decay and the L2 penalty carry over a resume bit for bit as well (the decay rate lives
// in backend memory; the penalty is a pure function of the weights).
TEST(CpuEngine, ResumeWithWeightDecayAndL2IsBitwiseExact) {
  const Graph g = Graph::build(ModelSpec::parse("conv4,pool,drop0.3,dense16,drop0.5"), Shape{1, 8, 8}, 4);
  const Quadrants data(300);
  std::vector<int32_t> train(300);
  std::iota(train.begin(), train.end(), 0);
  EngineOptions opt;
  opt.batch_size = 64;
  opt.seed = 5;
  opt.adam.weight_decay = 0.05;
  opt.l2 = 1e-3;
  const Dataset ds{data.images.data(), data.labels.data(), 300, Shape{1, 8, 8}};
  auto straight = make_cpu_engine(g, opt);
  straight->set_dataset(ds);
  Metrics last_straight;
  for (int e = 0; e < 4; ++e) last_straight = straight->train_epoch(train, e);
  auto first = make_cpu_engine(g, opt);
  first->set_dataset(ds);
  for (int e = 0; e < 2; ++e) first->train_epoch(train, e);
  auto resumed = make_cpu_engine(g, opt);
  resumed->set_dataset(ds);
  resumed->set_state(first->state());
  Metrics last_resumed;
  for (int e = 2; e < 4; ++e) last_resumed = resumed->train_epoch(train, e);
  EXPECT_EQ(straight->state().params, resumed->state().params);
  EXPECT_EQ(straight->state().adam_m, resumed->state().adam_m);
  EXPECT_EQ(last_straight.loss, last_resumed.loss);
  EXPECT_EQ(last_straight.l2_loss, last_resumed.l2_loss);
  EXPECT_GT(last_straight.l2_loss, 0.0);

  // Without the two, the same seed ends elsewhere: they did something.
  EngineOptions plain = opt;
  plain.adam.weight_decay = 0;
  plain.l2 = 0;
  auto other = make_cpu_engine(g, plain);
  other->set_dataset(ds);
  for (int e = 0; e < 4; ++e) other->train_epoch(train, e);
  EXPECT_NE(other->parameters(), straight->parameters());
}

// The reported loss includes the penalty (as Keras' loss and val_loss do): evaluate() with l2 is
// the data loss plus l2 * sum(kernel^2) at the engine's weights, and l2_loss is that term.
TEST(CpuEngine, EvaluateLossIncludesTheL2Penalty) {
  const Graph g = Graph::build(ModelSpec::parse("conv4,pool,dense16"), Shape{1, 8, 8}, 4);
  const Quadrants data(100);
  std::vector<int32_t> idx(100);
  std::iota(idx.begin(), idx.end(), 0);
  const Dataset ds{data.images.data(), data.labels.data(), 100, Shape{1, 8, 8}};
  EngineOptions opt;
  opt.batch_size = 32;  // 3 full batches and one of 4: a per-batch term must still average right
  auto plain = make_cpu_engine(g, opt);
  opt.l2 = 2e-3;
  auto reg = make_cpu_engine(g, opt);
  plain->set_dataset(ds);
  reg->set_dataset(ds);
  EXPECT_EQ(plain->parameters(), reg->parameters());
  const std::vector<float> w = reg->parameters();
  double sum = 0;
  for (const ParamTensor& t : g.param_tensors()) {
    if (t.role != ParamRole::kKernel) continue;
    for (int64_t i = t.offset; i < t.offset + t.size; ++i) sum += double(w[i]) * double(w[i]);
  }
  const Metrics a = plain->evaluate(idx, nullptr), b = reg->evaluate(idx, nullptr);
  EXPECT_EQ(a.l2_loss, 0.0);
  EXPECT_NEAR(b.l2_loss, 2e-3 * sum, 1e-12 * sum);
  EXPECT_NEAR(b.loss, a.loss + b.l2_loss, 1e-12);
  EXPECT_EQ(a.accuracy, b.accuracy);
}

// Weight decay only touches kernels: after one step from the same weights, a bias is where it is
// without decay, bit for bit, and a kernel weight lr * wd * w further towards 0.
TEST(CpuEngine, WeightDecayNeverTouchesBiases) {
  const Graph g = Graph::build(ModelSpec::parse("conv4,pool,dense16"), Shape{1, 8, 8}, 4);
  const Quadrants data(32);
  std::vector<int32_t> idx(32);
  std::iota(idx.begin(), idx.end(), 0);
  const Dataset ds{data.images.data(), data.labels.data(), 32, Shape{1, 8, 8}};
  EngineOptions opt;
  opt.batch_size = 32;
  auto plain = make_cpu_engine(g, opt);
  opt.adam.weight_decay = 0.5;
  auto decayed = make_cpu_engine(g, opt);
  EXPECT_EQ(decayed->weight_decay(), 0.5);
  for (auto* e : {plain.get(), decayed.get()}) {
    e->set_dataset(ds);
    std::vector<float> p = e->parameters();  // nonzero biases, so a decay of them would show
    for (const ParamTensor& t : g.param_tensors()) {
      if (t.role == ParamRole::kBias) {
        for (int64_t i = t.offset; i < t.offset + t.size; ++i) p[i] = 0.1f + 0.01f * float(i % 7);
      }
    }
    e->set_parameters(p);
  }
  const std::vector<float> p0 = plain->parameters();
  plain->train_epoch(idx, 0);
  decayed->train_epoch(idx, 0);
  const std::vector<float> a = plain->parameters(), b = decayed->parameters();
  int kernels_checked = 0;
  for (const ParamTensor& t : g.param_tensors()) {
    for (int64_t i = t.offset; i < t.offset + t.size; ++i) {
      if (t.role == ParamRole::kBias) {
        EXPECT_EQ(a[i], b[i]) << "bias " << i;
      } else {
        // lr * wd * |w| = 5e-4 |w|; float rounding of a step near 1e-3 is ~1e-10.
        EXPECT_NEAR(b[i] - a[i], -1e-3 * 0.5 * p0[i], 1e-9 + 1e-6 * std::abs(p0[i])) << "kernel " << i;
        ++kernels_checked;
      }
    }
  }
  EXPECT_GT(kernels_checked, 0);
  EXPECT_THROW(decayed->set_weight_decay(-1), std::invalid_argument);
  EXPECT_THROW(decayed->set_weight_decay(std::nan("")), std::invalid_argument);
  EngineOptions bad;
  bad.l2 = -1;
  EXPECT_THROW(make_cpu_engine(g, bad), std::invalid_argument);
}

TEST(CpuEngine, RejectsIndicesOutsideTheDataset) {
  const Graph g = Graph::build(ModelSpec::parse("dense4"), Shape{1, 8, 8}, 4);
  const Quadrants data(10);
  auto e = make_cpu_engine(g, {});
  e->set_dataset({data.images.data(), data.labels.data(), 10, Shape{1, 8, 8}});
  const std::vector<int32_t> bad = {0, 10};
  EXPECT_THROW(e->train_epoch(bad, 0), std::out_of_range);
}

}  // namespace
}  // namespace mg
