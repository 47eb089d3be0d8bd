// Per-layer timing of the training step (see docs/performance.md).
#include <benchmark/benchmark.h>

#include "engine/cpu_backend.hpp"
#include "engine/network.hpp"

namespace {

void BM_cpu_train_step(benchmark::State& state) {
  const mg::Graph g = mg::Graph::build(mg::ModelSpec::seed());
  const int64_t n = state.range(0);
  mg::CpuBackend<float> be;
  mg::Network<mg::CpuBackend<float>> net(be, g, n, 42);
  for (int64_t i = 0; i < n * 784; ++i) net.input()[i] = static_cast<float>(i % 255) / 255.0f;
  for (int64_t i = 0; i < n; ++i) net.labels()[i] = static_cast<int32_t>(i % 10);
  for (auto _ : state) {
    net.forward(n, true);
    net.loss(n);
    net.backward(n);
    net.adam_update();
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_cpu_train_step)->Arg(128)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
