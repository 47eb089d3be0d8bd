// The one place row-major GEMMs meet cuBLAS (column-major). Everything else in mnist_gpu is
// row-major, as engine/blas.hpp is on the CPU:
//   C[m, n] = alpha * op(A)[m, k] * op(B)[k, n] + beta * C,   all row-major with leading dims.
// A row-major matrix is, read column-major, its own transpose. So cuBLAS computes
//   C^T[n, m] = op(B)^T[n, k] * op(A)^T[k, m]
// by swapping the operands (B first), swapping m and n, and keeping each operand's transpose flag.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstdint>

namespace mg::kern {

// float32 on the handle's stream, which must be `stream` (checked: the backend binds one stream to
// its handle once, because cublasSetStream would also reset the graph-safe workspace).
void gemm_row_major(cublasHandle_t handle, cudaStream_t stream, bool trans_a, bool trans_b,
                    int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
                    const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

}  // namespace mg::kern
