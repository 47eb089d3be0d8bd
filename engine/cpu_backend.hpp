// The CPU backend: the layer-level ops Network<> calls, composed from the reference ops of
// engine/cpu_ops.hpp. Host memory; both cores through OpenMP and OpenBLAS.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "engine/adam.hpp"
#include "engine/engine.hpp"
#include "engine/cpu_batchnorm.hpp"
#include "engine/cpu_ops.hpp"
#include "engine/graph.hpp"
#include "engine/network.hpp"

namespace mg {

template <class T>
class CpuBackend {
 public:
  using Scalar = T;
  template <class U>
  using Buffer = std::vector<U>;

  template <class U>
  Buffer<U> alloc(int64_t count) {
    return Buffer<U>(static_cast<size_t>(count), U{});
  }

  static cpu::ConvDims conv_dims(const Layer& l, int64_t n) {
    return {n, l.in.c, l.in.h, l.in.w, l.out.c, l.kernel, l.pad};
  }
  static cpu::BatchNormDims bn_dims(const Layer& l, int64_t n) {
    return {n, l.in.c, l.in.h * l.in.w};
  }

  // y = relu(conv(x, w) + b): im2col, one GEMM for the batch, one fused epilogue pass.
  void conv_forward(const Layer& l, int64_t n, const T* x, const T* w, const T* b, T* y,
                    ConvScratch<T> s) {
    const cpu::ConvDims d = conv_dims(l, n);
    cpu::im2col(x, d, s.col);
    cpu::gemm(false, false, d.c_out, d.cols(), d.k(), T(1), w, d.k(), s.col, d.cols(), T(0), s.tmp,
              d.cols());
    cpu::cnhw_bias_act_to_nchw(s.tmp, b, l.relu, n, l.out.c, l.out.h * l.out.w, y);
  }

  // Uses the forward's im2col(x) left in s.col, then overwrites it with d(col).
  void conv_backward(const Layer& l, int64_t n, const T* /*x*/, const T* w, const T* y,
                     const T* dy, T* dx, T* dw, T* db, ConvScratch<T> s) {
    const cpu::ConvDims d = conv_dims(l, n);
    cpu::nchw_act_grad_to_cnhw(y, dy, l.relu, n, l.out.c, l.out.h * l.out.w, s.tmp, db);
    cpu::gemm(false, true, d.c_out, d.k(), d.cols(), T(1), s.tmp, d.cols(), s.col, d.cols(), T(0),
              dw, d.k());
    if (dx == nullptr) return;
    cpu::gemm(true, false, d.k(), d.cols(), d.c_out, T(1), w, d.k(), s.tmp, d.cols(), T(0), s.col,
              d.cols());
    cpu::col2im(s.col, d, dx);
  }

  // A ReLU layer: y = max(x, 0); dx = dy where y > 0.
  void relu_forward(const Layer& l, int64_t n, const T* x, T* y) {
    cpu::relu_forward(x, y, n * l.in.size());
  }

  void relu_backward(const Layer& l, int64_t n, const T* y, const T* dy, T* dx) {
    cpu::relu_backward(y, dy, dx, n * l.in.size());
  }

  // Batch normalization (engine/cpu_batchnorm.hpp). stats: moving_mean [C] then moving_var [C],
  // updated in training only; saved: the mean and inv_std the backward uses.
  void batchnorm_forward(const Layer& l, int64_t n, const T* x, const T* gamma, const T* beta,
                         T* stats, T* y, BatchNormScratch<T> saved, bool training) {
    const cpu::BatchNormDims d = bn_dims(l, n);
    if (training) {
      cpu::batchnorm_forward_training(x, gamma, beta, d, kBatchNormMomentum, kBatchNormEpsilon,
                                      stats, stats + d.c, y, {saved.mean, saved.inv_std});
    } else {
      cpu::batchnorm_forward_inference(x, gamma, beta, d, kBatchNormEpsilon, stats, stats + d.c, y,
                                       {saved.mean, saved.inv_std});
    }
  }

  void batchnorm_backward(const Layer& l, int64_t n, const T* x, const T* gamma, const T* dy,
                          BatchNormScratch<T> saved, bool training, T* dx, T* dgamma, T* dbeta) {
    cpu::batchnorm_backward(x, gamma, dy, bn_dims(l, n), saved.mean, saved.inv_std, training, dx,
                            dgamma, dbeta);
  }

  void pool_forward(const Layer& l, int64_t n, const T* x, T* y, int32_t* argmax) {
    cpu::maxpool2x2_forward(x, y, argmax, n, l.in.c, l.in.h, l.in.w);
  }

  void pool_backward(const Layer& l, int64_t n, const T* dy, const int32_t* argmax, T* dx) {
    cpu::maxpool2x2_backward(dy, argmax, dx, n, l.in.c, l.in.h, l.in.w);
  }

  void dropout_forward(const Layer& l, int64_t n, const T* x, T* y, uint64_t seed,
                       const int64_t* counters) {
    cpu::dropout_forward(x, y, n * l.in.size(), dropout_key(l, seed, counters));
  }

  void dropout_backward(const Layer& l, int64_t n, const T* dy, T* dx, uint64_t seed,
                        const int64_t* counters) {
    cpu::dropout_backward(dy, dx, n * l.in.size(), dropout_key(l, seed, counters));
  }

  void dense_forward(const Layer& l, int64_t n, const T* x, const T* w, const T* b, T* y) {
    cpu::dense_forward(x, w, y, n, l.in.size(), l.out.c);
    cpu::bias_add_forward(y, b, n, l.out.c, 1);
    if (l.relu) cpu::relu_forward(y, y, n * l.out.c);
  }

  void dense_backward(const Layer& l, int64_t n, const T* x, const T* w, const T* y, T* dy, T* dx,
                      T* dw, T* db) {
    if (l.relu) cpu::relu_backward(y, dy, dy, n * l.out.c);
    cpu::bias_add_backward(dy, db, n, l.out.c, 1);
    cpu::dense_backward(x, w, dy, dx, dw, n, l.in.size(), l.out.c);
  }

  void copy(T* dst, const T* src, int64_t count) { std::copy_n(src, count, dst); }

  void softmax_xent(int64_t n, int64_t classes, const T* logits, const int32_t* labels, T* dlogits,
                    double* sums) {
    const cpu::LossSums s = cpu::softmax_xent(logits, labels, n, classes, dlogits);
    sums[kLossSum] += s.loss;
    sums[kCorrectSum] += static_cast<double>(s.correct);
    sums[kSampleSum] += static_cast<double>(n);
  }

  void softmax(int64_t n, int64_t classes, const T* logits, T* probs) {
    cpu::softmax(logits, probs, n, classes);
  }

  // The learning rate is *lr (c.lr is not read), as on the GPU.
  // *weight_decay decays the parameters where kernel_mask is 1 (AdamW); see engine/adam.hpp.
  void adam(T* p, const T* g, T* m, T* v, int64_t count, const AdamConfig& c, const double* lr,
            const double* weight_decay, const uint8_t* kernel_mask, const int64_t* counters) {
    AdamConfig at = c;
    at.lr = *lr;
    cpu::adam_update(p, g, m, v, count, static_cast<T>(adam_alpha(at, counters[kStepCounter])),
                     static_cast<T>(c.beta1), static_cast<T>(c.beta2), static_cast<T>(c.epsilon),
                     static_cast<T>(*lr * *weight_decay), kernel_mask);
  }

  // L2 kernel regularizer: g += 2 l2 p on the kernel weights (g may be null), and the penalty,
  // times the batch size n, into the metric sums.
  void l2_penalty(const T* p, T* g, const uint8_t* kernel_mask, int64_t count, double l2, int64_t n,
                  double* sums) {
    sums[kL2Sum] += static_cast<double>(n) * cpu::l2_penalty(p, g, kernel_mask, count, l2);
  }

  // x[i] = images[order[cursor + i]] / 255, labels likewise.
  void gather(const uint8_t* images, const uint8_t* labels, int64_t sample_size,
              const int32_t* order, const int64_t* counters, int64_t n, T* x, int32_t* y) {
    const int32_t* idx = order + counters[kCursorCounter];
#pragma omp parallel for schedule(static) if (n * sample_size >= cpu::kParallelMin)
    for (int64_t i = 0; i < n; ++i) {
      const uint8_t* src = images + static_cast<int64_t>(idx[i]) * sample_size;
      T* dst = x + i * sample_size;
      for (int64_t j = 0; j < sample_size; ++j) dst[j] = static_cast<T>(src[j]) / T(255);
      y[i] = labels[idx[i]];
    }
  }

  // gather with augmentation: image i is rotated and shifted by the transform drawn for
  // (seed, step, i) (kernels/augment.cuh). One channel.
  void gather_augmented(const uint8_t* images, const uint8_t* labels, Shape shape,
                        const int32_t* order, const int64_t* counters, int64_t n,
                        const AugmentConfig& augment, uint64_t seed, T* x, int32_t* y) {
    const int32_t* idx = order + counters[kCursorCounter];
    const auto step = static_cast<uint64_t>(counters[kStepCounter]);
    const int rows = static_cast<int>(shape.h), cols = static_cast<int>(shape.w);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      const AugmentTransform t = augment_transform(augment, seed, step, static_cast<uint64_t>(i));
      const uint8_t* src = images + static_cast<int64_t>(idx[i]) * rows * cols;
      for (int r = 0; r < rows; ++r)
        for (int c = 0; c < cols; ++c)
          x[(i * rows + r) * cols + c] = static_cast<T>(augmented_pixel(src, rows, cols, t, r, c));
      y[i] = labels[idx[i]];
    }
  }

  // --- engine plumbing (basic_engine.hpp) ---
  std::string device_name() const { return "cpu"; }
  Precision precision() const { return Precision::kFp32; }  // float32 (or T) BLAS, always
  template <class U, class V>
  void upload(U* dst, const V* src, int64_t count) {
    std::copy_n(src, count, dst);
  }
  template <class U, class V>
  void download(U* dst, const V* src, int64_t count) {
    std::copy_n(src, count, dst);
  }
  template <class U>
  void fill_zero(U* dst, int64_t count) {
    std::fill_n(dst, count, U{});
  }
  void copy_indices(int32_t* dst, const int32_t* src, int64_t n) { std::copy_n(src, n, dst); }
  void shuffle(int32_t* order, const int32_t* indices, int64_t n, uint64_t seed, int64_t epoch) {
    const std::vector<int32_t> o = epoch_order({indices, static_cast<size_t>(n)}, seed, epoch);
    std::copy(o.begin(), o.end(), order);
  }
  template <class Fn>
  void run_step(int64_t /*batch*/, Fn&& fn) {
    fn();
  }

  void end_step(int64_t* counters, int64_t n) {
    counters[kStepCounter] += 1;
    counters[kCursorCounter] += n;
  }
  void advance_cursor(int64_t* counters, int64_t n) { counters[kCursorCounter] += n; }

 protected:
  static cpu::DropoutKey dropout_key(const Layer& l, uint64_t seed, const int64_t* counters) {
    return {seed, static_cast<uint32_t>(l.index), static_cast<uint64_t>(counters[kStepCounter]),
            l.rate};
  }
};

}  // namespace mg
