// The CUDA benchmarks of bench_kernels (bench/bench_cuda.cu), built when MNIST_GPU_HAVE_CUDA is on.
#pragma once

namespace mg::bench {

// Registers cuda/<op>/<batch> for every op of step_ops() at every batch of kBatchSizes, and
// cuda/adam/update, when a GPU is usable, each run until it has min_time seconds of GPU time;
// either way adds the device, its peak and its source (or why there are no CUDA benchmarks) to
// the run's context.
void register_cuda_benchmarks(double min_time);

// Frees the device memory the CUDA benchmarks hold; call after they have run.
void release_cuda_benchmarks();

}  // namespace mg::bench
