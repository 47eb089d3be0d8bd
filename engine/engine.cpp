#include "engine/engine.hpp"

#include <stdexcept>

#if MNIST_GPU_HAVE_CUDA
#include "engine/cuda_engine.hpp"
#endif

namespace mg {

std::unique_ptr<Engine> make_engine(Device device, const Graph& graph, const EngineOptions& options,
                                    std::string* notice) {
  if (device == Device::kCpu) return make_cpu_engine(graph, options);
#if MNIST_GPU_HAVE_CUDA
  std::string why;
  if (cuda_usable(&why)) return make_cuda_engine(graph, options);
  if (device == Device::kCuda) throw std::runtime_error("--device cuda: " + why);
  if (notice) *notice = "no usable GPU (" + why + "); training on the CPU";
#else
  if (device == Device::kCuda) {
    throw std::runtime_error(
        "--device cuda: this mnist_gpu was built without CUDA (no nvcc at configure time); "
        "rebuild with the CUDA toolkit installed, or use --device cpu");
  }
  if (notice) *notice = "built without CUDA; training on the CPU";
#endif
  return make_cpu_engine(graph, options);
}

}  // namespace mg
