// The CUDA engine's entry points, as engine/engine.cpp sees them. Plain C++ with no CUDA headers:
// engine.cpp is compiled by g++.
#pragma once

#include <memory>
#include <string>

#include "engine/engine.hpp"
#include "engine/graph.hpp"

namespace mg {

// Whether this process can train on GPU 0. When not, *why (if not null) says why and what to do:
//   "no CUDA GPU: ..."                        no device, or no NVIDIA driver at all
//   "the NVIDIA driver is too old: ..."       names the driver's and the runtime's CUDA versions
//   "GPU 0 (...) is sm_XY, but ..."           the binary holds no code for the GPU; names the
//                                             built architectures and the CMake option to rebuild
//   "CUDA is not usable: ..."                 anything else, with CUDA's own error
bool cuda_usable(std::string* why);

// A BasicEngine over CudaBackend on GPU 0. options.cuda_graph: capture the training step in CUDA
// graphs, unless MNIST_GPU_CUDA_GRAPH=0 is in the environment (or MNIST_GPU_SYNC_DEBUG=1, which
// synchronizes after every launch); options.precision: kTf32 runs the GEMMs on TF32 tensor cores.
// Call cuda_usable() first; construction throws std::runtime_error on CUDA errors.
std::unique_ptr<Engine> make_cuda_engine(const Graph& graph, const EngineOptions& options);

// What cuda_usable() looks at, separated from the message it makes so tests can check every
// message without the hardware.
struct CudaProbe {
  enum class Status { kUsable, kNoDevice, kNoDriver, kOldDriver, kNoKernelImage, kOtherError };
  Status status = Status::kOtherError;
  int driver_version = 0;    // cudaDriverGetVersion: 1000 * major + 10 * minor, 0 without a driver
  int runtime_version = 0;   // cudaRuntimeGetVersion, the same encoding
  std::string device;        // GPU 0's name, when one was found
  int major = 0, minor = 0;  // its compute capability
  std::string built_architectures;  // CMAKE_CUDA_ARCHITECTURES of this build, e.g. "80,90"
  std::string error;                // the failing call's CUDA error, "cudaErrorX: text"
};

CudaProbe probe_cuda();
std::string describe_cuda_problem(const CudaProbe& probe);  // empty when usable

}  // namespace mg
