#include <cstdlib>
#include <mutex>

#include "kernels/variants.hpp"

namespace mg::kern {
namespace {

struct VariantState {
  std::mutex mutex;
  bool read = false;
  KernelVariants set;
};

VariantState& variant_state() {
  static VariantState s;
  return s;
}

}  // namespace

KernelVariants kernel_variants() {
  VariantState& s = variant_state();
  const std::lock_guard<std::mutex> lock(s.mutex);
  if (!s.read) {
    const char* env = std::getenv(kVariantsEnv);
    s.set = parse_kernel_variants(env != nullptr ? env : "", kVariantsEnv);  // may throw
    s.read = true;
  }
  return s.set;
}

void set_kernel_variants(const KernelVariants& v) {
  VariantState& s = variant_state();
  const std::lock_guard<std::mutex> lock(s.mutex);
  s.set = v;
  s.read = true;
}

}  // namespace mg::kern
