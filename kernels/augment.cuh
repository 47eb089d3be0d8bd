// Data augmentation for training batches: each image is rotated by a small random angle and
// shifted by a few pixels (Keras ImageDataGenerator's rotation_range and width/height_shift_range),
// resampled bilinearly with black outside the source. The per-pixel function is shared by the CPU
// gather and the CUDA gather kernel; the draw is Philox keyed by (seed, step, position in batch),
// so both backends augment identically and a resumed run repeats the same transforms.
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

MG_HOST_DEVICE AugmentTransform augment_transform(const AugmentConfig& c, uint64_t seed,
                                                  uint64_t step, uint64_t position) {
  const Philox4 r = philox_block(seed, RngStream::kAugment, 0, step, position);
  const float angle = (2.0f * uniform_from_bits(r.v[0]) - 1.0f) * c.max_rotation_deg *
                      (3.14159265358979f / 180.0f);
  return {cosf(angle), sinf(angle), (2.0f * uniform_from_bits(r.v[1]) - 1.0f) * c.max_shift,
          (2.0f * uniform_from_bits(r.v[2]) - 1.0f) * c.max_shift};
}

// The augmented value of destination pixel (y, x), scaled to [0, 1]. Rotation about the centre,
// then the shift; the inverse map samples the source bilinearly.
MG_HOST_DEVICE float augmented_pixel(const uint8_t* img, int rows, int cols, const AugmentTransform& t,
                                     int y, int x) {
  const float cy = 0.5f * static_cast<float>(rows - 1), cx = 0.5f * static_cast<float>(cols - 1);
  const float dy = static_cast<float>(y) - cy - t.shift_y, dx = static_cast<float>(x) - cx - t.shift_x;
  const float sx = t.cos_a * dx + t.sin_a * dy + cx;
  const float sy = -t.sin_a * dx + t.cos_a * dy + cy;
  const float fx = floorf(sx), fy = floorf(sy);
  const int x0 = static_cast<int>(fx), y0 = static_cast<int>(fy);
  const float ax = sx - fx, ay = sy - fy;
  float acc = 0.0f;
  for (int k = 0; k < 4; ++k) {
    const int yy = y0 + k / 2, xx = x0 + k % 2;
    if (yy < 0 || yy >= rows || xx < 0 || xx >= cols) continue;
    const float w = (k / 2 ? ay : 1.0f - ay) * (k % 2 ? ax : 1.0f - ax);
    acc += w * static_cast<float>(img[yy * cols + xx]);
  }
  return acc / 255.0f;  // as the plain gather divides
}

}  // namespace mg
