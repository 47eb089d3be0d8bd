#include "host/onnx_export.hpp"

#include <onnx/checker.h>
#include <onnx/onnx_pb.h>
#include <onnx/shape_inference/implementation.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <nlohmann/json.hpp>

#include "host/atomic_file.hpp"

namespace mg {
namespace {

constexpr const char* kInputName = "input";
constexpr const char* kOutputName = "probabilities";

void set_float_tensor_type(onnx::TypeProto* type, const std::vector<int64_t>& dims,
                           const char* batch_param) {
  onnx::TypeProto_Tensor* t = type->mutable_tensor_type();
  t->set_elem_type(onnx::TensorProto::FLOAT);
  onnx::TensorShapeProto* shape = t->mutable_shape();
  shape->add_dim()->set_dim_param(batch_param);
  for (const int64_t d : dims) shape->add_dim()->set_dim_value(d);
}

void set_ints(onnx::NodeProto* node, const char* name, std::initializer_list<int64_t> values) {
  onnx::AttributeProto* a = node->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INTS);
  for (const int64_t v : values) a->add_ints(v);
}

void set_int(onnx::NodeProto* node, const char* name, int64_t value) {
  onnx::AttributeProto* a = node->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INT);
  a->set_i(value);
}

// Appends nodes to the graph one layer at a time; `current_` is the tensor the next layer reads
// and `rank_` its rank (4 for NCHW maps, 2 once flattened).
class OnnxBuilder {
 public:
  OnnxBuilder(onnx::GraphProto* graph, std::span<const float> params)
      : graph_(graph), params_(params) {}

  void layer(const Layer& l, bool is_classifier) {
    switch (l.kind) {
      case LayerKind::kConv2d: conv2d(l); break;
      case LayerKind::kMaxPool: max_pool(l); break;
      case LayerKind::kDropout: break;  // inference: the identity (Keras, PyTorch eval())
      case LayerKind::kFlatten: flatten(l.name); break;
      case LayerKind::kDense: dense(l); break;
      case LayerKind::kRelu: break;  // l.relu: the Relu node below
      case LayerKind::kBatchNorm: batch_norm(l); break;
    }
    if (l.relu) relu(l.name);
    if (is_classifier) softmax(l.name);
  }

  const std::string& current() const { return current_; }

 private:
  // Conv2D K x K, stride 1, `pad` zeros each side ('same': (K-1)/2, 'valid': 0);
  // weight [out, in, K, K].
  void conv2d(const Layer& l) {
    const int64_t k = l.kernel, p = l.pad;
    onnx::NodeProto* n = node("Conv", l.name, {current_, weight(l, {l.out.c, l.in.c, k, k}), bias(l)});
    set_ints(n, "kernel_shape", {k, k});
    set_ints(n, "pads", {p, p, p, p});
    set_ints(n, "strides", {1, 1});
  }

  // 2x2, stride 2; ONNX's default floor rounding drops an odd last row/column, as our pool does.
  void max_pool(const Layer& l) {
    onnx::NodeProto* n = node("MaxPool", l.name, {current_});
    set_ints(n, "kernel_shape", {2, 2});
    set_ints(n, "strides", {2, 2});
  }

  // NCHW order, as the engine's flatten (a view of the contiguous map).
  void flatten(const std::string& name) {
    onnx::NodeProto* n = node("Flatten", name, {current_});
    set_int(n, "axis", 1);
    rank_ = 2;
  }

  // y = x W^T + b with W [out, in] (PyTorch's Linear): Gemm with transB.
  void dense(const Layer& l) {
    if (rank_ != 2) flatten(l.name + "/flatten");
    onnx::NodeProto* n =
        node("Gemm", l.name, {current_, weight(l, {l.out.c, l.in.size()}), bias(l)});
    set_int(n, "transB", 1);
  }

  // Inference: the moving statistics (ONNX's input_mean / input_var), epsilon 1e-3; over the
  // channels of an NCHW map, or the units of a flat [N, C] tensor.
  void batch_norm(const Layer& l) {
    const int64_t c = l.out.c;
    onnx::NodeProto* n =
        node("BatchNormalization", l.name,
             {current_, initializer(l.name + ".weight", {c}, l.weight_offset, c),
              initializer(l.name + ".bias", {c}, l.bias_offset, c),
              initializer(l.name + ".running_mean", {c}, l.stats_offset, c),
              initializer(l.name + ".running_var", {c}, l.stats_offset + c, c)});
    onnx::AttributeProto* a = n->add_attribute();
    a->set_name("epsilon");
    a->set_type(onnx::AttributeProto::FLOAT);
    a->set_f(static_cast<float>(kBatchNormEpsilon));
  }

  void relu(const std::string& name) { node("Relu", name + "/relu", {current_}); }

  void softmax(const std::string& name) {
    onnx::NodeProto* n = node("Softmax", name + "/softmax", {current_}, kOutputName);
    set_int(n, "axis", 1);
  }

  onnx::NodeProto* node(const char* op, const std::string& name,
                        std::initializer_list<std::string> inputs, const std::string& output = {}) {
    onnx::NodeProto* n = graph_->add_node();
    n->set_op_type(op);
    n->set_name(name);
    for (const std::string& in : inputs) n->add_input(in);
    current_ = output.empty() ? name + ":out" : output;
    n->add_output(current_);
    return n;
  }

  std::string weight(const Layer& l, std::initializer_list<int64_t> dims) {
    return initializer(l.name + ".weight", dims, l.weight_offset, l.weight_size);
  }
  std::string bias(const Layer& l) {
    return initializer(l.name + ".bias", {l.bias_size}, l.bias_offset, l.bias_size);
  }

  std::string initializer(const std::string& name, std::initializer_list<int64_t> dims,
                          int64_t offset, int64_t count) {
    onnx::TensorProto* t = graph_->add_initializer();
    t->set_name(name);
    t->set_data_type(onnx::TensorProto::FLOAT);
    for (const int64_t d : dims) t->add_dims(d);
    // raw_data is little-endian float32.
    std::string raw(static_cast<size_t>(count) * sizeof(float), '\0');
    std::memcpy(raw.data(), params_.data() + offset, raw.size());
    if constexpr (std::endian::native == std::endian::big) {
      for (size_t i = 0; i < raw.size(); i += 4) std::reverse(raw.begin() + i, raw.begin() + i + 4);
    }
    t->set_raw_data(std::move(raw));
    return name;
  }

  onnx::GraphProto* graph_;
  std::span<const float> params_;
  std::string current_ = kInputName;
  int rank_ = 4;
};

void add_metadata(onnx::ModelProto& model, const char* key, const std::string& value) {
  onnx::StringStringEntryProto* e = model.add_metadata_props();
  e->set_key(key);
  e->set_value(value);
}

std::string dims_text(const onnx::TypeProto& type) {
  std::string s = "[";
  for (const auto& d : type.tensor_type().shape().dim()) {
    if (s.size() > 1) s += ",";
    s += d.has_dim_param() ? d.dim_param() : std::to_string(d.dim_value());
  }
  return s + "]";
}

}  // namespace

std::string onnx_model_bytes(const Graph& graph, std::span<const float> params,
                             const OnnxModelInfo& info) {
  if (static_cast<int64_t>(params.size()) != graph.param_count()) {
    throw OnnxError("ONNX export: " + std::to_string(params.size()) + " parameters for a model of " +
                    std::to_string(graph.param_count()));
  }
  onnx::ModelProto model;
  model.set_ir_version(onnx::IR_VERSION);
  model.set_producer_name("mnist_gpu");
  model.set_producer_version("0.1.0");
  model.set_model_version(1);
  model.set_doc_string("mnist_gpu model " + graph.spec().to_string() +
                       ": input float32 [N, C, H, W], pixels / 255 (white digit on black, "
                       "MNIST-style: fitted to 20x20 and centred by mass in 28x28); output the "
                       "softmax probabilities [N, classes]");
  onnx::OperatorSetIdProto* opset = model.add_opset_import();
  opset->set_domain("");
  opset->set_version(kOnnxOpset);
  add_metadata(model, "spec", graph.spec().to_string());
  add_metadata(model, "dataset", info.dataset);
  add_metadata(model, "class_names", nlohmann::json(info.class_names).dump());
  add_metadata(model, "epochs", std::to_string(info.epochs_done));

  onnx::GraphProto* g = model.mutable_graph();
  g->set_name("mnist_gpu");
  const Shape in = graph.input();
  onnx::ValueInfoProto* input = g->add_input();
  input->set_name(kInputName);
  set_float_tensor_type(input->mutable_type(), {in.c, in.h, in.w}, "N");
  onnx::ValueInfoProto* output = g->add_output();
  output->set_name(kOutputName);
  set_float_tensor_type(output->mutable_type(), {graph.classes()}, "N");

  OnnxBuilder builder(g, params);
  const auto& layers = graph.layers();
  for (size_t i = 0; i < layers.size(); ++i) builder.layer(layers[i], i + 1 == layers.size());

  try {
    onnx::checker::check_model(model);
    // Strict shape inference: every node's shape must follow from the input's, and the output's
    // must be the one declared.
    onnx::ModelProto inferred = model;
    inferred.mutable_graph()->clear_output();
    onnx::shape_inference::InferShapes(inferred, onnx::OpSchemaRegistry::Instance(),
                                       onnx::ShapeInferenceOptions(true, 1, false));
    bool found = false;
    for (const onnx::ValueInfoProto& v : inferred.graph().value_info()) {
      if (v.name() != kOutputName) continue;
      found = true;
      if (dims_text(v.type()) != dims_text(output->type())) {
        throw OnnxError("ONNX export: inferred output shape " + dims_text(v.type()) + " is not " +
                        dims_text(output->type()));
      }
    }
    if (!found) throw OnnxError("ONNX export: shape inference did not reach the output");
  } catch (const OnnxError&) {
    throw;
  } catch (const std::exception& e) {
    throw OnnxError(std::string("ONNX export: the model does not check: ") + e.what());
  }
  std::string bytes;
  if (!model.SerializeToString(&bytes)) throw OnnxError("ONNX export: serialization failed");
  return bytes;
}

void write_onnx_model(const std::filesystem::path& file, const Graph& graph,
                      std::span<const float> params, const OnnxModelInfo& info) {
  const std::string bytes = onnx_model_bytes(graph, params, info);
  AtomicFile out(file);
  out.write(bytes);
  out.commit();
}

}  // namespace mg
