// The numbered kernel variants without a GPU: the variant-set syntax (kernels/variants.hpp) and
// the 32-bit index arithmetic of the variant-1 kernels (kernels/*_math.cuh), run over every
// point of the grids' boxes and compared with the CPU reference, exactly (the variants copy, pad,
// pick and sum in the reference's order). The GPU-vs-CPU tests of every variant are in
// tests/test_cuda.cpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/cpu_ops.hpp"
#include "kernels/conv_math.cuh"
#include "kernels/pool_math.cuh"
#include "kernels/variants.hpp"
#include "test_util.hpp"

namespace mg {
namespace {

using Floats = std::vector<float>;
using kern::KernelVariants;
using kern::VariantOp;
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

Floats random_floats(int64_t n, uint64_t seed) {
  const std::vector<double> d = test::random_vector(static_cast<size_t>(n), seed, -1.0, 1.0);
  return Floats(d.begin(), d.end());
}

Floats tied_floats(int64_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  Floats f(static_cast<size_t>(n));
  for (auto& v : f) v = static_cast<float>(rng() % 3) - 1.0f;
  return f;
}

// --- the variant set ----------------------------------------------------------------------------

TEST(KernelVariants, DefaultIsVariantZeroEverywhere) {
  const KernelVariants v = kern::parse_kernel_variants("", "test");
  for (const auto& info : kern::kVariantOps) EXPECT_EQ(v[info.op], 0) << info.name;
  EXPECT_EQ(v.label(), "v0");
}

TEST(KernelVariants, ParsesOpsAllAndLaterEntriesOverride) {
  const KernelVariants a = kern::parse_kernel_variants("conv_grad_prepare=1,im2col=1", "test");
  EXPECT_EQ(a[VariantOp::kConvGradPrepare], 1);
  EXPECT_EQ(a[VariantOp::kIm2col], 1);
  EXPECT_EQ(a[VariantOp::kCol2im], 0);
  EXPECT_EQ(a.label(), "v11000000000");
  const KernelVariants b = kern::parse_kernel_variants("all=1,maxpool_backward=0", "test");
  EXPECT_EQ(b[VariantOp::kPoolForward], 1);
  EXPECT_EQ(b[VariantOp::kPoolBackward], 0);
  EXPECT_EQ(KernelVariants::all(1).label(), "v1");
  // spec() parses back to the same set.
  EXPECT_EQ(kern::parse_kernel_variants(b.spec(), "test"), b);
  EXPECT_EQ(kern::parse_kernel_variants(KernelVariants::all(1).spec(), "test"),
            KernelVariants::all(1));
}

TEST(KernelVariants, BadEntriesAreErrorsThatNameTheSourceEntryAndChoices) {
  for (const char* bad : {"im2col=2", "im2col", "=1", "im2col=", "conv=1", "im2col=x",
                          "im2col=1,", ",im2col=1", "all=7", "im2col=99999999999"}) {
    try {
      kern::parse_kernel_variants(bad, "MNIST_GPU_VARIANTS");
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const std::invalid_argument& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find("MNIST_GPU_VARIANTS"), std::string::npos) << m;
      EXPECT_NE(m.find("conv_grad_prepare (0..1)"), std::string::npos) << m;
    }
  }
}

TEST(KernelVariants, EachAtMostCapsEveryOpAtItsHighestVariant) {
  EXPECT_EQ(KernelVariants::each_at_most(0), KernelVariants{});
  EXPECT_EQ(KernelVariants::each_at_most(1), KernelVariants::all(1)) << "every op has a variant 1";
  const KernelVariants top = KernelVariants::each_at_most(99);
  for (const auto& info : kern::kVariantOps) EXPECT_EQ(top[info.op], info.count - 1) << info.name;
}

// --- conv_gemm variant 1: the chunk plan
// ----------------------------------------------------------

// The chunks cover the batch in order (count - 1 full chunks and a last of 1..images), each
// chunk's column matrix stays within the budget unless one image alone passes it, a batch whose
// whole matrix fits is one chunk, and the chunks are as even as the count allows.
TEST(KernelVariants, ConvChunksCoverTheBatchWithinTheBudget) {
  const kern::ConvDims shapes[] = {{128, 1, 28, 28, 32},
                                   {128, 32, 14, 14, 64},
                                   {7, 3, 5, 4, 2},
                                   {1, 2, 6, 7, 3, 5, 2},
                                   {1000, 32, 14, 14, 64}};
  for (const kern::ConvDims& shape : shapes) {
    for (const int64_t n : {int64_t{1}, int64_t{2}, int64_t{5}, int64_t{128}, shape.n}) {
      kern::ConvDims d = shape;
      d.n = n;
      const int64_t per_image = d.k() * d.ohw() * int64_t{sizeof(float)};
      for (const int64_t budget : {int64_t{1}, per_image, 2 * per_image + 1, 3 * per_image,
                                   kern::kConvChunkBytes, n * per_image, int64_t{1} << 40}) {
        SCOPED_TRACE("n=" + std::to_string(n) + " k=" + std::to_string(d.k()) +
                     " budget=" + std::to_string(budget));
        const kern::ConvChunks c = kern::conv_chunks(d, budget);
        ASSERT_GE(c.count, 1);
        ASSERT_GE(c.images, 1);
        const int64_t last = n - (c.count - 1) * c.images;
        EXPECT_GE(last, 1);
        EXPECT_LE(last, c.images);
        EXPECT_TRUE(c.images == 1 || c.images * per_image <= budget || c.count == 1);
        EXPECT_EQ(c.count == 1, n * per_image <= budget || n == 1);
        // As even as it goes: no chunk count could use smaller chunks within the budget.
        const int64_t fit = std::max<int64_t>(budget / per_image, 1);
        if (c.count > 1) {
          EXPECT_EQ(c.count, (n + fit - 1) / fit);
        }
      }
    }
  }
  // The seed model at batch 128: conv2d (3.6 MB of column matrix) whole, conv2d_1 (29 MB) in
  // four chunks of 32 images.
  const kern::ConvChunks conv2d = kern::conv_chunks({128, 1, 28, 28, 32});
  const kern::ConvChunks conv2d_1 = kern::conv_chunks({128, 32, 14, 14, 64});
  EXPECT_EQ(conv2d.count, 1);
  EXPECT_EQ(conv2d_1.count, 4);
  EXPECT_EQ(conv2d_1.images, 32);
}

// --- variant 1's index arithmetic ---------------------------------------------------------------

// The seed model's shapes (batch cut to 2) and odd ones; the last pair: kernel, pad.
const kern::ConvDims kShapes[] = {
    {2, 1, 28, 28, 4},    {2, 32, 14, 14, 3},   {1, 1, 1, 1, 1},     {1, 3, 5, 7, 2},
    {2, 5, 1, 6, 1},      {2, 3, 5, 4, 2, 1, 0}, {1, 2, 6, 7, 3, 5, 2}, {2, 2, 8, 7, 2, 5, 0},
    {2, 1, 9, 8, 1, 7, 0}, {2, 3, 5, 6, 2, 3, 0},
};

cpu::ConvDims cpu_dims(const kern::ConvDims& d) {
  return {d.n, d.c_in, d.h, d.w, d.c_out, d.kernel, d.pad};
}

template <int K, int PAD>
Floats im2col_v1(const Floats& x, const kern::ConvDims& d) {
  const kern::ConvDims32 d32 = kern::conv_dims32(d);
  const int32_t ohw = d32.oh * d32.ow, cols = d32.n * ohw;
  Floats col(static_cast<size_t>(d.k() * d.cols()), kNaN);
  for (int32_t img = 0; img < d32.n; ++img)
    for (int32_t row = 0; row < static_cast<int32_t>(d.k()); ++row)
      for (int32_t p = 0; p < ohw; ++p)
        col[static_cast<size_t>(row * cols + img * ohw + p)] =
            kern::im2col_v1_at<float, K, PAD>(x.data(), d32, row, img, p);
  return col;
}

template <int K, int PAD>
Floats col2im_v1(const Floats& col, const kern::ConvDims& d) {
  const kern::ConvDims32 d32 = kern::conv_dims32(d);
  const int32_t hw = d32.h * d32.w;
  Floats dx(static_cast<size_t>(d.n * d.c_in * d.hw()), kNaN);
  for (int32_t img = 0; img < d32.n; ++img)
    for (int32_t c = 0; c < d32.c_in; ++c)
      for (int32_t p = 0; p < hw; ++p)
        dx[static_cast<size_t>((img * d32.c_in + c) * hw + p)] =
            kern::col2im_v1_at<float, K, PAD>(col.data(), d32, c, img, p);
  return dx;
}

TEST(KernelVariants, Im2colAndCol2imV1EqualTheReferenceExactly) {
  uint64_t seed = 20;
  for (const auto& d : kShapes) {
    SCOPED_TRACE("n=" + std::to_string(d.n) + " c=" + std::to_string(d.c_in) + " " +
                 std::to_string(d.h) + "x" + std::to_string(d.w) + " k=" +
                 std::to_string(d.kernel) + " pad=" + std::to_string(d.pad));
    ASSERT_TRUE(kern::conv_fits_int32(d));
    const Floats x = random_floats(d.n * d.c_in * d.hw(), ++seed);
    Floats ref(static_cast<size_t>(d.k() * d.cols()), kNaN);
    cpu::im2col(x.data(), cpu_dims(d), ref.data());
    EXPECT_EQ((im2col_v1<0, 0>(x, d)), ref);
    const Floats col = random_floats(d.k() * d.cols(), ++seed);
    Floats dref(static_cast<size_t>(d.n * d.c_in * d.hw()), kNaN);
    cpu::col2im(col.data(), cpu_dims(d), dref.data());
    EXPECT_EQ((col2im_v1<0, 0>(col, d)), dref);
    if (d.is_3x3_same()) {  // the compile-time 3x3 form the seed model runs
      EXPECT_EQ((im2col_v1<3, 1>(x, d)), ref);
      EXPECT_EQ((col2im_v1<3, 1>(col, d)), dref);
    }
  }
}

TEST(KernelVariants, ConvOutputAndGradientMaskV1EqualTheReference) {
  for (const auto& d : kShapes) {
    for (const bool relu : {true, false}) {
      const auto n = static_cast<int32_t>(d.n), c = static_cast<int32_t>(d.c_out),
                 s = static_cast<int32_t>(d.ohw());
      const int64_t count = d.n * d.c_out * d.ohw();
      const Floats tmp = random_floats(count, 40), b = random_floats(d.c_out, 41);
      Floats ref(static_cast<size_t>(count), kNaN), got(ref.size(), kNaN);
      cpu::cnhw_bias_act_to_nchw(tmp.data(), b.data(), relu, d.n, d.c_out, d.ohw(), ref.data());
      for (int32_t i = 0; i < n; ++i)
        for (int32_t j = 0; j < c; ++j)
          for (int32_t k = 0; k < s; ++k)
            got[static_cast<size_t>((i * c + j) * s + k)] = kern::conv_output_v1_at(
                tmp.data(), b[static_cast<size_t>(j)], n, s, relu, i, j, k);
      EXPECT_EQ(got, ref) << "relu=" << relu;

      // The v1 permute: dy_cn[j, i*s + k] = mask(y, dy)[i, j, k], as the reference's.
      const Floats y = random_floats(count, 42), dy = random_floats(count, 43);
      Floats ref_cn(static_cast<size_t>(count), kNaN), db(static_cast<size_t>(d.c_out));
      cpu::nchw_act_grad_to_cnhw(y.data(), dy.data(), relu, d.n, d.c_out, d.ohw(), ref_cn.data(),
                                 db.data());
      Floats cn(ref_cn.size(), kNaN);
      for (int32_t i = 0; i < n; ++i)
        for (int32_t j = 0; j < c; ++j)
          for (int32_t k = 0; k < s; ++k) {
            const auto src = static_cast<size_t>((i * c + j) * s + k);
            cn[static_cast<size_t>(j * n * s + i * s + k)] =
                kern::conv_grad_mask(y[src], dy[src], relu);
          }
      EXPECT_EQ(cn, ref_cn) << "relu=" << relu;
    }
  }
}

TEST(KernelVariants, MaxPoolV1PicksAndGathersAsTheReference) {
  for (const kern::PoolDims d : {kern::PoolDims{1, 2, 2}, kern::PoolDims{1, 1, 1},
                                 kern::PoolDims{3, 5, 7}, kern::PoolDims{4, 28, 28},
                                 kern::PoolDims{6, 14, 14}, kern::PoolDims{5, 3, 2}}) {
    SCOPED_TRACE("planes=" + std::to_string(d.planes) + " " + std::to_string(d.h) + "x" +
                 std::to_string(d.w));
    const kern::PoolDims32 d32 = kern::pool_dims32(d);
    const Floats x = tied_floats(d.in_count(), 50);
    Floats ref_y(static_cast<size_t>(d.out_count()), kNaN), y(ref_y.size(), kNaN);
    std::vector<int32_t> ref_arg(ref_y.size(), -1), arg(ref_y.size(), -1);
    cpu::maxpool2x2_forward(x.data(), ref_y.data(), ref_arg.data(), d.planes, 1, d.h, d.w);
    for (int32_t p = 0; p < d32.planes; ++p)
      for (int32_t r = 0; r < d32.oh * d32.ow; ++r) {
        const kern::PoolPick<float> pick = kern::maxpool2x2_v1_at(x.data(), d32, p, r);
        y[static_cast<size_t>(p * d32.oh * d32.ow + r)] = pick.value;
        arg[static_cast<size_t>(p * d32.oh * d32.ow + r)] = pick.arg;
      }
    EXPECT_EQ(y, ref_y);
    EXPECT_EQ(arg, ref_arg);

    const Floats dy = random_floats(d.out_count(), 51);
    Floats ref_dx(static_cast<size_t>(d.in_count()), kNaN), dx(ref_dx.size(), kNaN);
    cpu::maxpool2x2_backward(dy.data(), ref_arg.data(), ref_dx.data(), d.planes, 1, d.h, d.w);
    for (int32_t p = 0; p < d32.planes; ++p)
      for (int32_t r = 0; r < d32.h * d32.w; ++r)
        dx[static_cast<size_t>(p * d32.h * d32.w + r)] =
            kern::maxpool2x2_grad_v1_at(dy.data(), ref_arg.data(), d32, p, r);
    EXPECT_EQ(dx, ref_dx);
  }
}

// conv_gemm variant 2's gather and scatter: column j of the implicit column matrix is the
// reference's im2col column j, exactly, and the GEMM output (co, j) lands where the reference's
// permute puts tmp[co, j], so bias + ReLU through implicit_output_index equals
// cnhw_bias_act_to_nchw.
TEST(KernelVariants, ImplicitGemmGatherAndScatterEqualTheReference) {
  uint64_t seed = 70;
  for (const auto& d : kShapes) {
    SCOPED_TRACE("n=" + std::to_string(d.n) + " c=" + std::to_string(d.c_in) + " " +
                 std::to_string(d.h) + "x" + std::to_string(d.w) +
                 " k=" + std::to_string(d.kernel) + " pad=" + std::to_string(d.pad));
    const kern::ConvDims32 d32 = kern::conv_dims32(d);
    const auto rows = static_cast<int32_t>(d.k()), cols = static_cast<int32_t>(d.cols());
    const Floats x = random_floats(d.n * d.c_in * d.hw(), ++seed);
    Floats ref(static_cast<size_t>(d.k() * d.cols()), kNaN);
    cpu::im2col(x.data(), cpu_dims(d), ref.data());
    Floats col(ref.size(), kNaN), col3(ref.size(), kNaN);
    for (int32_t r = 0; r < rows; ++r)
      for (int32_t j = 0; j < cols; ++j) {
        col[static_cast<size_t>(r * cols + j)] = kern::implicit_col_at(x.data(), d32, r, j);
        if (d.is_3x3_same())
          col3[static_cast<size_t>(r * cols + j)] =
              kern::implicit_col_at<float, 3, 1>(x.data(), d32, r, j);
      }
    EXPECT_EQ(col, ref);
    if (d.is_3x3_same()) {
      EXPECT_EQ(col3, ref);
    }

    const Floats tmp = random_floats(d.c_out * d.cols(), ++seed),
                 b = random_floats(d.c_out, ++seed);
    for (const bool relu : {true, false}) {
      Floats want(tmp.size(), kNaN), got(tmp.size(), kNaN);
      cpu::cnhw_bias_act_to_nchw(tmp.data(), b.data(), relu, d.n, d.c_out, d.ohw(), want.data());
      for (int32_t co = 0; co < d32.c_out; ++co)
        for (int32_t j = 0; j < cols; ++j) {
          const float v = tmp[static_cast<size_t>(co * cols + j)] + b[static_cast<size_t>(co)];
          got[static_cast<size_t>(kern::implicit_output_index(d32, co, j))] =
              relu && v < 0.0f ? 0.0f : v;
        }
      EXPECT_EQ(got, want) << "relu=" << relu;
    }
  }
}

// conv_pool variant 1: the fused epilogue over every pooled output equals the reference's
// cnhw_bias_act_to_nchw then maxpool2x2_forward exactly (values and argmax, ties included), and
// the fused prologue over every window writes the reference's maxpool2x2_backward then
// nchw_act_grad_to_cnhw exactly, every entry of dz once (poisoned with NaN before), with the
// windows' gradients summing to the reference's bias gradient.
TEST(KernelVariants, ConvPoolEpilogueAndPrologueEqualTheReference) {
  uint64_t seed = 90;
  int shapes = 0;
  for (const auto& d : kShapes) {
    if (!kern::conv_pool_fits(d)) continue;  // no 2x2 window: a pool layer is refused there
    ++shapes;
    SCOPED_TRACE("n=" + std::to_string(d.n) + " c_out=" + std::to_string(d.c_out) + " " +
                 std::to_string(d.oh()) + "x" + std::to_string(d.ow()));
    const kern::ConvDims32 d32 = kern::conv_dims32(d);
    const int64_t count = d.n * d.c_out * d.ohw();
    const int64_t pooled_count = d.n * d.c_out * (d.oh() / 2) * (d.ow() / 2);
    const int32_t windows = (d32.oh / 2) * (d32.ow / 2);
    for (const bool ties : {false, true}) {
      for (const bool relu : {true, false}) {
        SCOPED_TRACE("ties=" + std::to_string(ties) + " relu=" + std::to_string(relu));
        const Floats tmp = ties ? tied_floats(count, ++seed) : random_floats(count, ++seed);
        const Floats b = ties ? tied_floats(d.c_out, ++seed) : random_floats(d.c_out, ++seed);
        Floats y(static_cast<size_t>(count), kNaN), ref(static_cast<size_t>(pooled_count), kNaN);
        std::vector<int32_t> ref_arg(ref.size(), -1);
        cpu::cnhw_bias_act_to_nchw(tmp.data(), b.data(), relu, d.n, d.c_out, d.ohw(), y.data());
        cpu::maxpool2x2_forward(y.data(), ref.data(), ref_arg.data(), d.n, d.c_out, d.oh(), d.ow());
        Floats got(ref.size(), kNaN);
        std::vector<int32_t> arg(ref.size(), -1);
        for (int32_t i = 0; i < d32.n; ++i)
          for (int32_t j = 0; j < d32.c_out; ++j)
            for (int32_t r = 0; r < windows; ++r) {
              const kern::PoolPick<float> pick = kern::conv_pool_pick_at(
                  tmp.data(), b[static_cast<size_t>(j)], d32, relu, i, j, r);
              const auto o = static_cast<size_t>((i * d32.c_out + j) * windows + r);
              got[o] = pick.value;
              arg[o] = pick.arg;
            }
        EXPECT_EQ(got, ref);
        EXPECT_EQ(arg, ref_arg);

        // Backward from the reference's own y, pooled and argmax.
        const Floats dpooled = random_floats(pooled_count, ++seed);
        Floats dy(static_cast<size_t>(count), kNaN), ref_dz(dy.size(), kNaN);
        Floats ref_db(static_cast<size_t>(d.c_out), kNaN);
        cpu::maxpool2x2_backward(dpooled.data(), ref_arg.data(), dy.data(), d.n, d.c_out, d.oh(),
                                 d.ow());
        cpu::nchw_act_grad_to_cnhw(y.data(), dy.data(), relu, d.n, d.c_out, d.ohw(), ref_dz.data(),
                                   ref_db.data());
        Floats dz(ref_dz.size(), kNaN);
        for (int32_t j = 0; j < d32.c_out; ++j) {
          double db = 0;
          float* row = dz.data() + static_cast<int64_t>(j) * d.n * d.ohw();
          for (int32_t i = 0; i < d32.n; ++i)
            for (int32_t r = 0; r < windows; ++r)
              db += kern::conv_pool_window_grad(ref.data(), dpooled.data(), ref_arg.data(), d32,
                                                relu, i, j, r, row);
          const double want = ref_db[static_cast<size_t>(j)];
          EXPECT_NEAR(db, want, 1e-5 * (1 + std::abs(want))) << "db[" << j << "]";
        }
        EXPECT_EQ(dz, ref_dz);
      }
    }
  }
  EXPECT_GE(shapes, 6) << "the odd shapes must be in the test";
}

// The boundary check: a layer with an index at or past 2^30 (kIndex32Limit) is refused (its
// launcher then runs variant 0, with 64-bit indices).
TEST(KernelVariants, SizesPast32BitsAreRefusedAtTheBoundary) {
  const kern::ConvDims seed_conv2{128, 32, 14, 14, 64};
  EXPECT_TRUE(kern::conv_fits_int32(seed_conv2));
  const kern::ConvDims huge{16384, 32, 28, 28, 64};  // col: 288 * 16384 * 784 = 3.7e9 elements
  EXPECT_FALSE(kern::conv_fits_int32(huge));
  // Just below and at the limit: x of 2^30 - 1 elements passes, 2^30 does not.
  EXPECT_TRUE(kern::conv_fits_int32(kern::ConvDims{1, 1, (1 << 15) - 1, 1 << 15, 1, 1, 0}));
  EXPECT_FALSE(kern::conv_fits_int32(kern::ConvDims{1, 1, 1 << 15, 1 << 15, 1, 1, 0}));
  EXPECT_TRUE(kern::conv_pool_fits(seed_conv2));
  EXPECT_FALSE(kern::conv_pool_fits(huge)) << "the fused op takes 32-bit layers only";
  EXPECT_FALSE(kern::conv_pool_fits(kern::ConvDims{2, 3, 1, 6, 2})) << "a 1-row map has no window";
  EXPECT_TRUE(kern::pool_fits_int32(kern::PoolDims{128 * 64, 14, 14}));
  EXPECT_FALSE(kern::pool_fits_int32(kern::PoolDims{int64_t{1} << 20, 32, 32}));
}

}  // namespace
}  // namespace mg
