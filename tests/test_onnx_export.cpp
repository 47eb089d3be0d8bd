// The ONNX exporter: the graph it builds for every layer kind, the tensors it carries (bit for bit
// the checkpoint's), and the file it writes. Numerics against real runtimes (onnxruntime-web, the
// python onnx checker) are checked by tests/onnx_runtime.mjs.
#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "host/atomic_file.hpp"
#include "host/checkpoint.hpp"
#include "host/export.hpp"
#include "host/onnx_export.hpp"

namespace mg {
namespace {

namespace fs = std::filesystem;

std::vector<float> random_params(const Graph& g, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-0.5f, 0.5f);
  std::vector<float> p(static_cast<size_t>(g.param_count()));
  for (float& v : p) v = dist(rng);
  return p;
}

onnx::ModelProto parse(const std::string& bytes) {
  onnx::ModelProto m;
  EXPECT_TRUE(m.ParseFromString(bytes));
  return m;
}

std::vector<std::string> ops(const onnx::ModelProto& m) {
  std::vector<std::string> out;
  for (const auto& n : m.graph().node()) out.push_back(n.op_type());
  return out;
}

std::vector<std::string> dims(const onnx::ValueInfoProto& v) {
  std::vector<std::string> out;
  for (const auto& d : v.type().tensor_type().shape().dim()) {
    out.push_back(d.has_dim_param() ? d.dim_param() : std::to_string(d.dim_value()));
  }
  return out;
}

const onnx::AttributeProto* attribute(const onnx::NodeProto& n, const std::string& name) {
  for (const auto& a : n.attribute()) {
    if (a.name() == name) return &a;
  }
  return nullptr;
}

struct Case {
  const char* spec;
  std::vector<std::string> ops;
};

TEST(OnnxExport, EveryLayerKindBecomesItsNodes) {
  const std::vector<Case> cases = {
      {"conv32,pool,conv64,pool,drop0.25,flatten,dense128,drop0.5",
       {"Conv", "Relu", "MaxPool", "Conv", "Relu", "MaxPool", "Flatten", "Gemm", "Relu", "Gemm",
        "Softmax"}},
      {"dense16", {"Flatten", "Gemm", "Relu", "Gemm", "Softmax"}},
      {"conv4,conv6,dense8", {"Conv", "Relu", "Conv", "Relu", "Flatten", "Gemm", "Relu", "Gemm", "Softmax"}},
      // 28 -> 14 -> 7 -> 3: the odd row and column dropped, as the engine does.
      {"conv3,pool,pool,pool,drop0.3,dense12,dense8",
       {"Conv", "Relu", "MaxPool", "MaxPool", "MaxPool", "Flatten", "Gemm", "Relu", "Gemm", "Relu",
        "Gemm", "Softmax"}},
      {"flatten,drop0.5,dense5", {"Flatten", "Gemm", "Relu", "Gemm", "Softmax"}},
      // Kernel sizes and paddings; no Relu after an 'n' layer, a Relu node for the relu layer.
      {"conv32k5v,pool,conv64k3vn,relu,conv8k7n,conv4k1,dense16n,relu",
       {"Conv", "Relu", "MaxPool", "Conv", "Relu", "Conv", "Conv", "Relu", "Flatten", "Gemm", "Relu",
        "Gemm", "Softmax"}},
      {"conv8n,dense4n", {"Conv", "Flatten", "Gemm", "Gemm", "Softmax"}},
      // Batch normalization over the channels of a map and over the units of a dense layer.
      {"conv8n,bn,relu,pool,dense16n,bn,relu",
       {"Conv", "BatchNormalization", "Relu", "MaxPool", "Flatten", "Gemm", "BatchNormalization",
        "Relu", "Gemm", "Softmax"}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.spec);
    const Graph g = Graph::build(ModelSpec::parse(c.spec));
    const auto params = random_params(g, 3);
    const onnx::ModelProto m =
        parse(onnx_model_bytes(g, params, {"mnist", {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}, 2}));
    EXPECT_EQ(ops(m), c.ops);
    ASSERT_EQ(m.opset_import_size(), 1);
    EXPECT_EQ(m.opset_import(0).domain(), "");
    EXPECT_EQ(m.opset_import(0).version(), 17);
    EXPECT_EQ(m.ir_version(), onnx::IR_VERSION);
    ASSERT_EQ(m.graph().input_size(), 1);
    ASSERT_EQ(m.graph().output_size(), 1);
    EXPECT_EQ(m.graph().input(0).name(), "input");
    EXPECT_EQ(dims(m.graph().input(0)), (std::vector<std::string>{"N", "1", "28", "28"}));
    EXPECT_EQ(m.graph().output(0).name(), "probabilities");
    EXPECT_EQ(dims(m.graph().output(0)), (std::vector<std::string>{"N", "10"}));
    EXPECT_EQ(m.graph().node(m.graph().node_size() - 1).output(0), "probabilities");

    // Every weight and bias under its checkpoint name, shape and bytes.
    int tensors = 0;
    for (const Layer& l : g.layers()) {
      if (!l.has_params()) continue;
      for (const bool is_weight : {true, false}) {
        const std::string name = l.name + (is_weight ? ".weight" : ".bias");
        const onnx::TensorProto* t = nullptr;
        for (const auto& init : m.graph().initializer()) {
          if (init.name() == name) t = &init;
        }
        ASSERT_NE(t, nullptr) << name;
        ++tensors;
        std::vector<int64_t> want;
        if (!is_weight) want = {l.bias_size};
        else if (l.kind == LayerKind::kConv2d) want = {l.out.c, l.in.c, l.kernel, l.kernel};
        else if (l.kind == LayerKind::kBatchNorm) want = {l.out.c};
        else want = {l.out.c, l.in.size()};
        EXPECT_EQ(std::vector<int64_t>(t->dims().begin(), t->dims().end()), want) << name;
        EXPECT_EQ(t->data_type(), onnx::TensorProto::FLOAT);
        const int64_t offset = is_weight ? l.weight_offset : l.bias_offset;
        const int64_t count = is_weight ? l.weight_size : l.bias_size;
        ASSERT_EQ(t->raw_data().size(), static_cast<size_t>(count) * 4) << name;
        EXPECT_EQ(std::memcmp(t->raw_data().data(), params.data() + offset, t->raw_data().size()), 0)
            << name;
      }
      if (l.kind != LayerKind::kBatchNorm) continue;
      // The moving statistics, as ONNX's input_mean and input_var.
      for (const bool is_mean : {true, false}) {
        const std::string name = l.name + (is_mean ? ".running_mean" : ".running_var");
        const onnx::TensorProto* t = nullptr;
        for (const auto& init : m.graph().initializer()) {
          if (init.name() == name) t = &init;
        }
        ASSERT_NE(t, nullptr) << name;
        ++tensors;
        const int64_t offset = l.stats_offset + (is_mean ? 0 : l.out.c);
        ASSERT_EQ(t->raw_data().size(), static_cast<size_t>(l.out.c) * 4) << name;
        EXPECT_EQ(std::memcmp(t->raw_data().data(), params.data() + offset, t->raw_data().size()), 0)
            << name;
      }
    }
    EXPECT_EQ(tensors, m.graph().initializer_size());

    for (const auto& n : m.graph().node()) {
      if (n.op_type() == "Conv") {
        const Layer* l = nullptr;
        for (const Layer& layer : g.layers()) {
          if (layer.name == n.name()) l = &layer;
        }
        ASSERT_NE(l, nullptr) << n.name();
        const int64_t k = l->kernel, p = l->pad;
        ASSERT_NE(attribute(n, "pads"), nullptr);
        EXPECT_EQ(std::vector<int64_t>(attribute(n, "pads")->ints().begin(), attribute(n, "pads")->ints().end()),
                  (std::vector<int64_t>{p, p, p, p}));
        ASSERT_NE(attribute(n, "kernel_shape"), nullptr);
        EXPECT_EQ(std::vector<int64_t>(attribute(n, "kernel_shape")->ints().begin(),
                                       attribute(n, "kernel_shape")->ints().end()),
                  (std::vector<int64_t>{k, k}));
      }
      if (n.op_type() == "MaxPool") {
        EXPECT_EQ(attribute(n, "strides")->ints(0), 2);
        EXPECT_EQ(attribute(n, "ceil_mode"), nullptr);  // floor: the odd edge is dropped
      }
      if (n.op_type() == "Gemm") {
        EXPECT_EQ(attribute(n, "transB")->i(), 1);
      }
      if (n.op_type() == "BatchNormalization") {
        ASSERT_NE(attribute(n, "epsilon"), nullptr);
        EXPECT_FLOAT_EQ(attribute(n, "epsilon")->f(), 1e-3f);
        EXPECT_EQ(attribute(n, "training_mode"), nullptr);  // inference: the moving statistics
        ASSERT_EQ(n.input_size(), 5);
        EXPECT_EQ(n.input(3), n.name() + ".running_mean");
        EXPECT_EQ(n.input(4), n.name() + ".running_var");
      }
      if (n.op_type() == "Softmax") {
        EXPECT_EQ(attribute(n, "axis")->i(), 1);
      }
      EXPECT_NE(n.op_type(), "Dropout");
    }
    bool has_classes = false;
    for (const auto& e : m.metadata_props()) has_classes |= e.key() == "class_names";
    EXPECT_TRUE(has_classes);
  }
}

TEST(OnnxExport, RefusesParametersOfAnotherModel) {
  const Graph g = Graph::build(ModelSpec::parse("dense8"));
  std::vector<float> params(static_cast<size_t>(g.param_count()) - 1);
  EXPECT_THROW(onnx_model_bytes(g, params, {}), OnnxError);
}

class ExportFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("mg_onnx_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path checkpoint(const char* spec) {
    const Graph g = Graph::build(ModelSpec::parse(spec));
    TrainingState s;
    s.params = random_params(g, 5);
    CheckpointMeta meta;
    meta.dataset = "fashion-mnist";
    meta.class_names = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                        "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
    const fs::path p = dir_ / (std::string(spec) + ".safetensors");
    save_checkpoint(p, g, s, meta);
    return p;
  }
  static std::string read(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
  }
  fs::path dir_;
};

TEST_F(ExportFiles, WritesTheCheckpointAsOnnxAtomically) {
  const fs::path ckpt = checkpoint("conv2,pool,dense4");
  const fs::path out = dir_ / "model.onnx";
  std::ostringstream log;
  run_export({ckpt, out, false}, log);
  EXPECT_NE(log.str().find("opset 17"), std::string::npos) << log.str();
  const onnx::ModelProto m = parse(read(out));
  EXPECT_EQ(ops(m).back(), "Softmax");
  std::string classes;
  for (const auto& e : m.metadata_props()) {
    if (e.key() == "class_names") classes = e.value();
  }
  EXPECT_NE(classes.find("Ankle boot"), std::string::npos);
  // No temporary file is left beside it.
  int files = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir_)) ++files;
  EXPECT_EQ(files, 2);

  // An existing file is refused without --force, and kept as it was.
  write_file_atomic(out, "previous");
  EXPECT_THROW(run_export({ckpt, out, false}, log), FileError);
  EXPECT_EQ(read(out), "previous");
  run_export({ckpt, out, true}, log);
  EXPECT_TRUE(parse(read(out)).has_graph());

  // A folder that is not there: an error naming the file, nothing created.
  const fs::path nowhere = dir_ / "missing" / "model.onnx";
  try {
    run_export({ckpt, nowhere, false}, log);
    FAIL() << "wrote into a missing folder";
  } catch (const FileError& e) {
    EXPECT_NE(std::string(e.what()).find(nowhere.string()), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(dir_ / "missing"));
}

}  // namespace
}  // namespace mg
