// Per-element arithmetic of inverted dropout, shared by kernels/dropout.cu and the CPU tests. The
// mask is Philox's (kernels/philox.cuh) keyed by (seed, layer, step, flat NCHW index), element i
// keeping when the 16 bits of lane dropout_lane_of(i) of block dropout_block_of(i) are at least
// dropout_threshold(rate): the draw of dropout_keep and of cpu::dropout_forward, so the CPU and
// the GPU drop the same elements. No CUDA here.
#pragma once

#include <cstdint>

#include "kernels/philox.cuh"

namespace mg::kern {

// The keep scale 1 / (1 - rate), rounded as cpu::dropout_forward rounds it.
template <class T>
MG_HOST_DEVICE T dropout_scale(float rate) {
  return T(1) / (T(1) - T(rate));
}

// The eight elements dropout_index(block, 0..7) (those below count) of y = dropout(x): one Philox
// block serves them, 16 bits each, as cpu::dropout_forward draws them. Consecutive blocks serve
// consecutive elements of each lane, so a warp's stores are coalesced. The backward pass is the
// same call on (dy, dx): the mask is drawn again, not stored. y may alias x.
template <class T>
MG_HOST_DEVICE void dropout_block(const T* x, T* y, int64_t count, int64_t block, uint64_t seed,
                                  uint32_t layer, uint64_t step, uint32_t threshold, T scale) {
  const Philox4 r =
      philox_block(seed, RngStream::kDropout, layer, step, static_cast<uint64_t>(block));
  for (int lane = 0; lane < kDropoutLanes; ++lane) {
    const auto i = static_cast<int64_t>(dropout_index(static_cast<uint64_t>(block), lane));
    if (i < count) y[i] = dropout_bits(r, lane) >= threshold ? x[i] * scale : T(0);
  }
}

// How many Philox blocks count elements need: sixteen per group of 128, the last group too.
MG_HOST_DEVICE int64_t dropout_blocks(int64_t count) {
  return (count + kDropoutGroup - 1) / kDropoutGroup * kDropoutGroupBlocks;
}

}  // namespace mg::kern
