// Row-major GEMM through CBLAS (OpenBLAS), for float and double. This is the one place the CPU
// backend meets BLAS: C[m,n] = alpha * op(A)[m,k] * op(B)[k,n] + beta * C, all row-major.
#pragma once

#include <cblas.h>

#include <cstdint>
#include <limits>
#include <stdexcept>

namespace mg::cpu {

inline blasint blas_dim(int64_t v) {
  if (v < 0 || v > std::numeric_limits<blasint>::max()) {
    throw std::length_error("gemm: dimension does not fit BLAS's integer");
  }
  return static_cast<blasint>(v);
}

inline void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                 const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                 int64_t ldc) {
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              blas_dim(m), blas_dim(n), blas_dim(k), alpha, a, blas_dim(lda), b, blas_dim(ldb), beta,
              c, blas_dim(ldc));
}

inline void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, double alpha,
                 const double* a, int64_t lda, const double* b, int64_t ldb, double beta, double* c,
                 int64_t ldc) {
  cblas_dgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              blas_dim(m), blas_dim(n), blas_dim(k), alpha, a, blas_dim(lda), b, blas_dim(ldb), beta,
              c, blas_dim(ldc));
}

}  // namespace mg::cpu
