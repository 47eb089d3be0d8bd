#include <climits>
#include <stdexcept>
#include <string>
#include <utility>

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

// The largest power of two (up to 256) that divides the address: what cuBLASLt's heuristic is told
// about each operand, so that it never picks an algorithm that needs more (its default assumes
// 256-byte alignment; our operands start anywhere in an arena).
uint32_t alignment_of(const void* p) {
  if (p == nullptr) return 0;
  const auto address = reinterpret_cast<uintptr_t>(p);
  uint32_t a = 256;
  while (a > 4 && address % a != 0) a /= 2;
  return a;
}

// Owners of the per-call cuBLASLt descriptors.
struct MatmulDesc {
  cublasLtMatmulDesc_t desc = nullptr;
  ~MatmulDesc() {
    if (desc != nullptr) (void)cublasLtMatmulDescDestroy(desc);
  }
};
struct Layout {
  cublasLtMatrixLayout_t layout = nullptr;
  ~Layout() {
    if (layout != nullptr) (void)cublasLtMatrixLayoutDestroy(layout);
  }
};
struct Preference {
  cublasLtMatmulPreference_t pref = nullptr;
  ~Preference() {
    if (pref != nullptr) (void)cublasLtMatmulPreferenceDestroy(pref);
  }
};

cublasLtEpilogue_t lt_epilogue(GemmEpilogue e) {
  switch (e) {
    case GemmEpilogue::kNone:
      return CUBLASLT_EPILOGUE_DEFAULT;
    case GemmEpilogue::kBias:
      return CUBLASLT_EPILOGUE_BIAS;
    case GemmEpilogue::kReluBias:
      return CUBLASLT_EPILOGUE_RELU_BIAS;
    case GemmEpilogue::kBiasGradA:
      return CUBLASLT_EPILOGUE_BGRADB;
  }
  throw std::invalid_argument("GemmLt: unknown epilogue");
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

GemmLt::GemmLt(void* workspace, size_t workspace_bytes, bool tf32)
    : workspace_(workspace), workspace_bytes_(workspace_bytes), tf32_(tf32) {
  CUBLAS_CHECK(cublasLtCreate(&handle_));
}

GemmLt::~GemmLt() {
  if (handle_ != nullptr) (void)cublasLtDestroy(handle_);
}

GemmLt::GemmLt(GemmLt&& other) noexcept
    : handle_(std::exchange(other.handle_, nullptr)),
      workspace_(other.workspace_),
      workspace_bytes_(other.workspace_bytes_),
      tf32_(other.tf32_),
      algos_(std::move(other.algos_)) {}

GemmLt& GemmLt::operator=(GemmLt&& other) noexcept {
  if (this != &other) {
    if (handle_ != nullptr) (void)cublasLtDestroy(handle_);
    handle_ = std::exchange(other.handle_, nullptr);
    workspace_ = other.workspace_;
    workspace_bytes_ = other.workspace_bytes_;
    tf32_ = other.tf32_;
    algos_ = std::move(other.algos_);
  }
  return *this;
}

bool GemmLt::gemm(cudaStream_t stream, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                  const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc,
                  GemmEpilogue epilogue, const float* bias, float* grad) {
  if (handle_ == nullptr) throw std::logic_error("GemmLt::gemm: no cuBLASLt handle");
  const bool wants_bias = epilogue == GemmEpilogue::kBias || epilogue == GemmEpilogue::kReluBias;
  const bool wants_grad = epilogue == GemmEpilogue::kBiasGradA;
  if (wants_bias != (bias != nullptr) || wants_grad != (grad != nullptr))
    throw std::invalid_argument("GemmLt::gemm: the epilogue's vector is missing or not its own");
  // Column-major, as cuBLAS sees row-major: D[n, m] = op(B)^T[n, k] op(A)^T[k, m], so its A is our
  // b and its B our a, each read as the transpose of how we store it.
  const int64_t a_rows = trans_a ? k : m, a_cols = trans_a ? m : k;  // A as stored, row-major
  const int64_t b_rows = trans_b ? n : k, b_cols = trans_b ? k : n;
  for (const auto& [value, what] :
       {std::pair{m, "m"}, std::pair{n, "n"}, std::pair{k, "k"}, std::pair{lda, "lda"},
        std::pair{ldb, "ldb"}, std::pair{ldc, "ldc"}})
    blas_int(value, what);
  const cublasComputeType_t compute = tf32_ ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  const cublasOperation_t op_a = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                          op_b = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasLtEpilogue_t lt = lt_epilogue(epilogue);
  const void* vector = wants_bias ? static_cast<const void*>(bias) : grad;

  MatmulDesc desc;
  CUBLAS_CHECK(cublasLtMatmulDescCreate(&desc.desc, compute, CUDA_R_32F));
  CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(desc.desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof(op_a)));
  CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(desc.desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof(op_b)));
  CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(desc.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &lt, sizeof(lt)));
  if (vector != nullptr) {
    // Before the heuristic: it reads the pointer's alignment from its value.
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                &vector, sizeof(vector)));
  }
  Layout la, lb, lc;
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&la.layout, CUDA_R_32F, static_cast<uint64_t>(b_cols),
                                          static_cast<uint64_t>(b_rows), ldb));
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&lb.layout, CUDA_R_32F, static_cast<uint64_t>(a_cols),
                                          static_cast<uint64_t>(a_rows), lda));
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&lc.layout, CUDA_R_32F, static_cast<uint64_t>(n),
                                          static_cast<uint64_t>(m), ldc));

  const uint32_t align_a = alignment_of(b), align_b = alignment_of(a), align_c = alignment_of(c);
  const Key key{trans_a, trans_b, m,     n,       k,       lda,     ldb,
                ldc,     lt,      tf32_, align_a, align_b, align_c, alignment_of(vector)};
  auto found = algos_.find(key);
  if (found == algos_.end()) {
    Preference pref;
    CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref.pref));
    const uint64_t ws = workspace_bytes_;
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref.pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
    for (const auto& [attr, align] :
         {std::pair{CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, align_a},
          std::pair{CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, align_b},
          std::pair{CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, align_c},
          std::pair{CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, align_c}}) {
      CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref.pref, attr, &align, sizeof(align)));
    }
    cublasLtMatmulHeuristicResult_t result{};
    int returned = 0;
    const cublasStatus_t status =
        cublasLtMatmulAlgoGetHeuristic(handle_, desc.desc, la.layout, lb.layout, lc.layout,
                                       lc.layout, pref.pref, 1, &result, &returned);
    // NOT_SUPPORTED: "no heuristic function available for current configuration".
    if (status != CUBLAS_STATUS_NOT_SUPPORTED) {
      cuda::check_cublas(status, "cublasLtMatmulAlgoGetHeuristic(...)", __FILE__, __LINE__);
    }
    const bool ok =
        status == CUBLAS_STATUS_SUCCESS && returned > 0 && result.state == CUBLAS_STATUS_SUCCESS;
    found = algos_.emplace(key, Choice{ok, result.algo}).first;
  }
  if (!found->second.found) return false;
  const float one = 1.0f, zero = 0.0f;
  CUBLAS_CHECK(cublasLtMatmul(handle_, desc.desc, &one, b, la.layout, a, lb.layout, &zero, c,
                              lc.layout, c, lc.layout, &found->second.algo, workspace_,
                              workspace_bytes_, stream));
  return true;
}

}  // namespace mg::kern
