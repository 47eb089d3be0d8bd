// The model as an ONNX graph (opset 17), built with ONNX's own protobuf classes and checked by its
// checker and strict shape inference before a byte is written.
//   input          "input", float32 [N, C, H, W] (N dynamic), pixels / 255 as the engine sees them
//   output         "probabilities", float32 [N, classes], the softmax
//   initializers   the checkpoint's tensors under their PyTorch names ("conv2d.weight", ...)
// Each layer kind is one function in onnx_export.cpp; dropout is the identity at inference and
// emits no node.
#pragma once

#include <filesystem>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/graph.hpp"

namespace mg {

class OnnxError : public std::runtime_error {
  using std::runtime_error::runtime_error;
};

inline constexpr int kOnnxOpset = 17;

// What the model file says about itself besides its graph (ModelProto.metadata_props).
struct OnnxModelInfo {
  std::string dataset;                   // "mnist", "fashion-mnist"
  std::vector<std::string> class_names;  // empty, or one per class
  int64_t epochs_done = 0;
};

// The serialized ModelProto. params holds graph.param_count() values in the graph's flat layout.
// Throws OnnxError when ONNX's checker or shape inference refuses the model (a bug, never input).
std::string onnx_model_bytes(const Graph& graph, std::span<const float> params,
                             const OnnxModelInfo& info);

// onnx_model_bytes written atomically to `file` (AtomicFile): the file is whole or not there.
void write_onnx_model(const std::filesystem::path& file, const Graph& graph,
                      std::span<const float> params, const OnnxModelInfo& info);

}  // namespace mg
