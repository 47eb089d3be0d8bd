// Determinism on the CPU (docs/reliability.md). The same epoch twice gives the same parameters,
// Adam moments and metrics, bit for bit. Every CPU op of ours, and our GEMM (engine/blas.hpp cuts
// it into parts fixed by the shape, one single-threaded OpenBLAS call each), gives the same bits at
// 1, 2 and 3 OpenMP threads, and so does a whole epoch. tests/e2e_reliability.sh checks the
// program's checkpoint files.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "engine/cpu_ops.hpp"
#include "engine/engine.hpp"
#include "engine/graph.hpp"
#include "engine/model_spec.hpp"

namespace mg {
namespace {

struct Result {
  TrainingState state;
  Metrics train, val;
};

// Fresh random images and labels: 1,000 of them, so an epoch has full batches and a partial one.
struct RandomSet {
  std::vector<uint8_t> images, labels;
  RandomSet() {
    std::mt19937 rng(2024);
    images.resize(1000 * 28 * 28);
    labels.resize(1000);
    for (auto& p : images) p = static_cast<uint8_t>(rng() % 256);
    for (auto& l : labels) l = static_cast<uint8_t>(rng() % 10);
  }
};

Result train_one_epoch(const std::string& spec, int threads, bool augment = false) {
  static const RandomSet data;
  const int saved = omp_get_max_threads();
  omp_set_num_threads(threads);
  const Graph g = Graph::build(ModelSpec::parse(spec));
  EngineOptions eo;
  eo.batch_size = 96;
  eo.seed = 11;
  eo.augment.enabled = augment;
  std::unique_ptr<Engine> e = make_cpu_engine(g, eo);
  e->set_dataset({data.images.data(), data.labels.data(), 1000, Shape{1, 28, 28}});
  std::vector<int32_t> train(900), val(100);
  std::iota(train.begin(), train.end(), 0);
  std::iota(val.begin(), val.end(), 900);
  Result r;
  r.train = e->train_epoch(train, 0);
  r.val = e->evaluate(val, nullptr);
  r.state = e->state();
  omp_set_num_threads(saved);
  return r;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

size_t differing(const std::vector<float>& a, const std::vector<float>& b) {
  size_t n = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i)
    n += std::memcmp(&a[i], &b[i], sizeof(float)) != 0;
  return n;
}

void expect_identical(const Result& a, const Result& b) {
  EXPECT_TRUE(same_bits(a.state.params, b.state.params))
      << differing(a.state.params, b.state.params) << " of " << a.state.params.size()
      << " parameters differ";
  EXPECT_TRUE(same_bits(a.state.adam_m, b.state.adam_m))
      << differing(a.state.adam_m, b.state.adam_m) << " Adam first moments differ";
  EXPECT_TRUE(same_bits(a.state.adam_v, b.state.adam_v))
      << differing(a.state.adam_v, b.state.adam_v) << " Adam second moments differ";
  EXPECT_EQ(a.state.step, b.state.step);
  // Metrics are sums over the batch: compared exactly, not within a tolerance.
  EXPECT_EQ(a.train.loss, b.train.loss);
  EXPECT_EQ(a.train.accuracy, b.train.accuracy);
  EXPECT_EQ(a.val.loss, b.val.loss);
  EXPECT_EQ(a.val.accuracy, b.val.accuracy);
}

class Determinism : public ::testing::TestWithParam<std::string> {};

TEST_P(Determinism, SameRunTwiceIsBitIdentical) {
  const Result a = train_one_epoch(GetParam(), 2), b = train_one_epoch(GetParam(), 2);
  ASSERT_GT(a.state.step, 0);
  expect_identical(a, b);
}

TEST_P(Determinism, OneTwoAndThreeThreadsAreBitIdentical) {
  const Result one = train_one_epoch(GetParam(), 1);
  ASSERT_GT(one.state.step, 0);
  expect_identical(one, train_one_epoch(GetParam(), 2));
  expect_identical(one, train_one_epoch(GetParam(), 3));
}

INSTANTIATE_TEST_SUITE_P(Models, Determinism,
                         ::testing::Values("dense16", "conv4,pool,dense16,drop0.25",
                                           "conv3,pool,conv5,pool,drop0.3,dense12,drop0.5"),
                         [](const auto& param) { return "model" + std::to_string(param.index); });

// ---- each CPU op of ours, at 1 and 2 threads
// -----------------------------------------------------

std::vector<float> random_floats(size_t n, uint32_t seed, float range = 2) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-range, range);
  std::vector<float> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

// Runs f (which returns its outputs as floats) at 1 and at 2 threads; the outputs must be equal
// bit for bit and not all zero (poisoned buffers are overwritten).
template <class F>
void expect_thread_count_independent(const char* what, F f) {
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  const std::vector<float> one = f();
  omp_set_num_threads(2);
  const std::vector<float> two = f();
  omp_set_num_threads(saved);
  EXPECT_TRUE(same_bits(one, two)) << what << ": " << differing(one, two) << " of " << one.size()
                                   << " values differ between 1 and 2 threads";
  EXPECT_TRUE(std::any_of(one.begin(), one.end(), [](float v) { return v != 0; })) << what;
}

TEST(CpuOps, SameBitsAtOneAndTwoThreads) {
  constexpr int64_t n = 37, c = 5, h = 12, w = 10, co = 6;
  const cpu::ConvDims d{n, c, h, w, co};
  const std::vector<float> x = random_floats(n * c * h * w, 1);
  const std::vector<float> col = random_floats(d.k() * d.cols(), 2);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  expect_thread_count_independent("im2col_3x3", [&] {
    std::vector<float> out(d.k() * d.cols(), nan);
    cpu::im2col_3x3(x.data(), d, out.data());
    return out;
  });
  expect_thread_count_independent("col2im_3x3", [&] {
    std::vector<float> out(x.size(), nan);
    cpu::col2im_3x3(col.data(), d, out.data());
    return out;
  });
  const std::vector<float> b = random_floats(c, 3);
  expect_thread_count_independent("bias_add_forward", [&] {
    std::vector<float> y = x;
    cpu::bias_add_forward(y.data(), b.data(), n, c, h * w);
    return y;
  });
  expect_thread_count_independent("bias_add_backward", [&] {
    std::vector<float> db(c, nan);
    cpu::bias_add_backward(x.data(), db.data(), n, c, h * w);
    return db;
  });
  expect_thread_count_independent("relu", [&] {
    std::vector<float> y(x.size(), nan), dx(x.size(), nan);
    cpu::relu_forward(x.data(), y.data(), static_cast<int64_t>(x.size()));
    cpu::relu_backward(y.data(), col.data(), dx.data(), static_cast<int64_t>(x.size()));
    y.insert(y.end(), dx.begin(), dx.end());
    return y;
  });
  expect_thread_count_independent("maxpool2x2", [&] {
    std::vector<float> y(n * c * (h / 2) * (w / 2), nan), dx(x.size(), nan);
    std::vector<int32_t> arg(y.size(), -1);
    cpu::maxpool2x2_forward(x.data(), y.data(), arg.data(), n, c, h, w);
    cpu::maxpool2x2_backward(col.data(), arg.data(), dx.data(), n, c, h, w);
    y.insert(y.end(), dx.begin(), dx.end());
    return y;
  });
  expect_thread_count_independent("dropout", [&] {
    std::vector<float> y(x.size(), nan);
    cpu::dropout_forward(x.data(), y.data(), static_cast<int64_t>(x.size()),
                         cpu::DropoutKey{9, 2, 17, 0.3f});
    return y;
  });
  // Many samples with losses of many magnitudes, so that a sum split between threads rounds
  // differently (the OpenMP reduction this replaced gave 123253.35494453041 at one thread and
  // ...038 at two on these logits).
  constexpr int64_t samples = 5000, classes = 10;
  const std::vector<float> logits = random_floats(samples * classes, 4, 30);
  std::vector<int32_t> labels(samples);
  for (int64_t i = 0; i < samples; ++i) labels[i] = static_cast<int32_t>((i * 7) % classes);
  expect_thread_count_independent("softmax_xent", [&] {
    std::vector<float> dl(logits.size(), nan);
    const cpu::LossSums s =
        cpu::softmax_xent(logits.data(), labels.data(), samples, classes, dl.data());
    // The double loss as two floats (high part and remainder), so every bit is compared.
    const auto hi = static_cast<float>(s.loss);
    dl.push_back(hi);
    dl.push_back(static_cast<float>(s.loss - hi));
    dl.push_back(static_cast<float>(s.correct));
    return dl;
  });
  expect_thread_count_independent("softmax", [&] {
    std::vector<float> p(logits.size(), nan);
    cpu::softmax(logits.data(), p.data(), samples, classes);
    return p;
  });
  expect_thread_count_independent("adam_update", [&] {
    std::vector<float> p = x, m = col, v(x.size());
    const std::vector<float> g = random_floats(x.size(), 5);
    for (size_t i = 0; i < v.size(); ++i) v[i] = g[i] * g[i];
    m.resize(x.size());
    cpu::adam_update(p.data(), g.data(), m.data(), v.data(), static_cast<int64_t>(p.size()), 1e-3f,
                     0.9f, 0.999f, 1e-7f);
    p.insert(p.end(), m.begin(), m.end());
    p.insert(p.end(), v.begin(), v.end());
    return p;
  });
  std::vector<uint8_t> mask(x.size());
  for (size_t i = 0; i < mask.size(); ++i) mask[i] = static_cast<uint8_t>(i % 3 != 0);
  expect_thread_count_independent("adam_update with weight decay", [&] {
    std::vector<float> p = x, m(x.size()), v(x.size());
    const std::vector<float> g = random_floats(x.size(), 6);
    cpu::adam_update(p.data(), g.data(), m.data(), v.data(), static_cast<int64_t>(p.size()), 1e-3f,
                     0.9f, 0.999f, 1e-7f, 1e-4f, mask.data());
    return p;
  });
  expect_thread_count_independent("l2_penalty", [&] {
    std::vector<float> g = random_floats(x.size(), 7);
    const double penalty =
        cpu::l2_penalty(x.data(), g.data(), mask.data(), static_cast<int64_t>(x.size()), 1e-3);
    g.push_back(static_cast<float>(penalty));
    return g;
  });
}

// Our GEMM at the shapes of a dense16 layer at batch 96 (where OpenBLAS alone rounds differently at
// 1 and 2 threads), of the seed model's dense layers (batch 128) and of a reference
// convolution, every transpose, at 1, 2 and 3 threads: the same bits, and cut into parts.
TEST(CpuGemm, SameBitsAtOneTwoAndThreeThreads) {
  struct Shape {
    int64_t m, n, k;
  };
  for (const Shape s : {Shape{96, 16, 784}, Shape{128, 128, 3136}, Shape{128, 3136, 128},
                        Shape{64, 25088, 288},
                        Shape{37, 5, 11}}) {
    for (const bool ta : {false, true}) {
      for (const bool tb : {false, true}) {
        const std::vector<float> a = random_floats(static_cast<size_t>(s.m * s.k), 21);
        const std::vector<float> b = random_floats(static_cast<size_t>(s.k * s.n), 22);
        auto run = [&](int threads) {
          std::vector<float> c(static_cast<size_t>(s.m * s.n),
                               std::numeric_limits<float>::quiet_NaN());
          const int saved = omp_get_max_threads();
          omp_set_num_threads(threads);
          cpu::gemm(ta, tb, s.m, s.n, s.k, 1.0f, a.data(), ta ? s.m : s.k, b.data(),
                    tb ? s.k : s.n, 0.0f, c.data(), s.n);
          omp_set_num_threads(saved);
          return c;
        };
        const std::vector<float> one = run(1);
        EXPECT_TRUE(std::none_of(one.begin(), one.end(), [](float v) { return std::isnan(v); }));
        EXPECT_TRUE(same_bits(one, run(2))) << s.m << "x" << s.n << "x" << s.k << " " << ta << tb;
        EXPECT_TRUE(same_bits(one, run(3))) << s.m << "x" << s.n << "x" << s.k << " " << ta << tb;
      }
    }
  }
  EXPECT_GT(cpu::gemm_parts(128, 128, 3136).parts, 1);
  EXPECT_EQ(cpu::gemm_parts(37, 5, 11).parts, 1);
}

}  // namespace
}  // namespace mg
