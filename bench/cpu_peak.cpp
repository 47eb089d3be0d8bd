#include "bench/cpu_peak.hpp"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#include "engine/blas.hpp"

namespace mg::bench {
namespace {

constexpr int64_t kGemmSize = 2048;                 // 17 GFLOP a call: well past OpenBLAS's ramp
constexpr int64_t kCopyBytes = int64_t{256} << 20;  // 256 MiB each way
constexpr int kRepeats = 5;

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double sgemm_flops() {
  const int64_t n = kGemmSize;
  std::vector<float> a(static_cast<size_t>(n * n)), b(a.size()), c(a.size());
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (auto& v : a) v = dist(rng);
  for (auto& v : b) v = dist(rng);
  auto run = [&] {
    // OpenBLAS itself, on all its threads: the machine's peak, not our cut of the GEMM.
    cpu::blas_gemm(false, false, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);
  };
  run();  // warm-up: threads started, pages touched
  double best = 1e30;
  for (int r = 0; r < kRepeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    run();
    best = std::min(best, seconds_since(t0));
  }
  return 2.0 * static_cast<double>(n) * static_cast<double>(n) * static_cast<double>(n) / best;
}

double copy_bytes_per_s() {
  const auto bytes = static_cast<size_t>(kCopyBytes);
  std::vector<char> src(bytes), dst(bytes);
  for (size_t i = 0; i < bytes; ++i) src[i] = static_cast<char>(i * 2654435761u >> 24);
  auto run = [&] {
#pragma omp parallel
    {
      const auto t = static_cast<size_t>(omp_get_thread_num());
      const auto nt = static_cast<size_t>(omp_get_num_threads());
      const size_t chunk = (bytes + nt - 1) / nt;
      const size_t lo = std::min(bytes, t * chunk), hi = std::min(bytes, lo + chunk);
      std::memcpy(dst.data() + lo, src.data() + lo, hi - lo);
    }
  };
  run();  // warm-up: every page of dst faulted in
  double best = 1e30;
  for (int r = 0; r < kRepeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    run();
    best = std::min(best, seconds_since(t0));
  }
  return 2.0 * static_cast<double>(bytes) / best;
}

}  // namespace

Peak measure_cpu_peak() {
  Peak p;
  p.flops = sgemm_flops();
  p.bytes_per_s = copy_bytes_per_s();
  const std::string threads = std::to_string(omp_get_max_threads());
  p.source = "measured at start, " + threads + " OpenMP threads: FP32 = best of " +
             std::to_string(kRepeats) + " OpenBLAS sgemm " + std::to_string(kGemmSize) + "^3; " +
             "bandwidth = best of " + std::to_string(kRepeats) + " memcpy of " +
             std::to_string(kCopyBytes >> 20) + " MiB, counted as read + write";
  return p;
}

}  // namespace mg::bench
