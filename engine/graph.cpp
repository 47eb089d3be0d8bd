#include "engine/graph.hpp"

#include <algorithm>

namespace mg {
namespace {

// Keeps every per-sample activation and the parameter count well inside int32 index range per
// sample and far from exhausting memory; a spec past this is a typo, not a model.
constexpr int64_t kMaxActivation = int64_t{1} << 26;
constexpr int64_t kMaxParams = int64_t{1} << 28;

std::string keras_name(const char* base, int& counter) {
  const int n = counter++;
  return n == 0 ? std::string(base) : std::string(base) + "_" + std::to_string(n);
}

}  // namespace

Graph Graph::build(const ModelSpec& spec, Shape input, int classes) {
  Graph g;
  g.spec_ = spec;
  g.input_ = input;
  g.classes_ = classes;
  int n_conv = 0, n_pool = 0, n_drop = 0, n_flat = 0, n_dense = 0, n_relu = 0, n_bn = 0;
  Shape cur = input;
  int64_t params = 0;

  auto add = [&](Layer layer) {
    layer.index = static_cast<int>(g.layers_.size());
    layer.in = cur;
    switch (layer.kind) {
      case LayerKind::kConv2d: {
        const int64_t oh = cur.h + 2 * layer.pad - layer.kernel + 1;
        const int64_t ow = cur.w + 2 * layer.pad - layer.kernel + 1;
        if (oh < 1 || ow < 1) {
          throw SpecError("model spec: '" + layer.name + "' would apply a " +
                          std::to_string(layer.kernel) + "x" + std::to_string(layer.kernel) +
                          " 'valid' kernel to a " + std::to_string(cur.h) + "x" +
                          std::to_string(cur.w) + " map; use a smaller kernel or fewer pools");
        }
        layer.out = {layer.out.c, oh, ow};
        layer.weight_size = layer.out.c * cur.c * layer.kernel * layer.kernel;
        layer.weight_role = ParamRole::kKernel;
        break;
      }
      case LayerKind::kRelu: layer.out = cur; break;
      case LayerKind::kBatchNorm:
        layer.out = cur;
        layer.weight_size = cur.c;  // gamma; beta below; moving statistics in the tail
        layer.stats_size = 2 * cur.c;
        break;
      case LayerKind::kMaxPool:
        if (cur.h < 2 || cur.w < 2) {
          throw SpecError("model spec: '" + layer.name + "' would pool a " +
                          std::to_string(cur.h) + "x" + std::to_string(cur.w) +
                          " map; remove a pool layer");
        }
        layer.out = {cur.c, cur.h / 2, cur.w / 2};
        break;
      case LayerKind::kDropout: layer.out = cur; break;
      case LayerKind::kFlatten: layer.out = {cur.size(), 1, 1}; break;
      case LayerKind::kDense:
        layer.weight_size = layer.out.c * cur.size();
        layer.weight_role = ParamRole::kKernel;
        break;
    }
    if (layer.weight_size > 0) {
      layer.bias_size = layer.out.c;
      layer.weight_offset = params;
      layer.bias_offset = params + layer.weight_size;
      params += layer.weight_size + layer.bias_size;
      if (params > kMaxParams) throw SpecError("model spec: more than 2^28 parameters");
      g.param_tensors_.push_back(
          {layer.index, layer.weight_offset, layer.weight_size, layer.weight_role});
      g.param_tensors_.push_back({layer.index, layer.bias_offset, layer.bias_size, ParamRole::kBias});
    }
    if (layer.out.size() > kMaxActivation) {
      throw SpecError("model spec: '" + layer.name + "' output is too large per image");
    }
    cur = layer.out;
    g.layers_.push_back(std::move(layer));
  };

  for (const LayerSpec& s : spec.layers) {
    Layer layer;
    layer.kind = s.kind;
    switch (s.kind) {
      case LayerKind::kConv2d:
        layer.name = keras_name("conv2d", n_conv);
        layer.out.c = s.units;
        layer.relu = s.relu;
        layer.kernel = s.kernel;
        layer.pad = s.valid ? 0 : (s.kernel - 1) / 2;
        break;
      case LayerKind::kMaxPool: layer.name = keras_name("max_pooling2d", n_pool); break;
      case LayerKind::kDropout:
        layer.name = keras_name("dropout", n_drop);
        layer.rate = s.rate;
        break;
      case LayerKind::kFlatten: layer.name = keras_name("flatten", n_flat); break;
      case LayerKind::kDense:
        layer.name = keras_name("dense", n_dense);
        layer.out = {s.units, 1, 1};
        layer.relu = s.relu;
        break;
      case LayerKind::kRelu:
        layer.name = keras_name("re_lu", n_relu);
        layer.relu = true;
        break;
      case LayerKind::kBatchNorm: layer.name = keras_name("batch_normalization", n_bn); break;
    }
    add(std::move(layer));
  }
  Layer head;
  head.kind = LayerKind::kDense;
  head.name = keras_name("dense", n_dense);
  head.out = {classes, 1, 1};
  head.relu = false;  // softmax lives in the loss
  add(std::move(head));
  g.trainable_count_ = params;
  for (Layer& l : g.layers_) {  // the non-trainable tail, after every trainable parameter
    if (l.stats_size == 0) continue;
    l.stats_offset = params;
    params += l.stats_size;
  }
  if (params > kMaxParams) throw SpecError("model spec: more than 2^28 parameters");
  g.param_count_ = params;
  return g;
}

std::vector<uint8_t> Graph::kernel_mask() const {
  std::vector<uint8_t> mask(static_cast<size_t>(param_count_), 0);
  for (const ParamTensor& t : param_tensors_) {
    if (t.role != ParamRole::kKernel) continue;
    std::fill_n(mask.begin() + t.offset, t.size, uint8_t{1});
  }
  return mask;
}

}  // namespace mg
