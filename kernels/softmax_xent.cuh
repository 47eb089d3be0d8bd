// Softmax and the fused softmax + cross-entropy on the GPU. Row arithmetic in
// kernels/softmax_math.cuh.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace mg::kern {

// Loss and logit gradient in one pass over logits [n, classes]: writes dlogits =
// (softmax - onehot) / n when not null, and adds the batch's loss sum, correct count and n to
// *loss_sum, *correct_sum and *sample_sum (device memory; atomicAdd). One block: the sums are a
// fixed tree, the same on every run, and a batch's rows are few.
void softmax_xent(const float* logits, const int32_t* labels, int64_t n, int64_t classes,
                  float* dlogits, double* loss_sum, double* correct_sum, double* sample_sum,
                  cudaStream_t stream);

// probs [n, classes] = row-wise softmax of logits; one thread per row.
void softmax(const float* logits, int64_t n, int64_t classes, float* probs, cudaStream_t stream);

}  // namespace mg::kern
