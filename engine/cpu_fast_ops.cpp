#include "engine/cpu_fast_ops.hpp"

#include <algorithm>
#include <cstring>

#include "engine/cpu_simd.hpp"
#include "kernels/philox.cuh"

namespace mg::cpu::fast {
namespace {

using simd::U16;
using U64x8 = uint64_t __attribute__((vector_size(64)));

// hi:lo = a * k per 32-bit lane (the 64-bit product), even and odd lanes as two 64-bit vectors.
MG_SIMD_INLINE void mul_hi_lo(const U16& a, uint32_t k, U16& hi, U16& lo) {
  U64x8 wide;
  std::memcpy(&wide, &a, sizeof wide);
  const U64x8 even = (wide & 0xFFFFFFFFull) * uint64_t{k};
  const U64x8 odd = (wide >> 32) * uint64_t{k};
  const U64x8 h = (even >> 32) | (odd & 0xFFFFFFFF00000000ull);
  const U64x8 l = (even & 0xFFFFFFFFull) | (odd << 32);
  std::memcpy(&hi, &h, sizeof hi);
  std::memcpy(&lo, &l, sizeof lo);
}

// philox4x32_10 (kernels/philox.cuh) on sixteen counters at once, lane j of c0..c3 being the
// words of counter j.
MG_SIMD_INLINE void philox16(U16& c0, U16& c1, U16& c2, U16& c3, uint32_t k0, uint32_t k1) {
  for (int round = 0; round < kPhiloxRounds; ++round) {
    if (round > 0) {
      k0 += kPhiloxWeyl0;
      k1 += kPhiloxWeyl1;
    }
    U16 hi0, lo0, hi1, lo1;
    mul_hi_lo(c0, kPhiloxMul0, hi0, lo0);
    mul_hi_lo(c2, kPhiloxMul1, hi1, lo1);
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
  }
}

static_assert(kDropoutGroupBlocks == simd::kLanes, "one vector lane per Philox block of a group");

// Groups [first, first + groups) of y = dropout(x), 128 elements each: the group's sixteen Philox
// blocks at once, then, per lane l, the sixteen consecutive elements 128 g + 16 l + (0..15) that
// take lane l of the sixteen blocks (kernels/philox.cuh), as one vector.
MG_CPU_KERNEL void dropout_groups(const float* x, float* y, int64_t first, int64_t groups,
                                  const DropoutKey& k, uint32_t threshold, float scale) {
  using simd::F16;
  using simd::I16;
  const auto k0 = static_cast<uint32_t>(k.seed), k1 = static_cast<uint32_t>(k.seed >> 32);
  const uint32_t word3 = (static_cast<uint32_t>(RngStream::kDropout) << 16) | (k.layer & 0xFFFFu);
  for (int64_t grp = first; grp < first + groups; ++grp) {
    const int64_t b0 = grp * kDropoutGroupBlocks;
    U16 c0{}, c1{};
    for (int j = 0; j < kDropoutGroupBlocks; ++j) {
      const auto block = static_cast<uint64_t>(b0 + j);
      c0[j] = static_cast<uint32_t>(block);
      c1[j] = static_cast<uint32_t>(block >> 32);
    }
    U16 c2 = U16{} + static_cast<uint32_t>(k.step);
    U16 c3 = U16{} + word3;
    philox16(c0, c1, c2, c3, k0, k1);
    const U16* const c[4] = {&c0, &c1, &c2, &c3};
    const float* xs = x + grp * kDropoutGroup;
    float* ys = y + grp * kDropoutGroup;
    for (int lane = 0; lane < kDropoutLanes; ++lane) {
      const U16 bits = (*c[lane >> 1] >> ((lane & 1) * 16)) & 0xFFFFu;
      const I16 keep = bits >= threshold;
      F16 v;
      simd::load(v, xs + lane * kDropoutGroupBlocks);
      v *= scale;  // unconditional, as the reference computes it
      F16 out{};
      simd::select_into(out, keep, v);
      simd::store(ys + lane * kDropoutGroupBlocks, out);
    }
  }
}

MG_CPU_KERNEL void adam_span(float* p, const float* g, float* m, float* v, int64_t count,
                             float alpha, float beta1, float beta2, float eps, float decay,
                             const uint8_t* kernel_mask) {
  const float c1 = 1.0f - beta1, c2 = 1.0f - beta2;
  if (kernel_mask != nullptr && decay != 0.0f) {
    for (int64_t i = 0; i < count; ++i) {
      float pi = p[i];
      pi = kernel_mask[i] ? pi - decay * pi : pi;
      const float gi = g[i];
      const float mi = beta1 * m[i] + c1 * gi;
      const float vi = beta2 * v[i] + c2 * gi * gi;
      m[i] = mi;
      v[i] = vi;
      p[i] = pi - alpha * mi / (std::sqrt(vi) + eps);
    }
  } else {
    for (int64_t i = 0; i < count; ++i) {
      const float gi = g[i];
      const float mi = beta1 * m[i] + c1 * gi;
      const float vi = beta2 * v[i] + c2 * gi * gi;
      m[i] = mi;
      v[i] = vi;
      p[i] = p[i] - alpha * mi / (std::sqrt(vi) + eps);
    }
  }
}

}  // namespace

void dropout(const float* x, float* y, int64_t count, const DropoutKey& k) {
  const float scale = 1.0f / (1.0f - k.rate);
  const uint32_t threshold = dropout_threshold(k.rate);
  const int64_t groups = count / kDropoutGroup;
  constexpr int64_t kGroupsPerTask = 16;
  const int64_t tasks = (groups + kGroupsPerTask - 1) / kGroupsPerTask;
#pragma omp parallel for schedule(static) if (count >= kParallelMin)
  for (int64_t t = 0; t < tasks; ++t) {
    const int64_t first = t * kGroupsPerTask;
    dropout_groups(x, y, first, std::min(kGroupsPerTask, groups - first), k, threshold, scale);
  }
  // The last, partial group block by block, as the reference draws it.
  for (int64_t b = groups * kDropoutGroupBlocks; b < (groups + 1) * kDropoutGroupBlocks; ++b) {
    const Philox4 r =
        philox_block(k.seed, RngStream::kDropout, k.layer, k.step, static_cast<uint64_t>(b));
    for (int lane = 0; lane < kDropoutLanes; ++lane) {
      const auto i = static_cast<int64_t>(dropout_index(static_cast<uint64_t>(b), lane));
      if (i >= count) continue;
      const float v = x[i] * scale;
      y[i] = dropout_bits(r, lane) >= threshold ? v : 0.0f;
    }
  }
}

void adam_update(float* p, const float* g, float* m, float* v, int64_t count, float alpha,
                 float beta1, float beta2, float eps, float decay, const uint8_t* kernel_mask) {
  constexpr int64_t kSpan = 1 << 13;
  const int64_t spans = (count + kSpan - 1) / kSpan;
#pragma omp parallel for schedule(static) if (count >= kParallelMin)
  for (int64_t s = 0; s < spans; ++s) {
    const int64_t first = s * kSpan;
    adam_span(p + first, g + first, m + first, v + first, std::min(kSpan, count - first), alpha,
              beta1, beta2, eps, decay, kernel_mask ? kernel_mask + first : nullptr);
  }
}

}  // namespace mg::cpu::fast
