// Adam on the GPU: one fused kernel over the flat parameter buffer. Element arithmetic in
// kernels/adam_math.cuh; the step size is computed on the device from the step counter and the
// learning rate, both read from device memory (a captured step follows a schedule's changes), as
// is AdamW's weight decay rate.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "engine/adam.hpp"

namespace mg::kern {

// p, m, v updated in place from g, for count elements; *step is update number t - 1, *lr the
// learning rate (c.lr and c.weight_decay are not read). AdamW: *weight_decay (device memory, like
// lr, so a captured step follows a change) decays the elements where kernel_mask[i] is 1; both
// null: plain Adam. scalars: two floats of device scratch for variant 1 (kernels/variants.hpp),
// which computes the step size and the decay there once per step; null runs variant 0.
void adam_update(float* p, const float* g, float* m, float* v, int64_t count, const AdamConfig& c,
                 const double* lr, const int64_t* step, cudaStream_t stream,
                 const double* weight_decay = nullptr, const uint8_t* kernel_mask = nullptr,
                 float* scalars = nullptr);

}  // namespace mg::kern
