#include "kernels/dense.cuh"
#include "kernels/device.cuh"
#include "kernels/gemm.cuh"
#include "kernels/variants.hpp"

namespace mg::kern {
namespace {

__global__ void bias_relu_kernel(float* y, const float* b, int64_t count, int64_t out, bool relu) {
  for_each_strided(grid_first(), grid_stride(), count,
                   [&](int64_t i) { y[i] = bias_relu_at(y, b, out, relu, i); });
}

// Consecutive threads take consecutive columns, so each row is read coalesced.
__global__ void dense_grad_prepare_kernel(const float* y, float* dy, int64_t n, int64_t out,
                                          bool relu, float* db) {
  for_each_strided(grid_first(), grid_stride(), out,
                   [&](int64_t j) { db[j] = dense_bias_grad_column(y, dy, n, out, relu, j); });
}

__global__ void relu_forward_kernel(const float* x, float* y, int64_t count) {
  for_each_strided(grid_first(), grid_stride(), count,
                   [&](int64_t i) { y[i] = x[i] > 0.0f ? x[i] : 0.0f; });
}

__global__ void relu_backward_kernel(const float* y, const float* dy, float* dx, int64_t count) {
  for_each_strided(grid_first(), grid_stride(), count,
                   [&](int64_t i) { dx[i] = y[i] > 0.0f ? dy[i] : 0.0f; });
}

}  // namespace

void relu_forward(const float* x, float* y, int64_t count, cudaStream_t stream) {
  if (count == 0) return;
  relu_forward_kernel<<<grid_for(count), kBlock, 0, stream>>>(x, y, count);
  MG_CHECK_LAUNCH("relu_forward_kernel");
}

void relu_backward(const float* y, const float* dy, float* dx, int64_t count, cudaStream_t stream) {
  if (count == 0) return;
  relu_backward_kernel<<<grid_for(count), kBlock, 0, stream>>>(y, dy, dx, count);
  MG_CHECK_LAUNCH("relu_backward_kernel");
}

void bias_relu(float* y, const float* b, int64_t n, int64_t out, bool relu, cudaStream_t stream) {
  const int64_t count = n * out;
  if (count == 0) return;
  bias_relu_kernel<<<grid_for(count), kBlock, 0, stream>>>(y, b, count, out, relu);
  MG_CHECK_LAUNCH("bias_relu_kernel");
}

void dense_grad_prepare(const float* y, float* dy, int64_t n, int64_t out, bool relu, float* db,
                        cudaStream_t stream) {
  if (out == 0) return;
  dense_grad_prepare_kernel<<<grid_for(out), kBlock, 0, stream>>>(y, dy, n, out, relu, db);
  MG_CHECK_LAUNCH("dense_grad_prepare_kernel");
}

void dense_forward(cublasHandle_t handle, cudaStream_t stream, int64_t n, int64_t in, int64_t out,
                   bool relu, const float* x, const float* w, const float* b, float* y,
                   GemmLt* lt) {
  // Variant 1: the bias (+ ReLU) as the GEMM's epilogue, one kernel instead of two.
  if (lt != nullptr && kernel_variants()[VariantOp::kBiasRelu] == 1 && n > 0 &&
      lt->gemm(stream, false, true, n, out, in, x, in, w, in, y, out,
               relu ? GemmEpilogue::kReluBias : GemmEpilogue::kBias, b))
    return;
  // y [n, out] = x [n, in] * w [out, in]^T
  gemm_row_major(handle, stream, false, true, n, out, in, 1.0f, x, in, w, in, 0.0f, y, out);
  bias_relu(y, b, n, out, relu, stream);
}

void dense_backward(cublasHandle_t handle, cudaStream_t stream, int64_t n, int64_t in, int64_t out,
                    bool relu, const float* x, const float* w, const float* y, float* dy, float* dx,
                    float* dw, float* db, GemmLt* lt) {
  // Variant 1: the bias gradient as the dW GEMM's epilogue (the column sums of dy, its operand);
  // the ReLU mask, where there is one, an elementwise pass over every SM before it.
  bool dw_done = false;
  if (lt != nullptr && kernel_variants()[VariantOp::kDenseGradPrepare] == 1 && n > 0) {
    if (relu) relu_backward(y, dy, dy, n * out, stream);
    // dw [out, in] = dy [n, out]^T * x [n, in]; db[j] = sum over the rows of dy
    dw_done = lt->gemm(stream, true, false, out, in, n, dy, out, x, in, dw, in,
                       GemmEpilogue::kBiasGradA, nullptr, db);
    if (!dw_done) dense_grad_prepare(y, dy, n, out, false, db, stream);  // dy is masked already
  } else {
    dense_grad_prepare(y, dy, n, out, relu, db, stream);
  }
  if (!dw_done) {
    // dw [out, in] = dy [n, out]^T * x [n, in]
    gemm_row_major(handle, stream, true, false, out, in, n, 1.0f, dy, out, x, in, 0.0f, dw, in);
  }
  // dx [n, in] = dy [n, out] * w [out, in]
  if (dx != nullptr) {
    gemm_row_major(handle, stream, false, false, n, in, out, 1.0f, dy, out, w, in, 0.0f, dx, in);
  }
}

}  // namespace mg::kern
