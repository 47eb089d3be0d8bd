// The checkpoint-to-spec match: a checkpoint whose tensors were written for one model while its
// metadata names another (or the same), with any input shape and class count. The input is four
// lines: the metadata's model_spec, its input_shape (JSON), its classes, and the spec the tensors
// are written for (empty: the first line). The file is made here, in memory, with the tensors of
// that second model (zeros), and read by load_checkpoint: it must either load, with buffers of
// the metadata model's size, or fail with CheckpointError. This reaches Graph::build with shapes
// and class counts that no MNIST file has, and every tensor name and shape test.
#include <cstring>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/graph.hpp"
#include "host/checkpoint.hpp"
#include "tests/fuzz/fuzz_target.hpp"

namespace {

std::vector<std::string> split_lines(std::string_view text, size_t n) {
  std::vector<std::string> lines;
  while (lines.size() + 1 < n) {
    const size_t end = text.find('\n');
    if (end == std::string_view::npos) break;
    lines.emplace_back(text.substr(0, end));
    text.remove_prefix(end + 1);
  }
  lines.emplace_back(text);
  lines.resize(n);
  return lines;
}

// The graph the tensors are written for, when it builds and is small enough to write out.
std::optional<mg::Graph> tensor_graph(const std::string& spec, const std::string& input,
                                      const std::string& classes) {
  try {
    mg::Shape shape{1, 28, 28};
    const nlohmann::json j = nlohmann::json::parse(input, nullptr, false);
    if (j.is_array() && j.size() == 3 && j[0].is_number_unsigned() && j[1].is_number_unsigned() &&
        j[2].is_number_unsigned()) {
      shape = {j[0].get<int64_t>(), j[1].get<int64_t>(), j[2].get<int64_t>()};
      if (shape.c < 1 || shape.h < 1 || shape.w < 1 || shape.c > 64 || shape.h > 512 ||
          shape.w > 512) {
        return std::nullopt;
      }
    }
    int n = 10;
    if (!classes.empty() && classes.size() < 6 &&
        classes.find_first_not_of("0123456789") == std::string::npos) {
      n = std::stoi(classes);
    }
    if (n < 1) return std::nullopt;
    mg::Graph g = mg::Graph::build(mg::ModelSpec::parse(spec), shape, n);
    if (g.param_count() > (1 << 18)) return std::nullopt;
    return g;
  } catch (const mg::SpecError&) {
    return std::nullopt;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::vector<std::string> line =
      split_lines(std::string_view(reinterpret_cast<const char*>(data), size), 4);
  const std::string& tensor_spec = line[3].empty() ? line[0] : line[3];

  nlohmann::json header = nlohmann::json::object();
  header["__metadata__"] = {
      {"format", "mnist_gpu/1"}, {"model_spec", line[0]}, {"input_shape", line[1]},
      {"classes", line[2]},      {"class_names", "[]"},   {"dataset", "mnist"},
      {"step", "0"},             {"epochs_done", "0"},    {"seed", "42"},
      {"batch_size", "128"},     {"lr", "0.001"},         {"adam_beta1", "0.9"},
      {"adam_beta2", "0.999"},   {"adam_epsilon", "1e-07"}};
  uint64_t end = 0;
  if (const auto g = tensor_graph(tensor_spec, line[1], line[2])) {
    for (const mg::Layer& l : g->layers()) {
      if (!l.has_params()) continue;
      const std::vector<int64_t> weight =
          l.kind == mg::LayerKind::kConv2d
              ? std::vector<int64_t>{l.out.c, l.in.c, l.kernel, l.kernel}
              : std::vector<int64_t>{l.out.c, l.in.size()};
      for (const auto& [suffix, shape, count] :
           {std::tuple{".weight", weight, l.weight_size},
            std::tuple{".bias", std::vector<int64_t>{l.bias_size}, l.bias_size}}) {
        const uint64_t begin = end;
        end += static_cast<uint64_t>(count) * 4;
        header[l.name + suffix] = {{"dtype", "F32"}, {"shape", shape}, {"data_offsets", {begin, end}}};
      }
    }
  }
  const std::string text = header.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  std::vector<uint8_t> file(8 + text.size() + end, 0);
  for (int i = 0; i < 8; ++i) file[i] = static_cast<uint8_t>(text.size() >> (8 * i));
  std::memcpy(file.data() + 8, text.data(), text.size());

  try {
    const mg::Checkpoint ck = mg::load_checkpoint(std::span<const uint8_t>(file), "fuzz.safetensors");
    const mg::Graph g =
        mg::Graph::build(mg::ModelSpec::parse(ck.meta.spec), ck.meta.input, ck.meta.classes);
    MG_FUZZ_CHECK(ck.state.params.size() == static_cast<size_t>(g.param_count()));
    MG_FUZZ_CHECK(!ck.has_optimizer_state);
  } catch (const mg::CheckpointError&) {
  }
  return 0;
}
