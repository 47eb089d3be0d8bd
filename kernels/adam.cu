#include "kernels/adam.cuh"
#include "kernels/adam_math.cuh"
#include "kernels/device.cuh"

namespace mg::kern {
namespace {

__global__ void adam_kernel(float* p, const float* g, float* m, float* v, int64_t count,
                            const double* lr, double beta1, double beta2, float eps,
                            const int64_t* step) {
  // alpha once per block, in double as adam_alpha() does, rounded once.
  __shared__ float alpha;
  if (threadIdx.x == 0) alpha = static_cast<float>(adam_alpha_at(*lr, beta1, beta2, *step));
  __syncthreads();
  const float b1 = static_cast<float>(beta1), b2 = static_cast<float>(beta2);
  for_each_strided(grid_first(), grid_stride(), count,
                   [&](int64_t i) { adam_at(p, g, m, v, i, alpha, b1, b2, eps); });
}

}  // namespace

void adam_update(float* p, const float* g, float* m, float* v, int64_t count, const AdamConfig& c,
                 const double* lr, const int64_t* step, cudaStream_t stream) {
  if (count == 0) return;
  adam_kernel<<<grid_for(count), kBlock, 0, stream>>>(p, g, m, v, count, lr, c.beta1, c.beta2,
                                                      static_cast<float>(c.epsilon), step);
  MG_CHECK_LAUNCH("adam_kernel");
}

}  // namespace mg::kern
