// The CPU's limits, measured once per run: what the CPU rows of bench_kernels are a fraction of.
#pragma once

#include "bench/bench_common.hpp"

namespace mg::bench {

// FP32: the best of several OpenBLAS SGEMMs at a large square size (what the conv and dense
// layers call, at the size where it runs fastest). Bandwidth: the best of several copies of a
// buffer far larger than any cache, split over the OpenMP threads, counted as read + write
// (STREAM's convention). Takes about a second.
Peak measure_cpu_peak();

}  // namespace mg::bench
