// Every CPU reference op: its forward against a naive loop written here, and its backward against
// central differences in double, on fresh random inputs and several shapes (batch 1, odd channel
// counts, non-square and odd-sized maps).
#include <gtest/gtest.h>

#include "engine/cpu_ops.hpp"
#include "test_util.hpp"

namespace mg {
namespace {

using test::dot;
using test::expect_gradient;
using test::random_vector;
using Vec = std::vector<double>;

// The seed model's 3x3 'same' (the default kernel, pad), then K = 1, 5, 7 and 3 'valid' and 'same'.
const cpu::ConvDims kConvShapes[] = {
    {1, 1, 5, 5, 1},           // batch 1, single channel
    {2, 3, 4, 7, 5},           // odd channels, non-square
    {3, 2, 6, 3, 4},           // tall map
    {2, 3, 4, 5, 2, 1, 0},     // 1x1
    {2, 2, 6, 7, 3, 5, 2},     // 5x5 'same'
    {2, 2, 8, 7, 2, 5, 0},     // 5x5 'valid'
    {1, 2, 5, 9, 2, 7, 3},     // 7x7 'same' on a map smaller than the kernel in one direction
    {2, 1, 9, 8, 2, 7, 0},     // 7x7 'valid'
    {2, 3, 5, 6, 2, 3, 0},     // 3x3 'valid'
};

int64_t out_size(const cpu::ConvDims& d) { return d.n * d.c_out * d.oh() * d.ow(); }

// y[n, o, y, x] = sum_{c, ky, kx} w[o, c, ky, kx] * x[n, c, y+ky-pad, x+kx-pad]
Vec naive_conv(const Vec& x, const Vec& w, const cpu::ConvDims& d) {
  const int64_t K = d.kernel, oh = d.oh(), ow = d.ow();
  Vec y(static_cast<size_t>(out_size(d)), 0.0);
  for (int64_t n = 0; n < d.n; ++n)
    for (int64_t o = 0; o < d.c_out; ++o)
      for (int64_t yy = 0; yy < oh; ++yy)
        for (int64_t xx = 0; xx < ow; ++xx) {
          double s = 0;
          for (int64_t c = 0; c < d.c_in; ++c)
            for (int64_t ky = 0; ky < K; ++ky)
              for (int64_t kx = 0; kx < K; ++kx) {
                const int64_t sy = yy + ky - d.pad, sx = xx + kx - d.pad;
                if (sy < 0 || sy >= d.h || sx < 0 || sx >= d.w) continue;
                s += w[((o * d.c_in + c) * K + ky) * K + kx] * x[((n * d.c_in + c) * d.h + sy) * d.w + sx];
              }
          y[((n * d.c_out + o) * oh + yy) * ow + xx] = s;
        }
  return y;
}

TEST(Im2col, Col2imIsItsAdjoint) {
  for (const auto& d : kConvShapes) {
    const Vec x = random_vector(d.n * d.c_in * d.h * d.w, 1);
    const Vec c = random_vector(d.k() * d.cols(), 2);
    Vec col(c.size(), std::nan("")), dx(x.size(), std::nan(""));
    cpu::im2col(x.data(), d, col.data());
    cpu::col2im(c.data(), d, dx.data());
    // <im2col(x), c> == <x, col2im(c)>
    EXPECT_NEAR(dot(col, c), dot(x, dx), 1e-10 * (1 + std::abs(dot(col, c))));
  }
}

TEST(Conv2d, ForwardMatchesNaiveLoops) {
  for (const auto& d : kConvShapes) {
    const Vec x = random_vector(d.n * d.c_in * d.h * d.w, 3);
    const Vec w = random_vector(d.c_out * d.k(), 4);
    Vec y(out_size(d), std::nan("")), col(d.k() * d.cols()), tmp(d.c_out * d.cols());
    cpu::conv2d_forward(x.data(), w.data(), y.data(), d, col.data(), tmp.data());
    const Vec ref = naive_conv(x, w, d);
    for (size_t i = 0; i < y.size(); ++i) ASSERT_NEAR(y[i], ref[i], 1e-12) << i;
  }
}

TEST(Conv2d, GradientsMatchFiniteDifferences) {
  for (const auto& d : kConvShapes) {
    Vec x = random_vector(d.n * d.c_in * d.h * d.w, 5);
    Vec w = random_vector(d.c_out * d.k(), 6);
    const Vec r = random_vector(out_size(d), 7);
    Vec col(d.k() * d.cols()), tmp(d.c_out * d.cols()), y(r.size());
    auto loss = [&] {
      cpu::conv2d_forward(x.data(), w.data(), y.data(), d, col.data(), tmp.data());
      return dot(r, y);
    };
    Vec dx(x.size(), std::nan("")), dw(w.size(), std::nan(""));
    cpu::conv2d_backward(x.data(), w.data(), r.data(), dx.data(), dw.data(), d, col.data(), tmp.data());
    expect_gradient("conv dx", x, dx, loss);
    expect_gradient("conv dw", w, dw, loss);
  }
}

TEST(Im2col, GeneralFormEqualsTheThreeByThreeSameOne) {
  for (const auto& d : kConvShapes) {
    if (!d.is_3x3_same()) continue;
    const Vec x = random_vector(d.n * d.c_in * d.h * d.w, 40);
    const Vec c = random_vector(d.k() * d.cols(), 41);
    Vec a(c.size()), b(c.size()), da(x.size()), db(x.size());
    cpu::im2col_3x3(x.data(), d, a.data());
    cpu::im2col_general(x.data(), d, b.data());
    EXPECT_EQ(a, b);
    cpu::col2im_3x3(c.data(), d, da.data());
    cpu::col2im_general(c.data(), d, db.data());
    EXPECT_EQ(da, db);
  }
}

TEST(Relu, ForwardAndGradient) {
  Vec x = random_vector(37, 42);
  const Vec r = random_vector(37, 43);
  Vec y(x.size(), std::nan(""));
  cpu::relu_forward(x.data(), y.data(), 37);
  for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(y[i], std::max(x[i], 0.0));
  auto loss = [&] {
    Vec t(x.size());
    cpu::relu_forward(x.data(), t.data(), 37);
    return dot(r, t);
  };
  Vec dx(x.size(), std::nan(""));
  cpu::relu_backward(y.data(), r.data(), dx.data(), 37);
  expect_gradient("relu dx", x, dx, loss);
}

// The CPU backend's fused epilogues against the reference ops they stand for.
TEST(ConvEpilogue, FusedPassesEqualTheComposedReferenceOps) {
  for (const bool relu : {true, false}) {
    const int64_t n = 3, c = 5, s = 7;
    const Vec src = random_vector(n * c * s, 30), b = random_vector(c, 31), dy = random_vector(n * c * s, 32);
    Vec y(n * c * s, std::nan("")), ref(n * c * s);
    cpu::cnhw_bias_act_to_nchw(src.data(), b.data(), relu, n, c, s, y.data());
    cpu::cnhw_to_nchw(src.data(), n, c, s, ref.data());
    cpu::bias_add_forward(ref.data(), b.data(), n, c, s);
    if (relu) cpu::relu_forward(ref.data(), ref.data(), n * c * s);
    EXPECT_EQ(y, ref);
    Vec dz(n * c * s, std::nan("")), db(c, std::nan("")), dz_ref(n * c * s), db_ref(c), masked = dy;
    cpu::nchw_act_grad_to_cnhw(y.data(), dy.data(), relu, n, c, s, dz.data(), db.data());
    if (relu) cpu::relu_backward(y.data(), dy.data(), masked.data(), n * c * s);
    cpu::nchw_to_cnhw(masked.data(), n, c, s, dz_ref.data());
    cpu::bias_add_backward(masked.data(), db_ref.data(), n, c, s);
    EXPECT_EQ(dz, dz_ref);
    for (int64_t j = 0; j < c; ++j) EXPECT_NEAR(db[j], db_ref[j], 1e-12);
  }
}

TEST(BiasAdd, ForwardAndGradient) {
  for (const auto& [n, c, s] : {std::tuple<int64_t, int64_t, int64_t>{1, 1, 1}, {3, 5, 7}, {2, 4, 1}}) {
    const Vec y0 = random_vector(n * c * s, 8);
    Vec b = random_vector(c, 9);
    const Vec r = random_vector(n * c * s, 10);
    Vec y = y0;
    cpu::bias_add_forward(y.data(), b.data(), n, c, s);
    for (int64_t i = 0; i < n * c * s; ++i) ASSERT_DOUBLE_EQ(y[i], y0[i] + b[(i / s) % c]);
    auto loss = [&] {
      Vec t = y0;
      cpu::bias_add_forward(t.data(), b.data(), n, c, s);
      return dot(r, t);
    };
    Vec db(c, std::nan(""));
    cpu::bias_add_backward(r.data(), db.data(), n, c, s);
    expect_gradient("bias db", b, db, loss);
  }
}

TEST(Relu, ForwardAndGradientAwayFromTheKink) {
  Vec x = random_vector(257, 11);
  const Vec r = random_vector(x.size(), 12);
  Vec y(x.size(), std::nan(""));
  cpu::relu_forward(x.data(), y.data(), 257);
  for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(y[i], std::max(x[i], 0.0));
  Vec dx(x.size(), std::nan(""));
  cpu::relu_backward(y.data(), r.data(), dx.data(), 257);
  std::vector<int64_t> away;  // finite differences straddling 0 measure no derivative (Caffe skips them too)
  for (size_t i = 0; i < x.size(); ++i)
    if (std::abs(x[i]) > 1e-3) away.push_back(static_cast<int64_t>(i));
  auto loss = [&] {
    Vec t(x.size());
    cpu::relu_forward(x.data(), t.data(), 257);
    return dot(r, t);
  };
  expect_gradient("relu dx", x, dx, loss, away);
}

TEST(MaxPool, ForwardMatchesNaiveAndGradient) {
  for (const auto& [n, c, h, w] : {std::tuple<int64_t, int64_t, int64_t, int64_t>{1, 1, 2, 2},
                                  {2, 3, 7, 5}, {3, 2, 6, 8}}) {
    Vec x = random_vector(n * c * h * w, 13);
    const int64_t oh = h / 2, ow = w / 2;
    const Vec r = random_vector(n * c * oh * ow, 14);
    Vec y(r.size(), std::nan(""));
    std::vector<int32_t> arg(r.size(), -1);
    cpu::maxpool2x2_forward(x.data(), y.data(), arg.data(), n, c, h, w);
    for (int64_t p = 0; p < n * c; ++p)
      for (int64_t i = 0; i < oh; ++i)
        for (int64_t j = 0; j < ow; ++j) {
          const double* in = x.data() + p * h * w;
          const double m = std::max({in[2 * i * w + 2 * j], in[2 * i * w + 2 * j + 1],
                                     in[(2 * i + 1) * w + 2 * j], in[(2 * i + 1) * w + 2 * j + 1]});
          ASSERT_EQ(y[p * oh * ow + i * ow + j], m);
        }
    Vec dx(x.size(), std::nan(""));
    cpu::maxpool2x2_backward(r.data(), arg.data(), dx.data(), n, c, h, w);
    auto loss = [&] {
      Vec t(r.size());
      std::vector<int32_t> a(r.size());
      cpu::maxpool2x2_forward(x.data(), t.data(), a.data(), n, c, h, w);
      return dot(r, t);
    };
    expect_gradient("maxpool dx", x, dx, loss);
  }
}

TEST(MaxPool, TiesGoToTheFirstElementInRowMajorOrder) {
  const Vec x = {1, 3, 3, 3};  // one 2x2 window, three-way tie
  Vec y(1);
  std::vector<int32_t> arg(1);
  cpu::maxpool2x2_forward(x.data(), y.data(), arg.data(), 1, 1, 2, 2);
  EXPECT_EQ(arg[0], 1);
}

TEST(Dropout, KeepsTheRightFractionScalesAndHasTheMaskAsGradient) {
  const cpu::DropoutKey key{1234, 3, 17, 0.25f};
  Vec x = random_vector(4099, 15);
  const Vec r = random_vector(x.size(), 16);
  Vec y(x.size(), std::nan(""));
  cpu::dropout_forward(x.data(), y.data(), 4099, key);
  int kept = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const bool keep = dropout_keep(key.seed, key.layer, key.step, i, key.rate);
    ASSERT_EQ(y[i], keep ? x[i] * (1.0 / 0.75) : 0.0) << i;  // scale = 1/(1-rate)
    kept += keep;
  }
  EXPECT_NEAR(kept / 4099.0, 0.75, 0.03);
  // A different step draws a different mask.
  Vec y2(x.size());
  cpu::dropout_forward(x.data(), y2.data(), 4099, cpu::DropoutKey{1234, 3, 18, 0.25f});
  EXPECT_NE(y, y2);
  Vec dx(x.size(), std::nan(""));
  cpu::dropout_backward(r.data(), dx.data(), 4099, key);
  auto loss = [&] {
    Vec t(x.size());
    cpu::dropout_forward(x.data(), t.data(), 4099, key);
    return dot(r, t);
  };
  expect_gradient("dropout dx", x, dx, loss);
}

TEST(Dense, ForwardMatchesNaiveAndGradients) {
  for (const auto& [n, in, out] : {std::tuple<int64_t, int64_t, int64_t>{1, 1, 1}, {1, 7, 3}, {5, 13, 9}}) {
    Vec x = random_vector(n * in, 17);
    Vec w = random_vector(out * in, 18);
    const Vec r = random_vector(n * out, 19);
    Vec y(n * out, std::nan(""));
    cpu::dense_forward(x.data(), w.data(), y.data(), n, in, out);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t o = 0; o < out; ++o) {
        double s = 0;
        for (int64_t k = 0; k < in; ++k) s += x[i * in + k] * w[o * in + k];
        ASSERT_NEAR(y[i * out + o], s, 1e-12);
      }
    Vec dx(x.size(), std::nan("")), dw(w.size(), std::nan(""));
    cpu::dense_backward(x.data(), w.data(), r.data(), dx.data(), dw.data(), n, in, out);
    auto loss = [&] {
      Vec t(n * out);
      cpu::dense_forward(x.data(), w.data(), t.data(), n, in, out);
      return dot(r, t);
    };
    expect_gradient("dense dx", x, dx, loss);
    expect_gradient("dense dw", w, dw, loss);
  }
}

TEST(SoftmaxXent, LossMatchesDefinitionAndGradient) {
  for (const auto& [n, classes] : {std::pair<int64_t, int64_t>{1, 10}, {7, 10}, {4, 3}}) {
    Vec z = random_vector(n * classes, 20, -3, 3);
    std::vector<int32_t> labels(n);
    for (int64_t i = 0; i < n; ++i) labels[i] = static_cast<int32_t>((i * 7 + 3) % classes);
    Vec dz(z.size(), std::nan(""));
    const cpu::LossSums s = cpu::softmax_xent(z.data(), labels.data(), n, classes, dz.data());
    double ref = 0;
    int64_t correct = 0;
    for (int64_t i = 0; i < n; ++i) {
      double sum = 0;
      for (int64_t j = 0; j < classes; ++j) sum += std::exp(z[i * classes + j]);
      ref += -std::log(std::exp(z[i * classes + labels[i]]) / sum);
      const auto best = std::max_element(z.begin() + i * classes, z.begin() + (i + 1) * classes) -
                        (z.begin() + i * classes);
      correct += best == labels[i];
    }
    EXPECT_NEAR(s.loss, ref, 1e-12 * static_cast<double>(n));
    EXPECT_EQ(s.correct, correct);
    auto loss = [&] { return cpu::softmax_xent<double>(z.data(), labels.data(), n, classes, nullptr).loss / static_cast<double>(n); };
    expect_gradient("softmax_xent dz", z, dz, loss);
  }
}

TEST(SoftmaxXent, StableForHugeLogits) {
  for (const float big : {1e4f, -1e4f}) {
    std::vector<float> z = {big, 0, -big, 3, big, 1, 2, 3, 4, 5};
    const std::vector<int32_t> labels = {2};  // the smallest logit: loss ~ 2 * |big| when big > 0
    std::vector<float> dz(10, std::nanf(""));
    const cpu::LossSums s = cpu::softmax_xent(z.data(), labels.data(), 1, 10, dz.data());
    ASSERT_TRUE(std::isfinite(s.loss));
    double dz_sum = 0;
    for (float g : dz) {
      ASSERT_TRUE(std::isfinite(g));
      dz_sum += g;
    }
    EXPECT_NEAR(dz_sum, 0.0, 1e-6);  // softmax sums to one, the one-hot too
    if (big > 0) {
      EXPECT_NEAR(s.loss, 2e4 + std::log(2.0), 1.0);  // two tied maxima share the mass
      EXPECT_NEAR(dz[2], -1.0f, 1e-6);
    } else {
      EXPECT_NEAR(s.loss, 0.0, 1e-3);  // the label holds the maximum
    }
  }
}

TEST(Softmax, RowsSumToOne) {
  const Vec z = random_vector(30, 21, -50, 50);
  Vec p(30, std::nan(""));
  cpu::softmax(z.data(), p.data(), 3, 10);
  for (int i = 0; i < 3; ++i) {
    double s = 0;
    for (int j = 0; j < 10; ++j) s += p[i * 10 + j];
    EXPECT_NEAR(s, 1.0, 1e-12);
  }
}

}  // namespace
}  // namespace mg
