// The CPU backend that trains: CpuBackend<float> (the reference ops, engine/cpu_backend.hpp) with
// its hot ops replaced by the fast kernels of engine/cpu_fast_conv.* and engine/cpu_fast_ops.*,
// and a convolution followed by a 2x2 max-pool fused into one op in training (Network<> asks
// fuses_conv_pool). Whatever the fast kernels do not take (output channels not a multiple of 16,
// say) goes to the reference op. Double precision and the gradient checks stay on CpuBackend.
#pragma once

#include <cstdint>

#include "engine/cpu_backend.hpp"
#include "engine/cpu_fast_conv.hpp"
#include "engine/cpu_fast_ops.hpp"

namespace mg {

class CpuFastBackend : public CpuBackend<float> {
 public:
  using Base = CpuBackend<float>;

  // Whether training runs conv + pool as one op (conv_pool_forward / conv_pool_backward).
  bool fuses_conv_pool(const Layer& conv, const Layer& pool, int64_t max_batch) const {
    return conv.kind == LayerKind::kConv2d && pool.kind == LayerKind::kMaxPool &&
           cpu::fast::conv_supported(conv_dims(conv, max_batch));
  }

  void conv_forward(const Layer& l, int64_t n, const float* x, const float* w, const float* b,
                    float* y, ConvScratch<float> s) {
    const cpu::ConvDims d = conv_dims(l, n);
    if (!cpu::fast::conv_supported(d)) return Base::conv_forward(l, n, x, w, b, y, s);
    cpu::fast::conv_forward(x, w, b, l.relu, d, y, conv_ws_);
  }

  // The reference backward, which takes the forward's column matrix from s.col: the direct
  // forward wrote none, so unfold x first. (Training fuses the layers it speeds up; this serves
  // a conv without a pool after it, and saliency maps.)
  void conv_backward(const Layer& l, int64_t n, const float* x, const float* w, const float* y,
                     const float* dy, float* dx, float* dw, float* db, ConvScratch<float> s) {
    const cpu::ConvDims d = conv_dims(l, n);
    if (cpu::fast::conv_supported(d)) cpu::im2col(x, d, s.col);
    Base::conv_backward(l, n, x, w, y, dy, dx, dw, db, s);
  }

  // pooled = pool(conv(x)) and its argmax; the conv's own output is not written. (The scratch
  // is not needed: the direct convolution keeps its own per-thread tiles.)
  void conv_pool_forward(const Layer& conv, const Layer& /*pool*/, int64_t n, const float* x,
                         const float* w, const float* b, float* pooled, int32_t* argmax,
                         ConvScratch<float> /*scratch*/) {
    cpu::fast::conv_pool_forward(x, w, b, conv.relu, conv_dims(conv, n), pooled, argmax, conv_ws_);
  }

  // From the pool's output gradient to the conv's dw, db and (unless null) dx.
  void conv_pool_backward(const Layer& conv, const Layer& /*pool*/, int64_t n, const float* x,
                          const float* w, const float* pooled, const float* dpooled,
                          const int32_t* argmax, float* dx, float* dw, float* db,
                          ConvScratch<float> /*scratch*/) {
    cpu::fast::conv_pool_backward(x, w, pooled, dpooled, argmax, conv.relu, conv_dims(conv, n), dx,
                                  dw, db, conv_ws_);
  }

  void dropout_forward(const Layer& l, int64_t n, const float* x, float* y, uint64_t seed,
                       const int64_t* counters) {
    cpu::fast::dropout(x, y, n * l.in.size(), dropout_key(l, seed, counters));
  }

  void dropout_backward(const Layer& l, int64_t n, const float* dy, float* dx, uint64_t seed,
                        const int64_t* counters) {
    cpu::fast::dropout(dy, dx, n * l.in.size(), dropout_key(l, seed, counters));
  }

  void adam(float* p, const float* g, float* m, float* v, int64_t count, const AdamConfig& c,
            const double* lr, const double* weight_decay, const uint8_t* kernel_mask,
            const int64_t* counters) {
    AdamConfig at = c;
    at.lr = *lr;
    cpu::fast::adam_update(p, g, m, v, count,
                           static_cast<float>(adam_alpha(at, counters[kStepCounter])),
                           static_cast<float>(c.beta1), static_cast<float>(c.beta2),
                           static_cast<float>(c.epsilon), static_cast<float>(*lr * *weight_decay),
                           kernel_mask);
  }

 private:
  cpu::fast::ConvWorkspace conv_ws_;
};

}  // namespace mg
