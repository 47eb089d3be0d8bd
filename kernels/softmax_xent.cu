#include "kernels/device.cuh"
#include "kernels/softmax_math.cuh"
#include "kernels/softmax_xent.cuh"

namespace mg::kern {
namespace {

__global__ void softmax_xent_kernel(const float* logits, const int32_t* labels, int64_t n,
                                    int64_t classes, float* dlogits, double* loss_sum,
                                    double* correct_sum, double* sample_sum) {
  __shared__ double partial[kReduceBlock];
  const float inv_n = 1.0f / static_cast<float>(n);
  double loss = 0, correct = 0;
  for_each_strided(grid_first(), grid_stride(), n, [&](int64_t i) {
    const RowLoss r = softmax_xent_row(logits + i * classes, classes, labels[i], inv_n,
                                       dlogits != nullptr ? dlogits + i * classes : nullptr);
    loss += r.loss;
    correct += r.correct;
  });
  loss = block_sum(loss, partial);
  correct = block_sum(correct, partial);
  if (threadIdx.x == 0) {
    atomicAdd(loss_sum, loss);
    atomicAdd(correct_sum, correct);
    if (blockIdx.x == 0) atomicAdd(sample_sum, static_cast<double>(n));
  }
}

__global__ void softmax_kernel(const float* logits, int64_t n, int64_t classes, float* probs) {
  for_each_strided(grid_first(), grid_stride(), n, [&](int64_t i) {
    softmax_row(logits + i * classes, classes, probs + i * classes);
  });
}

}  // namespace

void softmax_xent(const float* logits, const int32_t* labels, int64_t n, int64_t classes,
                  float* dlogits, double* loss_sum, double* correct_sum, double* sample_sum,
                  cudaStream_t stream) {
  if (n == 0) return;
  softmax_xent_kernel<<<1, kReduceBlock, 0, stream>>>(logits, labels, n, classes, dlogits, loss_sum,
                                                      correct_sum, sample_sum);
  MG_CHECK_LAUNCH("softmax_xent_kernel");
}

void softmax(const float* logits, int64_t n, int64_t classes, float* probs, cudaStream_t stream) {
  if (n == 0) return;
  softmax_kernel<<<grid_for(n), kBlock, 0, stream>>>(logits, n, classes, probs);
  MG_CHECK_LAUNCH("softmax_kernel");
}

}  // namespace mg::kern
