#include "host/checkpoint.hpp"

#include "host/atomic_file.hpp"
#include "host/training_controls.hpp"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <system_error>

namespace mg {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// Tensors go to and from the file as the host's floats, in bulk.
static_assert(std::endian::native == std::endian::little,
              "checkpoint I/O assumes a little-endian host");

// The safetensors reference caps its header at 100 MB; ours are a few kB.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
// Bounds on metadata numbers, so a corrupt value is an error and never a huge graph.
constexpr int64_t kMaxDim = int64_t{1} << 16;
constexpr int64_t kMaxCount = int64_t{1} << 62;

[[noreturn]] void fail(const fs::path& path, const std::string& problem) {
  throw CheckpointError(path.string() + ": " + problem);
}

std::string errno_text(int err) { return std::generic_category().message(err); }

// One tensor of the file and where it lives in TrainingState.
struct Slot {
  std::string name;
  std::vector<int64_t> shape;
  int buffer = 0;  // 0 params, 1 adam_m, 2 adam_v, 3 early stopping's best parameters,
                   // 4 a BN layer's num_batches_tracked (int64, derived from the step)
  int64_t offset = 0, size = 0;
  bool int64() const { return buffer == kCountBuffer; }
  uint64_t bytes() const { return static_cast<uint64_t>(size) * (int64() ? 8 : 4); }
  static constexpr int kCountBuffer = 4;
};

constexpr std::array<const char*, 4> kBufferPrefix = {"", "optimizer.adam_m.", "optimizer.adam_v.",
                                                     "early_stopping.best."};

// Model tensors in graph order (weight, bias per layer; a BN layer's running_mean, running_var
// and num_batches_tracked after them, as PyTorch's state_dict has them), then the Adam moments of
// the trainable ones (the moving statistics are not trained), then early stopping's best
// parameters (the moving statistics included).
std::vector<Slot> tensor_slots(const Graph& g, bool optimizer, bool restore) {
  std::vector<Slot> slots;
  for (int b = 0; b < 4; ++b) {
    if ((b == 1 || b == 2) && !optimizer) continue;
    if (b == 3 && !restore) continue;
    for (const Layer& l : g.layers()) {
      if (!l.has_params()) continue;
      const std::vector<int64_t> weight_shape =
          l.kind == LayerKind::kConv2d  ? std::vector<int64_t>{l.out.c, l.in.c, l.kernel, l.kernel}
          : l.kind == LayerKind::kDense ? std::vector<int64_t>{l.out.c, l.in.size()}
                                        : std::vector<int64_t>{l.weight_size};
      slots.push_back(
          {kBufferPrefix[b] + l.name + ".weight", weight_shape, b, l.weight_offset, l.weight_size});
      slots.push_back(
          {kBufferPrefix[b] + l.name + ".bias", {l.bias_size}, b, l.bias_offset, l.bias_size});
      if (l.stats_size == 0 || b == 1 || b == 2) continue;
      const int64_t c = l.stats_size / 2;
      slots.push_back({kBufferPrefix[b] + l.name + ".running_mean", {c}, b, l.stats_offset, c});
      slots.push_back({kBufferPrefix[b] + l.name + ".running_var", {c}, b, l.stats_offset + c, c});
      if (b == 0) {
        slots.push_back({l.name + ".num_batches_tracked", {}, Slot::kCountBuffer, 0, 1});
      }
    }
  }
  return slots;
}

// Where each buffer starts in the data section, in the order save_checkpoint writes them: the
// parameters, the num_batches_tracked counts, the Adam moments (trainable prefix), the best
// parameters.
struct Layout {
  std::array<uint64_t, 5> base{};
  uint64_t end = 0;
};

Layout data_layout(const Graph& g, bool optimizer, bool restore) {
  const auto p = static_cast<uint64_t>(g.param_count()) * 4;
  const auto t = static_cast<uint64_t>(g.trainable_count()) * 4;
  uint64_t counts = 0;
  for (const Layer& l : g.layers()) counts += l.stats_size > 0 ? 8 : 0;
  Layout out;
  out.base[0] = 0;
  out.base[Slot::kCountBuffer] = p;
  out.base[1] = p + counts;
  out.base[2] = out.base[1] + (optimizer ? t : 0);
  out.base[3] = out.base[2] + (optimizer ? t : 0);
  out.end = out.base[3] + (restore ? p : 0);
  return out;
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ',';
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

std::string double_text(double v) {
  std::array<char, 32> buf{};
  const auto [end, ec] =
      std::to_chars(buf.data(), buf.data() + buf.size(), v);  // shortest round trip
  return ec == std::errc() ? std::string(buf.data(), end) : std::to_string(v);
}

// A header value as JSON text for a one-line message: escaped and cut short. Only strings and
// flat lists of numbers are printed (dump() recurses, and a hostile header nests deeply).
std::string json_text(const json& j) {
  const bool flat = j.is_primitive() ||
                    (j.is_array() &&
                     std::all_of(j.begin(), j.end(), [](const json& e) { return e.is_number(); }));
  if (!flat) return j.is_array() ? "a list of non-numbers" : "a JSON object";
  const std::string text = j.dump(-1, ' ', true, json::error_handler_t::replace);
  return text.size() > 60 ? text.substr(0, 60) + "..." : text;
}

// --- save ----------------------------------------------------------------------------------------

std::string header_json(const fs::path& path, const Graph& graph, const CheckpointMeta& meta,
                        int64_t step, const std::vector<Slot>& slots, const Layout& layout) {
  json header = json::object();
  json md = json::object();
  md["format"] = std::string(kCheckpointFormat);
  md["model_spec"] = graph.spec().to_string();
  const Shape in = graph.input();
  md["input_shape"] = json::array({in.c, in.h, in.w}).dump();
  md["classes"] = std::to_string(graph.classes());
  md["class_names"] = json(meta.class_names).dump();
  md["dataset"] = meta.dataset;
  md["step"] = std::to_string(step);
  md["epochs_done"] = std::to_string(meta.epochs_done);
  md["seed"] = std::to_string(meta.seed);
  md["batch_size"] = std::to_string(meta.batch_size);
  md["lr"] = double_text(meta.lr);
  md["adam_beta1"] = double_text(meta.adam_beta1);
  md["adam_beta2"] = double_text(meta.adam_beta2);
  md["adam_epsilon"] = double_text(meta.adam_epsilon);
  md["weight_decay"] = double_text(meta.weight_decay);
  md["l2"] = double_text(meta.l2);
  md["augment"] = meta.augment.enabled ? "1" : "0";
  md["augment_max_shift"] = double_text(meta.augment.max_shift);
  md["augment_max_rotation_deg"] = double_text(meta.augment.max_rotation_deg);
  if (!meta.training_controls.empty()) md["training_controls"] = meta.training_controls;
  if (meta.epoch_position.steps_done > 0) {
    const EpochPosition& p = meta.epoch_position;
    md["epoch_steps_done"] = std::to_string(p.steps_done);
    md["epoch_loss_sum"] = double_text(p.loss_sum);
    md["epoch_correct_sum"] = double_text(p.correct_sum);
    md["epoch_sample_sum"] = double_text(p.sample_sum);
    if (p.l2_sum != 0) md["epoch_l2_sum"] = double_text(p.l2_sum);
  }
  header["__metadata__"] = std::move(md);
  uint64_t count_index = 0;
  for (const Slot& s : slots) {
    const uint64_t begin = layout.base[s.buffer] +
                           (s.int64() ? 8 * count_index++ : static_cast<uint64_t>(s.offset) * 4);
    header[s.name] = {{"dtype", s.int64() ? "I64" : "F32"},
                      {"shape", s.shape},
                      {"data_offsets", {begin, begin + s.bytes()}}};
  }
  try {
    std::string text = header.dump();
    text.append((8 - text.size() % 8) % 8, ' ');  // as the reference: the data starts 8-aligned
    return text;
  } catch (const json::exception&) {
    fail(path, "class names and dataset name must be valid UTF-8");
  }
}

class MetaReader {
 public:
  MetaReader(const fs::path& path, const json& md) : path_(path), md_(md) {}

  const std::string& text(const char* key) const {
    const auto it = md_.find(key);
    if (it == md_.end()) fail(path_, std::string("metadata has no '") + key + "'");
    return it->get_ref<const std::string&>();  // every value was checked to be a string
  }

  int64_t integer(const char* key, int64_t lo, int64_t hi) const {
    const std::string& s = text(key);
    int64_t v = 0;
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || end != s.data() + s.size() || v < lo || v > hi) {
      bad(key, s, "a whole number in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    }
    return v;
  }

  uint64_t unsigned_integer(const char* key) const {
    const std::string& s = text(key);
    uint64_t v = 0;
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || end != s.data() + s.size()) bad(key, s, "an unsigned 64-bit number");
    return v;
  }

  double real(const char* key) const {
    const std::string& s = text(key);
    char* end = nullptr;
    // strtod would skip leading blanks; a value written by save_checkpoint has none.
    const bool blank = s.empty() || std::isspace(static_cast<unsigned char>(s.front()));
    const double v = blank ? NAN : std::strtod(s.c_str(), &end);
    if (end != s.c_str() + s.size() || !std::isfinite(v)) bad(key, s, "a finite number");
    return v;
  }

  json embedded_json(const char* key) const {
    const std::string& s = text(key);
    json j;
    try {
      j = json::parse(s);
    } catch (const json::exception&) {
      bad(key, s, "JSON");
    }
    return j;
  }

  [[noreturn]] void bad(const char* key, const std::string& value,
                        const std::string& expected) const {
    fail(path_,
         std::string("metadata '") + key + "' is " + json_text(value) + ", expected " + expected);
  }

 private:
  const fs::path& path_;
  const json& md_;
};

CheckpointMeta read_meta(const fs::path& path, const json& header) {
  const auto it = header.find("__metadata__");
  if (it == header.end()) fail(path, "header has no __metadata__: not a mnist_gpu checkpoint");
  if (!it->is_object()) fail(path, "__metadata__ is not a JSON object");
  for (const auto& [key, value] : it->items()) {
    if (!value.is_string()) fail(path, "metadata '" + key + "' is not a string");
  }
  const MetaReader r(path, *it);
  if (!it->contains("format")) fail(path, "metadata has no 'format': not a mnist_gpu checkpoint");
  if (r.text("format") != kCheckpointFormat) {
    r.bad("format", r.text("format"),
          "'" + std::string(kCheckpointFormat) + "' (a newer mnist_gpu?)");
  }
  CheckpointMeta m;
  m.spec = r.text("model_spec");
  const json in = r.embedded_json("input_shape");
  if (!in.is_array() || in.size() != 3 || !std::all_of(in.begin(), in.end(), [](const json& d) {
        return d.is_number_unsigned() && d.get<uint64_t>() >= 1 && d.get<uint64_t>() <= kMaxDim;
      })) {
    r.bad("input_shape", r.text("input_shape"), "[C,H,W] with each size in [1, 65536]");
  }
  m.input = {in[0].get<int64_t>(), in[1].get<int64_t>(), in[2].get<int64_t>()};
  m.classes = static_cast<int>(r.integer("classes", 1, kMaxDim));
  const json names = r.embedded_json("class_names");
  if (!names.is_array() ||
      !std::all_of(names.begin(), names.end(), [](const json& n) { return n.is_string(); }) ||
      (!names.empty() && names.size() != static_cast<size_t>(m.classes))) {
    r.bad("class_names", r.text("class_names"),
          "a JSON list of " + std::to_string(m.classes) + " strings, or []");
  }
  m.class_names = names.get<std::vector<std::string>>();
  m.dataset = r.text("dataset");
  m.epochs_done = r.integer("epochs_done", 0, kMaxCount);
  m.seed = r.unsigned_integer("seed");
  m.batch_size = r.integer("batch_size", 1, std::numeric_limits<int32_t>::max());
  m.lr = r.real("lr");
  m.adam_beta1 = r.real("adam_beta1");
  m.adam_beta2 = r.real("adam_beta2");
  m.adam_epsilon = r.real("adam_epsilon");
  // Optional: a file without them was trained with neither (plain Adam, no penalty).
  for (const auto& [key, value] : {std::pair{"weight_decay", &m.weight_decay}, std::pair{"l2", &m.l2}}) {
    if (!it->contains(key)) continue;
    *value = r.real(key);
    if (!(*value >= 0) || !std::isfinite(*value)) {
      r.bad(key, r.text(key), "a finite number >= 0");
    }
  }
  // Optional: a file without them was trained without augmentation.
  if (it->contains("augment")) {
    m.augment.enabled = r.integer("augment", 0, 1) == 1;
    m.augment.max_shift = static_cast<float>(r.real("augment_max_shift"));
    m.augment.max_rotation_deg = static_cast<float>(r.real("augment_max_rotation_deg"));
  }
  if (it->contains("training_controls")) {
    m.training_controls = r.text("training_controls");
    try {
      TrainingControls::from_json(m.training_controls);
    } catch (const std::invalid_argument& e) {
      fail(path, std::string("metadata ") + e.what());
    }
  }
  // Optional: absent in a checkpoint taken at an epoch boundary.
  if (it->contains("epoch_steps_done")) {
    EpochPosition& p = m.epoch_position;
    p.steps_done = r.integer("epoch_steps_done", 1, kMaxCount);
    p.loss_sum = r.real("epoch_loss_sum");
    p.correct_sum = r.real("epoch_correct_sum");
    p.sample_sum = r.real("epoch_sample_sum");
    if (it->contains("epoch_l2_sum")) {
      p.l2_sum = r.real("epoch_l2_sum");
      if (!(p.l2_sum >= 0)) r.bad("epoch_l2_sum", r.text("epoch_l2_sum"), "a sum >= 0");
    }
    if (!(p.loss_sum >= 0)) r.bad("epoch_loss_sum", r.text("epoch_loss_sum"), "a sum >= 0");
    if (!(p.sample_sum >= 1)) r.bad("epoch_sample_sum", r.text("epoch_sample_sum"), "a count >= 1");
    if (!(p.correct_sum >= 0 && p.correct_sum <= p.sample_sum)) {
      r.bad("epoch_correct_sum", r.text("epoch_correct_sum"),
            "a count in [0, epoch_sample_sum]");
    }
  }
  return m;
}

struct Found {
  const Slot* slot;
  uint64_t begin, end;
};

}  // namespace

void save_checkpoint(const fs::path& path, const Graph& graph, const TrainingState& state,
                     const CheckpointMeta& meta, std::span<const float> restore) {
  const auto n = static_cast<size_t>(graph.param_count());
  if (state.params.size() != n) {
    fail(path, "cannot save " + std::to_string(state.params.size()) +
                   " parameters; the model has " + std::to_string(n));
  }
  const bool optimizer = !state.adam_m.empty() || !state.adam_v.empty();
  if (optimizer && (state.adam_m.size() != n || state.adam_v.size() != n)) {
    fail(path, "cannot save Adam moments of " + std::to_string(state.adam_m.size()) + " and " +
                   std::to_string(state.adam_v.size()) + " values; the model has " +
                   std::to_string(n));
  }
  if (state.step < 0 || meta.epochs_done < 0 || meta.batch_size < 1) {
    fail(path, "cannot save a negative step or epoch count, or a batch size below 1");
  }
  const std::string spec = graph.spec().to_string();
  if (!meta.spec.empty()) {
    std::string given;
    try {
      given = ModelSpec::parse(meta.spec).to_string();
    } catch (const SpecError& e) {
      fail(path, e.what());
    }
    if (given != spec)
      fail(path, "metadata spec '" + meta.spec + "' is not the graph's '" + spec + "'");
  }
  if (meta.input != graph.input() || meta.classes != graph.classes()) {
    fail(path, "metadata input shape or class count does not match the graph's");
  }
  if (!meta.class_names.empty() &&
      meta.class_names.size() != static_cast<size_t>(graph.classes())) {
    fail(path, std::to_string(meta.class_names.size()) + " class names for " +
                   std::to_string(graph.classes()) + " classes");
  }

  if (!restore.empty() && restore.size() != n) {
    fail(path, "cannot save " + std::to_string(restore.size()) +
                   " best parameters; the model has " + std::to_string(n));
  }
  const std::vector<Slot> slots = tensor_slots(graph, optimizer, !restore.empty());
  const Layout layout = data_layout(graph, optimizer, !restore.empty());
  const std::string header = header_json(path, graph, meta, state.step, slots, layout);
  std::array<unsigned char, 8> length{};
  for (int i = 0; i < 8; ++i) length[i] = static_cast<unsigned char>(header.size() >> (8 * i));

  try {
    AtomicFile file(path);
    file.write(length.data(), length.size());
    file.write(header);
    // As data_layout() places them: each buffer is one contiguous write. PyTorch counts a BN
    // layer's training batches; here every training step is one, so the count is the step.
    file.write(state.params.data(), state.params.size() * sizeof(float));
    for (const Layer& l : graph.layers()) {
      if (l.stats_size > 0) file.write(&state.step, sizeof(state.step));
    }
    const auto trainable = static_cast<size_t>(graph.trainable_count());
    for (const auto* buf : {&state.adam_m, &state.adam_v}) {
      if (!buf->empty()) file.write(buf->data(), trainable * sizeof(float));
    }
    if (!restore.empty()) file.write(restore.data(), restore.size() * sizeof(float));
    file.commit();
  } catch (const FileError& e) {
    throw CheckpointError(e.what());
  }
}

namespace {

// The bytes of a checkpoint, read at offsets: from a file or from memory.
struct CheckpointBytes {
  uint64_t size = 0;
  std::function<bool(uint64_t offset, char* dst, size_t n)> read;
};

Checkpoint load_checkpoint_bytes(const fs::path& path, const CheckpointBytes& in) {
  const uint64_t file_size = in.size;
  if (file_size < 8) {
    fail(path,
         "only " + std::to_string(file_size) + " bytes, too short for a safetensors header length");
  }
  std::array<unsigned char, 8> length{};
  if (!in.read(0, reinterpret_cast<char*>(length.data()), 8)) fail(path, "read failed");
  uint64_t header_size = 0;
  for (int i = 0; i < 8; ++i) header_size |= uint64_t{length[i]} << (8 * i);
  if (header_size > kMaxHeaderBytes) {
    fail(path, "header length " + std::to_string(header_size) +
                   " is over the 100 MB limit: not a safetensors file");
  }
  if (header_size > file_size - 8) {
    fail(path, "header length " + std::to_string(header_size) + " runs past the end of the file (" +
                   std::to_string(file_size) + " bytes)");
  }
  std::string text(header_size, '\0');
  if (!in.read(8, text.data(), header_size)) fail(path, "read failed");
  json header;
  try {
    header = json::parse(text);
  } catch (const json::parse_error& e) {
    fail(path, "header is not valid JSON (error at byte " + std::to_string(e.byte) + " of " +
                   std::to_string(header_size) + ")");
  } catch (const json::exception&) {  // a number too large for a double, say
    fail(path, "header is not valid JSON (a value out of range)");
  }
  if (!header.is_object()) fail(path, "header is not a JSON object");

  Checkpoint ck;
  ck.meta = read_meta(path, header);
  ck.state.step = MetaReader(path, header.at("__metadata__")).integer("step", 0, kMaxCount);
  std::optional<Graph> graph;
  try {
    const ModelSpec spec = ModelSpec::parse(ck.meta.spec);
    graph = Graph::build(spec, ck.meta.input, ck.meta.classes);
    ck.meta.spec = spec.to_string();
  } catch (const SpecError& e) {
    fail(path, std::string("bad model in metadata: ") + e.what());
  }

  const std::vector<Slot> slots = tensor_slots(*graph, true, true);
  std::map<std::string, const Slot*, std::less<>> by_name;
  for (const Slot& s : slots) by_name[s.name] = &s;
  const uint64_t data_size = file_size - 8 - header_size;
  std::vector<Found> found;
  for (const auto& [name, t] : header.items()) {
    if (name == "__metadata__") continue;
    const auto it = by_name.find(name);
    if (it == by_name.end()) {
      fail(path, "tensor '" + name + "' is not in the model '" + ck.meta.spec + "'");
    }
    const Slot& s = *it->second;
    const std::string what = "tensor '" + name + "'";
    if (!t.is_object()) fail(path, what + " is not a JSON object");
    const auto dtype = t.find("dtype");
    if (dtype == t.end() || !dtype->is_string()) fail(path, what + " has no dtype");
    if (*dtype != (s.int64() ? "I64" : "F32")) {
      fail(path, what + " has dtype " + json_text(*dtype) +
                     (s.int64() ? "; a batch count is I64" : "; mnist_gpu's tensors are F32"));
    }
    const auto shape = t.find("shape");
    if (shape == t.end() || !shape->is_array()) fail(path, what + " has no shape");
    const bool shape_ok =
        shape->size() == s.shape.size() &&
        std::equal(s.shape.begin(), s.shape.end(), shape->begin(), [](int64_t want, const json& d) {
          return d.is_number_unsigned() && d.get<uint64_t>() == static_cast<uint64_t>(want);
        });
    if (!shape_ok) {
      fail(path, what + " has shape " + json_text(*shape) + "; the model '" + ck.meta.spec +
                     "' needs " + shape_text(s.shape));
    }
    const auto offsets = t.find("data_offsets");
    if (offsets == t.end() || !offsets->is_array() || offsets->size() != 2 ||
        !(*offsets)[0].is_number_unsigned() || !(*offsets)[1].is_number_unsigned()) {
      fail(path, what + " has no data_offsets [begin, end]");
    }
    const uint64_t begin = (*offsets)[0].get<uint64_t>(), end = (*offsets)[1].get<uint64_t>();
    const std::string range =
        "data_offsets [" + std::to_string(begin) + "," + std::to_string(end) + "]";
    if (begin > end || end > data_size) {
      fail(path, what + " " + range + " lie outside the data section (" +
                     std::to_string(data_size) + " bytes)");
    }
    if (end - begin != s.bytes()) {
      fail(path, what + " " + range + " hold " + std::to_string(end - begin) + " bytes; shape " +
                     shape_text(s.shape) + " needs " + std::to_string(s.bytes()));
    }
    found.push_back({&s, begin, end});
  }

  auto any_in = [&](int b1, int b2) {
    return std::any_of(found.begin(), found.end(), [&](const Found& f) {
      return f.slot->buffer == b1 || f.slot->buffer == b2;
    });
  };
  ck.has_optimizer_state = any_in(1, 2);
  const bool has_restore = any_in(3, 3);
  for (const Slot& s : slots) {
    if ((s.buffer == 1 || s.buffer == 2) && !ck.has_optimizer_state) continue;
    if (s.buffer == 3 && !has_restore) continue;
    if (std::none_of(found.begin(), found.end(), [&](const Found& f) { return f.slot == &s; })) {
      fail(path, "missing tensor '" + s.name + "'" +
                     (s.buffer == 1 || s.buffer == 2 ? " (the optimizer state is partial)"
                      : s.buffer == 3                ? " (early stopping's best weights are partial)"
                                                     : ""));
    }
  }
  std::sort(found.begin(), found.end(),
            [](const Found& a, const Found& b) { return a.begin < b.begin; });
  for (size_t i = 1; i < found.size(); ++i) {
    if (found[i].begin < found[i - 1].end) {
      fail(path, "tensors '" + found[i - 1].slot->name + "' and '" + found[i].slot->name +
                     "' overlap in the data section");
    }
  }

  // Every tensor is now known to lie inside the file, so these allocations are bounded by its size.
  const auto n = static_cast<size_t>(graph->param_count());
  std::array<std::vector<float>*, 4> buffers = {&ck.state.params, &ck.state.adam_m,
                                                &ck.state.adam_v, &ck.restore_params};
  for (int b = 0; b < 4; ++b) {
    const bool present = b == 0 || (b == 3 ? has_restore : ck.has_optimizer_state);
    if (present) buffers[b]->assign(n, 0.0f);
  }
  for (const Found& f : found) {
    if (f.slot->int64()) {
      // Derived from the step on save; only checked here (PyTorch's own count may differ).
      int64_t count = 0;
      if (!in.read(8 + header_size + f.begin, reinterpret_cast<char*>(&count), sizeof(count))) {
        fail(path, "read failed for tensor '" + f.slot->name + "' (file truncated while reading?)");
      }
      if (count < 0) fail(path, "tensor '" + f.slot->name + "' is negative");
      continue;
    }
    float* dst = buffers[f.slot->buffer]->data() + f.slot->offset;
    if (!in.read(8 + header_size + f.begin, reinterpret_cast<char*>(dst), f.end - f.begin)) {
      fail(path, "read failed for tensor '" + f.slot->name + "' (file truncated while reading?)");
    }
  }
  return ck;
}

}  // namespace

Checkpoint load_checkpoint(const fs::path& path) {
  std::error_code ec;
  const fs::file_status status = fs::status(path, ec);
  if (!fs::exists(status)) fail(path, "cannot open: no such file");
  if (!fs::is_regular_file(status)) fail(path, "cannot open: not a regular file");
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, "cannot open: " + errno_text(errno));
  const uintmax_t file_size = fs::file_size(path, ec);
  if (ec) fail(path, "cannot read its size: " + ec.message());
  CheckpointBytes bytes{file_size, [&in](uint64_t offset, char* dst, size_t n) {
                          in.seekg(static_cast<std::streamoff>(offset));
                          return static_cast<bool>(in.read(dst, static_cast<std::streamsize>(n)));
                        }};
  return load_checkpoint_bytes(path, bytes);
}

Checkpoint load_checkpoint(std::span<const uint8_t> file, const fs::path& name) {
  CheckpointBytes bytes{file.size(), [file](uint64_t offset, char* dst, size_t n) {
                          if (offset > file.size() || n > file.size() - offset) return false;
                          std::copy_n(file.data() + offset, n, dst);
                          return true;
                        }};
  return load_checkpoint_bytes(name, bytes);
}

}  // namespace mg
