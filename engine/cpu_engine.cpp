#include <algorithm>
#include <numeric>

#include "engine/basic_engine.hpp"
#include "engine/cpu_fast_backend.hpp"

namespace mg {

std::vector<int32_t> epoch_order(std::span<const int32_t> indices, uint64_t seed, int64_t epoch) {
  const size_t n = indices.size();
  std::vector<uint32_t> keys(n);
  for (size_t i = 0; i < n; ++i) {
    keys[i] = philox_draw(seed, RngStream::kShuffle, 0, static_cast<uint64_t>(epoch), i);
  }
  std::vector<int32_t> pos(n);
  std::iota(pos.begin(), pos.end(), 0);
  std::stable_sort(pos.begin(), pos.end(), [&](int32_t a, int32_t b) { return keys[a] < keys[b]; });
  std::vector<int32_t> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = indices[static_cast<size_t>(pos[i])];
  return order;
}

std::unique_ptr<Engine> make_cpu_engine(const Graph& graph, const EngineOptions& options) {
  return std::make_unique<BasicEngine<CpuFastBackend>>(graph, options);
}

}  // namespace mg
