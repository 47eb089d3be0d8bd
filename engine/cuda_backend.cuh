// The CUDA backend: the layer ops Network<> calls (engine/network.hpp), with the same signatures
// and semantics as CpuBackend (engine/cpu_backend.hpp), as launches of the kernels in kernels/ and
// cuBLAS GEMMs. Plain C++ over the CUDA runtime API, so g++-compiled tests can drive it.
//
// - One stream and one cuBLAS handle per backend; every op enqueues on that stream and nothing
//   synchronizes inside a training step. download() synchronizes: it is the once-per-epoch read.
// - The step number and the batch cursor live in device memory (Network's counters): dropout,
//   Adam and the batch gather read them on the device, and end_step advances them there, so the
//   whole step can be captured once in a CUDA graph and replayed (run_step).
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include "engine/adam.hpp"
#include "engine/graph.hpp"
#include "engine/network.hpp"
#include "engine/precision.hpp"
#include "kernels/adam.cuh"
#include "kernels/batch.cuh"
#include "kernels/batchnorm.cuh"
#include "kernels/conv.cuh"
#include "kernels/cuda_check.cuh"
#include "kernels/dense.cuh"
#include "kernels/dropout.cuh"
#include "kernels/gemm.cuh"
#include "kernels/pool.cuh"
#include "kernels/regularize.cuh"
#include "kernels/softmax_xent.cuh"
#include "kernels/variants.hpp"

namespace mg {

namespace detail {
struct CudaFree {
  void operator()(void* p) const noexcept { (void)cudaFree(p); }
};
}  // namespace detail

// Owning device memory for count elements of U: cudaMalloc'd, zero-filled on `stream` (so the
// zeros are in place before anything else on that stream reads them), freed on destruction.
// Movable, not copyable.
template <class U>
class DeviceBuffer {
  static_assert(std::is_trivially_copyable_v<U>, "device memory holds plain values");

 public:
  DeviceBuffer() = default;
  DeviceBuffer(int64_t count, cudaStream_t stream) {
    if (count < 0) throw std::invalid_argument("DeviceBuffer: negative element count");
    if (count == 0) return;
    const size_t bytes = static_cast<size_t>(count) * sizeof(U);
    void* p = nullptr;
    CUDA_CHECK(cudaMalloc(&p, bytes));
    ptr_.reset(static_cast<U*>(p));
    size_ = count;
    CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, stream));
  }
  DeviceBuffer(DeviceBuffer&& other) noexcept
      : ptr_(std::move(other.ptr_)), size_(std::exchange(other.size_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
    ptr_ = std::move(other.ptr_);
    size_ = std::exchange(other.size_, 0);
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  U* data() { return ptr_.get(); }
  const U* data() const { return ptr_.get(); }
  int64_t size() const { return size_; }

 private:
  std::unique_ptr<U, detail::CudaFree> ptr_;
  int64_t size_ = 0;
};

class CudaBackend {
 public:
  using Scalar = float;
  template <class U>
  using Buffer = DeviceBuffer<U>;

  // On device 0. use_graphs: run_step() captures its work in CUDA graphs and replays them
  // (ignored, i.e. off, under MNIST_GPU_SYNC_DEBUG=1, which must synchronize after each launch).
  // precision: the cuBLAS math mode of every GEMM (kTf32: CUBLAS_TF32_TENSOR_OP_MATH).
  explicit CudaBackend(bool use_graphs = false, Precision precision = Precision::kFp32);
  ~CudaBackend();
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  // Every allocation may hand out addresses a captured graph does not know, so it retires the
  // graphs captured so far (they are captured again when next needed).
  template <class U>
  Buffer<U> alloc(int64_t count) {
    ++generation_;
    return Buffer<U>(count, stream_);
  }

  // --- layer ops (CpuBackend's signatures) ---
  void conv_forward(const Layer& l, int64_t n, const float* x, const float* w, const float* b,
                    float* y, ConvScratch<float> s) {
    kern::conv3x3_forward(cublas_, stream_, conv_dims(l, n), l.relu, x, w, b, y, s.col, s.tmp);
  }

  // Uses the forward's im2col(x) left in s.col (as CpuBackend does), or unfolds x again chunk by
  // chunk (conv_gemm variant 1), then overwrites it with d(col) when dx is wanted.
  void conv_backward(const Layer& l, int64_t n, const float* x, const float* w, const float* y,
                     const float* dy, float* dx, float* dw, float* db, ConvScratch<float> s) {
    kern::conv3x3_backward(cublas_, stream_, conv_dims(l, n), l.relu, x, w, y, dy, dx, dw, db,
                           s.col, s.tmp);
  }

  // conv_pool variant 1 (kernels/variants.hpp): training runs a conv and the 2x2 max-pool after
  // it as one op (Network asks once, at construction). Variant 0, the default, keeps them apart;
  // a layer whose indices need 64 bits stays apart too.
  bool fuses_conv_pool(const Layer& conv, const Layer& pool, int64_t max_batch) const {
    return kern::kernel_variants()[kern::VariantOp::kConvPool] == 1 &&
           conv.kind == LayerKind::kConv2d && pool.kind == LayerKind::kMaxPool &&
           kern::conv_pool_fits(conv_dims(conv, max_batch));
  }

  // pooled and argmax = pool(conv(x)); the conv's output is not written. s.col keeps im2col(x) for
  // the backward, as conv_forward's does.
  void conv_pool_forward(const Layer& conv, const Layer& /*pool*/, int64_t n, const float* x,
                         const float* w, const float* b, float* pooled, int32_t* argmax,
                         ConvScratch<float> s) {
    kern::conv_pool_forward(cublas_, stream_, conv_dims(conv, n), conv.relu, x, w, b, pooled,
                            argmax, s.col, s.tmp);
  }

  // From the pool's output gradient to the conv's dw, db and (unless null) dx.
  void conv_pool_backward(const Layer& conv, const Layer& /*pool*/, int64_t n, const float* x,
                          const float* w, const float* pooled, const float* dpooled,
                          const int32_t* argmax, float* dx, float* dw, float* db,
                          ConvScratch<float> s) {
    kern::conv_pool_backward(cublas_, stream_, conv_dims(conv, n), conv.relu, x, w, pooled, dpooled,
                             argmax, dx, dw, db, s.col, s.tmp);
  }

  void relu_forward(const Layer& l, int64_t n, const float* x, float* y) {
    kern::relu_forward(x, y, n * l.in.size(), stream_);
  }

  void relu_backward(const Layer& l, int64_t n, const float* y, const float* dy, float* dx) {
    kern::relu_backward(y, dy, dx, n * l.in.size(), stream_);
  }

  // Batch normalization (kernels/batchnorm.cuh). stats: moving_mean [C] then moving_var [C], updated
  // on the device in training (inside a captured step too).
  void batchnorm_forward(const Layer& l, int64_t n, const float* x, const float* gamma,
                         const float* beta, float* stats, float* y, BatchNormScratch<float> saved,
                         bool training) {
    const kern::BatchNormShape d = bn_shape(l, n);
    if (training) {
      kern::batchnorm_forward_training(x, gamma, beta, d, kBatchNormMomentum, kBatchNormEpsilon,
                                       stats, stats + d.c, y, saved.mean, saved.inv_std, stream_);
    } else {
      kern::batchnorm_forward_inference(x, gamma, beta, d, kBatchNormEpsilon, stats, stats + d.c, y,
                                        saved.mean, saved.inv_std, stream_);
    }
  }

  void batchnorm_backward(const Layer& l, int64_t n, const float* x, const float* gamma,
                          const float* dy, BatchNormScratch<float> saved, bool training, float* dx,
                          float* dgamma, float* dbeta) {
    kern::batchnorm_backward(x, gamma, dy, bn_shape(l, n), saved.mean, saved.inv_std, training, dx,
                             dgamma, dbeta, stream_);
  }

  void pool_forward(const Layer& l, int64_t n, const float* x, float* y, int32_t* argmax) {
    kern::maxpool2x2_forward(x, pool_dims(l, n), y, argmax, stream_);
  }

  void pool_backward(const Layer& l, int64_t n, const float* dy, const int32_t* argmax, float* dx) {
    kern::maxpool2x2_backward(dy, argmax, pool_dims(l, n), dx, stream_);
  }

  void dropout_forward(const Layer& l, int64_t n, const float* x, float* y, uint64_t seed,
                       const int64_t* counters) {
    kern::dropout_apply(x, y, n * l.in.size(), seed, static_cast<uint32_t>(l.index),
                        counters + kStepCounter, l.rate, stream_);
  }

  void dropout_backward(const Layer& l, int64_t n, const float* dy, float* dx, uint64_t seed,
                        const int64_t* counters) {
    kern::dropout_apply(dy, dx, n * l.in.size(), seed, static_cast<uint32_t>(l.index),
                        counters + kStepCounter, l.rate, stream_);
  }

  void dense_forward(const Layer& l, int64_t n, const float* x, const float* w, const float* b,
                     float* y) {
    kern::dense_forward(cublas_, stream_, n, l.in.size(), l.out.c, l.relu, x, w, b, y, &lt_);
  }

  void dense_backward(const Layer& l, int64_t n, const float* x, const float* w, const float* y,
                      float* dy, float* dx, float* dw, float* db) {
    kern::dense_backward(cublas_, stream_, n, l.in.size(), l.out.c, l.relu, x, w, y, dy, dx, dw, db,
                         &lt_);
  }

  void copy(float* dst, const float* src, int64_t count) {
    if (count == 0) return;
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes<float>(count), cudaMemcpyDeviceToDevice, stream_));
  }

  void softmax_xent(int64_t n, int64_t classes, const float* logits, const int32_t* labels,
                    float* dlogits, double* sums) {
    kern::softmax_xent(logits, labels, n, classes, dlogits, sums + kLossSum, sums + kCorrectSum,
                       sums + kSampleSum, stream_);
  }

  void softmax(int64_t n, int64_t classes, const float* logits, float* probs) {
    kern::softmax(logits, n, classes, probs, stream_);
  }

  void adam(float* p, const float* g, float* m, float* v, int64_t count, const AdamConfig& c,
            const double* lr, const double* weight_decay, const uint8_t* kernel_mask,
            const int64_t* counters) {
    kern::adam_update(p, g, m, v, count, c, lr, counters + kStepCounter, stream_, weight_decay,
                      kernel_mask, adam_scalars_.data());
  }

  void l2_penalty(const float* p, float* g, const uint8_t* kernel_mask, int64_t count, double l2,
                  int64_t n, double* sums) {
    kern::l2_penalty(p, g, kernel_mask, count, l2, n, l2_partials_.data(), sums + kL2Sum, stream_);
  }

  void gather(const uint8_t* images, const uint8_t* labels, int64_t sample_size,
              const int32_t* order, const int64_t* counters, int64_t n, float* x, int32_t* y) {
    kern::gather_batch(images, labels, sample_size, order, counters + kCursorCounter, n, x, y,
                       stream_);
  }

  void gather_augmented(const uint8_t* images, const uint8_t* labels, Shape shape,
                        const int32_t* order, const int64_t* counters, int64_t n,
                        const AugmentConfig& augment, uint64_t seed, float* x, int32_t* y) {
    kern::gather_batch_augmented(images, labels, static_cast<int>(shape.h), static_cast<int>(shape.w),
                                 order, counters, n, augment, seed, x, y, stream_);
  }

  void end_step(int64_t* counters, int64_t n) {
    kern::end_step(counters + kStepCounter, counters + kCursorCounter, n, stream_);
  }

  void advance_cursor(int64_t* counters, int64_t n) {
    kern::advance_cursor(counters + kCursorCounter, n, stream_);
  }

  // --- engine plumbing (engine/basic_engine.hpp) ---
  std::string device_name() const { return device_name_; }
  Precision precision() const { return precision_; }

  // Host -> device; waits for the copy, so the host buffer may go away right after.
  template <class U, class V>
  void upload(U* dst, const V* src, int64_t count) {
    static_assert(std::is_same_v<std::remove_cv_t<U>, std::remove_cv_t<V>>,
                  "upload copies bytes: no conversions");
    if (count == 0) return;
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes<U>(count), cudaMemcpyHostToDevice, stream_));
    CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

  // Device -> host, after everything enqueued before it: this is where the host waits.
  template <class U, class V>
  void download(U* dst, const V* src, int64_t count) {
    static_assert(std::is_same_v<std::remove_cv_t<U>, std::remove_cv_t<V>>,
                  "download copies bytes: no conversions");
    if (count == 0) return;
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes<U>(count), cudaMemcpyDeviceToHost, stream_));
    CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

  template <class U>
  void fill_zero(U* dst, int64_t count) {
    if (count == 0) return;
    CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes<U>(count), stream_));
  }

  void copy_indices(int32_t* dst, const int32_t* src, int64_t n) {
    if (n == 0) return;
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes<int32_t>(n), cudaMemcpyDeviceToDevice, stream_));
  }

  // order = epoch_order(indices, seed, epoch), computed on the device (Thrust's stable sort).
  void shuffle(int32_t* order, const int32_t* indices, int64_t n, uint64_t seed, int64_t epoch);

  // Runs fn(), the work of one training step of `batch` samples. With graphs, the first call for
  // a batch size runs fn() eagerly (the warm-up: see below), the second captures fn()'s launches
  // into a CUDA graph instead of running them and launches it, and every later call launches the
  // graph. The key must identify the work: BasicEngine has one training step per batch size.
  // Pointers and sizes are frozen in the graph; the step number and cursor are not (they are read
  // from device memory), and alloc() retires old graphs (recaptured without a new warm-up).
  //
  // The warm-up keeps cold work out of the capture: the first launch of each kernel loads its
  // module (lazy loading, CUDA's default since 12.2), and cuBLAS's first GEMM of a shape picks
  // and loads its kernel. Done inside cudaStreamBeginCapture, that work is at best slow and at
  // worst refused (drivers before 12.3 cannot load a module during a capture). The eager step is
  // a real step, and graph replay equals eager launches bit for bit, so nothing changes but where
  // that work happens.
  template <class Fn>
  void run_step(int64_t batch, Fn&& fn) {
    if (!use_graphs_) {
      fn();
      return;
    }
    if (warm_batches_.insert(batch).second) {
      fn();
      return;
    }
    cudaGraphExec_t exec = cached_graph(batch);
    if (exec == nullptr) {
      begin_capture();
      try {
        fn();
      } catch (...) {
        abort_capture();
        throw;
      }
      exec = end_capture(batch);
    }
    launch_graph(exec);
  }

  // --- for tests and benchmarks ---
  cudaStream_t stream() const { return stream_; }
  cublasHandle_t cublas() const { return cublas_; }
  bool uses_graphs() const { return use_graphs_; }
  size_t captured_graphs() const { return graphs_.size(); }
  size_t warmed_up_batches() const { return warm_batches_.size(); }
  void synchronize() { CUDA_CHECK(cudaStreamSynchronize(stream_)); }

 private:
  // cuBLAS' recommended workspace on Hopper; given explicitly so that no GEMM allocates while a
  // graph is being captured.
  static constexpr size_t kCublasWorkspaceBytes = size_t{32} << 20;

  template <class U>
  static size_t bytes(int64_t count) {
    if (count < 0) throw std::invalid_argument("negative element count");
    return static_cast<size_t>(count) * sizeof(U);
  }
  static kern::ConvDims conv_dims(const Layer& l, int64_t n) {
    return {n, l.in.c, l.in.h, l.in.w, l.out.c, l.kernel, l.pad};
  }
  static kern::BatchNormShape bn_shape(const Layer& l, int64_t n) {
    return {n, l.in.c, l.in.h * l.in.w};
  }
  static kern::PoolDims pool_dims(const Layer& l, int64_t n) {
    return {n * l.in.c, l.in.h, l.in.w};
  }

  cudaGraphExec_t cached_graph(int64_t batch);
  void begin_capture();
  void abort_capture() noexcept;
  cudaGraphExec_t end_capture(int64_t batch);
  void launch_graph(cudaGraphExec_t exec);
  void release() noexcept;

  struct CapturedStep {
    cudaGraphExec_t exec;
    uint64_t generation;  // alloc() count when captured
  };

  int device_ = 0;
  std::string device_name_;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  void* cublas_workspace_ = nullptr;
  kern::GemmLt lt_;  // cuBLASLt, with the same workspace: the dense layers' variant 1
  bool use_graphs_ = false;
  Precision precision_ = Precision::kFp32;
  uint64_t generation_ = 0;
  std::set<int64_t> warm_batches_;  // batch sizes whose step has run eagerly once
  std::map<int64_t, CapturedStep> graphs_;
  DeviceBuffer<uint32_t> shuffle_keys_;
  DeviceBuffer<int32_t> shuffle_positions_;
  DeviceBuffer<double> l2_partials_;  // kern::l2_penalty's per-block sums
  DeviceBuffer<float> adam_scalars_;  // Adam variant 1's step size and decay, written each step
};

}  // namespace mg
