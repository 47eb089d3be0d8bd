// The CUDA kernels' per-element arithmetic (kernels/*_math.cuh), run here on the CPU over every
// index of several shapes and compared with the CPU reference (engine/cpu_ops.hpp). CI has no GPU:
// this is how the GPU's index arithmetic, tie rules, masks and update formulas are checked on every
// commit. Needs no CUDA: the headers are plain C++ under g++.
//
// Equality is exact where the kernel performs the very roundings of the reference (copies, zero
// padding, sums in the same order, one multiply). Softmax and Adam get a tolerance, stated where it
// is used: here the host's libm and the reference agree to the bit, but on the device expf/logf may
// differ by 2 ulp and nvcc contracts a*b + c into an FMA, so the tests do not pin those bits.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "engine/adam.hpp"
#include "engine/cpu_backend.hpp"
#include "engine/cpu_ops.hpp"
#include "engine/engine.hpp"
#include "kernels/adam_math.cuh"
#include "kernels/batch_math.cuh"
#include "kernels/conv_math.cuh"
#include "kernels/dense_math.cuh"
#include "kernels/dropout_math.cuh"
#include "kernels/launch.cuh"
#include "kernels/pool_math.cuh"
#include "kernels/regularize_math.cuh"
#include "kernels/softmax_math.cuh"
#include "test_util.hpp"

namespace mg {
namespace {

using Floats = std::vector<float>;
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

Floats random_floats(int64_t n, uint64_t seed, double lo = -1.0, double hi = 1.0) {
  const std::vector<double> d = test::random_vector(static_cast<size_t>(n), seed, lo, hi);
  Floats f(d.size());
  for (size_t i = 0; i < d.size(); ++i) f[i] = static_cast<float>(d[i]);
  return f;
}

// Small integers, so that pooling windows hold ties.
Floats tied_floats(int64_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  Floats f(static_cast<size_t>(n));
  for (auto& v : f) v = static_cast<float>(rng() % 3) - 1.0f;
  return f;
}

// Runs f(i) for every i < count into a NaN-poisoned vector, so an index the element function
// skipped shows as NaN (and NaN != anything, so EXPECT_EQ catches it).
template <class F>
Floats over_all(int64_t count, F f) {
  Floats out(static_cast<size_t>(count), kNaN);
  for (int64_t i = 0; i < count; ++i) out[static_cast<size_t>(i)] = f(i);
  return out;
}

// Batch 1, a 1x1 map (all padding but the centre), odd and non-square maps, several channels.
const kern::ConvDims kConvShapes[] = {
    {1, 1, 1, 1, 1}, {1, 3, 5, 7, 2}, {2, 2, 4, 3, 3}, {3, 1, 28, 28, 4}, {2, 5, 1, 6, 1},
};

cpu::ConvDims cpu_dims(const kern::ConvDims& d) { return {d.n, d.c_in, d.h, d.w, d.c_out}; }

TEST(KernelMath, Im2colEqualsTheReferenceExactly) {
  for (const auto& d : kConvShapes) {
    const Floats x = random_floats(d.n * d.c_in * d.hw(), 1);
    Floats ref(static_cast<size_t>(d.k() * d.cols()), kNaN);
    cpu::im2col_3x3(x.data(), cpu_dims(d), ref.data());
    const Floats got =
        over_all(d.k() * d.cols(), [&](int64_t i) { return kern::im2col_3x3_at(x.data(), d, i); });
    EXPECT_EQ(got, ref) << "n=" << d.n << " c=" << d.c_in << " h=" << d.h << " w=" << d.w;
  }
}

TEST(KernelMath, Col2imGatherEqualsTheReferenceExactly) {
  for (const auto& d : kConvShapes) {
    const Floats col = random_floats(d.k() * d.cols(), 2);
    Floats ref(static_cast<size_t>(d.n * d.c_in * d.hw()), kNaN);
    cpu::col2im_3x3(col.data(), cpu_dims(d), ref.data());
    const Floats got = over_all(d.n * d.c_in * d.hw(),
                                [&](int64_t i) { return kern::col2im_3x3_at(col.data(), d, i); });
    EXPECT_EQ(got, ref) << "n=" << d.n << " c=" << d.c_in << " h=" << d.h << " w=" << d.w;
  }
}

// K = 1, 5, 7 and 3, 'same' and 'valid' (the last field pair: kernel, pad).
const kern::ConvDims kGeneralConvShapes[] = {
    {2, 3, 5, 4, 2, 1, 0}, {1, 2, 6, 7, 3, 5, 2}, {2, 2, 8, 7, 2, 5, 0},
    {1, 1, 4, 9, 2, 7, 3}, {2, 1, 9, 8, 1, 7, 0}, {2, 3, 5, 6, 2, 3, 0},
};

cpu::ConvDims cpu_general_dims(const kern::ConvDims& d) {
  return {d.n, d.c_in, d.h, d.w, d.c_out, d.kernel, d.pad};
}

TEST(KernelMath, GeneralIm2colAndCol2imEqualTheReferenceExactly) {
  for (const auto& d : kGeneralConvShapes) {
    const Floats x = random_floats(d.n * d.c_in * d.hw(), 11);
    Floats ref(static_cast<size_t>(d.k() * d.cols()), kNaN);
    cpu::im2col_general(x.data(), cpu_general_dims(d), ref.data());
    const Floats got =
        over_all(d.k() * d.cols(), [&](int64_t i) { return kern::im2col_at(x.data(), d, i); });
    EXPECT_EQ(got, ref) << "k=" << d.kernel << " pad=" << d.pad;
    const Floats col = random_floats(d.k() * d.cols(), 12);
    Floats dref(static_cast<size_t>(d.n * d.c_in * d.hw()), kNaN);
    cpu::col2im_general(col.data(), cpu_general_dims(d), dref.data());
    const Floats dgot = over_all(d.n * d.c_in * d.hw(),
                                 [&](int64_t i) { return kern::col2im_at(col.data(), d, i); });
    EXPECT_EQ(dgot, dref) << "k=" << d.kernel << " pad=" << d.pad;
  }
  // On the seed model's 3x3 'same' the general functions equal the dedicated ones.
  for (const auto& d : kConvShapes) {
    const Floats x = random_floats(d.n * d.c_in * d.hw(), 13);
    const Floats a =
        over_all(d.k() * d.cols(), [&](int64_t i) { return kern::im2col_at(x.data(), d, i); });
    const Floats b =
        over_all(d.k() * d.cols(), [&](int64_t i) { return kern::im2col_3x3_at(x.data(), d, i); });
    EXPECT_EQ(a, b);
    const Floats col = random_floats(d.k() * d.cols(), 14);
    const Floats c = over_all(d.n * d.c_in * d.hw(),
                              [&](int64_t i) { return kern::col2im_at(col.data(), d, i); });
    const Floats e = over_all(d.n * d.c_in * d.hw(),
                              [&](int64_t i) { return kern::col2im_3x3_at(col.data(), d, i); });
    EXPECT_EQ(c, e);
  }
}

TEST(KernelMath, ConvOutputIsTheFusedEpilogueExactly) {
  for (const auto& d : kConvShapes) {
    for (const bool relu : {true, false}) {
      const int64_t s = d.hw(), count = d.n * d.c_out * s;
      const Floats tmp = random_floats(d.c_out * d.cols(), 3);
      const Floats b = random_floats(d.c_out, 4);
      Floats ref(static_cast<size_t>(count), kNaN);
      cpu::cnhw_bias_act_to_nchw(tmp.data(), b.data(), relu, d.n, d.c_out, s, ref.data());
      const Floats got = over_all(count, [&](int64_t i) {
        return kern::conv_output_at(tmp.data(), b.data(), d.n, d.c_out, s, relu, i);
      });
      EXPECT_EQ(got, ref) << "relu=" << relu;
      // The unfused ops give the same values too.
      Floats unfused(static_cast<size_t>(count), kNaN);
      cpu::cnhw_to_nchw(tmp.data(), d.n, d.c_out, s, unfused.data());
      cpu::bias_add_forward(unfused.data(), b.data(), d.n, d.c_out, s);
      if (relu) cpu::relu_forward(unfused.data(), unfused.data(), count);
      EXPECT_EQ(got, unfused) << "relu=" << relu;
    }
  }
}

// The bias gradient's sum: the reference adds in float in row order, the kernel in double over a
// fixed tree; they agree to float rounding of the sum, 1e-5 of the sum of magnitudes.
TEST(KernelMath, ConvGradientPermuteIsTheFusedMaskAndTranspose) {
  for (const auto& d : kConvShapes) {
    for (const bool relu : {true, false}) {
      const int64_t s = d.hw(), count = d.n * d.c_out * s, per_channel = d.n * s;
      const Floats y = random_floats(count, 5);  // about half not positive: the mask matters
      const Floats dy = random_floats(count, 6);
      Floats ref(static_cast<size_t>(count), kNaN), ref_db(static_cast<size_t>(d.c_out), kNaN);
      cpu::nchw_act_grad_to_cnhw(y.data(), dy.data(), relu, d.n, d.c_out, s, ref.data(),
                                 ref_db.data());
      Floats got(static_cast<size_t>(count), kNaN);
      for (int64_t j = 0; j < d.c_out; ++j) {
        double sum = 0, magnitude = 0;
        for (int64_t e = 0; e < per_channel; ++e) {
          const float g = kern::conv_grad_cn_at(y.data(), dy.data(), d.c_out, s, relu, j, e);
          got[static_cast<size_t>(j * per_channel + e)] = g;
          sum += g;
          magnitude += std::abs(g);
        }
        EXPECT_NEAR(sum, ref_db[static_cast<size_t>(j)], 1e-5 * magnitude + 1e-30)
            << "channel " << j;
      }
      EXPECT_EQ(got, ref) << "relu=" << relu;
    }
  }
}

const kern::PoolDims kPoolShapes[] = {
    {1, 2, 2}, {1, 1, 1}, {3, 5, 7}, {2, 28, 28}, {4, 6, 3}, {5, 3, 2},
};

TEST(KernelMath, MaxPoolForwardPicksTheSameWinnerAsTheReference) {
  for (const auto& d : kPoolShapes) {
    for (const uint64_t seed : {7u, 8u}) {
      const Floats x =
          seed == 7 ? tied_floats(d.in_count(), seed) : random_floats(d.in_count(), seed);
      Floats ref_y(static_cast<size_t>(d.out_count()), kNaN);
      std::vector<int32_t> ref_arg(static_cast<size_t>(d.out_count()), -1);
      cpu::maxpool2x2_forward(x.data(), ref_y.data(), ref_arg.data(), d.planes, 1, d.h, d.w);
      Floats y(ref_y.size(), kNaN);
      std::vector<int32_t> arg(ref_arg.size(), -1);
      for (int64_t o = 0; o < d.out_count(); ++o) {
        const kern::PoolPick<float> p = kern::maxpool2x2_at(x.data(), d, o);
        y[static_cast<size_t>(o)] = p.value;
        arg[static_cast<size_t>(o)] = p.arg;
      }
      EXPECT_EQ(y, ref_y) << "h=" << d.h << " w=" << d.w;
      EXPECT_EQ(arg, ref_arg) << "h=" << d.h << " w=" << d.w;
    }
  }
}

TEST(KernelMath, MaxPoolBackwardGatherEqualsTheReferenceExactly) {
  for (const auto& d : kPoolShapes) {
    const Floats x = tied_floats(d.in_count(), 9);
    Floats y(static_cast<size_t>(d.out_count()));
    std::vector<int32_t> arg(static_cast<size_t>(d.out_count()));
    cpu::maxpool2x2_forward(x.data(), y.data(), arg.data(), d.planes, 1, d.h, d.w);
    const Floats dy = random_floats(d.out_count(), 10);
    Floats ref(static_cast<size_t>(d.in_count()), kNaN);
    cpu::maxpool2x2_backward(dy.data(), arg.data(), ref.data(), d.planes, 1, d.h, d.w);
    const Floats got = over_all(d.in_count(), [&](int64_t e) {
      return kern::maxpool2x2_grad_at(dy.data(), arg.data(), d, e);
    });
    EXPECT_EQ(got, ref) << "h=" << d.h << " w=" << d.w;
  }
}

TEST(KernelMath, DropoutMaskAndScaleEqualTheReferenceExactly) {
  for (const int64_t count : {int64_t{1}, int64_t{7}, int64_t{1000}, int64_t{4099}}) {
    for (const float rate : {0.0f, 0.25f, 0.5f, 0.9f}) {
      for (const uint64_t step : {uint64_t{0}, uint64_t{17}, uint64_t{123456789}}) {
        const cpu::DropoutKey key{42, 3, step, rate};
        const Floats x = random_floats(count, 11);
        Floats ref(x.size(), kNaN), got(x.size(), kNaN);
        cpu::dropout_forward(x.data(), ref.data(), count, key);
        const float scale = kern::dropout_scale<float>(rate);
        for (int64_t b = 0; b < kern::dropout_blocks(count); ++b)
          kern::dropout_block(x.data(), got.data(), count, b, key.seed, key.layer, key.step,
                              dropout_threshold(rate), scale);
        EXPECT_EQ(got, ref) << "count=" << count << " rate=" << rate << " step=" << step;
        // The mask is dropout_keep's, element by element.
        for (int64_t i = 0; i < count; ++i) {
          const bool kept =
              dropout_keep(key.seed, key.layer, key.step, static_cast<uint64_t>(i), rate);
          if (x[static_cast<size_t>(i)] == 0.0f) continue;  // a zero input hides the mask
          ASSERT_EQ(got[static_cast<size_t>(i)] != 0.0f, kept) << i;
        }
        if (count == 4099 && rate == 0.5f) {
          const auto dropped = std::count(got.begin(), got.end(), 0.0f);
          EXPECT_GT(dropped, 1800);
          EXPECT_LT(dropped, 2300);
        }
      }
    }
  }
}

TEST(KernelMath, DropoutInPlaceEqualsOutOfPlace) {
  const int64_t count = 1003;
  const Floats x = random_floats(count, 12);
  Floats out(x.size(), kNaN), in_place = x;
  for (int64_t b = 0; b < kern::dropout_blocks(count); ++b) {
    kern::dropout_block(x.data(), out.data(), count, b, 7, 1, 2, dropout_threshold(0.3f),
                        kern::dropout_scale<float>(0.3f));
    kern::dropout_block(in_place.data(), in_place.data(), count, b, 7, 1, 2,
                        dropout_threshold(0.3f), kern::dropout_scale<float>(0.3f));
  }
  EXPECT_EQ(in_place, out);
}

TEST(KernelMath, DenseBiasReluEqualsTheReferenceExactly) {
  for (const auto& [n, out] :
       {std::pair{1, 1}, std::pair{1, 10}, std::pair{7, 3}, std::pair{32, 128}}) {
    for (const bool relu : {true, false}) {
      const Floats y = random_floats(n * out, 12), b = random_floats(out, 13);
      Floats ref = y;
      cpu::bias_add_forward(ref.data(), b.data(), n, out, 1);
      if (relu) cpu::relu_forward(ref.data(), ref.data(), n * out);
      const Floats got = over_all(
          n * out, [&](int64_t i) { return kern::bias_relu_at(y.data(), b.data(), out, relu, i); });
      EXPECT_EQ(got, ref);
    }
  }
}

TEST(KernelMath, DenseBiasGradientColumnsEqualTheReferenceExactly) {
  for (const auto& [n, out] :
       {std::pair{1, 1}, std::pair{1, 10}, std::pair{7, 3}, std::pair{33, 128}}) {
    for (const bool relu : {true, false}) {
      const Floats y = random_floats(n * out, 14), dy = random_floats(n * out, 15);
      Floats ref_dy = dy, ref_db(static_cast<size_t>(out), kNaN);
      if (relu) cpu::relu_backward(y.data(), dy.data(), ref_dy.data(), n * out);
      cpu::bias_add_backward(ref_dy.data(), ref_db.data(), n, out, 1);
      Floats got_dy = dy, got_db(static_cast<size_t>(out), kNaN);
      for (int64_t j = 0; j < out; ++j)
        got_db[static_cast<size_t>(j)] =
            kern::dense_bias_grad_column(y.data(), got_dy.data(), n, out, relu, j);
      EXPECT_EQ(got_dy, ref_dy);
      EXPECT_EQ(got_db, ref_db);  // rows summed in the reference's order: the same float sum
    }
  }
}

// Softmax tolerance: 1e-6 relative (+1e-9 absolute for the near-zero probabilities' gradients).
// The host computes the very expressions of the reference; the bound is the one test_cuda holds
// the device to, whose expf/logf are within 2 ulp.
TEST(KernelMath, SoftmaxCrossEntropyRowsMatchTheReference) {
  struct Case {
    int64_t n, classes;
    double scale;  // logits uniform in [-scale, scale]
  };
  for (const Case c :
       {Case{1, 10, 5}, Case{7, 3, 5}, Case{128, 10, 5}, Case{5, 1, 5}, Case{9, 10, 1e4}}) {
    const Floats z = random_floats(c.n * c.classes, 16, -c.scale, c.scale);
    std::vector<int32_t> labels(static_cast<size_t>(c.n));
    for (int64_t i = 0; i < c.n; ++i)
      labels[static_cast<size_t>(i)] = static_cast<int32_t>((i * 7 + 3) % c.classes);
    Floats ref_dz(z.size(), kNaN);
    const cpu::LossSums ref =
        cpu::softmax_xent(z.data(), labels.data(), c.n, c.classes, ref_dz.data());
    Floats dz(z.size(), kNaN);
    double loss = 0;
    int64_t correct = 0;
    const float inv_n = 1.0f / static_cast<float>(c.n);
    for (int64_t i = 0; i < c.n; ++i) {
      const kern::RowLoss r =
          kern::softmax_xent_row(z.data() + i * c.classes, c.classes,
                                 labels[static_cast<size_t>(i)], inv_n, dz.data() + i * c.classes);
      loss += r.loss;
      correct += r.correct;
    }
    EXPECT_TRUE(std::isfinite(loss)) << "scale " << c.scale;
    EXPECT_NEAR(loss, ref.loss, 1e-6 * (1.0 + std::abs(ref.loss))) << "scale " << c.scale;
    EXPECT_EQ(correct, ref.correct);
    for (size_t i = 0; i < dz.size(); ++i) {
      ASSERT_TRUE(std::isfinite(dz[i])) << i;
      EXPECT_NEAR(dz[i], ref_dz[i], 1e-9 + 1e-6 * std::abs(ref_dz[i])) << i;
    }
    // Without a gradient buffer the row only measures.
    const kern::RowLoss r0 =
        kern::softmax_xent_row(z.data(), c.classes, labels[0], inv_n, static_cast<float*>(nullptr));
    EXPECT_TRUE(std::isfinite(r0.loss));
  }
}

TEST(KernelMath, SoftmaxRowsMatchTheReference) {
  for (const auto& [n, classes] : {std::pair{1, 10}, std::pair{7, 3}, std::pair{64, 10}}) {
    const Floats z = random_floats(n * classes, 17, -30, 30);
    Floats ref(z.size(), kNaN), got(z.size(), kNaN);
    cpu::softmax(z.data(), ref.data(), n, classes);
    for (int64_t i = 0; i < n; ++i)
      kern::softmax_row(z.data() + i * classes, classes, got.data() + i * classes);
    for (size_t i = 0; i < got.size(); ++i)
      EXPECT_NEAR(got[i], ref[i], 1e-9 + 1e-6 * std::abs(ref[i])) << i;
  }
}

TEST(KernelMath, AdamStepSizeIsAdamAlpha) {
  const AdamConfig c;
  for (const int64_t step : {int64_t{0}, int64_t{1}, int64_t{9}, int64_t{1000}, int64_t{1000000}}) {
    // The same formula through the same libm: equal within 4 ulp (EXPECT_DOUBLE_EQ), and the
    // device's pow is within 2 ulp, far below the float the kernel rounds it to.
    EXPECT_DOUBLE_EQ(kern::adam_alpha_at(c.lr, c.beta1, c.beta2, step), adam_alpha(c, step))
        << step;
  }
}

// AdamW's decay inside the element function: with decay d it is p - d p, then Adam, as the CPU's
// adam_update with a mask of ones; d = 0 changes nothing.
TEST(KernelMath, AdamWDecayMatchesTheReference) {
  const AdamConfig c;
  const int64_t count = 1001;
  Floats p = random_floats(count, 28), m(static_cast<size_t>(count), 0.0f), v = m;
  Floats rp = p, rm = m, rv = v;
  std::vector<uint8_t> mask(static_cast<size_t>(count));
  for (size_t i = 0; i < mask.size(); ++i) mask[i] = static_cast<uint8_t>(i % 4 != 0);
  const float decay = 1e-3f * 0.3f;
  for (int64_t step = 0; step < 3; ++step) {
    const Floats g = random_floats(count, 29 + static_cast<uint64_t>(step), -0.01, 0.01);
    const auto alpha = static_cast<float>(adam_alpha(c, step));
    cpu::adam_update(rp.data(), g.data(), rm.data(), rv.data(), count, alpha,
                     static_cast<float>(c.beta1), static_cast<float>(c.beta2),
                     static_cast<float>(c.epsilon), decay, mask.data());
    for (int64_t i = 0; i < count; ++i)
      kern::adam_at(p.data(), g.data(), m.data(), v.data(), i, alpha, static_cast<float>(c.beta1),
                    static_cast<float>(c.beta2), static_cast<float>(c.epsilon),
                    mask[static_cast<size_t>(i)] ? decay : 0.0f);
  }
  for (size_t i = 0; i < p.size(); ++i) EXPECT_NEAR(p[i], rp[i], 1e-6 * std::abs(rp[i])) << i;
}

// The L2 element function against cpu::l2_penalty: the same gradient, the same squares.
TEST(KernelMath, L2ElementMatchesTheReference) {
  const int64_t count = 513;
  const Floats p = random_floats(count, 38);
  Floats g = random_floats(count, 39), rg = g;
  std::vector<uint8_t> mask(static_cast<size_t>(count));
  for (size_t i = 0; i < mask.size(); ++i) mask[i] = static_cast<uint8_t>(i % 3 != 2);
  const double l2 = 2e-3;
  const double want = cpu::l2_penalty(p.data(), rg.data(), mask.data(), count, l2);
  double sum = 0;
  for (int64_t i = 0; i < count; ++i)
    sum += kern::l2_at(p.data(), g.data(), mask.data(), i, static_cast<float>(2 * l2));
  EXPECT_EQ(g, rg);
  EXPECT_NEAR(l2 * sum, want, 1e-14 * want);
  EXPECT_GT(want, 0.0);
}

// Adam tolerance: 1e-6 relative on p, m, v after three updates. The expressions are the
// reference's; on the device nvcc may fuse beta*m + (1-beta)*g into an FMA (a different rounding).
TEST(KernelMath, AdamUpdateMatchesTheReference) {
  const AdamConfig c;
  const int64_t count = 1001;
  Floats p = random_floats(count, 18), m(static_cast<size_t>(count), 0.0f), v = m;
  Floats rp = p, rm = m, rv = v;
  for (int64_t step = 0; step < 3; ++step) {
    const Floats g = random_floats(count, 19 + static_cast<uint64_t>(step), -0.01, 0.01);
    const auto alpha = static_cast<float>(adam_alpha(c, step));
    cpu::adam_update(rp.data(), g.data(), rm.data(), rv.data(), count, alpha,
                     static_cast<float>(c.beta1), static_cast<float>(c.beta2),
                     static_cast<float>(c.epsilon));
    const auto a = static_cast<float>(kern::adam_alpha_at(c.lr, c.beta1, c.beta2, step));
    for (int64_t i = 0; i < count; ++i)
      kern::adam_at(p.data(), g.data(), m.data(), v.data(), i, a, static_cast<float>(c.beta1),
                    static_cast<float>(c.beta2), static_cast<float>(c.epsilon));
  }
  for (size_t i = 0; i < p.size(); ++i) {
    EXPECT_NEAR(p[i], rp[i], 1e-6 * std::abs(rp[i])) << i;
    EXPECT_NEAR(m[i], rm[i], 1e-6 * std::abs(rm[i])) << i;
    EXPECT_NEAR(v[i], rv[i], 1e-6 * std::abs(rv[i])) << i;
  }
}

TEST(KernelMath, GatherNormalizesTheSamplesTheCursorPointsAt) {
  const int64_t samples = 20, size = 15, n = 6;
  std::mt19937_64 rng(20);
  std::vector<uint8_t> images(static_cast<size_t>(samples * size)),
      labels(static_cast<size_t>(samples));
  for (auto& b : images) b = static_cast<uint8_t>(rng() % 256);
  for (auto& b : labels) b = static_cast<uint8_t>(rng() % 10);
  std::vector<int32_t> order(static_cast<size_t>(samples));
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), rng);
  int64_t counters[kCounterCount] = {0, 9};  // cursor 9: samples order[9..14]
  CpuBackend<float> cpu_be;
  Floats ref_x(static_cast<size_t>(n * size), kNaN);
  std::vector<int32_t> ref_y(static_cast<size_t>(n), -1);
  cpu_be.gather(images.data(), labels.data(), size, order.data(), counters, n, ref_x.data(),
                ref_y.data());
  const int32_t* idx = order.data() + counters[kCursorCounter];
  const Floats x = over_all(n * size, [&](int64_t e) {
    return kern::gather_pixel_at<float>(images.data(), idx, size, e);
  });
  std::vector<int32_t> y(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) y[static_cast<size_t>(i)] = labels[static_cast<size_t>(idx[i])];
  EXPECT_EQ(x, ref_x);
  EXPECT_EQ(y, ref_y);
}

TEST(KernelMath, CountersAdvanceAsTheCpuBackendDoes) {
  int64_t got[kCounterCount] = {4, 100}, ref[kCounterCount] = {4, 100};
  kern::end_step_on(&got[kStepCounter], &got[kCursorCounter], 32);
  CpuBackend<float>().end_step(ref, 32);
  EXPECT_EQ(got[kStepCounter], ref[kStepCounter]);
  EXPECT_EQ(got[kCursorCounter], ref[kCursorCounter]);
}

// The device sorts (key, position) pairs with Thrust's stable sort; the same sort on the host over
// shuffle_key_at's keys must give epoch_order's permutation.
TEST(KernelMath, ShuffleKeysStablySortedGiveEpochOrder) {
  for (const int64_t n : {int64_t{1}, int64_t{2}, int64_t{1000}, int64_t{5001}}) {
    std::vector<int32_t> indices(static_cast<size_t>(n));
    std::iota(indices.begin(), indices.end(), 300);
    for (const int64_t epoch : {int64_t{0}, int64_t{3}}) {
      std::vector<uint32_t> keys(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i)
        keys[static_cast<size_t>(i)] = kern::shuffle_key_at(42, epoch, i);
      std::vector<int32_t> pos(static_cast<size_t>(n));
      std::iota(pos.begin(), pos.end(), 0);
      std::stable_sort(pos.begin(), pos.end(), [&](int32_t a, int32_t b) {
        return keys[static_cast<size_t>(a)] < keys[static_cast<size_t>(b)];
      });
      std::vector<int32_t> order(static_cast<size_t>(n));
      for (size_t i = 0; i < order.size(); ++i) order[i] = indices[static_cast<size_t>(pos[i])];
      EXPECT_EQ(order, epoch_order(indices, 42, epoch)) << "n=" << n << " epoch=" << epoch;
    }
  }
}

// A simulated launch: every (block, thread) of a deliberately small grid runs the grid-stride loop
// the kernels run; every element must be visited exactly once.
TEST(KernelMath, GridStrideLoopCoversEveryElementOnceWithSmallGrids) {
  for (const int block : {1, 32, 256}) {
    for (const int grid : {1, 2, 3, 7}) {
      for (const int64_t count :
           {int64_t{0}, int64_t{1}, int64_t{5}, int64_t{1000}, int64_t{3 * 256 + 1}}) {
        std::vector<int> visits(static_cast<size_t>(count), 0);
        const int64_t threads = int64_t{grid} * block;
        for (int64_t b = 0; b < grid; ++b)
          for (int64_t t = 0; t < block; ++t)
            kern::for_each_strided(b * block + t, threads, count,
                                   [&](int64_t i) { ++visits[static_cast<size_t>(i)]; });
        EXPECT_TRUE(std::all_of(visits.begin(), visits.end(), [](int v) { return v == 1; }))
            << "block " << block << " grid " << grid << " count " << count;
      }
    }
  }
}

// The reducing kernels' mapping: blocks stride over channels, a block's threads over the channel.
TEST(KernelMath, BlockPerChannelLoopCoversEveryElementOnceWithSmallGrids) {
  const int64_t channels = 5, per_channel = 37;
  for (const int grid : {1, 2, 5, 8}) {
    const int block = 4;
    std::vector<int> visits(static_cast<size_t>(channels * per_channel), 0);
    for (int64_t b = 0; b < grid; ++b)
      for (int64_t j = b; j < channels; j += grid)
        for (int64_t t = 0; t < block; ++t)
          kern::for_each_strided(t, block, per_channel, [&](int64_t e) {
            ++visits[static_cast<size_t>(j * per_channel + e)];
          });
    EXPECT_TRUE(std::all_of(visits.begin(), visits.end(), [](int v) { return v == 1; }))
        << "grid " << grid;
  }
}

TEST(KernelMath, LaunchSizeIsCappedAndNeverZero) {
  EXPECT_EQ(kern::blocks_for(0, 256, 100), 1);
  EXPECT_EQ(kern::blocks_for(1, 256, 100), 1);
  EXPECT_EQ(kern::blocks_for(256, 256, 100), 1);
  EXPECT_EQ(kern::blocks_for(257, 256, 100), 2);
  EXPECT_EQ(kern::blocks_for(int64_t{1} << 40, 256, 100), 100);
  EXPECT_EQ(kern::blocks_for(int64_t{1} << 40, 256, 0), 1);
}

}  // namespace
}  // namespace mg
