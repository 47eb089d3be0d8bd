// Data augmentation (kernels/augment.cuh): the per-pixel map both backends run.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "engine/cpu_backend.hpp"
#include "kernels/augment.cuh"

namespace mg {
namespace {

std::vector<uint8_t> random_image(int rows, int cols, uint32_t seed) {
  std::vector<uint8_t> img(static_cast<size_t>(rows) * cols);
  uint32_t s = seed;
  for (auto& p : img) p = static_cast<uint8_t>((s = s * 1664525u + 1013904223u) >> 24);
  return img;
}

TEST(Augment, IdentityTransformReturnsThePixels) {
  const auto img = random_image(28, 28, 1);
  const AugmentTransform id{1.0f, 0.0f, 0.0f, 0.0f};
  for (int y = 0; y < 28; ++y)
    for (int x = 0; x < 28; ++x)
      ASSERT_EQ(augmented_pixel(img.data(), 28, 28, id, y, x), img[y * 28 + x] / 255.0f);
}

TEST(Augment, IntegerShiftMovesTheImageAndFillsBlack) {
  const auto img = random_image(9, 7, 2);
  const AugmentTransform shift{1.0f, 0.0f, 2.0f, -1.0f};  // right by 2, up by 1
  for (int y = 0; y < 9; ++y)
    for (int x = 0; x < 7; ++x) {
      const int sy = y + 1, sx = x - 2;
      const float want = (sy < 9 && sx >= 0) ? img[sy * 7 + sx] / 255.0f : 0.0f;
      ASSERT_NEAR(augmented_pixel(img.data(), 9, 7, shift, y, x), want, 1e-6f) << y << "," << x;
    }
}

TEST(Augment, QuarterTurnRotatesAboutTheCentre) {
  const auto img = random_image(5, 5, 3);
  const AugmentTransform quarter{0.0f, 1.0f, 0.0f, 0.0f};
  for (int y = 0; y < 5; ++y)
    for (int x = 0; x < 5; ++x) {
      // source = (sx, sy) = (cx + dy, cy - dx) with d = destination - centre
      const int sx = 2 + (y - 2), sy = 2 - (x - 2);
      ASSERT_NEAR(augmented_pixel(img.data(), 5, 5, quarter, y, x), img[sy * 5 + sx] / 255.0f, 1e-6f);
    }
}

TEST(Augment, DrawsStayInRangeAndDependOnStepAndPosition) {
  const AugmentConfig c{true, 2.0f, 10.0f};
  const float max_sin = std::sin(10.0f * 3.14159265f / 180.0f) + 1e-6f;
  for (uint64_t step = 0; step < 50; ++step)
    for (uint64_t i = 0; i < 20; ++i) {
      const AugmentTransform t = augment_transform(c, 7, step, i);
      ASSERT_LE(std::abs(t.shift_x), 2.0f);
      ASSERT_LE(std::abs(t.shift_y), 2.0f);
      ASSERT_LE(std::abs(t.sin_a), max_sin);
      ASSERT_NEAR(t.cos_a * t.cos_a + t.sin_a * t.sin_a, 1.0f, 1e-5f);
    }
  const AugmentTransform a = augment_transform(c, 7, 3, 4), b = augment_transform(c, 7, 3, 5),
                         d = augment_transform(c, 7, 4, 4);
  EXPECT_NE(a.shift_x, b.shift_x);
  EXPECT_NE(a.shift_x, d.shift_x);
}

// sincos_degrees replaces sinf/cosf (whose last bits differ between CUDA and glibc): it must be
// as good as they are to the eye of a rotation, within a few float ulps of the double-precision
// values, for any angle (quarter turns reduce it to [-45, 45] degrees).
TEST(Augment, SineAndCosineOfDegreesAreWithinAFewUlps) {
  const double pi = 3.14159265358979323846;
  double worst = 0;
  for (int i = -200000; i <= 200000; ++i) {
    const float deg = static_cast<float>(i) * 0.0036f;  // -720 .. 720 degrees
    const aug::SinCos sc = aug::sincos_degrees(deg);
    const double rad = static_cast<double>(deg) * pi / 180.0;
    worst = std::max({worst, std::abs(sc.sin - std::sin(rad)), std::abs(sc.cos - std::cos(rad))});
  }
  // 2 ulps of 1.0 (1.19e-7 each) for the roundings of the Horner steps and of the reduction of a
  // far angle; measured: 7.7e-8.
  EXPECT_LE(worst, 2.4e-7);
  // The quarter turns themselves land on the axes.
  for (const float deg : {0.0f, 90.0f, 180.0f, -90.0f, 270.0f, 360.0f}) {
    const aug::SinCos sc = aug::sincos_degrees(deg);
    EXPECT_NEAR(sc.sin, std::sin(deg * pi / 180.0), 1e-7) << deg;
    EXPECT_NEAR(sc.cos, std::cos(deg * pi / 180.0), 1e-7) << deg;
  }
  const aug::SinCos zero = aug::sincos_degrees(0.0f);
  EXPECT_EQ(zero.sin, 0.0f);
  EXPECT_EQ(zero.cos, 1.0f) << "no rotation must be the identity, exactly";
}

// No rotation and no shift reproduce the image exactly, whatever the draw's bits.
TEST(Augment, ZeroRangesGiveTheIdentity) {
  const AugmentConfig none{true, 0.0f, 0.0f};
  const auto img = random_image(28, 28, 4);
  for (uint64_t i = 0; i < 5; ++i) {
    const AugmentTransform t = augment_transform(none, 3, 7, i);
    EXPECT_EQ(t.cos_a, 1.0f);
    EXPECT_EQ(t.sin_a, 0.0f);
    for (int p = 0; p < 784; ++p)
      ASSERT_EQ(augmented_pixel(img.data(), 28, 28, t, p / 28, p % 28), img[p] / 255.0f) << p;
  }
}

TEST(Augment, CpuGatherAugmentsEachImageDeterministically) {
  const int n = 6;
  std::vector<uint8_t> images;
  for (int i = 0; i < n; ++i) {
    const auto img = random_image(28, 28, 10 + i);
    images.insert(images.end(), img.begin(), img.end());
  }
  std::vector<uint8_t> labels = {0, 1, 2, 3, 4, 5};
  std::vector<int32_t> order = {5, 4, 3, 2, 1, 0};
  CpuBackend<float> be;
  const AugmentConfig c{true, 2.0f, 10.0f};
  int64_t counters[kCounterCount] = {9, 0};
  std::vector<float> x1(n * 784, std::nanf("")), x2(n * 784, std::nanf("")), plain(n * 784);
  std::vector<int32_t> y1(n), y2(n), y3(n);
  be.gather_augmented(images.data(), labels.data(), Shape{1, 28, 28}, order.data(), counters, n, c, 1, x1.data(), y1.data());
  be.gather_augmented(images.data(), labels.data(), Shape{1, 28, 28}, order.data(), counters, n, c, 1, x2.data(), y2.data());
  be.gather(images.data(), labels.data(), 784, order.data(), counters, n, plain.data(), y3.data());
  EXPECT_EQ(x1, x2);
  EXPECT_EQ(y1, y3);
  EXPECT_NE(x1, plain);
  for (int i = 0; i < n; ++i) {
    const AugmentTransform t = augment_transform(c, 1, 9, static_cast<uint64_t>(i));
    const uint8_t* src = images.data() + order[i] * 784;
    for (int p = 0; p < 784; p += 37) ASSERT_EQ(x1[i * 784 + p], augmented_pixel(src, 28, 28, t, p / 28, p % 28));
  }
}

}  // namespace
}  // namespace mg
