// bench_kernels: every op of the training step, on every backend built in, against the device's
// limits. See docs/performance.md ("bench_kernels") for what it measures and how to read it, and
// tools/bench_report.py for the table, the roofline picture and the comparison of two runs.
#include <benchmark/benchmark.h>
#include <omp.h>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <string_view>
#include <vector>

#include "bench/bench_common.hpp"
#include "bench/bench_cpu.hpp"
#include "bench/cpu_peak.hpp"
#include "kernels/variants.hpp"
#if MNIST_GPU_HAVE_CUDA
#include "bench/bench_cuda.hpp"
#endif

namespace {

// 0.2 s of timed calls per benchmark keeps the whole CPU run near two minutes on two cores; a
// --benchmark_min_time given on the command line comes later and wins.
constexpr const char* kDefaultMinTime = "--benchmark_min_time=0.2";

// The CUDA rows time every call alone (an L2 flush and a synchronization around each), so a
// microsecond op costs some 50 us of wall time per call: 0.02 s of GPU time per benchmark keeps
// all of them near half a minute. --cuda_min_time=S (ours, not Google Benchmark's) changes it.
constexpr std::string_view kCudaMinTimeFlag = "--cuda_min_time=";
constexpr double kDefaultCudaMinTime = 0.02;

// --variants=SPEC (ours): the kernel variant set of the whole-step row cuda/train_step/<set>/128,
// in MNIST_GPU_VARIANTS' syntax (kernels/variants.hpp); every op at variant 1 when not given.
constexpr std::string_view kVariantsFlag = "--variants=";

bool only_listing(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--benchmark_list_tests" || a == "--benchmark_list_tests=true" ||
        a == "--benchmark_list_tests=1")
      return true;
  }
  return false;
}

std::string number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4g", v);
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<char*> args;
  args.push_back(argv[0]);
  args.push_back(const_cast<char*>(kDefaultMinTime));
  double cuda_min_time = kDefaultCudaMinTime;
  mg::kern::KernelVariants step_set = mg::kern::KernelVariants::all(1);
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a.substr(0, kVariantsFlag.size()) == kVariantsFlag) {
      try {
        step_set = mg::kern::parse_kernel_variants(a.substr(kVariantsFlag.size()), "--variants");
      } catch (const std::exception& e) {
        std::fprintf(stderr, "bench_kernels: %s\n", e.what());
        return 1;
      }
      continue;
    }
    if (a.substr(0, kCudaMinTimeFlag.size()) == kCudaMinTimeFlag) {
      cuda_min_time = std::atof(argv[i] + kCudaMinTimeFlag.size());
      if (!(cuda_min_time > 0)) {
        std::fprintf(stderr, "bench_kernels: %s needs a positive number of seconds\n", argv[i]);
        return 1;
      }
      continue;
    }
    args.push_back(argv[i]);
  }
  try {  // MNIST_GPU_VARIANTS, checked before anything runs (in every build, alike)
    const char* env = std::getenv(mg::kern::kVariantsEnv);
    (void)mg::kern::parse_kernel_variants(env != nullptr ? env : "", mg::kern::kVariantsEnv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_kernels: %s\n", e.what());
    return 1;
  }
  int n_args = static_cast<int>(args.size());
  args.push_back(nullptr);
  benchmark::Initialize(&n_args, args.data());
  if (benchmark::ReportUnrecognizedArguments(n_args, args.data())) return 1;

  namespace mb = mg::bench;
  // Peaks in FLOP/s and B/s, as plain numbers for tools/bench_report.py; the source says how.
  mb::Peak cpu;
  if (!only_listing(argc, argv)) cpu = mb::measure_cpu_peak();
  benchmark::AddCustomContext("model", std::string(mg::kSeedModelSpec));
  benchmark::AddCustomContext("cpu_threads", std::to_string(omp_get_max_threads()));
  benchmark::AddCustomContext("cpu_peak_flops", number(cpu.flops));
  benchmark::AddCustomContext("cpu_peak_bytes_per_s", number(cpu.bytes_per_s));
  benchmark::AddCustomContext("cpu_peak_source", cpu.source.empty() ? "not measured" : cpu.source);
  benchmark::AddCustomContext("cpu_cache", mb::cpu_cache_policy());
  benchmark::AddCustomContext("flop_convention",
                              "2 per GEMM multiply-add; 1 per elementwise add, multiply, divide, "
                              "compare, exp, log, sqrt; integer work not counted");
  benchmark::AddCustomContext("bytes_convention",
                              "minimum bytes: each tensor of the layer's interface (activations, "
                              "parameters, gradients, pool argmax) read once and written once, no "
                              "workspace; train_step = sum of its ops");
  mb::register_cpu_benchmarks(cpu);
#if MNIST_GPU_HAVE_CUDA
  mb::register_cuda_benchmarks(cuda_min_time, step_set);
#else
  (void)step_set;
  benchmark::AddCustomContext("cuda",
                              "absent: bench_kernels was built without CUDA "
                              "(no nvcc at configure time, or -DMNIST_GPU_CUDA=OFF)");
#endif

  benchmark::RunSpecifiedBenchmarks();
#if MNIST_GPU_HAVE_CUDA
  mb::release_cuda_benchmarks();
#endif
  benchmark::Shutdown();
  return 0;
}
