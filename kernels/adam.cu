#include "kernels/adam.cuh"

#include <stdexcept>

#include "kernels/adam_math.cuh"
#include "kernels/device.cuh"
#include "kernels/variants.hpp"

namespace mg::kern {
namespace {

__global__ void adam_kernel(float* p, const float* g, float* m, float* v, int64_t count,
                            const double* lr, const double* weight_decay,
                            const uint8_t* kernel_mask, double beta1, double beta2, float eps,
                            const int64_t* step) {
  // alpha and the decay once per block, in double as adam_alpha() does, rounded once.
  __shared__ float alpha, decay;
  if (threadIdx.x == 0) {
    const bool decayed = kernel_mask != nullptr;
    const AdamStepScalars s =
        adam_step_scalars(*lr, decayed ? *weight_decay : 0.0, decayed, beta1, beta2, *step);
    alpha = s.alpha;
    decay = s.decay;
  }
  __syncthreads();
  const float b1 = static_cast<float>(beta1), b2 = static_cast<float>(beta2);
  const float d = decay;  // the same for the whole grid: with 0 the mask is never read
  for_each_strided(grid_first(), grid_stride(), count, [&](int64_t i) {
    adam_at(p, g, m, v, i, alpha, b1, b2, eps, d != 0.0f && kernel_mask[i] ? d : 0.0f);
  });
}

// --- variant 1 (kernels/variants.hpp; docs/cuda.md "Kernel variants") ---------------------------
// The step's two scalars once per step, by one thread, into device memory; then the update with
// no per-block preamble and no barrier. The scalars are the very values variant 0's thread 0
// computes (adam_step_scalars), so the update is the same bit for bit. Both kernels run inside
// the captured step, so a replay reads that replay's lr, weight decay and step counter.
__global__ void adam_scalars_kernel(const double* lr, const double* weight_decay, bool decayed,
                                    double beta1, double beta2, const int64_t* step,
                                    float* scalars) {
  const AdamStepScalars s =
      adam_step_scalars(*lr, decayed ? *weight_decay : 0.0, decayed, beta1, beta2, *step);
  scalars[0] = s.alpha;
  scalars[1] = s.decay;
}

__global__ void adam_v1_kernel(float* p, const float* g, float* m, float* v, int64_t count,
                               const uint8_t* kernel_mask, float b1, float b2, float eps,
                               const float* scalars) {
  const float alpha = scalars[0], d = scalars[1];
  for_each_strided(grid_first(), grid_stride(), count, [&](int64_t i) {
    adam_at(p, g, m, v, i, alpha, b1, b2, eps, d != 0.0f && kernel_mask[i] ? d : 0.0f);
  });
}

}  // namespace

void adam_update(float* p, const float* g, float* m, float* v, int64_t count, const AdamConfig& c,
                 const double* lr, const int64_t* step, cudaStream_t stream,
                 const double* weight_decay, const uint8_t* kernel_mask, float* scalars) {
  if (count == 0) return;
  if ((weight_decay == nullptr) != (kernel_mask == nullptr)) {
    throw std::invalid_argument("adam_update: weight_decay and kernel_mask go together");
  }
  const float eps = static_cast<float>(c.epsilon);
  if (scalars != nullptr && kernel_variants()[VariantOp::kAdam] == 1) {
    adam_scalars_kernel<<<1, 1, 0, stream>>>(lr, weight_decay, kernel_mask != nullptr, c.beta1,
                                             c.beta2, step, scalars);
    MG_CHECK_LAUNCH("adam_scalars_kernel");
    adam_v1_kernel<<<grid_for(count), kBlock, 0, stream>>>(
        p, g, m, v, count, kernel_mask, static_cast<float>(c.beta1), static_cast<float>(c.beta2),
        eps, scalars);
    MG_CHECK_LAUNCH("adam_v1_kernel");
    return;
  }
  adam_kernel<<<grid_for(count), kBlock, 0, stream>>>(p, g, m, v, count, lr, weight_decay,
                                                      kernel_mask, c.beta1, c.beta2, eps, step);
  MG_CHECK_LAUNCH("adam_kernel");
}

}  // namespace mg::kern
