// The CPU benchmarks of bench_kernels (bench/bench_cpu.cpp).
#pragma once

#include "bench/bench_common.hpp"

namespace mg::bench {

// Registers cpu/<op>/<batch> for every op of step_ops() at every batch of kBatchSizes, and
// cpu/adam/update; their percentages are of `peak`.
void register_cpu_benchmarks(const Peak& peak);

// One line for the run's context: how the CPU benchmarks keep the caches from flattering them.
const char* cpu_cache_policy();

}  // namespace mg::bench
