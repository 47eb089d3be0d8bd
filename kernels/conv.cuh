// The K x K convolution (stride 1, 'same' or 'valid' zero padding) on the GPU: im2col and col2im
// kernels, the fused output and output-gradient kernels, and the layer as the backend calls it,
// alone or fused with the 2x2 max-pool after it.
// Element arithmetic lives in kernels/conv_math.cuh. All launches go to `stream`; nothing
// synchronizes.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/conv_math.cuh"

namespace mg::kern {

// col [k(), cols()] = im2col(x): one thread per column entry.
void im2col_3x3(const float* x, const ConvDims& d, float* col, cudaStream_t stream);

// dx [n, c_in, h, w] = col2im(col): a gather, one thread per input element, no atomics.
void col2im_3x3(const float* col, const ConvDims& d, float* dx, cudaStream_t stream);

// The same for any ConvDims: the 3x3 'same' kernels above when d.is_3x3_same(), else the general
// K x K ones (im2col_at, col2im_at).
void im2col(const float* x, const ConvDims& d, float* col, cudaStream_t stream);
void col2im(const float* col, const ConvDims& d, float* dx, cudaStream_t stream);

// y [n, c, s] = relu?(permute(tmp [c, n, s]) + b): the GEMM's epilogue in one pass.
void conv_output(const float* tmp, const float* b, int64_t n, int64_t c, int64_t s, bool relu,
                 float* y, cudaStream_t stream);

// dy_cn [c, n*s] = permute(relu-masked dy [n, c, s]) and db[j] = sum of row j of dy_cn, in one
// pass: one block per channel, a fixed-order sum in double (deterministic). dy is left unchanged.
void conv_grad_prepare(const float* y, const float* dy, int64_t n, int64_t c, int64_t s, bool relu,
                       float* dy_cn, float* db, cudaStream_t stream);

// y = relu?(conv(x, w) + b): im2col -> one SGEMM for the whole batch -> conv_output.
// Any K and padding (the name is the seed model's). w is [c_out, c_in, K, K]; col holds k()*cols()
// floats and keeps im2col(x) for the backward pass; tmp holds c_out*cols().
// conv_gemm variant 1 (kernels/variants.hpp): when the column matrix passes conv_chunk_bytes(),
// im2col and the SGEMM run per chunk of images (conv_chunks), each chunk's matrix at the front of
// col; col then keeps only the last chunk's (conv_keeps_col says which).
void conv3x3_forward(cublasHandle_t handle, cudaStream_t stream, const ConvDims& d, bool relu,
                     const float* x, const float* w, const float* b, float* y, float* col,
                     float* tmp);

// From dy (masked by the ReLU of y when relu): db, dw = dy_cn * col^T, and when dx is not null
// dx = col2im(w^T * dy_cn). col must hold im2col(x) as conv3x3_forward left it (Network gives each
// conv layer its own); it is overwritten with d(col) when dx is wanted. Gradients are overwritten,
// never accumulated; dy is left unchanged. In chunks (conv_gemm variant 1), each chunk unfolds x
// again and dw adds the chunks' products in batch order (beta = 1 after the first), so the
// result is the same on every run.
void conv3x3_backward(cublasHandle_t handle, cudaStream_t stream, const ConvDims& d, bool relu,
                      const float* x, const float* w, const float* y, const float* dy, float* dx,
                      float* dw, float* db, float* col, float* tmp);

// Whether conv3x3_forward leaves the whole batch's im2col(x) in col (not in chunks).
bool conv_keeps_col(const ConvDims& d);

// conv_pool variant 1 (kernels/variants.hpp): the conv and the 2x2 max-pool after it as one op,
// for training. pooled and argmax [n, c_out, oh/2, ow/2] = maxpool2x2(relu?(conv(x, w) + b)), as
// maxpool2x2_forward would write them from conv3x3_forward's y, bit for bit; y itself is never
// written. im2col and the SGEMM into tmp run as in conv3x3_forward (in chunks under conv_gemm 1
// and 2: this op has no implicit-GEMM form), then one epilogue kernel adds the bias, applies the
// ReLU and pools. col keeps im2col(x) for the backward (conv_pool_keeps_col). Throws
// std::invalid_argument where conv_pool_fits(d) does not hold.
void conv_pool_forward(cublasHandle_t handle, cudaStream_t stream, const ConvDims& d, bool relu,
                       const float* x, const float* w, const float* b, float* pooled,
                       int32_t* argmax, float* col, float* tmp);

// Its backward from dpooled: one prologue kernel writes the channel-major dz into tmp (dpooled at
// each window's argmax where, with relu, pooled > 0; zero elsewhere) and db (a fixed-order sum,
// deterministic), then dw and, when dx is not null, dx as conv3x3_backward computes them from
// its dy_cn. col as conv_pool_forward left it; overwritten with d(col) when dx is wanted.
void conv_pool_backward(cublasHandle_t handle, cudaStream_t stream, const ConvDims& d, bool relu,
                        const float* x, const float* w, const float* pooled, const float* dpooled,
                        const int32_t* argmax, float* dx, float* dw, float* db, float* col,
                        float* tmp);

// Whether conv_pool_forward leaves the whole batch's im2col(x) in col (not in chunks).
bool conv_pool_keeps_col(const ConvDims& d);

// The column-matrix bytes per chunk of conv_gemm variant 1 (kConvChunkBytes unless set): tests
// lower it to split small layers into uneven chunks.
int64_t conv_chunk_bytes();
void set_conv_chunk_bytes(int64_t bytes);

}  // namespace mg::kern
