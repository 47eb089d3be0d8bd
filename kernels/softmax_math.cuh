// Per-row arithmetic of softmax and the fused softmax + cross-entropy, shared by
// kernels/softmax_xent.cu and the CPU tests. The same formulas as cpu::softmax_xent: everything
// relative to the row maximum (stable for any finite logits, +-1e4 included), the loss as
// log-sum-exp minus the label's logit, the first maximum as the prediction. No CUDA here.
#pragma once

#include <cstdint>

#include "kernels/philox.cuh"  // MG_HOST_DEVICE
#include "kernels/scalar_math.cuh"

namespace mg::kern {

struct RowLoss {
  double loss;  // cross-entropy of the row
  int correct;  // 1 when the first maximum is the label
};

// One row z[classes] with its label. When dz is not null, writes dz = (softmax(z) - onehot) *
// inv_n, inv_n = 1/batch: the gradient of the batch-mean loss.
template <class T>
MG_HOST_DEVICE RowLoss softmax_xent_row(const T* z, int64_t classes, int32_t label, T inv_n,
                                        T* dz) {
  int64_t best = 0;
  for (int64_t j = 1; j < classes; ++j)
    if (z[j] > z[best]) best = j;
  const T m = z[best];
  T sum = 0;
  for (int64_t j = 0; j < classes; ++j) sum += exp_of(z[j] - m);
  const T log_sum = log_of(sum);
  const RowLoss r{static_cast<double>(log_sum - (z[label] - m)), best == label ? 1 : 0};
  if (dz != nullptr) {
    for (int64_t j = 0; j < classes; ++j) {
      const T p = exp_of(z[j] - m) / sum;
      dz[j] = (p - (j == label ? T(1) : T(0))) * inv_n;
    }
  }
  return r;
}

// Softmax probabilities of one row.
template <class T>
MG_HOST_DEVICE void softmax_row(const T* z, int64_t classes, T* p) {
  T m = z[0];
  for (int64_t j = 1; j < classes; ++j)
    if (z[j] > m) m = z[j];
  T sum = 0;
  for (int64_t j = 0; j < classes; ++j) sum += exp_of(z[j] - m);
  for (int64_t j = 0; j < classes; ++j) p[j] = exp_of(z[j] - m) / sum;
}

}  // namespace mg::kern
