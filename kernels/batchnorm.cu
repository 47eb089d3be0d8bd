#include "kernels/batchnorm.cuh"
#include "kernels/device.cuh"

namespace mg::kern {
namespace {

// One block per channel (grid-stride over channels): the two-pass statistics in double, then
// thread 0 writes the saved statistics and the moving update.
__global__ void batchnorm_stats_kernel(const float* x, BatchNormShape d, float momentum,
                                       float rest, double epsilon, float* moving_mean,
                                       float* moving_var, float* saved_mean,
                                       float* saved_inv_std) {
  __shared__ double partial[kReduceBlock];
  const int64_t m = d.n * d.s;
  for (int64_t ch = blockIdx.x; ch < d.c; ch += gridDim.x) {
    double sum = 0;
    for (int64_t k = threadIdx.x; k < m; k += blockDim.x) {
      sum += static_cast<double>(x[bn_channel_index(k, ch, d.c, d.s)]);
    }
    const double mean = block_sum(sum, partial) / static_cast<double>(m);
    double squares = 0;
    for (int64_t k = threadIdx.x; k < m; k += blockDim.x) {
      const double dev = static_cast<double>(x[bn_channel_index(k, ch, d.c, d.s)]) - mean;
      squares += dev * dev;
    }
    const double var = block_sum(squares, partial) / static_cast<double>(m);  // biased, as Keras
    if (threadIdx.x == 0) {
      const float mean_f = static_cast<float>(mean);
      saved_mean[ch] = mean_f;
      saved_inv_std[ch] = static_cast<float>(bn_inv_std(var, epsilon));
      moving_mean[ch] = bn_moving_update(moving_mean[ch], mean_f, momentum, rest);
      moving_var[ch] = bn_moving_update(moving_var[ch], static_cast<float>(var), momentum, rest);
    }
  }
}

__global__ void batchnorm_inference_stats_kernel(int64_t c, double epsilon,
                                                 const float* moving_mean, const float* moving_var,
                                                 float* saved_mean, float* saved_inv_std) {
  for_each_strided(grid_first(), grid_stride(), c, [&](int64_t ch) {
    saved_mean[ch] = moving_mean[ch];
    saved_inv_std[ch] =
        static_cast<float>(bn_inv_std(static_cast<double>(moving_var[ch]), epsilon));
  });
}

__global__ void batchnorm_apply_kernel(const float* x, const float* gamma, const float* beta,
                                       BatchNormShape d, const float* mean, const float* inv_std,
                                       float* y) {
  for_each_strided(grid_first(), grid_stride(), d.n * d.c * d.s, [&](int64_t i) {
    const int64_t ch = bn_channel_of(i, d.c, d.s);
    y[i] = bn_forward_at(x[i], mean[ch], inv_std[ch], gamma[ch], beta[ch]);
  });
}

// One block per channel: sum dy and sum dy * xhat, in double; thread 0 writes dbeta and dgamma.
__global__ void batchnorm_backward_reduce_kernel(const float* x, const float* dy,
                                                 BatchNormShape d, const float* saved_mean,
                                                 const float* saved_inv_std, float* dgamma,
                                                 float* dbeta) {
  __shared__ double partial[kReduceBlock];
  const int64_t m = d.n * d.s;
  for (int64_t ch = blockIdx.x; ch < d.c; ch += gridDim.x) {
    const float mean = saved_mean[ch], inv_std = saved_inv_std[ch];
    double sum_dy = 0, sum_dy_xhat = 0;
    for (int64_t k = threadIdx.x; k < m; k += blockDim.x) {
      const int64_t i = bn_channel_index(k, ch, d.c, d.s);
      const float xhat = (x[i] - mean) * inv_std;
      sum_dy += static_cast<double>(dy[i]);
      sum_dy_xhat += static_cast<double>(dy[i]) * static_cast<double>(xhat);
    }
    const double total_dy = block_sum(sum_dy, partial);
    const double total_dy_xhat = block_sum(sum_dy_xhat, partial);
    if (threadIdx.x == 0) {
      dbeta[ch] = static_cast<float>(total_dy);
      dgamma[ch] = static_cast<float>(total_dy_xhat);
    }
  }
}

__global__ void batchnorm_dx_kernel(const float* x, const float* gamma, const float* dy,
                                    BatchNormShape d, const float* saved_mean,
                                    const float* saved_inv_std, bool training,
                                    const float* dgamma, const float* dbeta, float* dx) {
  const double m = static_cast<double>(d.n * d.s);
  for_each_strided(grid_first(), grid_stride(), d.n * d.c * d.s, [&](int64_t i) {
    const int64_t ch = bn_channel_of(i, d.c, d.s);
    const float inv_std = saved_inv_std[ch];
    const float xhat = (x[i] - saved_mean[ch]) * inv_std;
    // From the float sums as written, as the reference does.
    const float mean_dy = training ? static_cast<float>(static_cast<double>(dbeta[ch]) / m) : 0.0f;
    const float mean_dy_xhat =
        training ? static_cast<float>(static_cast<double>(dgamma[ch]) / m) : 0.0f;
    dx[i] = bn_dx_at(dy[i], xhat, gamma[ch] * inv_std, mean_dy, mean_dy_xhat);
  });
}

// One block per channel, capped as grid_for caps (a test shrinks the cap so the channel loop runs
// several rounds per block).
int channel_blocks(int64_t c) {
  return static_cast<int>(std::clamp<int64_t>(c, 1, std::max(cuda::max_grid_blocks(), 1)));
}

}  // namespace

void batchnorm_forward_training(const float* x, const float* gamma, const float* beta,
                                BatchNormShape d, double momentum, double epsilon,
                                float* moving_mean, float* moving_var, float* y, float* saved_mean,
                                float* saved_inv_std, cudaStream_t stream) {
  if (d.n * d.c * d.s == 0) return;
  batchnorm_stats_kernel<<<channel_blocks(d.c), kReduceBlock, 0, stream>>>(
      x, d, static_cast<float>(momentum), static_cast<float>(1.0 - momentum), epsilon, moving_mean,
      moving_var, saved_mean, saved_inv_std);
  MG_CHECK_LAUNCH("batchnorm_stats_kernel");
  batchnorm_apply_kernel<<<grid_for(d.n * d.c * d.s), kBlock, 0, stream>>>(
      x, gamma, beta, d, saved_mean, saved_inv_std, y);
  MG_CHECK_LAUNCH("batchnorm_apply_kernel");
}

void batchnorm_forward_inference(const float* x, const float* gamma, const float* beta,
                                 BatchNormShape d, double epsilon, const float* moving_mean,
                                 const float* moving_var, float* y, float* saved_mean,
                                 float* saved_inv_std, cudaStream_t stream) {
  if (d.n * d.c * d.s == 0) return;
  batchnorm_inference_stats_kernel<<<grid_for(d.c), kBlock, 0, stream>>>(
      d.c, epsilon, moving_mean, moving_var, saved_mean, saved_inv_std);
  MG_CHECK_LAUNCH("batchnorm_inference_stats_kernel");
  batchnorm_apply_kernel<<<grid_for(d.n * d.c * d.s), kBlock, 0, stream>>>(
      x, gamma, beta, d, saved_mean, saved_inv_std, y);
  MG_CHECK_LAUNCH("batchnorm_apply_kernel");
}

void batchnorm_backward(const float* x, const float* gamma, const float* dy, BatchNormShape d,
                        const float* saved_mean, const float* saved_inv_std, bool training,
                        float* dx, float* dgamma, float* dbeta, cudaStream_t stream) {
  if (d.n * d.c * d.s == 0) return;
  batchnorm_backward_reduce_kernel<<<channel_blocks(d.c), kReduceBlock, 0, stream>>>(
      x, dy, d, saved_mean, saved_inv_std, dgamma, dbeta);
  MG_CHECK_LAUNCH("batchnorm_backward_reduce_kernel");
  if (dx == nullptr) return;
  batchnorm_dx_kernel<<<grid_for(d.n * d.c * d.s), kBlock, 0, stream>>>(
      x, gamma, dy, d, saved_mean, saved_inv_std, training, dgamma, dbeta, dx);
  MG_CHECK_LAUNCH("batchnorm_dx_kernel");
}

}  // namespace mg::kern
