// The CPU reference of batch normalization (Keras' BatchNormalization over channels): plain loops,
// the specification the CUDA kernels (kernels/batchnorm.cu) are tested against, and itself tested
// against finite differences (tests/test_ops.cpp). Templated on the scalar, as engine/cpu_ops.hpp.
//
// x is [n, c, s] (NCHW with s = h * w; after a dense layer s = 1), and every statistic is per
// channel c over its m = n * s values. Keras' semantics:
// - training: mean and the *biased* variance (divided by m) of the batch normalize x, and the
//   moving statistics are updated with those same two numbers,
//     moving = moving * momentum + batch * (1 - momentum)            (momentum 0.99);
//   PyTorch would put the unbiased variance into running_var. A batch of one sample after a dense
//   layer has variance 0: y = beta, dx = 0, never NaN (PyTorch refuses such a batch).
// - inference: the moving statistics normalize x and nothing is updated.
// y = gamma * (x - mean) / sqrt(var + epsilon) + beta, epsilon 1e-3.
// The variance is two-pass (the mean first, then the mean squared deviation), accumulated in
// double: never E[x^2] - E[x]^2, which cancels catastrophically in float.
#pragma once

#include <cmath>
#include <cstdint>

namespace mg::cpu {

struct BatchNormDims {
  int64_t n, c, s;
  int64_t per_channel() const { return n * s; }
  int64_t at(int64_t i, int64_t ch, int64_t j) const { return (i * c + ch) * s + j; }
};

// What the forward leaves for the backward: per channel, the mean and 1/sqrt(var + epsilon) it
// normalized with (the batch's in training, the moving ones in inference).
template <class T>
struct BatchNormSaved {
  T* mean;
  T* inv_std;
};

// Training forward: batch statistics, moving statistics updated in place.
template <class T>
void batchnorm_forward_training(const T* x, const T* gamma, const T* beta, const BatchNormDims& d,
                                double momentum, double epsilon, T* moving_mean, T* moving_var,
                                T* y, BatchNormSaved<T> saved) {
  const int64_t m = d.per_channel();
#pragma omp parallel for schedule(static)
  for (int64_t ch = 0; ch < d.c; ++ch) {
    double sum = 0;
    for (int64_t i = 0; i < d.n; ++i)
      for (int64_t j = 0; j < d.s; ++j) sum += static_cast<double>(x[d.at(i, ch, j)]);
    const double mean = sum / static_cast<double>(m);
    double squares = 0;
    for (int64_t i = 0; i < d.n; ++i) {
      for (int64_t j = 0; j < d.s; ++j) {
        const double dev = static_cast<double>(x[d.at(i, ch, j)]) - mean;
        squares += dev * dev;
      }
    }
    const double var = squares / static_cast<double>(m);  // biased, as Keras
    const T mean_t = static_cast<T>(mean);
    const T inv_std = static_cast<T>(1.0 / std::sqrt(var + epsilon));
    saved.mean[ch] = mean_t;
    saved.inv_std[ch] = inv_std;
    const T mom = static_cast<T>(momentum), rest = static_cast<T>(1.0 - momentum);
    moving_mean[ch] = moving_mean[ch] * mom + mean_t * rest;
    moving_var[ch] = moving_var[ch] * mom + static_cast<T>(var) * rest;
    for (int64_t i = 0; i < d.n; ++i) {
      for (int64_t j = 0; j < d.s; ++j) {
        const int64_t k = d.at(i, ch, j);
        y[k] = gamma[ch] * ((x[k] - mean_t) * inv_std) + beta[ch];
      }
    }
  }
}

// Inference forward: the moving statistics; nothing changes but y and saved.
template <class T>
void batchnorm_forward_inference(const T* x, const T* gamma, const T* beta, const BatchNormDims& d,
                                 double epsilon, const T* moving_mean, const T* moving_var, T* y,
                                 BatchNormSaved<T> saved) {
#pragma omp parallel for schedule(static)
  for (int64_t ch = 0; ch < d.c; ++ch) {
    const T mean = moving_mean[ch];
    const T inv_std =
        static_cast<T>(1.0 / std::sqrt(static_cast<double>(moving_var[ch]) + epsilon));
    saved.mean[ch] = mean;
    saved.inv_std[ch] = inv_std;
    for (int64_t i = 0; i < d.n; ++i) {
      for (int64_t j = 0; j < d.s; ++j) {
        const int64_t k = d.at(i, ch, j);
        y[k] = gamma[ch] * ((x[k] - mean) * inv_std) + beta[ch];
      }
    }
  }
}

// Backward with the statistics the forward saved. dgamma = sum dy * xhat, dbeta = sum dy (sums
// in double, in order: deterministic), and, when dx is not null,
//   training:  dx = gamma * inv_std * (dy - dbeta / m - xhat * dgamma / m)
//              (the batch statistics depend on x);
//   inference: dx = gamma * inv_std * dy (the moving ones do not).
// Overwrites dgamma, dbeta and dx; dx may not alias dy.
template <class T>
void batchnorm_backward(const T* x, const T* gamma, const T* dy, const BatchNormDims& d,
                        const T* saved_mean, const T* saved_inv_std, bool training, T* dx,
                        T* dgamma, T* dbeta) {
  const int64_t m = d.per_channel();
#pragma omp parallel for schedule(static)
  for (int64_t ch = 0; ch < d.c; ++ch) {
    const T mean = saved_mean[ch], inv_std = saved_inv_std[ch];
    double sum_dy = 0, sum_dy_xhat = 0;
    for (int64_t i = 0; i < d.n; ++i) {
      for (int64_t j = 0; j < d.s; ++j) {
        const int64_t k = d.at(i, ch, j);
        const T xhat = (x[k] - mean) * inv_std;
        sum_dy += static_cast<double>(dy[k]);
        sum_dy_xhat += static_cast<double>(dy[k]) * static_cast<double>(xhat);
      }
    }
    dbeta[ch] = static_cast<T>(sum_dy);
    dgamma[ch] = static_cast<T>(sum_dy_xhat);
    if (dx == nullptr) continue;
    const T scale = gamma[ch] * inv_std;
    // The means of the two sums as written (rounded to T), divided in double.
    const T mean_dy =
        training ? static_cast<T>(static_cast<double>(dbeta[ch]) / static_cast<double>(m)) : T(0);
    const T mean_dy_xhat =
        training ? static_cast<T>(static_cast<double>(dgamma[ch]) / static_cast<double>(m)) : T(0);
    for (int64_t i = 0; i < d.n; ++i) {
      for (int64_t j = 0; j < d.s; ++j) {
        const int64_t k = d.at(i, ch, j);
        const T xhat = (x[k] - mean) * inv_std;
        dx[k] = scale * (dy[k] - mean_dy - xhat * mean_dy_xhat);
      }
    }
  }
}

}  // namespace mg::cpu
