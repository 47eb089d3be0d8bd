// Max pool 2x2 / stride 2 on the GPU. Element arithmetic (and the tie rule) in
// kernels/pool_math.cuh.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/pool_math.cuh"

namespace mg::kern {

// y and argmax [planes, h/2, w/2] from x [planes, h, w]: one thread per output.
void maxpool2x2_forward(const float* x, const PoolDims& d, float* y, int32_t* argmax,
                        cudaStream_t stream);

// dx [planes, h, w] from dy and argmax: a gather, one thread per input element, no atomics.
void maxpool2x2_backward(const float* dy, const int32_t* argmax, const PoolDims& d, float* dx,
                         cudaStream_t stream);

}  // namespace mg::kern
