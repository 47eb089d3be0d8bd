// Row-major GEMM through CBLAS (OpenBLAS), for float and double. This is the one place the CPU
// backends meet BLAS: C[m,n] = alpha * op(A)[m,k] * op(B)[k,n] + beta * C, all row-major.
//
// The same bits at any thread count: OpenBLAS splits a GEMM by the number of threads it runs on,
// and rounds differently at 1 and at 2. So C is cut here into parts fixed by the shape alone
// (along its longer side, whole rows or columns, so each element's sum over k is one BLAS call's),
// and each part is one single-threaded BLAS call on an OpenMP thread (OpenBLAS's OpenMP build runs
// on one thread inside a parallel region, and on one when OpenMP has one). Tiny GEMMs, below any
// size OpenBLAS would split, are one call.
#pragma once

#include <cblas.h>

#include <algorithm>
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

inline void blas_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                      const float* a, int64_t lda, const float* b, int64_t ldb, float beta,
                      float* c, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              blas_dim(m), blas_dim(n), blas_dim(k), alpha, a, blas_dim(lda), b, blas_dim(ldb), beta,
              c, blas_dim(ldc));
}

inline void blas_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, double alpha,
                      const double* a, int64_t lda, const double* b, int64_t ldb, double beta,
                      double* c, int64_t ldc) {
  cblas_dgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              blas_dim(m), blas_dim(n), blas_dim(k), alpha, a, blas_dim(lda), b, blas_dim(ldb), beta,
              c, blas_dim(ldc));
}

// How a GEMM is cut: `parts` pieces of `step` rows (or columns) of C. About 2^24 multiply-adds a
// part, at most 8 parts, each a multiple of 16 rows or columns.
struct GemmParts {
  bool rows = true;
  int64_t parts = 1, step = 0;
};
inline GemmParts gemm_parts(int64_t m, int64_t n, int64_t k) {
  constexpr double kWorkPerPart = 1 << 24;
  constexpr int64_t kMaxParts = 8, kAlign = 16;
  GemmParts p;
  p.rows = m >= n;
  const int64_t len = p.rows ? m : n;
  const double work = static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
  p.parts = std::clamp<int64_t>(static_cast<int64_t>(work / kWorkPerPart) + 1, 1, kMaxParts);
  p.parts = std::min(p.parts, (len + kAlign - 1) / kAlign);
  p.parts = std::max<int64_t>(p.parts, 1);
  p.step = ((len + p.parts - 1) / p.parts + kAlign - 1) / kAlign * kAlign;
  p.parts = (len + p.step - 1) / p.step;
  return p;
}

template <class T>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a,
          int64_t lda, const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  const double work = static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
  if (work < 65536) {  // OpenBLAS runs this on one thread anyway
    blas_gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  const GemmParts p = gemm_parts(m, n, k);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < p.parts; ++i) {
    const int64_t first = i * p.step;
    const int64_t count = std::min(p.step, (p.rows ? m : n) - first);
    if (p.rows) {  // rows [first, first + count) of op(A) and C
      const T* ai = trans_a ? a + first : a + first * lda;
      blas_gemm(trans_a, trans_b, count, n, k, alpha, ai, lda, b, ldb, beta, c + first * ldc, ldc);
    } else {  // columns [first, first + count) of op(B) and C
      const T* bi = trans_b ? b + first * ldb : b + first;
      blas_gemm(trans_a, trans_b, m, count, k, alpha, a, lda, bi, ldb, beta, c + first, ldc);
    }
  }
}

}  // namespace mg::cpu
