#include "kernels/adam.cuh"

#include <stdexcept>

#include "kernels/adam_math.cuh"
#include "kernels/device.cuh"

namespace mg::kern {
namespace {

__global__ void adam_kernel(float* p, const float* g, float* m, float* v, int64_t count,
                            const double* lr, const double* weight_decay,
                            const uint8_t* kernel_mask, double beta1, double beta2, float eps,
                            const int64_t* step) {
  // alpha and the decay once per block, in double as adam_alpha() does, rounded once.
  __shared__ float alpha, decay;
  if (threadIdx.x == 0) {
    alpha = static_cast<float>(adam_alpha_at(*lr, beta1, beta2, *step));
    decay = kernel_mask != nullptr ? static_cast<float>(*lr * *weight_decay) : 0.0f;
  }
  __syncthreads();
  const float b1 = static_cast<float>(beta1), b2 = static_cast<float>(beta2);
  const float d = decay;  // the same for the whole grid: with 0 the mask is never read
  for_each_strided(grid_first(), grid_stride(), count, [&](int64_t i) {
    adam_at(p, g, m, v, i, alpha, b1, b2, eps, d != 0.0f && kernel_mask[i] ? d : 0.0f);
  });
}

}  // namespace

void adam_update(float* p, const float* g, float* m, float* v, int64_t count, const AdamConfig& c,
                 const double* lr, const int64_t* step, cudaStream_t stream,
                 const double* weight_decay, const uint8_t* kernel_mask) {
  if (count == 0) return;
  if ((weight_decay == nullptr) != (kernel_mask == nullptr)) {
    throw std::invalid_argument("adam_update: weight_decay and kernel_mask go together");
  }
  adam_kernel<<<grid_for(count), kBlock, 0, stream>>>(p, g, m, v, count, lr, weight_decay,
                                                      kernel_mask, c.beta1, c.beta2,
                                                      static_cast<float>(c.epsilon), step);
  MG_CHECK_LAUNCH("adam_kernel");
}

}  // namespace mg::kern
