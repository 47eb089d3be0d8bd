// Batch normalization's CPU reference (engine/cpu_batchnorm.hpp): the forward against the
// definition written here, the backward against central differences in double (training and
// inference, after a conv and after a dense layer, batches of 1, 2 and a partial size), Keras'
// moving update and batch-of-one behaviour, the variance's stability, and the element arithmetic
// of kernels/batchnorm_math.cuh against the reference.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "engine/cpu_batchnorm.hpp"
#include "kernels/batchnorm_math.cuh"
#include "test_util.hpp"

namespace mg {
namespace {

using test::dot;
using test::expect_gradient;
using test::random_vector;
using Vec = std::vector<double>;

constexpr double kMomentum = 0.99, kEps = 1e-3;

// [n, c, s]: after a conv (s = h * w) and after a dense layer (s = 1); batches of 1, 2, 3, 5.
const cpu::BatchNormDims kShapes[] = {
    {2, 3, 12},  // batch of 2 after a conv (3 channels of 3x4)
    {3, 2, 5},   // a partial batch (3 of a planned 4) after a conv
    {1, 4, 9},   // one image after a conv: statistics over its 3x3 positions
    {2, 5, 1},   // batch of 2 after a dense layer
    {5, 3, 1},   // dense, batch of 5
};

int64_t size_of(const cpu::BatchNormDims& d) { return d.n * d.c * d.s; }

struct Outputs {
  Vec y, mean, inv_std, moving_mean, moving_var;
};

Outputs forward(const Vec& x, const Vec& gamma, const Vec& beta, const cpu::BatchNormDims& d,
                bool training, const Vec& moving_mean, const Vec& moving_var) {
  Outputs o{Vec(x.size(), std::nan("")), Vec(d.c, std::nan("")), Vec(d.c, std::nan("")),
            moving_mean, moving_var};
  if (training) {
    cpu::batchnorm_forward_training(x.data(), gamma.data(), beta.data(), d, kMomentum, kEps,
                                    o.moving_mean.data(), o.moving_var.data(), o.y.data(),
                                    {o.mean.data(), o.inv_std.data()});
  } else {
    cpu::batchnorm_forward_inference(x.data(), gamma.data(), beta.data(), d, kEps,
                                     o.moving_mean.data(), o.moving_var.data(), o.y.data(),
                                     {o.mean.data(), o.inv_std.data()});
  }
  return o;
}

TEST(BatchNorm, TrainingForwardIsTheDefinitionAndUpdatesTheMovingStatisticsAsKeras) {
  for (const auto& d : kShapes) {
    const Vec x = random_vector(size_of(d), 1, -2.0, 3.0);
    const Vec gamma = random_vector(d.c, 2, 0.5, 1.5), beta = random_vector(d.c, 3);
    const Vec mm = random_vector(d.c, 4), mv = random_vector(d.c, 5, 0.5, 2.0);
    const Outputs o = forward(x, gamma, beta, d, true, mm, mv);
    for (int64_t ch = 0; ch < d.c; ++ch) {
      const auto m = static_cast<double>(d.n * d.s);
      double mean = 0, var = 0;
      for (int64_t i = 0; i < d.n; ++i)
        for (int64_t j = 0; j < d.s; ++j) mean += x[(i * d.c + ch) * d.s + j] / m;
      for (int64_t i = 0; i < d.n; ++i)
        for (int64_t j = 0; j < d.s; ++j) var += std::pow(x[(i * d.c + ch) * d.s + j] - mean, 2) / m;
      EXPECT_NEAR(o.mean[ch], mean, 1e-14);
      EXPECT_NEAR(o.inv_std[ch], 1 / std::sqrt(var + kEps), 1e-12);
      // Keras: moving = moving * momentum + batch * (1 - momentum), the biased batch variance.
      EXPECT_NEAR(o.moving_mean[ch], mm[ch] * 0.99 + mean * 0.01, 1e-14);
      EXPECT_NEAR(o.moving_var[ch], mv[ch] * 0.99 + var * 0.01, 1e-14);
      for (int64_t i = 0; i < d.n; ++i)
        for (int64_t j = 0; j < d.s; ++j) {
          const int64_t k = (i * d.c + ch) * d.s + j;
          ASSERT_NEAR(o.y[k], gamma[ch] * (x[k] - mean) / std::sqrt(var + kEps) + beta[ch], 1e-12);
        }
    }
  }
}

TEST(BatchNorm, InferenceForwardUsesTheMovingStatisticsAndChangesNothing) {
  const cpu::BatchNormDims d{3, 2, 4};
  const Vec x = random_vector(size_of(d), 6);
  const Vec gamma = random_vector(d.c, 7), beta = random_vector(d.c, 8);
  const Vec mm = random_vector(d.c, 9), mv = random_vector(d.c, 10, 0.1, 3.0);
  const Outputs o = forward(x, gamma, beta, d, false, mm, mv);
  EXPECT_EQ(o.moving_mean, mm);
  EXPECT_EQ(o.moving_var, mv);
  for (int64_t k = 0; k < size_of(d); ++k) {
    const int64_t ch = (k / d.s) % d.c;
    ASSERT_NEAR(o.y[k], gamma[ch] * (x[k] - mm[ch]) / std::sqrt(mv[ch] + kEps) + beta[ch], 1e-12);
  }
}

// Central differences of sum(r * y) in double; in training the batch statistics depend on x, so
// dx has the two extra terms, and this catches a missing one.
TEST(BatchNorm, GradientsMatchFiniteDifferencesInTrainingAndInference) {
  for (const bool training : {true, false}) {
    for (const auto& d : kShapes) {
      if (training && d.n * d.s == 1) continue;  // a single value per channel: see BatchOfOne
      SCOPED_TRACE(::testing::Message() << "training " << training << " n " << d.n << " c " << d.c
                                        << " s " << d.s);
      Vec x = random_vector(size_of(d), 11, -1.0, 2.0);
      Vec gamma = random_vector(d.c, 12, 0.5, 1.5), beta = random_vector(d.c, 13);
      const Vec mm = random_vector(d.c, 14), mv = random_vector(d.c, 15, 0.5, 2.0);
      const Vec r = random_vector(size_of(d), 16);
      const Outputs o = forward(x, gamma, beta, d, training, mm, mv);
      Vec dx(x.size(), std::nan("")), dgamma(d.c, std::nan("")), dbeta(d.c, std::nan(""));
      cpu::batchnorm_backward(x.data(), gamma.data(), r.data(), d, o.mean.data(),
                              o.inv_std.data(), training, dx.data(), dgamma.data(), dbeta.data());
      auto loss = [&] { return dot(r, forward(x, gamma, beta, d, training, mm, mv).y); };
      expect_gradient("bn dx", x, dx, loss);
      expect_gradient("bn dgamma", gamma, dgamma, loss);
      expect_gradient("bn dbeta", beta, dbeta, loss);
    }
  }
}

// Keras on a batch of one sample after a dense layer: the batch variance is 0, so the output is
// beta, the gradient through x is 0 and the moving variance decays towards 0; nothing is NaN.
TEST(BatchNorm, BatchOfOneAfterDenseGivesBetaAndNoNaN) {
  const cpu::BatchNormDims d{1, 4, 1};
  Vec x = random_vector(4, 17, -5.0, 5.0);
  const Vec gamma = random_vector(4, 18, 0.5, 1.5), beta = random_vector(4, 19);
  const Vec mm(4, 0.0), mv(4, 1.0);
  const Outputs o = forward(x, gamma, beta, d, true, mm, mv);
  for (int64_t ch = 0; ch < 4; ++ch) {
    EXPECT_EQ(o.y[ch], beta[ch]);
    EXPECT_EQ(o.mean[ch], x[ch]);
    EXPECT_NEAR(o.inv_std[ch], 1 / std::sqrt(kEps), 1e-12);
    EXPECT_NEAR(o.moving_mean[ch], 0.01 * x[ch], 1e-15);
    EXPECT_NEAR(o.moving_var[ch], 0.99, 1e-15);
  }
  const Vec r = random_vector(4, 20);
  Vec dx(4, std::nan("")), dgamma(4, std::nan("")), dbeta(4, std::nan(""));
  cpu::batchnorm_backward(x.data(), gamma.data(), r.data(), d, o.mean.data(), o.inv_std.data(),
                          true, dx.data(), dgamma.data(), dbeta.data());
  for (int64_t ch = 0; ch < 4; ++ch) {
    EXPECT_EQ(dx[ch], 0.0);
    EXPECT_EQ(dgamma[ch], 0.0);  // xhat is 0
    EXPECT_EQ(dbeta[ch], r[ch]);
  }
  // The same in float, the training path's scalar.
  std::vector<float> xf(x.begin(), x.end()), gf(gamma.begin(), gamma.end()),
      bf(beta.begin(), beta.end()), yf(4), mf(4, 0.0f), vf(4, 1.0f), sm(4), si(4);
  cpu::batchnorm_forward_training(xf.data(), gf.data(), bf.data(), d, kMomentum, kEps, mf.data(),
                                  vf.data(), yf.data(), {sm.data(), si.data()});
  for (int64_t ch = 0; ch < 4; ++ch) {
    EXPECT_EQ(yf[ch], bf[ch]);
    EXPECT_TRUE(std::isfinite(vf[ch]) && std::isfinite(mf[ch]));
  }
}

// Values with a large common offset and a small spread: E[x^2] - E[x]^2 in float loses every
// digit of the variance (and can go negative); the two-pass variance keeps it.
TEST(BatchNorm, VarianceIsStableForALargeOffsetInFloat) {
  const cpu::BatchNormDims d{64, 1, 16};
  const Vec noise = random_vector(size_of(d), 21);
  std::vector<float> x(noise.size());
  double mean = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    x[i] = static_cast<float>(1000.0 + 0.01 * noise[i]);
    mean += static_cast<double>(x[i]) / static_cast<double>(x.size());
  }
  double var = 0;
  for (const float v : x) var += std::pow(static_cast<double>(v) - mean, 2) / static_cast<double>(x.size());
  std::vector<float> g(1, 1.0f), b(1, 0.0f), y(x.size()), mm(1, 0.0f), mv(1, 1.0f), sm(1), si(1);
  cpu::batchnorm_forward_training(x.data(), g.data(), b.data(), d, kMomentum, 0.0, mm.data(),
                                  mv.data(), y.data(), {sm.data(), si.data()});
  EXPECT_NEAR(1.0 / (static_cast<double>(si[0]) * si[0]), var, 1e-3 * var);
  double y_var = 0;
  for (const float v : y) y_var += static_cast<double>(v) * v / static_cast<double>(y.size());
  EXPECT_NEAR(y_var, 1.0, 1e-3);  // normalized: unit variance
}

// kernels/batchnorm_math.cuh (the CUDA kernels' per-element bodies) against the reference.
TEST(BatchNormMath, ElementBodiesReproduceTheReference) {
  const cpu::BatchNormDims d{3, 4, 5};
  // Index mapping: channel ch's k-th value, and the channel of an element, cover every element once.
  std::vector<int> seen(static_cast<size_t>(size_of(d)), 0);
  for (int64_t ch = 0; ch < d.c; ++ch) {
    for (int64_t k = 0; k < d.n * d.s; ++k) {
      const int64_t i = kern::bn_channel_index(k, ch, d.c, d.s);
      ASSERT_EQ(i, d.at(k / d.s, ch, k % d.s));
      ASSERT_EQ(kern::bn_channel_of(i, d.c, d.s), ch);
      ++seen[static_cast<size_t>(i)];
    }
  }
  for (const int s : seen) ASSERT_EQ(s, 1);
  const Vec xd = random_vector(size_of(d), 22);
  std::vector<float> x(xd.begin(), xd.end()), g{1.5f, 0.5f, -1.0f, 2.0f}, b{0.1f, -0.2f, 0.3f, 0.0f};
  std::vector<float> y(x.size()), mm{0.1f, 0.2f, 0.3f, 0.4f}, mv{1.0f, 2.0f, 0.5f, 1.5f}, sm(4), si(4);
  const std::vector<float> mm0 = mm, mv0 = mv;
  cpu::batchnorm_forward_training(x.data(), g.data(), b.data(), d, kMomentum, kEps, mm.data(),
                                  mv.data(), y.data(), {sm.data(), si.data()});
  const float mom = static_cast<float>(kMomentum), rest = static_cast<float>(1.0 - kMomentum);
  for (int64_t ch = 0; ch < d.c; ++ch) {
    EXPECT_EQ(kern::bn_moving_update(mm0[ch], sm[ch], mom, rest), mm[ch]);
    const double var = 1.0 / (static_cast<double>(si[ch]) * si[ch]) - kEps;
    EXPECT_NEAR(kern::bn_moving_update(mv0[ch], static_cast<float>(var), mom, rest), mv[ch], 1e-6);
  }
  for (size_t i = 0; i < x.size(); ++i) {
    const int64_t ch = kern::bn_channel_of(static_cast<int64_t>(i), d.c, d.s);
    ASSERT_EQ(kern::bn_forward_at(x[i], sm[ch], si[ch], g[ch], b[ch]), y[i]) << i;
  }
  const Vec r = random_vector(size_of(d), 23);
  std::vector<float> dy(r.begin(), r.end()), dx(x.size()), dg(4), db(4);
  for (const bool training : {true, false}) {
    cpu::batchnorm_backward(x.data(), g.data(), dy.data(), d, sm.data(), si.data(), training,
                            dx.data(), dg.data(), db.data());
    const double m = static_cast<double>(d.n * d.s);
    for (size_t i = 0; i < x.size(); ++i) {
      const int64_t ch = kern::bn_channel_of(static_cast<int64_t>(i), d.c, d.s);
      const float xhat = (x[i] - sm[ch]) * si[ch];
      const float mdy = training ? static_cast<float>(db[ch] / m) : 0.0f;
      const float mdx = training ? static_cast<float>(dg[ch] / m) : 0.0f;
      ASSERT_EQ(kern::bn_dx_at(dy[i], xhat, g[ch] * si[ch], mdy, mdx), dx[i]) << i;
    }
  }
  EXPECT_DOUBLE_EQ(kern::bn_inv_std(0.25, 0.0), 2.0);
}

}  // namespace
}  // namespace mg
