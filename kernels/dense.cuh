// The dense layer on the GPU: cuBLAS GEMMs (kernels/gemm.cuh) plus the bias / ReLU kernels whose
// element arithmetic is kernels/dense_math.cuh.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/dense_math.cuh"
#include "kernels/gemm.cuh"

namespace mg::kern {

// The ReLU layer: y = max(x, 0) (cpu::relu_forward; y may alias x) and dx = dy where y > 0
// (cpu::relu_backward; dx may alias dy). One thread per element.
void relu_forward(const float* x, float* y, int64_t count, cudaStream_t stream);
void relu_backward(const float* y, const float* dy, float* dx, int64_t count, cudaStream_t stream);

// y [n, out] = relu?(y + b), in place.
void bias_relu(float* y, const float* b, int64_t n, int64_t out, bool relu, cudaStream_t stream);

// dy [n, out] masked in place by the ReLU of y (when relu), and db[j] = column sum of dy: one
// thread per column, rows in order (the CPU's float sum, exactly).
void dense_grad_prepare(const float* y, float* dy, int64_t n, int64_t out, bool relu, float* db,
                        cudaStream_t stream);

// y [n, out] = relu?(x [n, in] * w [out, in]^T + b). lt: the backend's cuBLASLt, for variant 1 of
// bias_relu (kernels/variants.hpp: the bias and ReLU as the GEMM's epilogue); null runs variant 0.
void dense_forward(cublasHandle_t handle, cudaStream_t stream, int64_t n, int64_t in, int64_t out,
                   bool relu, const float* x, const float* w, const float* b, float* y,
                   GemmLt* lt = nullptr);

// dy is masked in place (consumed); db, dw = dy^T x, and dx = dy w when dx is not null. lt: for
// variant 1 of dense_grad_prepare (db as the dW GEMM's epilogue); null runs variant 0.
void dense_backward(cublasHandle_t handle, cudaStream_t stream, int64_t n, int64_t in, int64_t out,
                    bool relu, const float* x, const float* w, const float* y, float* dy, float* dx,
                    float* dw, float* db, GemmLt* lt = nullptr);

}  // namespace mg::kern
