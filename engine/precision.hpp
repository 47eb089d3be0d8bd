// The arithmetic of the GEMMs (convolutions and dense layers): float32, or TF32 on the tensor
// cores of an NVIDIA GPU from Ampere (sm_80) on. TF32 keeps float32's exponent and 10 of its 23
// mantissa bits for the products and accumulates in float32; everything outside the GEMMs stays
// float32 either way. The CPU backend always computes in float32. See docs/cuda.md.
#pragma once

#include <optional>
#include <string_view>

namespace mg {

enum class Precision { kFp32, kTf32 };

inline const char* precision_name(Precision p) { return p == Precision::kTf32 ? "tf32" : "fp32"; }

// "fp32" or "tf32"; anything else is nullopt.
inline std::optional<Precision> parse_precision(std::string_view name) {
  if (name == "fp32") return Precision::kFp32;
  if (name == "tf32") return Precision::kTf32;
  return std::nullopt;
}

}  // namespace mg
