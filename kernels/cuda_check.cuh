// Error checking for every CUDA and cuBLAS call, written once. A failure throws std::runtime_error
// naming the call, the error and the file:line, e.g.
//   CUDA error cudaErrorInvalidValue (invalid argument) in cudaMemcpyAsync(...) at engine/x.cu:12
// Every kernel launch is followed by MG_CHECK_LAUNCH("kernel name"): a checked cudaGetLastError(),
// and with MNIST_GPU_SYNC_DEBUG=1 in the environment also a device synchronization, so an
// asynchronous fault is reported at the kernel that caused it rather than at a later call.
//
// Plain C++ over the CUDA runtime API: included by .cu files and by g++-compiled code alike.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

namespace mg::cuda {

[[noreturn]] void throw_cuda_error(cudaError_t error, const char* call, const char* file, int line);
[[noreturn]] void throw_cublas_error(cublasStatus_t status, const char* call, const char* file,
                                     int line);

inline void check_cuda(cudaError_t error, const char* call, const char* file, int line) {
  if (error != cudaSuccess) throw_cuda_error(error, call, file, line);
}

inline void check_cublas(cublasStatus_t status, const char* call, const char* file, int line) {
  if (status != CUBLAS_STATUS_SUCCESS) throw_cublas_error(status, call, file, line);
}

// After a launch: the launch error, and in sync-debug mode the kernel's own.
void check_launch(const char* kernel, const char* file, int line);

// MNIST_GPU_SYNC_DEBUG=1 (read once). The CUDA backend then also runs without graph capture,
// since a capturing stream cannot be synchronized.
bool sync_debug();

// The largest grid an elementwise launcher uses (grid-stride loops cover the rest). Tests lower it
// to a few blocks to prove the kernels do not depend on one thread per element.
int max_grid_blocks();
void set_max_grid_blocks(int blocks);

}  // namespace mg::cuda

#define CUDA_CHECK(call) ::mg::cuda::check_cuda((call), #call, __FILE__, __LINE__)
#define CUBLAS_CHECK(call) ::mg::cuda::check_cublas((call), #call, __FILE__, __LINE__)
#define MG_CHECK_LAUNCH(kernel) ::mg::cuda::check_launch((kernel), __FILE__, __LINE__)
