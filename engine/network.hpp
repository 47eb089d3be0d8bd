// The graph executor: one template over a backend, so the CPU and CUDA engines walk the graph with
// the same code and differ only in the ops they call.
//
// Memory is planned once, at construction, for a maximum batch: parameters, gradients and both Adam
// moments in four flat buffers (one parameter buffer, as tiny-cuda-nn and llm.c do), every
// activation and its gradient in one arena, pooling argmax in another, and the conv scratch. A
// training step allocates nothing, reads its step number and batch cursor from backend memory and
// never synchronizes, so a CUDA backend can capture it in a graph and replay it.
//
// A backend B provides:
//   using Scalar;                       float (training) or double (gradient checks)
//   template <class U> using Buffer;    owning, zero-filled, .data()
//   template <class U> Buffer<U> alloc(int64_t count);
//   layer ops: conv_forward/backward, pool_forward/backward, dropout_forward/backward,
//              dense_forward/backward, relu_forward/backward, batchnorm_forward/backward, copy
//   softmax_xent, softmax, adam, l2_penalty, gather, gather_augmented, end_step, advance_cursor
//   (see CpuBackend for the exact signatures)
// and may provide, to run a convolution and the 2x2 max-pool after it as one op in training:
//   bool fuses_conv_pool(conv, pool, max_batch)     asked once per such pair, at construction
//   conv_pool_forward(conv, pool, n, x, w, b, pooled, argmax, scratch)
//   conv_pool_backward(conv, pool, n, x, w, pooled, dpooled, argmax, dx, dw, db, scratch)
// (scratch: the conv layer's ConvScratch, as conv_forward and conv_backward get it)
// (see CpuFastBackend). A fused forward writes the pool's output and argmax but not the
// convolution's output, and its backward goes from the pool's output gradient straight to the
// convolution's gradients; inference (forward(n, false), backward(n, false)) never fuses, so every
// activation is there to read after it.
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "engine/adam.hpp"
#include "engine/graph.hpp"
#include "kernels/augment.cuh"

namespace mg {

// Counters that live in backend memory so a captured step can advance them itself.
enum Counter : int { kStepCounter = 0, kCursorCounter = 1, kCounterCount = 2 };
// Metric sums, also in backend memory, read once per epoch.
// kL2Sum: the L2 kernel penalty, times each batch's size (so / kSampleSum is its mean per sample).
enum MetricSum : int { kLossSum = 0, kCorrectSum = 1, kSampleSum = 2, kL2Sum = 3, kMetricCount = 4 };

// Per conv layer scratch. col is the layer's own: the forward leaves im2col(x) there and the
// backward may use it instead of unfolding x again (and may overwrite it with d(col)).
template <class T>
struct ConvScratch {
  T* col;  // im2col matrix of this layer's input, [c_in * 9, n * h * w]
  T* tmp;  // shared: the GEMM's channel-major output, or the permuted output gradient
};

// Per batch-normalization layer: what its forward normalized with, per channel, for its backward.
template <class T>
struct BatchNormScratch {
  T* mean;     // [C]
  T* inv_std;  // [C], 1 / sqrt(var + epsilon)
};

template <class Backend>
class Network {
 public:
  using T = typename Backend::Scalar;
  template <class U>
  using Buffer = typename Backend::template Buffer<U>;

  // l2: Keras' kernel_regularizer l2 on every kernel tensor (ParamRole::kKernel), 0: none.
  Network(Backend& backend, Graph graph, int64_t max_batch, uint64_t seed, AdamConfig adam = {},
          AugmentConfig augment = {}, double l2 = 0)
      : be_(backend),
        graph_(std::move(graph)),
        max_batch_(max_batch),
        seed_(seed),
        adam_(adam),
        augment_(augment),
        l2_(l2) {
    if (!(l2 >= 0) || !std::isfinite(l2)) {
      throw std::invalid_argument("the L2 factor must be finite and at least 0");
    }
    if (augment_.enabled && graph_.input().c != 1) {
      throw std::invalid_argument("augmentation supports one-channel images only");
    }
    if (max_batch < 1) throw std::invalid_argument("batch size must be at least 1");
    const int64_t p = graph_.param_count();
    params_ = be_.template alloc<T>(p);
    grads_ = be_.template alloc<T>(p);
    m_ = be_.template alloc<T>(p);
    v_ = be_.template alloc<T>(p);
    counters_ = be_.template alloc<int64_t>(kCounterCount);
    lr_ = be_.template alloc<double>(1);
    set_learning_rate(adam_.lr);
    weight_decay_ = be_.template alloc<double>(1);
    set_weight_decay(adam_.weight_decay);
    const std::vector<uint8_t> mask = graph_.kernel_mask();
    kernel_mask_ = be_.template alloc<uint8_t>(std::max<int64_t>(p, 1));
    be_.upload(kernel_mask_.data(), mask.data(), p);
    metrics_ = be_.template alloc<double>(kMetricCount);
    labels_ = be_.template alloc<int32_t>(max_batch);
    plan_memory();
    plan_fusion();
  }

  const Graph& graph() const { return graph_; }
  int64_t max_batch() const { return max_batch_; }
  uint64_t seed() const { return seed_; }
  const AdamConfig& adam() const { return adam_; }
  double l2() const { return l2_; }
  Backend& backend() { return be_; }

  T* params() { return params_.data(); }
  T* grads() { return grads_.data(); }
  T* adam_m() { return m_.data(); }
  T* adam_v() { return v_.data(); }
  T* input() { return act_.front(); }         // [max_batch, C, H, W]
  T* logits() { return act_.back(); }         // [max_batch, classes]
  T* logits_grad() { return dact_.back(); }
  int32_t* labels() { return labels_.data(); }
  int64_t* counters() { return counters_.data(); }
  // Adam's learning rate lives in backend memory: a captured step reads it, so a schedule changes
  // it between steps without a recapture.
  void set_learning_rate(double lr) { be_.upload(lr_.data(), &lr, 1); }
  double learning_rate() {
    double lr = 0;
    be_.download(&lr, lr_.data(), 1);
    return lr;
  }
  // AdamW's weight decay rate, in backend memory like the learning rate (no recapture either).
  void set_weight_decay(double wd) {
    if (!(wd >= 0) || !std::isfinite(wd)) {
      throw std::invalid_argument("the weight decay must be finite and at least 0");
    }
    be_.upload(weight_decay_.data(), &wd, 1);
  }
  double weight_decay() {
    double wd = 0;
    be_.download(&wd, weight_decay_.data(), 1);
    return wd;
  }
  const uint8_t* kernel_mask() { return kernel_mask_.data(); }  // Graph::kernel_mask()
  double* metric_sums() { return metrics_.data(); }
  T* activation(size_t i) { return act_[i]; }  // i = 0 input, i = L logits
  T* activation_grad(size_t i) { return dact_[i]; }
  int32_t* pool_argmax(size_t layer) { return argmax_[layer]; }  // null unless a pool layer
  // Whether training runs conv layer `layer` and the pool after it as one op.
  bool fused_with_pool(size_t layer) const { return fused_pool_[layer]; }
  BatchNormScratch<T> batchnorm_saved(size_t layer) {  // null pointers unless a BN layer
    return {bn_saved_[layer], bn_saved_[layer] ? bn_saved_[layer] + graph_.layers()[layer].out.c
                                               : nullptr};
  }

  // Forward through every layer for a batch of n already in input(). Dropout is active only in
  // training, keyed by the step counter.
  void forward(int64_t n, bool training) {
    check_batch(n);
    const auto& layers = graph_.layers();
    for (size_t i = 0; i < layers.size(); ++i) {
      const Layer& l = layers[i];
      T* x = act_[i];
      T* y = act_[i + 1];
      if (training && fused_pool_[i]) {
        if constexpr (kCanFuseConvPool) {
          be_.conv_pool_forward(l, layers[i + 1], n, x, params() + l.weight_offset,
                                params() + l.bias_offset, act_[i + 2], argmax_[i + 1], scratch(i));
        }
        ++i;  // the pool is done too
        continue;
      }
      switch (l.kind) {
        case LayerKind::kConv2d:
          be_.conv_forward(l, n, x, params() + l.weight_offset, params() + l.bias_offset, y, scratch(i));
          break;
        case LayerKind::kMaxPool: be_.pool_forward(l, n, x, y, argmax_[i]); break;
        case LayerKind::kDropout:
          if (training) {
            be_.dropout_forward(l, n, x, y, seed_, counters());
          } else {
            be_.copy(y, x, n * l.in.size());
          }
          break;
        case LayerKind::kFlatten: break;  // y aliases x
        case LayerKind::kRelu: be_.relu_forward(l, n, x, y); break;
        case LayerKind::kBatchNorm:
          // Training: batch statistics, and the moving ones updated here, on the device.
          be_.batchnorm_forward(l, n, x, params() + l.weight_offset, params() + l.bias_offset,
                                params() + l.stats_offset, y, batchnorm_saved(i), training);
          break;
        case LayerKind::kDense:
          be_.dense_forward(l, n, x, params() + l.weight_offset, params() + l.bias_offset, y);
          break;
      }
    }
  }

  // Softmax cross-entropy on logits() against labels(): fills logits_grad() and adds to the sums.
  void loss(int64_t n) {
    be_.softmax_xent(n, graph_.classes(), logits(), labels(), logits_grad(), metric_sums());
  }

  // The L2 kernel penalty at the current parameters into the sums (times n); with_grad: its
  // gradient added to grads() (call after backward(), which overwrites them). Nothing when l2 = 0.
  void regularize(int64_t n, bool with_grad) {
    if (l2_ == 0) return;
    be_.l2_penalty(params(), with_grad ? grads() : nullptr, kernel_mask(), graph_.trainable_count(), l2_,
                   n, metric_sums());
  }

  // Backward from logits_grad(): fills grads() (overwritten, never accumulated). Activation
  // gradients are consumed on the way (ReLU masks them in place). input_grad, when given, receives
  // d(input) ([n, C, H, W]); training leaves it null, so the first layer skips that work. Outside
  // training (training = false) dropout is the identity, as in forward(n, false).
  void backward(int64_t n, bool training = true, T* input_grad = nullptr) {
    check_batch(n);
    const auto& layers = graph_.layers();
    for (size_t i = layers.size(); i-- > 0;) {
      const Layer& l = layers[i];
      T* x = act_[i];
      T* y = act_[i + 1];
      T* dy = dact_[i + 1];
      // d(input) where this layer's input is the network's input (itself, or through leading
      // flatten layers, which alias it); training never needs it.
      T* dx = i == 0 || dact_[i] == nullptr ? input_grad : dact_[i];
      if (training && i > 0 && fused_pool_[i - 1]) {  // this pool and the conv before it
        if constexpr (kCanFuseConvPool) {
          const Layer& c = layers[i - 1];
          T* conv_dx = i - 1 == 0 || dact_[i - 1] == nullptr ? input_grad : dact_[i - 1];
          be_.conv_pool_backward(c, l, n, act_[i - 1], params() + c.weight_offset, y, dy,
                                 argmax_[i], conv_dx, grads() + c.weight_offset,
                                 grads() + c.bias_offset, scratch(i - 1));
        }
        --i;  // the conv is done too
        continue;
      }
      switch (l.kind) {
        case LayerKind::kConv2d:
          be_.conv_backward(l, n, x, params() + l.weight_offset, y, dy, dx, grads() + l.weight_offset,
                            grads() + l.bias_offset, scratch(i));
          break;
        case LayerKind::kMaxPool:
          if (dx) be_.pool_backward(l, n, dy, argmax_[i], dx);
          break;
        case LayerKind::kDropout:
          if (dx && training) be_.dropout_backward(l, n, dy, dx, seed_, counters());
          if (dx && !training) be_.copy(dx, dy, n * l.in.size());
          break;
        case LayerKind::kFlatten: break;  // aliases its input and its gradient
        case LayerKind::kRelu:
          if (dx) be_.relu_backward(l, n, y, dy, dx);
          break;
        case LayerKind::kBatchNorm:
          be_.batchnorm_backward(l, n, x, params() + l.weight_offset, dy, batchnorm_saved(i),
                                 training, dx, grads() + l.weight_offset, grads() + l.bias_offset);
          break;
        case LayerKind::kDense:
          be_.dense_backward(l, n, x, params() + l.weight_offset, y, dy, dx,
                             grads() + l.weight_offset, grads() + l.bias_offset);
          break;
      }
    }
  }

  // Saliency of the n inputs in input(): a forward in inference mode, logits_grad() seeded with a
  // one-hot of each input's predicted class (argmax of the logits, before softmax), then the
  // backward down to input_grad ([n, C, H, W]) = d(predicted class's logit)/d(input). Fills
  // predicted[0, n). Overwrites grads() and the activations, never the parameters, Adam moments or
  // counters; not for a captured step (it reads the logits back to the host).
  void saliency(int64_t n, T* input_grad, int32_t* predicted) {
    forward(n, false);
    const int64_t classes = graph_.classes();
    std::vector<T> host(static_cast<size_t>(n * classes));
    be_.download(host.data(), logits(), n * classes);
    for (int64_t i = 0; i < n; ++i) {
      T* row = host.data() + i * classes;
      const int64_t best = std::max_element(row, row + classes) - row;
      predicted[i] = static_cast<int32_t>(best);
      std::fill(row, row + classes, T(0));
      row[best] = T(1);
    }
    be_.upload(logits_grad(), host.data(), n * classes);
    backward(n, false, input_grad);
  }

  // Over the trainable prefix of the flat buffer only: the moving statistics of the tail are not
  // trained (their gradients and moments stay zero).
  void adam_update() {
    be_.adam(params(), grads(), adam_m(), adam_v(), graph_.trainable_count(), adam_, lr_.data(),
             weight_decay_.data(), kernel_mask(), counters());
  }

  // One whole training step on the batch order[cursor, cursor + n): gather, forward, loss,
  // backward, the L2 penalty, Adam(W), then step += 1 and cursor += n. Allocation-free and
  // synchronization-free.
  void train_step(const uint8_t* images, const uint8_t* labels, const int32_t* order, int64_t n) {
    if (augment_.enabled) {
      be_.gather_augmented(images, labels, graph_.input(), order, counters(), n, augment_, seed_,
                           input(), this->labels());
    } else {
      be_.gather(images, labels, graph_.input().size(), order, counters(), n, input(), this->labels());
    }
    forward(n, true);
    loss(n);
    backward(n);
    regularize(n, true);
    adam_update();
    be_.end_step(counters(), n);
  }

  // Forward in inference mode on order[cursor, cursor + n), adding to the metric sums; cursor += n.
  void eval_step(const uint8_t* images, const uint8_t* labels, const int32_t* order, int64_t n) {
    be_.gather(images, labels, graph_.input().size(), order, counters(), n, input(), this->labels());
    forward(n, false);
    be_.softmax_xent(n, graph_.classes(), logits(), this->labels(), nullptr, metric_sums());
    regularize(n, false);  // Keras' val_loss includes the regularization losses too
    be_.advance_cursor(counters(), n);
  }

 private:
  void check_batch(int64_t n) const {
    if (n < 1 || n > max_batch_) throw std::out_of_range("batch size outside the planned range");
  }

  ConvScratch<T> scratch(size_t layer) { return {col_[layer], tmp_.data()}; }

  static constexpr bool kCanFuseConvPool = requires(Backend& b, const Layer& l) {
    { b.fuses_conv_pool(l, l, int64_t{}) } -> std::convertible_to<bool>;
  };

  // fused_pool_[i]: layer i is a convolution that training runs together with the pool after it.
  void plan_fusion() {
    const auto& layers = graph_.layers();
    fused_pool_.assign(layers.size(), false);
    if constexpr (kCanFuseConvPool) {
      for (size_t i = 0; i + 1 < layers.size(); ++i) {
        fused_pool_[i] = layers[i].kind == LayerKind::kConv2d &&
                         layers[i + 1].kind == LayerKind::kMaxPool &&
                         be_.fuses_conv_pool(layers[i], layers[i + 1], max_batch_);
      }
    }
  }

  void plan_memory() {
    const auto& layers = graph_.layers();
    const size_t L = layers.size();
    // Offsets into one arena: act[0] is the input, act[i+1] the output of layer i; flatten aliases.
    std::vector<int64_t> act_off(L + 1), grad_off(L + 1, -1);
    int64_t total = 0, col_total = 0, tmp = 0, arg_total = 0, bn_total = 0;
    std::vector<int64_t> col_off(L, -1);
    act_off[0] = total;
    total += max_batch_ * graph_.input().size();
    for (size_t i = 0; i < L; ++i) {
      const Layer& l = layers[i];
      if (l.kind == LayerKind::kFlatten) {
        act_off[i + 1] = act_off[i];
      } else {
        act_off[i + 1] = total;
        total += max_batch_ * l.out.size();
      }
      if (l.kind == LayerKind::kConv2d) {
        col_off[i] = col_total;
        col_total += max_batch_ * l.in.c * l.kernel * l.kernel * l.out.h * l.out.w;
        tmp = std::max(tmp, max_batch_ * l.out.size());
      }
      if (l.kind == LayerKind::kMaxPool) arg_total += max_batch_ * l.out.size();
      if (l.kind == LayerKind::kBatchNorm) bn_total += 2 * l.out.c;
    }
    // Gradients: every activation but the input, which no layer needs.
    for (size_t i = 1; i <= L; ++i) {
      if (layers[i - 1].kind == LayerKind::kFlatten) {
        grad_off[i] = grad_off[i - 1];
      } else {
        grad_off[i] = total;
        total += max_batch_ * layers[i - 1].out.size();
      }
    }
    arena_ = be_.template alloc<T>(total);
    col_arena_ = be_.template alloc<T>(std::max<int64_t>(col_total, 1));
    tmp_ = be_.template alloc<T>(std::max<int64_t>(tmp, 1));
    argmax_arena_ = be_.template alloc<int32_t>(std::max<int64_t>(arg_total, 1));
    bn_arena_ = be_.template alloc<T>(std::max<int64_t>(bn_total, 1));
    act_.assign(L + 1, nullptr);
    dact_.assign(L + 1, nullptr);
    argmax_.assign(L, nullptr);
    col_.assign(L, nullptr);
    bn_saved_.assign(L, nullptr);
    for (size_t i = 0; i <= L; ++i) {
      act_[i] = arena_.data() + act_off[i];
      if (grad_off[i] >= 0) dact_[i] = arena_.data() + grad_off[i];
    }
    for (size_t i = 0; i < L; ++i) {
      if (col_off[i] >= 0) col_[i] = col_arena_.data() + col_off[i];
    }
    int64_t bn = 0;
    for (size_t i = 0; i < L; ++i) {
      if (layers[i].kind != LayerKind::kBatchNorm) continue;
      bn_saved_[i] = bn_arena_.data() + bn;
      bn += 2 * layers[i].out.c;
    }
    int64_t arg = 0;
    for (size_t i = 0; i < L; ++i) {
      if (layers[i].kind != LayerKind::kMaxPool) continue;
      argmax_[i] = argmax_arena_.data() + arg;
      arg += max_batch_ * layers[i].out.size();
    }
  }

  Backend& be_;
  Graph graph_;
  int64_t max_batch_;
  uint64_t seed_;
  AdamConfig adam_;
  AugmentConfig augment_;
  double l2_ = 0;
  Buffer<T> params_, grads_, m_, v_, arena_, col_arena_, tmp_, bn_arena_;
  Buffer<int32_t> labels_, argmax_arena_;
  Buffer<uint8_t> kernel_mask_;
  Buffer<int64_t> counters_;
  Buffer<double> lr_, weight_decay_;
  Buffer<double> metrics_;
  std::vector<T*> act_, dact_;
  std::vector<int32_t*> argmax_;
  std::vector<T*> col_;
  std::vector<T*> bn_saved_;
  std::vector<bool> fused_pool_;
};

}  // namespace mg
