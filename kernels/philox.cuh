// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11), the one
// random number generator of mnist_gpu. It is counter-based: a draw is a pure function of
// (key, counter), so the CPU and the GPU produce the same dropout masks, weights and shuffles bit
// for bit, whatever the launch configuration or thread count.
//
// Keying convention (the only place it is written down):
//   key     = seed (64 bits, low word first)
//   counter = {block (low), block (high), step, (stream << 16) | layer}
//   32-bit draws (weights, shuffle, augmentation): block = element_index / 4, and
//     lane = element_index % 4 selects one of the four 32-bit outputs.
//   16-bit draws (dropout): a group of 128 consecutive elements takes 16 blocks, element
//     i = 128 g + 16 l + j the block 16 g + j and, in it, lane l (0..7): bits
//     [16 (l % 2), 16 (l % 2) + 16) of output l / 2 (dropout_block_of, dropout_lane_of).
//     So sixteen consecutive elements take the same lane of sixteen consecutive blocks: one
//     vector on a CPU, one coalesced access across a GPU's threads.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define MG_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define MG_HOST_DEVICE inline
#endif

namespace mg {

struct Philox4 {
  uint32_t v[4];
};

// What a random stream is used for; part of the counter so the streams never overlap.
enum class RngStream : uint32_t { kDropout = 1, kInit = 2, kShuffle = 3, kAugment = 4 };

// Philox4x32's multipliers and Weyl key increments (also engine/cpu_fast_ops.cpp's 16-wide form).
inline constexpr uint32_t kPhiloxMul0 = 0xD2511F53u, kPhiloxMul1 = 0xCD9E8D57u;
inline constexpr uint32_t kPhiloxWeyl0 = 0x9E3779B9u, kPhiloxWeyl1 = 0xBB67AE85u;
inline constexpr int kPhiloxRounds = 10;

MG_HOST_DEVICE Philox4 philox4x32_10(Philox4 ctr, uint32_t k0, uint32_t k1) {
  for (int round = 0; round < kPhiloxRounds; ++round) {
    if (round > 0) {
      k0 += kPhiloxWeyl0;
      k1 += kPhiloxWeyl1;
    }
    const uint64_t p0 = static_cast<uint64_t>(kPhiloxMul0) * ctr.v[0];
    const uint64_t p1 = static_cast<uint64_t>(kPhiloxMul1) * ctr.v[2];
    const auto hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    const auto hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    ctr = Philox4{{hi1 ^ ctr.v[1] ^ k0, lo1, hi0 ^ ctr.v[3] ^ k1, lo0}};
  }
  return ctr;
}

// Block number `block` of one stream: elements 4*block .. 4*block+3 of a 32-bit draw, or the
// eight elements dropout_index(block, 0..7) of a dropout mask.
MG_HOST_DEVICE Philox4 philox_block(uint64_t seed, RngStream stream, uint32_t layer, uint64_t step,
                                    uint64_t block) {
  const Philox4 ctr{{static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32),
                     static_cast<uint32_t>(step),
                     (static_cast<uint32_t>(stream) << 16) | (layer & 0xFFFFu)}};
  return philox4x32_10(ctr, static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
}

// The 32-bit draw for one element of one stream.
MG_HOST_DEVICE uint32_t philox_draw(uint64_t seed, RngStream stream, uint32_t layer, uint64_t step,
                                    uint64_t index) {
  return philox_block(seed, stream, layer, step, index >> 2).v[index & 3];
}

// Uniform in [0, 1) with 24 bits: exact in float, so every backend compares the same value.
MG_HOST_DEVICE float uniform_from_bits(uint32_t bits) {
  return static_cast<float>(bits >> 8) * (1.0f / 16777216.0f);
}

// Dropout draws 16 bits an element, so one Philox block serves eight elements: the mask costs an
// eighth of a Philox evaluation per element. An element is kept when its 16 bits, read as an
// integer u in [0, 65536), are at least dropout_threshold(rate) = ceil(rate * 65536), that is
// when u / 65536 >= rate: the kept fraction is (65536 - threshold) / 65536, exactly 1 - rate for
// rates that are multiples of 2^-16 (0.25, 0.5) and within 2^-16 of it for any other.
// rate * 65536 is exact in float (a power-of-two scaling), so every backend computes the same
// threshold.
inline constexpr int kDropoutLanes = 8;         // 16-bit draws per block
inline constexpr int kDropoutGroupBlocks = 16;  // blocks per group
inline constexpr int kDropoutGroup = kDropoutLanes * kDropoutGroupBlocks;  // 128 elements

MG_HOST_DEVICE uint32_t dropout_threshold(float rate) {
  return static_cast<uint32_t>(ceilf(rate * 65536.0f));
}

// Element i = 128 g + 16 l + j takes lane l of block 16 g + j; dropout_index is the inverse.
MG_HOST_DEVICE uint64_t dropout_block_of(uint64_t index) {
  return index / kDropoutGroup * kDropoutGroupBlocks + index % kDropoutGroupBlocks;
}
MG_HOST_DEVICE int dropout_lane_of(uint64_t index) {
  return static_cast<int>(index % kDropoutGroup / kDropoutGroupBlocks);
}
MG_HOST_DEVICE uint64_t dropout_index(uint64_t block, int lane) {
  return block / kDropoutGroupBlocks * kDropoutGroup +
         static_cast<uint64_t>(lane) * kDropoutGroupBlocks + block % kDropoutGroupBlocks;
}

// The 16 bits of lane 0..7 of a dropout block.
MG_HOST_DEVICE uint32_t dropout_bits(const Philox4& block, int lane) {
  return (block.v[lane >> 1] >> ((lane & 1) * 16)) & 0xFFFFu;
}

// Inverted dropout keeps element `index` of (seed, layer, step) when its draw is at least the
// threshold.
MG_HOST_DEVICE bool dropout_keep(uint64_t seed, uint32_t layer, uint64_t step, uint64_t index,
                                 float rate) {
  const Philox4 r = philox_block(seed, RngStream::kDropout, layer, step, dropout_block_of(index));
  return dropout_bits(r, dropout_lane_of(index)) >= dropout_threshold(rate);
}

}  // namespace mg
