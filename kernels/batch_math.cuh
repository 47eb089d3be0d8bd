// Per-element arithmetic of the batch plumbing, shared by kernels/batch.cu and the CPU tests: the
// gather + uint8 -> float normalization of a batch, the epoch shuffle's sort keys, the counters.
// No CUDA here.
#pragma once

#include <cstdint>

#include "kernels/philox.cuh"

namespace mg::kern {

// x[e], e in [0, n*sample_size), of the batch whose sample i is images[idx[i]]: pixel / 255.
template <class T>
MG_HOST_DEVICE T gather_pixel_at(const uint8_t* images, const int32_t* idx, int64_t sample_size,
                                 int64_t e) {
  const int64_t i = e / sample_size, j = e - i * sample_size;
  return static_cast<T>(images[static_cast<int64_t>(idx[i]) * sample_size + j]) / T(255);
}

// The sort key of position i in the epoch's shuffle (engine/cpu_engine.cpp, epoch_order): the
// order is the indices stably sorted by these keys.
MG_HOST_DEVICE uint32_t shuffle_key_at(uint64_t seed, int64_t epoch, int64_t i) {
  return philox_draw(seed, RngStream::kShuffle, 0, static_cast<uint64_t>(epoch),
                     static_cast<uint64_t>(i));
}

// After a training step: one more Adam step done, the cursor n samples further.
MG_HOST_DEVICE void end_step_on(int64_t* step, int64_t* cursor, int64_t n) {
  *step += 1;
  *cursor += n;
}

}  // namespace mg::kern
