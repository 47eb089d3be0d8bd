// The model as the executor sees it: layers with resolved shapes and their places in the one flat
// parameter buffer. Built once from a ModelSpec; backends never look at the spec.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/model_spec.hpp"

namespace mg {

// BatchNormalization's constants, Keras' defaults (PyTorch: eps=1e-3, momentum=1-0.99=0.01).
inline constexpr double kBatchNormMomentum = 0.99;
inline constexpr double kBatchNormEpsilon = 1e-3;

// Per-sample shape; a batch of n is NCHW with this CHW. Flat layers have h = w = 1.
struct Shape {
  int64_t c = 1, h = 1, w = 1;
  int64_t size() const { return c * h * w; }
  bool operator==(const Shape&) const = default;
};

// What a parameter tensor is to the optimizer and the regularizers. Only kKernel tensors (conv and
// dense weights) take --weight-decay and --l2, as Keras' kernel_regularizer and the usual AdamW
// exclusions do; biases and any other layer's parameters (normalization scales and shifts, say)
// are kOther or kBias, so a new kind of parameter is left alone unless it says otherwise.
enum class ParamRole { kKernel, kBias, kOther };

// One tensor of the flat parameter buffer.
struct ParamTensor {
  int layer = 0;  // index into Graph::layers()
  int64_t offset = 0, size = 0;
  ParamRole role = ParamRole::kOther;
};

struct Layer {
  LayerKind kind = LayerKind::kFlatten;
  int index = 0;  // position in the graph; also the dropout RNG's layer key
  std::string name;
  Shape in, out;
  bool relu = false;   // conv and hidden dense layers apply ReLU to their output (unless 'n')
  int kernel = 3;      // conv: K x K kernel
  int pad = 1;         // conv: zero padding on each side ('same': (K-1)/2, 'valid': 0)
  float rate = 0.0f;   // dropout
  // Parameters, as offsets into the flat parameter buffer (PyTorch layouts):
  // conv weight [out.c, in.c, K, K], dense weight [out.c, in.size()]; bias [out.c].
  // Batch normalization: weight = gamma [C], bias = beta [C] (trainable), and the non-trainable
  // moving statistics at stats_offset: moving_mean [C], then moving_var [C] (stats_size = 2 C).
  int64_t weight_offset = 0, weight_size = 0;
  int64_t bias_offset = 0, bias_size = 0;
  ParamRole weight_role = ParamRole::kOther;  // kKernel for conv and dense weights
  int64_t stats_offset = 0, stats_size = 0;
  bool has_params() const { return weight_size > 0; }
  // The weight is a kernel (conv or dense): the only tensor weight decay and L2 apply to. Biases,
  // BN's gamma and beta, and the moving statistics are never regularized.
  bool has_kernel() const {
    return weight_size > 0 && (kind == LayerKind::kConv2d || kind == LayerKind::kDense);
  }
  int64_t param_count() const { return weight_size + bias_size + stats_size; }  // Keras' Param #
  int64_t trainable_count() const { return weight_size + bias_size; }
};

class Graph {
 public:
  // Throws SpecError when the spec does not fit the input (pooling a 1x1 map, say).
  static Graph build(const ModelSpec& spec, Shape input = {1, 28, 28}, int classes = 10);

  const std::vector<Layer>& layers() const { return layers_; }
  const Layer& classifier() const { return layers_.back(); }
  Shape input() const { return input_; }
  int classes() const { return classes_; }
  // Every value of the flat buffer (Keras' "Total params"). The trainable ones come first, in
  // [0, trainable_count()); after them, the non-trainable tail: every BN layer's moving statistics.
  // Adam updates the prefix only.
  int64_t param_count() const { return param_count_; }
  // Every trainable parameter tensor, in buffer order, with its role (kBias for BN's beta, kOther
  // for its gamma; the moving statistics of the tail are not listed).
  const std::vector<ParamTensor>& param_tensors() const { return param_tensors_; }
  // One byte per parameter: 1 where the parameter belongs to a kKernel tensor, else 0.
  std::vector<uint8_t> kernel_mask() const;
  int64_t trainable_count() const { return trainable_count_; }
  const ModelSpec& spec() const { return spec_; }

 private:
  std::vector<Layer> layers_;
  Shape input_;
  int classes_ = 0;
  int64_t param_count_ = 0;
  std::vector<ParamTensor> param_tensors_;
  int64_t trainable_count_ = 0;
  ModelSpec spec_;
};

}  // namespace mg
