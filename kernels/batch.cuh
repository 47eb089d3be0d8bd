// Batch plumbing on the GPU: the gather + normalization of a batch, the device-side counters a
// captured step advances itself, and the epoch shuffle. Element arithmetic in
// kernels/batch_math.cuh.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/augment.cuh"

namespace mg::kern {

// For i < n, with idx = order + *cursor (the cursor is read on the device):
// x[i] = images[idx[i]] / 255 (sample_size floats each) and y[i] = labels[idx[i]].
void gather_batch(const uint8_t* images, const uint8_t* labels, int64_t sample_size,
                  const int32_t* order, const int64_t* cursor, int64_t n, float* x, int32_t* y,
                  cudaStream_t stream);

// gather_batch with data augmentation (kernels/augment.cuh): image i of the batch is rotated and
// shifted by the transform drawn for (seed, *step, i). Images are rows x cols, one channel.
void gather_batch_augmented(const uint8_t* images, const uint8_t* labels, int rows, int cols,
                            const int32_t* order, const int64_t* counters, int64_t n,
                            const AugmentConfig& augment, uint64_t seed, float* x, int32_t* y,
                            cudaStream_t stream);

// *step += 1 and *cursor += n (after a training step); *cursor += n (after an evaluation step).
void end_step(int64_t* step, int64_t* cursor, int64_t n, cudaStream_t stream);
void advance_cursor(int64_t* cursor, int64_t n, cudaStream_t stream);

// order = indices stably sorted by the keys shuffle_key_at(seed, epoch, position): the same
// permutation as epoch_order() (engine/engine.hpp). keys and positions are n-element scratch.
// Thrust's sort allocates its own temporary storage, so this is not for a captured step (it runs
// once per epoch, outside them).
void epoch_shuffle(const int32_t* indices, int64_t n, uint64_t seed, int64_t epoch, int32_t* order,
                   uint32_t* keys, int32_t* positions, cudaStream_t stream);

}  // namespace mg::kern
