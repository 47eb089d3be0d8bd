// The model as the executor sees it: layers with resolved shapes and their places in the one flat
// parameter buffer. Built once from a ModelSpec; backends never look at the spec.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/model_spec.hpp"

namespace mg {

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
  int64_t weight_offset = 0, weight_size = 0;
  int64_t bias_offset = 0, bias_size = 0;
  ParamRole weight_role = ParamRole::kOther;  // kKernel for conv and dense weights
  bool has_params() const { return weight_size > 0; }
};

class Graph {
 public:
  // Throws SpecError when the spec does not fit the input (pooling a 1x1 map, say).
  static Graph build(const ModelSpec& spec, Shape input = {1, 28, 28}, int classes = 10);

  const std::vector<Layer>& layers() const { return layers_; }
  const Layer& classifier() const { return layers_.back(); }
  Shape input() const { return input_; }
  int classes() const { return classes_; }
  int64_t param_count() const { return param_count_; }
  // Every parameter tensor, in buffer order, with its role.
  const std::vector<ParamTensor>& param_tensors() const { return param_tensors_; }
  // One byte per parameter: 1 where the parameter belongs to a kKernel tensor, else 0.
  std::vector<uint8_t> kernel_mask() const;
  const ModelSpec& spec() const { return spec_; }

 private:
  std::vector<Layer> layers_;
  Shape input_;
  int classes_ = 0;
  int64_t param_count_ = 0;
  std::vector<ParamTensor> param_tensors_;
  ModelSpec spec_;
};

}  // namespace mg
