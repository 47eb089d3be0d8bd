// Keras' default initialization: Glorot-uniform weights, zero biases, drawn from Philox so the
// same seed gives the same weights on every backend and every thread count.
#pragma once

#include <cmath>
#include <cstdint>
#include <span>

#include "engine/graph.hpp"
#include "kernels/philox.cuh"

namespace mg {

// limit = sqrt(6 / (fan_in + fan_out)); conv fans count the K x K receptive field.
// Batch normalization starts as Keras' does: gamma 1, beta 0, moving_mean 0, moving_var 1.
template <class T>
void glorot_uniform_init(const Graph& graph, uint64_t seed, std::span<T> params) {
  for (const Layer& l : graph.layers()) {
    if (!l.has_params()) continue;
    if (l.kind == LayerKind::kBatchNorm) {
      const int64_t c = l.out.c;
      for (int64_t i = 0; i < c; ++i) {
        params[static_cast<size_t>(l.weight_offset + i)] = T(1);
        params[static_cast<size_t>(l.bias_offset + i)] = T(0);
        params[static_cast<size_t>(l.stats_offset + i)] = T(0);
        params[static_cast<size_t>(l.stats_offset + c + i)] = T(1);
      }
      continue;
    }
    const int64_t rf = l.kind == LayerKind::kConv2d ? int64_t{l.kernel} * l.kernel : 1;
    const int64_t fan_in = (l.kind == LayerKind::kConv2d ? l.in.c : l.in.size()) * rf;
    const int64_t fan_out = l.out.c * rf;
    const double limit = std::sqrt(6.0 / static_cast<double>(fan_in + fan_out));
    for (int64_t i = 0; i < l.weight_size; ++i) {
      const float u = uniform_from_bits(
          philox_draw(seed, RngStream::kInit, static_cast<uint32_t>(l.index), 0, static_cast<uint64_t>(i)));
      params[static_cast<size_t>(l.weight_offset + i)] = static_cast<T>((2.0 * u - 1.0) * limit);
    }
    for (int64_t i = 0; i < l.bias_size; ++i) params[static_cast<size_t>(l.bias_offset + i)] = T(0);
  }
}

}  // namespace mg
