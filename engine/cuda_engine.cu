#include <cstdlib>
#include <cstring>
#include <sstream>

#include "engine/basic_engine.hpp"
#include "engine/cuda_backend.cuh"
#include "engine/cuda_engine.hpp"
#include "kernels/batch.cuh"
#include "kernels/cuda_check.cuh"
#include "kernels/variants.hpp"

#ifndef MG_CUDA_ARCHITECTURES
#define MG_CUDA_ARCHITECTURES "unknown"
#endif

namespace mg {
namespace {

// cudaFuncGetAttributes on a kernel of ours tells whether the binary holds code this GPU can run.
__global__ void probe_kernel() {}

std::string cuda_version(int v) {
  return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10);
}

std::string error_text(cudaError_t e) {
  return std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
}

// "80,90-real" -> "sm_80, sm_90"
std::string sm_list(const std::string& archs) {
  std::string out, item;
  std::istringstream in(archs);
  while (std::getline(in, item, ',')) {
    if (const size_t dash = item.find('-'); dash != std::string::npos) item.resize(dash);
    if (item.empty()) continue;
    if (!out.empty()) out += ", ";
    out += (item[0] >= '0' && item[0] <= '9') ? "sm_" + item : item;
  }
  return out.empty() ? archs : out;
}

bool graphs_wanted(const EngineOptions& options) {
  // MNIST_GPU_CUDA_GRAPH=0 turns capture off without a rebuild or a flag (for timing comparisons).
  const char* env = std::getenv("MNIST_GPU_CUDA_GRAPH");
  if (env != nullptr && std::strcmp(env, "0") == 0) return false;
  return options.cuda_graph;
}

}  // namespace

CudaProbe probe_cuda() {
  CudaProbe p;
  p.built_architectures = MG_CUDA_ARCHITECTURES;
  (void)cudaDriverGetVersion(&p.driver_version);
  (void)cudaRuntimeGetVersion(&p.runtime_version);
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    p.error = error_text(e);
    if (e == cudaErrorNoDevice) {
      p.status = CudaProbe::Status::kNoDevice;
    } else if (e == cudaErrorInsufficientDriver) {
      p.status =
          p.driver_version == 0 ? CudaProbe::Status::kNoDriver : CudaProbe::Status::kOldDriver;
    } else {
      p.status = CudaProbe::Status::kOtherError;
    }
    return p;
  }
  if (count == 0) {
    p.status = CudaProbe::Status::kNoDevice;
    p.error = "cudaGetDeviceCount found 0 devices";
    return p;
  }
  cudaDeviceProp prop{};
  if (const cudaError_t pe = cudaGetDeviceProperties(&prop, 0); pe != cudaSuccess) {
    (void)cudaGetLastError();
    p.status = CudaProbe::Status::kOtherError;
    p.error = error_text(pe);
    return p;
  }
  p.device = prop.name;
  p.major = prop.major;
  p.minor = prop.minor;
  cudaFuncAttributes attr{};
  const cudaError_t fe = cudaFuncGetAttributes(&attr, probe_kernel);
  if (fe != cudaSuccess) {
    (void)cudaGetLastError();
    p.error = error_text(fe);
    p.status = (fe == cudaErrorNoKernelImageForDevice || fe == cudaErrorInvalidDeviceFunction)
                   ? CudaProbe::Status::kNoKernelImage
                   : CudaProbe::Status::kOtherError;
    return p;
  }
  p.status = CudaProbe::Status::kUsable;
  return p;
}

std::string describe_cuda_problem(const CudaProbe& p) {
  using S = CudaProbe::Status;
  const std::string sm = std::to_string(p.major) + std::to_string(p.minor);
  switch (p.status) {
    case S::kUsable:
      return "";
    case S::kNoDevice:
      return "no CUDA GPU: " + p.error;
    case S::kNoDriver:
      return "no CUDA GPU: no NVIDIA driver is installed (" + p.error + ")";
    case S::kOldDriver:
      return "the NVIDIA driver is too old: it supports CUDA " + cuda_version(p.driver_version) +
             ", but this mnist_gpu was built with the CUDA " + cuda_version(p.runtime_version) +
             " runtime; update the NVIDIA driver (" + p.error + ")";
    case S::kNoKernelImage:
      return "GPU 0 (" + p.device + ") is sm_" + sm + ", but this mnist_gpu was built for " +
             sm_list(p.built_architectures) +
             " only; rebuild with -DCMAKE_CUDA_ARCHITECTURES=" + sm + " (" + p.error + ")";
    case S::kOtherError:
      break;
  }
  return "CUDA is not usable: " + p.error;
}

bool cuda_usable(std::string* why) {
  const CudaProbe p = probe_cuda();
  if (why != nullptr) *why = describe_cuda_problem(p);
  return p.status == CudaProbe::Status::kUsable;
}

std::unique_ptr<Engine> make_cuda_engine(const Graph& graph, const EngineOptions& options) {
  return std::make_unique<BasicEngine<CudaBackend>>(graph, options, graphs_wanted(options),
                                                    options.precision);
}

// --- CudaBackend, the parts that are not templates -------------------------------------------

CudaBackend::CudaBackend(bool use_graphs, Precision precision)
    : use_graphs_(use_graphs && !cuda::sync_debug()), precision_(precision) {
  // MNIST_GPU_VARIANTS is read and checked here, before any work: a bad value fails the command
  // at its start, naming the variable.
  (void)kern::kernel_variants();
  try {
    CUDA_CHECK(cudaSetDevice(device_));
    cudaDeviceProp prop{};
    CUDA_CHECK(cudaGetDeviceProperties(&prop, device_));
    device_name_ = "cuda:" + std::to_string(device_) + " " + prop.name + " (sm_" +
                   std::to_string(prop.major) + std::to_string(prop.minor) + ")";
    CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    CUBLAS_CHECK(cublasCreate(&cublas_));
    // The stream first: cublasSetStream resets the workspace to cuBLAS' own pool.
    CUBLAS_CHECK(cublasSetStream(cublas_, stream_));
    CUDA_CHECK(cudaMalloc(&cublas_workspace_, kCublasWorkspaceBytes));
    CUBLAS_CHECK(cublasSetWorkspace(cublas_, cublas_workspace_, kCublasWorkspaceBytes));
    CUBLAS_CHECK(cublasSetPointerMode(cublas_, CUBLAS_POINTER_MODE_HOST));
    // float32 by default (CUBLAS_DEFAULT_MATH never goes below float32's precision): the tests
    // hold the GPU to float32 accuracy against the CPU. TF32 only when asked for.
    CUBLAS_CHECK(cublasSetMathMode(cublas_, precision_ == Precision::kTf32
                                                ? CUBLAS_TF32_TENSOR_OP_MATH
                                                : CUBLAS_DEFAULT_MATH));
    lt_ = kern::GemmLt(cublas_workspace_, kCublasWorkspaceBytes, precision_ == Precision::kTf32);
    l2_partials_ = DeviceBuffer<double>(kern::kL2Blocks, stream_);
    adam_scalars_ = DeviceBuffer<float>(2, stream_);
  } catch (...) {
    release();
    throw;
  }
}

CudaBackend::~CudaBackend() { release(); }

void CudaBackend::release() noexcept {
  if (stream_ != nullptr) (void)cudaStreamSynchronize(stream_);
  for (auto& entry : graphs_) (void)cudaGraphExecDestroy(entry.second.exec);
  graphs_.clear();
  if (cublas_ != nullptr) (void)cublasDestroy(cublas_);
  cublas_ = nullptr;
  lt_ = kern::GemmLt();
  if (cublas_workspace_ != nullptr) (void)cudaFree(cublas_workspace_);
  cublas_workspace_ = nullptr;
  if (stream_ != nullptr) (void)cudaStreamDestroy(stream_);
  stream_ = nullptr;
}

void CudaBackend::shuffle(int32_t* order, const int32_t* indices, int64_t n, uint64_t seed,
                          int64_t epoch) {
  // Scratch of our own, not alloc(): the captured steps never see it, so they stay valid.
  if (shuffle_keys_.size() < n) {
    shuffle_keys_ = DeviceBuffer<uint32_t>(n, stream_);
    shuffle_positions_ = DeviceBuffer<int32_t>(n, stream_);
  }
  kern::epoch_shuffle(indices, n, seed, epoch, order, shuffle_keys_.data(),
                      shuffle_positions_.data(), stream_);
}

cudaGraphExec_t CudaBackend::cached_graph(int64_t batch) {
  const auto it = graphs_.find(batch);
  if (it == graphs_.end()) return nullptr;
  if (it->second.generation == generation_) return it->second.exec;
  CUDA_CHECK(cudaGraphExecDestroy(it->second.exec));
  graphs_.erase(it);
  return nullptr;
}

void CudaBackend::begin_capture() {
  CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
}

void CudaBackend::abort_capture() noexcept {
  cudaGraph_t graph = nullptr;
  if (cudaStreamEndCapture(stream_, &graph) == cudaSuccess && graph != nullptr) {
    (void)cudaGraphDestroy(graph);
  }
  (void)cudaGetLastError();
}

cudaGraphExec_t CudaBackend::end_capture(int64_t batch) {
  cudaGraph_t graph = nullptr;
  CUDA_CHECK(cudaStreamEndCapture(stream_, &graph));
  cudaGraphExec_t exec = nullptr;
  const cudaError_t e = cudaGraphInstantiate(&exec, graph, 0);
  (void)cudaGraphDestroy(graph);
  cuda::check_cuda(e, "cudaGraphInstantiate(&exec, graph, 0)", __FILE__, __LINE__);
  graphs_[batch] = CapturedStep{exec, generation_};
  return exec;
}

void CudaBackend::launch_graph(cudaGraphExec_t exec) { CUDA_CHECK(cudaGraphLaunch(exec, stream_)); }

}  // namespace mg
