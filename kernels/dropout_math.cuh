// Per-element arithmetic of inverted dropout, shared by kernels/dropout.cu and the CPU tests. The
// mask is Philox's (kernels/philox.cuh) keyed by (seed, layer, step, flat NCHW index), element i
// keeping when uniform_from_bits(lane i % 4 of block i / 4) >= rate: the draw of dropout_keep and
// of cpu::dropout_forward, so the CPU and the GPU drop the same elements. No CUDA here.
#pragma once

#include <cstdint>

#include "kernels/philox.cuh"

namespace mg::kern {

// The keep scale 1 / (1 - rate), rounded as cpu::dropout_forward rounds it.
template <class T>
MG_HOST_DEVICE T dropout_scale(float rate) {
  return T(1) / (T(1) - T(rate));
}

// Elements 4*quad .. 4*quad+3 (those below count) of y = dropout(x): one Philox block serves the
// four, one lane each, as cpu::dropout_forward draws them. The backward pass is the same call on
// (dy, dx): the mask is drawn again, not stored. y may alias x.
template <class T>
MG_HOST_DEVICE void dropout_quad(const T* x, T* y, int64_t count, int64_t quad, uint64_t seed,
                                 uint32_t layer, uint64_t step, float rate, T scale) {
  const Philox4 r =
      philox_block(seed, RngStream::kDropout, layer, step, static_cast<uint64_t>(quad));
  for (int64_t lane = 0; lane < 4; ++lane) {
    const int64_t i = 4 * quad + lane;
    if (i >= count) break;
    y[i] = uniform_from_bits(r.v[lane]) >= rate ? x[i] * scale : T(0);
  }
}

// How many Philox blocks count elements need.
MG_HOST_DEVICE int64_t dropout_quads(int64_t count) { return (count + 3) / 4; }

}  // namespace mg::kern
