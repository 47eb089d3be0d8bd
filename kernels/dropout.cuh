// Inverted dropout on the GPU, with the Philox mask of kernels/philox.cuh keyed by (seed, layer,
// step, flat index): the same mask as cpu::dropout_forward. The step is read from device memory,
// so a captured training step draws a fresh mask on every replay.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/dropout_math.cuh"

namespace mg::kern {

// y[i] = keep(i) ? x[i] / (1 - rate) : 0 for i < count; *step is the training step counter.
// y may alias x. The backward pass is the same call on (dy, dx).
void dropout_apply(const float* x, float* y, int64_t count, uint64_t seed, uint32_t layer,
                   const int64_t* step, float rate, cudaStream_t stream);

}  // namespace mg::kern
