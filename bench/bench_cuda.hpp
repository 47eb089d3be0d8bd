// The CUDA benchmarks of bench_kernels (bench/bench_cuda.cu), built when MNIST_GPU_HAVE_CUDA is on.
#pragma once

#include "kernels/variants.hpp"

namespace mg::bench {

// Registers cuda/<op>/<batch> for every op of step_ops() and the fused conv + pool ops
// (<conv>+<pool>/forward, /backward) at every batch of kBatchSizes, and cuda/adam/update, when a
// GPU is usable, each run until it has min_time seconds of GPU time;
// either way adds the device, its peak and its source (or why there are no CUDA benchmarks) to
// the run's context. Then, at batch 128, cuda/<layer>/<kernel>/v<N>/128 for every variant of every
// kernel with variants (kernels/variants.hpp; cuda/<conv>+<pool>/conv_pool_forward/v<N>/128 for
// the pairs), and the whole step under two variant sets:
// cuda/train_step/v0/128 and cuda/train_step/<step_set.label()>/128. The other rows run under the
// process's set (MNIST_GPU_VARIANTS, variant 0 by default).
void register_cuda_benchmarks(double min_time, const kern::KernelVariants& step_set);

// Frees the device memory the CUDA benchmarks hold; call after they have run.
void release_cuda_benchmarks();

}  // namespace mg::bench
