#include <climits>
#include <stdexcept>
#include <string>

#include "kernels/cuda_check.cuh"
#include "kernels/gemm.cuh"

namespace mg::kern {
namespace {

int blas_int(int64_t v, const char* what) {
  if (v < 0 || v > INT_MAX) {
    throw std::length_error(std::string("gemm_row_major: ") + what + " = " + std::to_string(v) +
                            " does not fit cuBLAS's int");
  }
  return static_cast<int>(v);
}

}  // namespace

void gemm_row_major(cublasHandle_t handle, cudaStream_t stream, bool trans_a, bool trans_b,
                    int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
                    const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  cudaStream_t bound = nullptr;
  CUBLAS_CHECK(cublasGetStream(handle, &bound));
  if (bound != stream)
    throw std::logic_error("gemm_row_major: the cuBLAS handle is bound to another stream");
  // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: B goes first, m and n swap.
  CUBLAS_CHECK(cublasSgemm(handle, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                           trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, blas_int(n, "n"), blas_int(m, "m"),
                           blas_int(k, "k"), &alpha, b, blas_int(ldb, "ldb"), a,
                           blas_int(lda, "lda"), &beta, c, blas_int(ldc, "ldc")));
}

}  // namespace mg::kern
