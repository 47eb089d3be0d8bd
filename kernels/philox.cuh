// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11), the one
// random number generator of mnist_gpu. It is counter-based: a draw is a pure function of
// (key, counter), so the CPU and the GPU produce the same dropout masks, weights and shuffles bit
// for bit, whatever the launch configuration or thread count.
//
// Keying convention (the only place it is written down):
//   key     = seed (64 bits, low word first)
//   counter = {element_index / 4 (low), element_index / 4 (high), step, (stream << 16) | layer}
//   lane    = element_index % 4 selects one of the four 32-bit outputs.
#pragma once

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

MG_HOST_DEVICE Philox4 philox4x32_10(Philox4 ctr, uint32_t k0, uint32_t k1) {
  constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
  constexpr uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      k0 += kWeyl0;
      k1 += kWeyl1;
    }
    const uint64_t p0 = static_cast<uint64_t>(kMul0) * ctr.v[0];
    const uint64_t p1 = static_cast<uint64_t>(kMul1) * ctr.v[2];
    const auto hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    const auto hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    ctr = Philox4{{hi1 ^ ctr.v[1] ^ k0, lo1, hi0 ^ ctr.v[3] ^ k1, lo0}};
  }
  return ctr;
}

// The Philox block holding elements 4*block .. 4*block+3 of one stream.
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

// Inverted dropout keeps an element when its uniform draw is at least the drop rate.
MG_HOST_DEVICE bool dropout_keep(uint64_t seed, uint32_t layer, uint64_t step, uint64_t index,
                                 float rate) {
  return uniform_from_bits(philox_draw(seed, RngStream::kDropout, layer, step, index)) >= rate;
}

}  // namespace mg
