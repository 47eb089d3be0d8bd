#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>

#include "kernels/cuda_check.cuh"
#include "kernels/variants.hpp"

namespace mg::cuda {
namespace {

// "/path/to/repo/kernels/conv.cu" -> "kernels/conv.cu": the folder and the file say enough.
std::string short_path(const char* file) {
  const std::string f(file);
  const size_t last = f.rfind('/');
  if (last == std::string::npos || last == 0) return f;
  const size_t prev = f.rfind('/', last - 1);
  return prev == std::string::npos ? f : f.substr(prev + 1);
}

std::string where(const char* file, int line) {
  return short_path(file) + ":" + std::to_string(line);
}

std::atomic<int> g_max_grid_blocks{65536};

}  // namespace

void throw_cuda_error(cudaError_t error, const char* call, const char* file, int line) {
  throw std::runtime_error(std::string("CUDA error ") + cudaGetErrorName(error) + " (" +
                           cudaGetErrorString(error) + ") in " + call + " at " + where(file, line));
}

void throw_cublas_error(cublasStatus_t status, const char* call, const char* file, int line) {
  throw std::runtime_error(std::string("cuBLAS error ") + cublasGetStatusName(status) + " (" +
                           cublasGetStatusString(status) + ") in " + call + " at " +
                           where(file, line));
}

bool sync_debug() {
  static const bool on = [] {
    const char* v = std::getenv("MNIST_GPU_SYNC_DEBUG");
    return v != nullptr && *v != '\0' && std::strcmp(v, "0") != 0;
  }();
  return on;
}

void check_launch(const char* kernel, const char* file, int line) {
  const cudaError_t launch = cudaGetLastError();
  if (launch != cudaSuccess) {
    throw std::runtime_error(std::string("CUDA error ") + cudaGetErrorName(launch) + " (" +
                             cudaGetErrorString(launch) + ") launching " + kernel + " at " +
                             where(file, line));
  }
  if (!sync_debug()) return;
  const cudaError_t run = cudaDeviceSynchronize();
  if (run != cudaSuccess) {
    throw std::runtime_error(std::string("CUDA error ") + cudaGetErrorName(run) + " (" +
                             cudaGetErrorString(run) + ") running " + kernel + " at " +
                             where(file, line) + " (MNIST_GPU_SYNC_DEBUG)");
  }
}

int max_grid_blocks() { return g_max_grid_blocks.load(std::memory_order_relaxed); }

void set_max_grid_blocks(int blocks) {
  if (blocks < 1) throw std::invalid_argument("set_max_grid_blocks: need at least one block");
  g_max_grid_blocks.store(blocks, std::memory_order_relaxed);
}

}  // namespace mg::cuda

// --- the kernel variant set (kernels/variants.hpp), kept here with the other process-wide
// launch settings ---

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
