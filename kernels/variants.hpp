// Numbered variants of the kernels under tuning, chosen at run time. Variant 0 of every op is the
// proven kernel and the default; a higher number is an alternative kept beside it until a GPU run
// has timed them side by side (bench_kernels' cuda/<layer>/<op>/v<N>/<batch> rows) and picked a
// winner. docs/cuda.md ("Kernel variants") says what each variant does and why.
//
// The choice is a process-wide set, read once from the environment:
//   MNIST_GPU_VARIANTS="conv_grad_prepare=1,im2col=1"   some ops, the others stay 0
//   MNIST_GPU_VARIANTS="all=1"                           every op (later entries override)
// An unknown op, a variant number out of range or a malformed entry is an error that names the
// variable, the entry and the valid choices. bench_kernels' --variants=SPEC takes the same
// syntax. Plain C++ (no CUDA): the parser is tested on every build.
#pragma once

#include <array>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>

namespace mg::kern {

enum class VariantOp : int {
  kConvGradPrepare,   // dy permute + ReLU mask + bias gradient of the conv backward
  kIm2col,            // im2col (3x3 'same' and general K x K)
  kCol2im,            // col2im (3x3 'same' and general K x K)
  kConvOutput,        // the conv forward's permute + bias + ReLU epilogue
  kPoolForward,       // max-pool 2x2 forward
  kPoolBackward,      // max-pool 2x2 backward
  kAdam,              // the Adam update
  kBiasRelu,          // the dense forward's bias + ReLU after its GEMM
  kDenseGradPrepare,  // the dense backward's ReLU mask + bias gradient before its GEMMs
  kConvGemm,          // how a conv layer's GEMMs meet the column matrix (whole batch, or chunks)
  kConvPool,          // a conv and the 2x2 max-pool after it: two ops, or one in training
};
inline constexpr size_t kVariantOpCount = 11;

struct VariantOpInfo {
  VariantOp op;
  const char* name;  // as written in MNIST_GPU_VARIANTS and in benchmark names
  int count;         // variants 0 .. count-1
};

inline constexpr std::array<VariantOpInfo, kVariantOpCount> kVariantOps = {{
    {VariantOp::kConvGradPrepare, "conv_grad_prepare", 2},
    {VariantOp::kIm2col, "im2col", 2},
    {VariantOp::kCol2im, "col2im", 2},
    {VariantOp::kConvOutput, "conv_output", 2},
    {VariantOp::kPoolForward, "maxpool_forward", 2},
    {VariantOp::kPoolBackward, "maxpool_backward", 2},
    {VariantOp::kAdam, "adam", 2},
    {VariantOp::kBiasRelu, "bias_relu", 2},
    {VariantOp::kDenseGradPrepare, "dense_grad_prepare", 2},
    {VariantOp::kConvGemm, "conv_gemm", 3},
    {VariantOp::kConvPool, "conv_pool", 2},
}};

inline constexpr const char* kVariantsEnv = "MNIST_GPU_VARIANTS";

// One variant number per op; all 0 by default.
struct KernelVariants {
  std::array<int, kVariantOpCount> of{};

  int operator[](VariantOp op) const { return of[static_cast<size_t>(op)]; }
  int& operator[](VariantOp op) { return of[static_cast<size_t>(op)]; }
  bool operator==(const KernelVariants& o) const { return of == o.of; }

  static KernelVariants all(int v) {
    KernelVariants k;
    k.of.fill(v);
    return k;
  }

  // Every op at variant v, or at its highest where it has fewer: the sets the tests run.
  static KernelVariants each_at_most(int v);

  // The set's short name in benchmark rows: "v<N>" when every op uses variant N, else one digit
  // per op in kVariantOps' order ("v10000000000": conv_grad_prepare 1, the rest 0).
  std::string label() const {
    bool same = true;
    for (const int v : of) same = same && v == of[0];
    std::string s = "v";
    if (same) return s.append(std::to_string(of[0]));
    for (const int v : of) s += std::to_string(v);
    return s;
  }

  // "conv_grad_prepare=1,im2col=0,...": every op, parseable again.
  std::string spec() const {
    std::string s;
    for (const VariantOpInfo& info : kVariantOps) {
      if (!s.empty()) s += ',';
      s += std::string(info.name) + "=" + std::to_string((*this)[info.op]);
    }
    return s;
  }
};

inline KernelVariants KernelVariants::each_at_most(int v) {
  KernelVariants k;
  for (const VariantOpInfo& info : kVariantOps) k[info.op] = v < info.count ? v : info.count - 1;
  return k;
}

inline std::string variant_choices() {
  std::string s = "all";
  for (const VariantOpInfo& info : kVariantOps)
    s += std::string(", ") + info.name + " (0.." + std::to_string(info.count - 1) + ")";
  return s;
}

// Parses "op=N[,op=N...]" ("all=N" sets every op; later entries override earlier ones) over
// `base`. An empty spec is `base`. `source` names the spec's origin in error messages.
inline KernelVariants parse_kernel_variants(std::string_view spec, std::string_view source,
                                            KernelVariants base = {}) {
  auto fail = [&](std::string_view entry, const std::string& why) {
    throw std::invalid_argument(std::string(source) + ": '" + std::string(entry) + "': " + why +
                                "; the ops are " + variant_choices());
  };
  if (spec.empty()) return base;
  for (size_t start = 0;;) {
    const size_t comma = spec.find(',', start);
    const size_t end = comma == std::string_view::npos ? spec.size() : comma;
    const std::string_view entry = spec.substr(start, end - start);
    const size_t eq = entry.find('=');
    if (eq == std::string_view::npos || eq == 0 || eq + 1 == entry.size())
      fail(entry, "expected op=N");
    const std::string_view name = entry.substr(0, eq), number = entry.substr(eq + 1);
    int v = 0;
    for (const char ch : number) {
      if (ch < '0' || ch > '9' || v > 1000) fail(entry, "the variant must be a number");
      v = v * 10 + (ch - '0');
    }
    if (name == "all") {
      for (const VariantOpInfo& info : kVariantOps)
        if (v >= info.count)
          fail(entry, std::string("no variant ") + std::to_string(v) + " of " + info.name);
      base.of.fill(v);
    } else {
      const VariantOpInfo* found = nullptr;
      for (const VariantOpInfo& info : kVariantOps)
        if (name == info.name) found = &info;
      if (found == nullptr) fail(entry, "unknown op");
      if (v >= found->count)
        fail(entry, "no variant " + std::to_string(v) + " (there are " +
                        std::to_string(found->count) + ")");
      base[found->op] = v;
    }
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return base;
}

// The process's current set: MNIST_GPU_VARIANTS on first use (an invalid value throws, every
// time it is asked for), then whatever set_kernel_variants() last set. Defined in
// kernels/cuda_check.cu (CUDA builds).
KernelVariants kernel_variants();
void set_kernel_variants(const KernelVariants& v);

// Sets a variant set for a scope (tests, benchmarks), restoring the previous one after.
class ScopedKernelVariants {
 public:
  explicit ScopedKernelVariants(const KernelVariants& v) : saved_(kernel_variants()) {
    set_kernel_variants(v);
  }
  ~ScopedKernelVariants() { set_kernel_variants(saved_); }
  ScopedKernelVariants(const ScopedKernelVariants&) = delete;
  ScopedKernelVariants& operator=(const ScopedKernelVariants&) = delete;

 private:
  KernelVariants saved_;
};

}  // namespace mg::kern
