// Data augmentation for training batches: each image is rotated by a small random angle and
// shifted by a few pixels (Keras ImageDataGenerator's rotation_range and width/height_shift_range),
// resampled bilinearly with black outside the source. The functions are shared by the CPU gather
// and the CUDA gather kernel; the draw is Philox keyed by (seed, step, position in batch), so a
// resumed run repeats the same transforms.
//
// Both backends augment bit for bit alike, because every float operation here is one IEEE-754
// binary32 operation rounded to nearest, done in the same order on both:
// - no library transcendentals: CUDA's sinf/cosf and glibc's differ in the last bits, so the
//   angle's sine and cosine come from the polynomials of sincos_degrees();
// - no contraction of a*b + c into an FMA, which rounds once instead of twice: nvcc contracts by
//   default, and so does g++ for C++ (-ffp-contract=fast) wherever the target has FMA (aarch64;
//   x86-64 from -march=haswell). On the device the __f*_rn intrinsics are never contracted; on the
//   host each product goes through a volatile, which must hold the rounded float;
// - floorf and the integer to float conversions are exact; the one division (by 255) is correctly
//   rounded on both.
// The values stay far from the float denormal range, so flush-to-zero settings do not matter.
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/philox.cuh"

namespace mg {

struct AugmentConfig {
  bool enabled = false;
  float max_shift = 2.0f;          // pixels, each axis, uniform in [-max_shift, max_shift]
  float max_rotation_deg = 10.0f;  // uniform in [-max, max]
};

// One image's transform: destination pixel (y, x) reads source (sy, sx).
struct AugmentTransform {
  float cos_a, sin_a, shift_x, shift_y;
};

namespace aug {

// a*b, a+b, a-b and a/b rounded once each, never fused with a neighbour.
MG_HOST_DEVICE float mul_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  const volatile float p = a * b;
  return p;
#endif
}
MG_HOST_DEVICE float add_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;  // operands come from mul_rn or memory: nothing to contract with
#endif
}
MG_HOST_DEVICE float sub_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
MG_HOST_DEVICE float div_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}

struct SinCos {
  float sin, cos;
};

// sin and cos of an angle in degrees, any angle: reduced by quarter turns to r in [-45, 45]
// degrees (k = the nearest integer to deg / 90), then Taylor polynomials in x = r in radians,
// whose truncation at |x| <= pi/4 is below 2e-9: within a few float ulps of the true values.
MG_HOST_DEVICE SinCos sincos_degrees(float deg) {
  const float k = floorf(add_rn(div_rn(deg, 90.0f), 0.5f));
  const float r = sub_rn(deg, mul_rn(k, 90.0f));
  const float x = mul_rn(r, 1.745329238e-02f);  // pi / 180
  const float x2 = mul_rn(x, x);
  float s = 2.755731884e-06f;  // 1/9!, then 1/7!, 1/5!, 1/3! with their signs
  s = add_rn(-1.984127011e-04f, mul_rn(x2, s));
  s = add_rn(8.333333768e-03f, mul_rn(x2, s));
  s = add_rn(-1.666666716e-01f, mul_rn(x2, s));
  s = add_rn(x, mul_rn(mul_rn(x, x2), s));
  float c = -2.755731998e-07f;  // -1/10!, then 1/8!, -1/6!, 1/4!, -1/2
  c = add_rn(2.480158764e-05f, mul_rn(x2, c));
  c = add_rn(-1.388888923e-03f, mul_rn(x2, c));
  c = add_rn(4.166666791e-02f, mul_rn(x2, c));
  c = add_rn(-0.5f, mul_rn(x2, c));
  c = add_rn(1.0f, mul_rn(x2, c));
  // The quarter turn k mod 4, in float (no conversion of a possibly huge k to int).
  const float q = sub_rn(k, mul_rn(4.0f, floorf(mul_rn(k, 0.25f))));
  if (q == 1.0f) return {c, -s};
  if (q == 2.0f) return {-s, -c};
  if (q == 3.0f) return {-c, s};
  return {s, c};
}

// A uniform draw in [-1, 1) (exact: uniform_from_bits has 24 bits).
MG_HOST_DEVICE float symmetric_from_bits(uint32_t bits) {
  return sub_rn(mul_rn(2.0f, uniform_from_bits(bits)), 1.0f);
}

}  // namespace aug

MG_HOST_DEVICE AugmentTransform augment_transform(const AugmentConfig& c, uint64_t seed,
                                                  uint64_t step, uint64_t position) {
  const Philox4 r = philox_block(seed, RngStream::kAugment, 0, step, position);
  const aug::SinCos a =
      aug::sincos_degrees(aug::mul_rn(aug::symmetric_from_bits(r.v[0]), c.max_rotation_deg));
  return {a.cos, a.sin, aug::mul_rn(aug::symmetric_from_bits(r.v[1]), c.max_shift),
          aug::mul_rn(aug::symmetric_from_bits(r.v[2]), c.max_shift)};
}

// The augmented value of destination pixel (y, x), scaled to [0, 1]. Rotation about the centre,
// then the shift; the inverse map samples the source bilinearly.
MG_HOST_DEVICE float augmented_pixel(const uint8_t* img, int rows, int cols, const AugmentTransform& t,
                                     int y, int x) {
  using aug::add_rn, aug::mul_rn, aug::sub_rn;
  const float cy = mul_rn(0.5f, static_cast<float>(rows - 1)),
              cx = mul_rn(0.5f, static_cast<float>(cols - 1));
  const float dy = sub_rn(sub_rn(static_cast<float>(y), cy), t.shift_y),
              dx = sub_rn(sub_rn(static_cast<float>(x), cx), t.shift_x);
  const float sx = add_rn(add_rn(mul_rn(t.cos_a, dx), mul_rn(t.sin_a, dy)), cx);
  const float sy = add_rn(add_rn(mul_rn(-t.sin_a, dx), mul_rn(t.cos_a, dy)), cy);
  const float fx = floorf(sx), fy = floorf(sy);
  const int x0 = static_cast<int>(fx), y0 = static_cast<int>(fy);
  const float ax = sub_rn(sx, fx), ay = sub_rn(sy, fy);
  float acc = 0.0f;
  for (int k = 0; k < 4; ++k) {
    const int yy = y0 + k / 2, xx = x0 + k % 2;
    if (yy < 0 || yy >= rows || xx < 0 || xx >= cols) continue;
    const float w = mul_rn(k / 2 ? ay : sub_rn(1.0f, ay), k % 2 ? ax : sub_rn(1.0f, ax));
    acc = add_rn(acc, mul_rn(w, static_cast<float>(img[yy * cols + xx])));
  }
  return aug::div_rn(acc, 255.0f);  // as the plain gather divides
}

}  // namespace mg
