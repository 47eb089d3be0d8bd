// The one place row-major GEMMs meet cuBLAS (column-major). Everything else in mnist_gpu is
// row-major, as engine/blas.hpp is on the CPU:
//   C[m, n] = alpha * op(A)[m, k] * op(B)[k, n] + beta * C,   all row-major with leading dims.
// A row-major matrix is, read column-major, its own transpose. So cuBLAS computes
//   C^T[n, m] = op(B)^T[n, k] * op(A)^T[k, m]
// by swapping the operands (B first), swapping m and n, and keeping each operand's transpose flag.
#pragma once

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <array>
#include <cstdint>
#include <map>

namespace mg::kern {

// float32 on the handle's stream, which must be `stream` (checked: the backend binds one stream to
// its handle once, because cublasSetStream would also reset the graph-safe workspace).
void gemm_row_major(cublasHandle_t handle, cudaStream_t stream, bool trans_a, bool trans_b,
                    int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
                    const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

// --- cuBLASLt: a GEMM with a fused epilogue (the dense layers' variant 1, kernels/variants.hpp) --

// What the epilogue does to row-major C[m, n] = op(A) op(B) (alpha 1, beta 0). cuBLASLt sees the
// transposed problem (see above), so its rows are our columns and its operand B is our A.
enum class GemmEpilogue {
  kNone,
  kBias,       // C[i, j] += bias[j]                        CUBLASLT_EPILOGUE_BIAS
  kReluBias,   // C[i, j] = max(C[i, j] + bias[j], 0)       CUBLASLT_EPILOGUE_RELU_BIAS
  kBiasGradA,  // grad[i] = sum over l of op(A)[i, l]; C too  CUBLASLT_EPILOGUE_BGRADB
};

// A cuBLASLt handle with the backend's workspace (shared with its cuBLAS handle: both run on one
// stream, one GEMM at a time) and the algorithms its heuristic chose, one per problem, so that
// after the first call of a shape no heuristic runs (nor, in a captured step, anything but the
// matmul). Move-only; the handle is destroyed with it.
class GemmLt {
 public:
  GemmLt() = default;
  GemmLt(void* workspace, size_t workspace_bytes, bool tf32);
  ~GemmLt();
  GemmLt(GemmLt&& other) noexcept;
  GemmLt& operator=(GemmLt&& other) noexcept;
  GemmLt(const GemmLt&) = delete;
  GemmLt& operator=(const GemmLt&) = delete;

  bool ready() const { return handle_ != nullptr; }

  // Row-major C[m, n] = op(A) op(B), then the epilogue: bias (n floats, device) for kBias and
  // kReluBias, grad (m floats, device, overwritten) for kBiasGradA. Sizes are checked as
  // gemm_row_major checks them. False, with nothing enqueued, when cuBLASLt's heuristic has no
  // algorithm for the problem (the caller then runs the plain path); the answer is kept, as an
  // algorithm is.
  bool gemm(cudaStream_t stream, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
            const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc,
            GemmEpilogue epilogue, const float* bias = nullptr, float* grad = nullptr);

 private:
  using Key = std::array<int64_t, 14>;
  cublasLtHandle_t handle_ = nullptr;
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;
  bool tf32_ = false;
  struct Choice {
    bool found;
    cublasLtMatmulAlgo_t algo;
  };
  std::map<Key, Choice> algos_;
};

}  // namespace mg::kern
