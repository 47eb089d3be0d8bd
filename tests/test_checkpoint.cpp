// Checkpoints: exact round trips and resume, atomic saves, a clear error for every malformed file
// (and none but CheckpointError for random corruption), other writers' layouts, and PyTorch
// reading our files to the same predictions.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <functional>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <string_view>

#include "host/checkpoint.hpp"

namespace mg {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// A fresh directory per test, removed afterwards.
class TempDir {
 public:
  TempDir() {
    static int counter = 0;
    path_ = fs::temp_directory_path() /
            ("mg_checkpoint_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ec;
    fs::permissions(path_, fs::perms::owner_all, fs::perm_options::add, ec);
    fs::remove_all(path_, ec);
  }
  fs::path operator/(const std::string& name) const { return path_ / name; }
  const fs::path& path() const { return path_; }
  std::vector<std::string> entries() const {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(path_))
      names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }

 private:
  fs::path path_;
};

std::string read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_bytes(const fs::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << p;
}

std::string u64_le(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  return s;
}

// A safetensors file split into its header and data section.
struct Parts {
  json header;
  std::string data;
};

uint64_t header_length(const std::string& bytes) {
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= uint64_t{static_cast<unsigned char>(bytes[i])} << (8 * i);
  return n;
}

Parts split(const std::string& bytes) {
  const uint64_t n = header_length(bytes);
  return {json::parse(bytes.substr(8, n)), bytes.substr(8 + n)};
}

std::string join(const json& header, const std::string& data) {
  const std::string text = header.dump();
  return u64_le(text.size()) + text + data;
}

const Graph& small_graph() {
  static const Graph g =
      Graph::build(ModelSpec::parse("conv3,pool,drop0.25,dense5"), Shape{1, 8, 8}, 4);
  return g;
}

// Distinct values everywhere, so a tensor read from the wrong place cannot pass.
TrainingState random_state(const Graph& g, uint64_t seed, bool optimizer = true) {
  std::mt19937 rng(static_cast<uint32_t>(seed));
  std::normal_distribution<float> dist;
  TrainingState s;
  const auto n = static_cast<size_t>(g.param_count());
  for (auto* v : {&s.params, &s.adam_m, &s.adam_v}) {
    if (v != &s.params && !optimizer) continue;
    v->resize(n);
    for (float& x : *v) x = dist(rng);
  }
  for (float& x : s.adam_v) x = x * x;
  s.step = 17;
  return s;
}

CheckpointMeta meta_for(const Graph& g) {
  CheckpointMeta m;
  m.spec = g.spec().to_string();
  m.input = g.input();
  m.classes = g.classes();
  for (int c = 0; c < g.classes(); ++c)
    m.class_names.push_back("class \"" + std::to_string(c) + "\" é");
  m.dataset = "quadrants";
  m.epochs_done = 3;
  m.seed = 18446744073709551615ull;
  m.batch_size = 32;
  m.lr = 3e-3;
  m.adam_beta1 = 0.8;
  m.adam_beta2 = 0.99;
  m.adam_epsilon = 1e-6;
  m.weight_decay = 4e-3;
  m.l2 = 5e-4;
  m.augment.enabled = true;
  m.augment.max_shift = 1.5f;
  m.augment.max_rotation_deg = 7.25f;
  return m;
}

void expect_same_meta(const CheckpointMeta& a, const CheckpointMeta& b) {
  EXPECT_EQ(a.spec, b.spec);
  EXPECT_EQ(a.input, b.input);
  EXPECT_EQ(a.classes, b.classes);
  EXPECT_EQ(a.class_names, b.class_names);
  EXPECT_EQ(a.dataset, b.dataset);
  EXPECT_EQ(a.epochs_done, b.epochs_done);
  EXPECT_EQ(a.seed, b.seed);
  EXPECT_EQ(a.batch_size, b.batch_size);
  EXPECT_EQ(a.lr, b.lr);
  EXPECT_EQ(a.adam_beta1, b.adam_beta1);
  EXPECT_EQ(a.adam_beta2, b.adam_beta2);
  EXPECT_EQ(a.adam_epsilon, b.adam_epsilon);
  EXPECT_EQ(a.weight_decay, b.weight_decay);
  EXPECT_EQ(a.l2, b.l2);
  EXPECT_EQ(a.augment.enabled, b.augment.enabled);
  EXPECT_EQ(a.augment.max_shift, b.augment.max_shift);
  EXPECT_EQ(a.augment.max_rotation_deg, b.augment.max_rotation_deg);
}

// Images whose label is the quadrant of a bright square, at any size.
struct Squares {
  std::vector<uint8_t> images, labels;
  Shape shape;
  Squares(int64_t n, Shape s)
      : images(static_cast<size_t>(n * s.size())), labels(static_cast<size_t>(n)), shape(s) {
    std::mt19937 rng(3);
    for (int64_t i = 0; i < n; ++i) {
      const int q = static_cast<int>(rng() % 4);
      labels[i] = static_cast<uint8_t>(q);
      uint8_t* img = images.data() + i * s.size();
      for (int64_t p = 0; p < s.size(); ++p) img[p] = static_cast<uint8_t>(rng() % 60);
      const int64_t oy = (q / 2) * (s.h / 2), ox = (q % 2) * (s.w / 2);
      for (int64_t y = 0; y < s.h / 3; ++y)
        for (int64_t x = 0; x < s.w / 3; ++x) img[(oy + y) * s.w + ox + x] = 255;
    }
  }
  Dataset dataset() const {
    return {images.data(), labels.data(), static_cast<int64_t>(labels.size()), shape};
  }
};

std::vector<int32_t> iota(int32_t begin, int32_t end) {
  std::vector<int32_t> v(static_cast<size_t>(end - begin));
  std::iota(v.begin(), v.end(), begin);
  return v;
}

TEST(Checkpoint, RoundTripKeepsEveryBitAndField) {
  TempDir dir;
  const Graph& g = small_graph();
  const TrainingState s = random_state(g, 1);
  const CheckpointMeta m = meta_for(g);
  save_checkpoint(dir / "a.safetensors", g, s, m);
  const Checkpoint ck = load_checkpoint(dir / "a.safetensors");
  EXPECT_TRUE(ck.has_optimizer_state);
  EXPECT_EQ(ck.state.step, 17);
  EXPECT_EQ(ck.state.params, s.params);
  EXPECT_EQ(ck.state.adam_m, s.adam_m);
  EXPECT_EQ(ck.state.adam_v, s.adam_v);
  expect_same_meta(ck.meta, m);
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"a.safetensors"});  // no temporary file left
}

// A checkpoint taken part-way through an epoch keeps its position and the metric sums exactly
// (doubles in shortest round-trip text); one at an epoch boundary writes no position keys.
TEST(Checkpoint, MidEpochPositionRoundTripsExactly) {
  TempDir dir;
  const Graph& g = small_graph();
  const TrainingState s = random_state(g, 2);
  CheckpointMeta m = meta_for(g);
  m.epoch_position = {7, 0.1 + 0.2 + 1234.000000000001, 401, 448, 3.0000000000000004};
  save_checkpoint(dir / "mid.safetensors", g, s, m);
  const EpochPosition p = load_checkpoint(dir / "mid.safetensors").meta.epoch_position;
  EXPECT_EQ(p.steps_done, 7);
  EXPECT_EQ(p.loss_sum, m.epoch_position.loss_sum);
  EXPECT_EQ(p.correct_sum, 401);
  EXPECT_EQ(p.sample_sum, 448);
  EXPECT_EQ(p.l2_sum, m.epoch_position.l2_sum);
  save_checkpoint(dir / "end.safetensors", g, s, meta_for(g));
  std::ifstream in(dir / "end.safetensors", std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(bytes.find("epoch_steps_done"), std::string::npos);
  EXPECT_EQ(load_checkpoint(dir / "end.safetensors").meta.epoch_position.steps_done, 0);
}

// The memory entry point (fuzzed by tests/fuzz/fuzz_safetensors.cpp) reads what the file one
// reads, and refuses a cut file the same way.
TEST(Checkpoint, MemoryLoadsAsTheFileDoes) {
  TempDir dir;
  const Graph& g = small_graph();
  const TrainingState s = random_state(g, 4);
  save_checkpoint(dir / "m.safetensors", g, s, meta_for(g));
  std::ifstream in(dir / "m.safetensors", std::ios::binary);
  const std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), {});
  const Checkpoint ck = load_checkpoint(bytes, "upload.safetensors");
  EXPECT_EQ(ck.state.params, s.params);
  EXPECT_EQ(ck.state.adam_m, s.adam_m);
  EXPECT_EQ(ck.state.adam_v, s.adam_v);
  expect_same_meta(ck.meta, load_checkpoint(dir / "m.safetensors").meta);
  const std::vector<uint8_t> cut(bytes.begin(), bytes.end() - 4);
  try {
    load_checkpoint(cut, "upload.safetensors");
    ADD_FAILURE() << "a cut checkpoint loaded";
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("upload.safetensors: "), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("outside the data section"), std::string::npos)
        << e.what();
  }
}

TEST(Checkpoint, WithoutOptimizerStateLoadsParametersOnly) {
  TempDir dir;
  const Graph& g = small_graph();
  const TrainingState s = random_state(g, 2, false);
  save_checkpoint(dir / "p.safetensors", g, s, meta_for(g));
  const Checkpoint ck = load_checkpoint(dir / "p.safetensors");
  EXPECT_FALSE(ck.has_optimizer_state);
  EXPECT_EQ(ck.state.params, s.params);
  EXPECT_TRUE(ck.state.adam_m.empty());
  EXPECT_TRUE(ck.state.adam_v.empty());
  const Parts p = split(read_bytes(dir / "p.safetensors"));
  for (const auto& [name, t] : p.header.items()) {
    EXPECT_EQ(name.rfind("optimizer.", 0), std::string::npos) << name;
  }
}

// Train, checkpoint, load into a fresh engine: the same probabilities, and the same next epoch.
TEST(Checkpoint, ResumedEngineEvaluatesAndTrainsBitwiseIdentically) {
  TempDir dir;
  const Graph& g = small_graph();
  const Squares data(200, g.input());
  const auto train = iota(0, 160), test = iota(160, 200);
  EngineOptions opt;
  opt.batch_size = 32;
  opt.seed = 9;
  auto a = make_cpu_engine(g, opt);
  a->set_dataset(data.dataset());
  for (int e = 0; e < 2; ++e) a->train_epoch(train, e);
  CheckpointMeta m = meta_for(g);
  m.epochs_done = 2;
  m.seed = opt.seed;
  m.batch_size = opt.batch_size;
  save_checkpoint(dir / "r.safetensors", g, a->state(), m);

  const Checkpoint ck = load_checkpoint(dir / "r.safetensors");
  const Graph g2 = Graph::build(ModelSpec::parse(ck.meta.spec), ck.meta.input, ck.meta.classes);
  EngineOptions opt2;
  opt2.batch_size = ck.meta.batch_size;
  opt2.seed = ck.meta.seed;
  auto b = make_cpu_engine(g2, opt2);
  b->set_dataset(data.dataset());
  b->set_state(ck.state);
  std::vector<float> pa, pb;
  a->evaluate(test, &pa);
  b->evaluate(test, &pb);
  EXPECT_EQ(pa, pb);
  a->train_epoch(train, 2);
  b->train_epoch(train, ck.meta.epochs_done);
  const TrainingState sa = a->state(), sb = b->state();
  EXPECT_EQ(sa.step, sb.step);
  EXPECT_EQ(sa.params, sb.params);
  EXPECT_EQ(sa.adam_m, sb.adam_m);
  EXPECT_EQ(sa.adam_v, sb.adam_v);
}

TEST(Checkpoint, SeedModelHasPyTorchNamesShapesAndAnAlignedHeader) {
  TempDir dir;
  const Graph g = Graph::build(ModelSpec::seed());
  CheckpointMeta m;
  m.spec = std::string(kSeedModelSpec);
  save_checkpoint(dir / "s.safetensors", g, random_state(g, 3), m);
  const std::string bytes = read_bytes(dir / "s.safetensors");
  EXPECT_EQ(header_length(bytes) % 8, 0u);
  EXPECT_EQ(bytes[8], '{');
  const Parts p = split(bytes);
  const std::map<std::string, std::vector<int64_t>> shapes = {
      {"conv2d.weight", {32, 1, 3, 3}},    {"conv2d.bias", {32}},
      {"conv2d_1.weight", {64, 32, 3, 3}}, {"conv2d_1.bias", {64}},
      {"dense.weight", {128, 3136}},       {"dense.bias", {128}},
      {"dense_1.weight", {10, 128}},       {"dense_1.bias", {10}}};
  std::map<std::string, std::vector<int64_t>> want;
  for (const auto& [name, shape] : shapes) {
    for (const char* prefix : {"", "optimizer.adam_m.", "optimizer.adam_v."})
      want[prefix + name] = shape;
  }
  std::map<std::string, std::vector<int64_t>> got;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (const auto& [name, t] : p.header.items()) {
    if (name == "__metadata__") continue;
    EXPECT_EQ(t["dtype"], "F32") << name;
    got[name] = t["shape"].get<std::vector<int64_t>>();
    ranges.emplace_back(t["data_offsets"][0].get<uint64_t>(), t["data_offsets"][1].get<uint64_t>());
  }
  EXPECT_EQ(got, want);
  // The data section is exactly the tensors, back to back, as the reference writer lays them out.
  std::sort(ranges.begin(), ranges.end());
  uint64_t at = 0;
  for (const auto& [b, e] : ranges) {
    EXPECT_EQ(b, at);
    at = e;
  }
  EXPECT_EQ(at, p.data.size());
  EXPECT_EQ(at, 3 * 4 * static_cast<uint64_t>(g.param_count()));
  const json& md = p.header["__metadata__"];
  for (const char* key :
       {"format", "model_spec", "input_shape", "classes", "class_names", "dataset", "step",
        "epochs_done", "seed", "batch_size", "lr", "adam_beta1", "adam_beta2", "adam_epsilon",
        "weight_decay", "l2", "augment", "augment_max_shift", "augment_max_rotation_deg"}) {
    EXPECT_TRUE(md.contains(key) && md[key].is_string()) << key;
  }
  EXPECT_EQ(md["format"], "mnist_gpu/1");
  EXPECT_EQ(md["model_spec"], kSeedModelSpec);
  EXPECT_EQ(md["input_shape"], "[1,28,28]");
  EXPECT_EQ(md["class_names"], "[]");
  EXPECT_EQ(md["lr"], "0.001");
}

// --- atomic save ---------------------------------------------------------------------------------

class AtomicSave : public ::testing::Test {
 protected:
  void SetUp() override {
    save_checkpoint(target_, g_, good_, meta_for(g_));
    before_ = read_bytes(target_);
  }
  void expect_untouched(const std::vector<std::string>& entries = {"c.safetensors"}) {
    EXPECT_EQ(read_bytes(target_), before_);
    EXPECT_EQ(dir_.entries(), entries);
  }
  TempDir dir_;
  const Graph& g_ = small_graph();
  TrainingState good_ = random_state(g_, 4);
  fs::path target_ = dir_ / "c.safetensors";
  std::string before_;
};

TEST_F(AtomicSave, InvalidStateLeavesThePreviousFile) {
  TrainingState bad = random_state(g_, 5);
  bad.adam_v.pop_back();
  EXPECT_THROW(save_checkpoint(target_, g_, bad, meta_for(g_)), CheckpointError);
  bad = random_state(g_, 5);
  bad.params.push_back(1);
  EXPECT_THROW(save_checkpoint(target_, g_, bad, meta_for(g_)), CheckpointError);
  CheckpointMeta wrong = meta_for(g_);
  wrong.spec = "conv4,pool,dense5";
  EXPECT_THROW(save_checkpoint(target_, g_, random_state(g_, 5), wrong), CheckpointError);
  wrong = meta_for(g_);
  wrong.class_names.pop_back();
  EXPECT_THROW(save_checkpoint(target_, g_, random_state(g_, 5), wrong), CheckpointError);
  expect_untouched();
}

TEST_F(AtomicSave, FailedRenameRemovesTheTemporaryFile) {
  // A non-empty directory at the target: the temporary file is written, the rename fails.
  const fs::path d = dir_ / "d.safetensors";
  fs::create_directories(d / "inside");
  try {
    save_checkpoint(d, g_, random_state(g_, 5), meta_for(g_));
    ADD_FAILURE() << "saved over a directory";
  } catch (const CheckpointError& e) {
    EXPECT_EQ(std::string(e.what()).rfind(d.string() + ": cannot rename into place", 0), 0u) << e.what();
  }
  EXPECT_TRUE(fs::is_directory(d / "inside"));
  expect_untouched({"c.safetensors", "d.safetensors"});
}

TEST_F(AtomicSave, UncreatableTemporaryFileLeavesThePreviousFile) {
  // The temporary file goes beside the target: in a missing folder it cannot be created.
  EXPECT_THROW(save_checkpoint(dir_ / "no" / "such" / "dir.safetensors", g_, good_, meta_for(g_)),
               CheckpointError);
  expect_untouched();
}

TEST_F(AtomicSave, UnwritableDirectoryLeavesThePreviousFile) {
  if (::geteuid() == 0) GTEST_SKIP() << "root writes into read-only directories";
  fs::permissions(dir_.path(), fs::perms::owner_write, fs::perm_options::remove);
  EXPECT_THROW(save_checkpoint(target_, g_, random_state(g_, 5), meta_for(g_)), CheckpointError);
  fs::permissions(dir_.path(), fs::perms::owner_write, fs::perm_options::add);
  expect_untouched();
}

// A full disk, played by a file-size limit (RLIMIT_FSIZE) below the checkpoint's size: with
// SIGXFSZ ignored (as mnist_gpu does) the write fails with EFBIG. The save is one clear error
// naming the file, the previous checkpoint is intact and loads, no temporary file is left.
TEST_F(AtomicSave, FileSizeLimitLeavesThePreviousFileAndNoTemporary) {
  rlimit old{};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old), 0);
  struct sigaction ignore = {};
  struct sigaction old_action = {};
  ignore.sa_handler = SIG_IGN;
  ASSERT_EQ(::sigaction(SIGXFSZ, &ignore, &old_action), 0);
  rlimit low = old;
  low.rlim_cur = before_.size() / 2;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &low), 0);
  std::string what;
  try {
    save_checkpoint(target_, g_, random_state(g_, 5), meta_for(g_));
  } catch (const CheckpointError& e) {
    what = e.what();
  }
  ::setrlimit(RLIMIT_FSIZE, &old);
  ::sigaction(SIGXFSZ, &old_action, nullptr);
  EXPECT_EQ(what, target_.string() + ": write failed (File too large)");
  expect_untouched();
  EXPECT_EQ(load_checkpoint(target_).state.params, good_.params);
}

TEST_F(AtomicSave, ASecondSaveReplacesTheFirst) {
  const TrainingState next = random_state(g_, 6);
  save_checkpoint(target_, g_, next, meta_for(g_));
  EXPECT_EQ(load_checkpoint(target_).state.params, next.params);
  EXPECT_EQ(dir_.entries(), std::vector<std::string>{"c.safetensors"});
}

// --- bad files -----------------------------------------------------------------------------------

class BadFile : public ::testing::Test {
 protected:
  void SetUp() override {
    save_checkpoint(good_path_, small_graph(), random_state(small_graph(), 7),
                    meta_for(small_graph()));
    good_ = read_bytes(good_path_);
  }
  // Loading `bytes` fails with one line naming the file and containing `problem`.
  void expect_error(const std::string& bytes, const std::string& problem) {
    write_bytes(bad_path_, bytes);
    expect_error_at(bad_path_, problem);
  }
  void expect_error_at(const fs::path& p, const std::string& problem) {
    try {
      load_checkpoint(p);
      ADD_FAILURE() << "loaded; expected an error containing: " << problem;
    } catch (const CheckpointError& e) {
      const std::string what = e.what();
      EXPECT_EQ(what.rfind(p.string() + ": ", 0), 0u) << what;
      EXPECT_NE(what.find(problem), std::string::npos)
          << what << "\n  expected to contain: " << problem;
      EXPECT_EQ(what.find('\n'), std::string::npos) << what;
    }
  }
  // The good file with its header edited.
  void expect_header_error(const std::function<void(json&)>& edit, const std::string& problem) {
    Parts p = split(good_);
    edit(p.header);
    expect_error(join(p.header, p.data), problem);
  }
  TempDir dir_;
  fs::path good_path_ = dir_ / "good.safetensors", bad_path_ = dir_ / "bad.safetensors";
  std::string good_;
};

TEST_F(BadFile, MissingOrNotAFile) {
  expect_error_at(dir_ / "absent.safetensors", "cannot open: no such file");
  expect_error_at(dir_.path(), "not a regular file");
}

TEST_F(BadFile, TooShortOrBadHeaderLength) {
  expect_error("", "only 0 bytes");
  expect_error(std::string("\x10\0\0\0\0", 5), "only 5 bytes");
  expect_error(u64_le(200'000'000) + "{}", "header length 200000000 is over the 100 MB limit");
  expect_error(u64_le(~uint64_t{0}) + "{}", "over the 100 MB limit");
  expect_error(u64_le(64) + "{}", "header length 64 runs past the end of the file (10 bytes)");
}

TEST_F(BadFile, HeaderNotJsonOrNotAnObject) {
  expect_error(u64_le(5) + "{\"a\":", "header is not valid JSON");
  expect_error(u64_le(4) + "\xff\xfe{}", "header is not valid JSON");
  expect_error(u64_le(2) + "[]", "header is not a JSON object");
  expect_error(u64_le(2) + "{}", "header has no __metadata__");
  // Deep nesting must not overflow the stack, in parsing, in freeing, or in the message.
  const std::string deep = std::string(200000, '[') + std::string(200000, ']');
  const std::string h1 = "{\"__metadata__\":" + deep + "}";
  expect_error(u64_le(h1.size()) + h1, "__metadata__ is not a JSON object");
  Parts p = split(good_);
  p.header["dense.bias"]["shape"] = "DEEP";  // spliced in as text: dump() itself would recurse
  std::string h2 = p.header.dump();
  h2.replace(h2.find("\"DEEP\""), 6, deep);
  expect_error(u64_le(h2.size()) + h2 + p.data,
               "tensor 'dense.bias' has shape a list of non-numbers");
}

TEST_F(BadFile, BadMetadata) {
  expect_header_error([](json& h) { h["__metadata__"] = json::array(); },
                      "__metadata__ is not a JSON object");
  expect_header_error([](json& h) { h["__metadata__"].erase("format"); },
                      "metadata has no 'format'");
  expect_header_error([](json& h) { h["__metadata__"]["format"] = "mnist_gpu/2"; },
                      "metadata 'format' is \"mnist_gpu/2\", expected 'mnist_gpu/1'");
  expect_header_error([](json& h) { h["__metadata__"]["step"] = 17; },
                      "metadata 'step' is not a string");
  expect_header_error([](json& h) { h["__metadata__"].erase("step"); }, "metadata has no 'step'");
  expect_header_error([](json& h) { h["__metadata__"]["step"] = "-1"; },
                      "metadata 'step' is \"-1\"");
  expect_header_error([](json& h) { h["__metadata__"]["seed"] = "18446744073709551616"; },
                      "metadata 'seed'");
  expect_header_error([](json& h) { h["__metadata__"]["lr"] = "abc"; },
                      "metadata 'lr' is \"abc\", expected a finite number");
  expect_header_error([](json& h) { h["__metadata__"]["lr"] = "nan"; }, "metadata 'lr'");
  expect_header_error([](json& h) { h["__metadata__"]["batch_size"] = "0"; },
                      "metadata 'batch_size'");
  expect_header_error([](json& h) { h["__metadata__"]["augment"] = "yes"; }, "metadata 'augment'");
  expect_header_error([](json& h) { h["__metadata__"]["weight_decay"] = "-0.1"; },
                      "metadata 'weight_decay' is \"-0.1\", expected a finite number >= 0");
  expect_header_error([](json& h) { h["__metadata__"]["l2"] = "inf"; }, "metadata 'l2'");
  const auto mid_epoch = [](json& h) {
    h["__metadata__"]["epoch_steps_done"] = "3";
    h["__metadata__"]["epoch_loss_sum"] = "12.5";
    h["__metadata__"]["epoch_correct_sum"] = "100";
    h["__metadata__"]["epoch_sample_sum"] = "192";
  };
  expect_header_error([&](json& h) { mid_epoch(h); h["__metadata__"]["epoch_steps_done"] = "0"; },
                      "metadata 'epoch_steps_done'");
  expect_header_error([&](json& h) { mid_epoch(h); h["__metadata__"].erase("epoch_loss_sum"); },
                      "metadata has no 'epoch_loss_sum'");
  expect_header_error([&](json& h) { mid_epoch(h); h["__metadata__"]["epoch_correct_sum"] = "193"; },
                      "metadata 'epoch_correct_sum' is \"193\", expected a count in [0, epoch_sample_sum]");
  expect_header_error([&](json& h) { mid_epoch(h); h["__metadata__"]["epoch_sample_sum"] = "0"; },
                      "metadata 'epoch_sample_sum'");
  expect_header_error([&](json& h) { mid_epoch(h); h["__metadata__"]["epoch_l2_sum"] = "-1"; },
                      "metadata 'epoch_l2_sum'");
  expect_header_error([](json& h) { h["__metadata__"].erase("augment_max_shift"); },
                      "metadata has no 'augment_max_shift'");
  expect_header_error([](json& h) { h["__metadata__"]["input_shape"] = "[1,8]"; },
                      "metadata 'input_shape'");
  expect_header_error([](json& h) { h["__metadata__"]["input_shape"] = "[1,8,100000]"; },
                      "metadata 'input_shape'");
  expect_header_error([](json& h) { h["__metadata__"]["classes"] = "0"; }, "metadata 'classes'");
  expect_header_error([](json& h) { h["__metadata__"]["class_names"] = "[\"a\"]"; },
                      "metadata 'class_names'");
  expect_header_error([](json& h) { h["__metadata__"]["model_spec"] = "conv3,bogus"; },
                      "bad model in metadata: model spec: 'bogus': unknown layer");
  expect_header_error([](json& h) { h["__metadata__"]["input_shape"] = "[1,1,1]"; },
                      "bad model in metadata: model spec: 'max_pooling2d' would pool a 1x1 map");
}

TEST_F(BadFile, BadTensors) {
  expect_header_error(
      [](json& h) { h["conv2d.weight"]["dtype"] = "F16"; },
      "tensor 'conv2d.weight' has dtype \"F16\"; mnist_gpu's tensors are F32");
  expect_header_error([](json& h) { h["dense.bias"]["dtype"] = "Q7"; },
                      "tensor 'dense.bias' has dtype \"Q7\"");
  expect_header_error([](json& h) { h["dense.bias"].erase("dtype"); },
                      "tensor 'dense.bias' has no dtype");
  expect_header_error([](json& h) { h["dense.bias"] = 3; },
                      "tensor 'dense.bias' is not a JSON object");
  expect_header_error(
      [](json& h) {
        h["conv2d.weight"]["shape"] = {3, 1, 3, 4};
      },
      "tensor 'conv2d.weight' has shape [3,1,3,4]; the model "
      "'conv3,pool,drop0.25,flatten,dense5' needs [3,1,3,3]");
  expect_header_error([](json& h) { h["conv2d.weight"]["shape"] = {3, 1, 9}; }, "needs [3,1,3,3]");
  // A spec that disagrees with the tensors is a shape error on the first tensor it changes.
  expect_header_error(
      [](json& h) { h["__metadata__"]["model_spec"] = "conv4,pool,drop0.25,dense5"; },
      "has shape [3");
  expect_header_error(
      [](json& h) {
        h["conv2d.weight"]["data_offsets"] = {0, 1u << 30};
      },
      "tensor 'conv2d.weight' data_offsets [0,1073741824] lie outside the data section");
  expect_header_error(
      [](json& h) {
        h["conv2d.weight"]["data_offsets"] = {8, 4};
      },
      "lie outside the data section");
  expect_header_error(
      [](json& h) {
        h["conv2d.weight"]["data_offsets"] = {0, -108};
      },
      "has no data_offsets");
  expect_header_error(
      [](json& h) {
        h["conv2d.weight"]["data_offsets"] = {0, 104};
      },
      "tensor 'conv2d.weight' data_offsets [0,104] hold 104 bytes; shape [3,1,3,3] needs 108");
  expect_header_error(
      [](json& h) {
        h["conv2d.bias"]["data_offsets"] = {100, 112};
      },
      "tensors 'conv2d.weight' and 'conv2d.bias' overlap in the data section");
  expect_header_error(
      [](json& h) { h["conv2d_1.weight"] = h["conv2d.weight"]; },
      "tensor 'conv2d_1.weight' is not in the model 'conv3,pool,drop0.25,flatten,dense5'");
  expect_header_error([](json& h) { h.erase("dense.bias"); }, "missing tensor 'dense.bias'");
  expect_header_error(
      [](json& h) { h.erase("optimizer.adam_v.dense_1.bias"); },
      "missing tensor 'optimizer.adam_v.dense_1.bias' (the optimizer state is partial)");
}

TEST_F(BadFile, TruncatedData) {
  expect_error(good_.substr(0, good_.size() - 1), "lie outside the data section");
}

// Random damage: every outcome is a clean load or a CheckpointError, never a crash or another
// exception (run under ASan/UBSan to make "never a crash" strict).
TEST_F(BadFile, RandomCorruptionLoadsOrFailsCleanly) {
  std::mt19937_64 rng(12345);
  const uint64_t header_end = 8 + header_length(good_);
  int loaded = 0, rejected = 0;
  for (int iter = 0; iter < 2000; ++iter) {
    std::string bytes = good_;
    switch (rng() % 4) {
      case 0:  // truncate
        bytes.resize(rng() % bytes.size());
        break;
      case 1:  // flip bits in the length or the header, where they change the meaning
        for (int k = 0; k < 1 + static_cast<int>(rng() % 3); ++k) {
          bytes[rng() % header_end] ^= static_cast<char>(1 << (rng() % 8));
        }
        break;
      case 2: {  // replace a header character by a JSON-significant one
        static const std::string tokens = "{}[]\",:0123456789-e. \\";
        bytes[8 + rng() % (header_end - 8)] = tokens[rng() % tokens.size()];
        break;
      }
      default:  // anywhere, including the data
        bytes[rng() % bytes.size()] = static_cast<char>(rng());
        break;
    }
    write_bytes(bad_path_, bytes);
    try {
      const Checkpoint ck = load_checkpoint(bad_path_);
      const Graph g = Graph::build(ModelSpec::parse(ck.meta.spec), ck.meta.input, ck.meta.classes);
      EXPECT_EQ(ck.state.params.size(), static_cast<size_t>(g.param_count()));
      ++loaded;
    } catch (const CheckpointError&) {
      ++rejected;
    } catch (const std::exception& e) {
      ADD_FAILURE() << "iteration " << iter << ": not a CheckpointError: " << e.what();
    }
  }
  EXPECT_GT(loaded, 100);
  EXPECT_GT(rejected, 700);
}

// --- other writers -------------------------------------------------------------------------------

// Bytes as another safetensors writer may lay them out: keys in any order, __metadata__ last,
// whitespace, no padding, data out of order with a gap and trailing bytes, no optimizer state.
TEST(Checkpoint, ReadsAHandBuiltFile) {
  TempDir dir;
  const std::string header =
      R"( { "dense_1.bias": {"dtype": "F32", "shape": [3], "data_offsets": [0, 12]},
    "dense_1.weight": {"data_offsets": [16, 40], "shape": [3, 2], "dtype": "F32"},
    "dense.weight": {"dtype": "F32", "shape": [2, 4], "data_offsets": [40, 72]},
    "dense.bias": {"dtype": "F32", "shape": [2], "data_offsets": [72, 80]},
    "__metadata__": {"seed": "5", "format": "mnist_gpu/1", "model_spec": "dense2", "classes": "3",
      "input_shape": "[1, 2, 2]", "class_names": "[\"a\", \"b\", \"c\"]", "dataset": "toy", "step": "0",
      "epochs_done": "0", "batch_size": "4", "lr": "0.01", "adam_beta1": "0.9", "adam_beta2": "0.999",
      "adam_epsilon": "1e-07"} } )";
  auto floats = [](std::initializer_list<float> v) {
    return std::string(reinterpret_cast<const char*>(std::data(v)), v.size() * sizeof(float));
  };
  const std::string data = floats({31, 32, 33}) + std::string(4, '\x7f') +
                           floats({21, 22, 23, 24, 25, 26}) + floats({1, 2, 3, 4, 5, 6, 7, 8}) +
                           floats({11, 12}) + "trailing";
  write_bytes(dir / "h.safetensors", u64_le(header.size()) + header + data);
  const Checkpoint ck = load_checkpoint(dir / "h.safetensors");
  EXPECT_FALSE(ck.has_optimizer_state);
  EXPECT_EQ(ck.meta.spec, "flatten,dense2");
  EXPECT_EQ(ck.meta.input, (Shape{1, 2, 2}));
  EXPECT_EQ(ck.meta.class_names, (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(ck.meta.lr, 0.01);
  EXPECT_FALSE(ck.meta.augment.enabled);  // no augment keys: trained without augmentation
  EXPECT_EQ(ck.meta.weight_decay, 0.0);    // no weight_decay or l2 keys: plain Adam, no penalty
  EXPECT_EQ(ck.meta.l2, 0.0);
  // The flat layout: dense weight, dense bias, dense_1 weight, dense_1 bias.
  EXPECT_EQ(ck.state.params, (std::vector<float>{1, 2, 3, 4, 5, 6, 7, 8, 11, 12, 21, 22, 23, 24, 25,
                                                 26, 31, 32, 33}));
}

std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (const char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

struct ScriptResult {
  int status = -1;  // the exit status, or -1 when it did not exit normally
  std::string out, err;
};

// Runs tests/torch_checkpoint_check.py with `args` (already quoted for the shell).
ScriptResult run_check_script(const TempDir& dir, const std::string& args) {
  const fs::path out = dir / "stdout.txt", err = dir / "stderr.txt";
  const std::string cmd =
      "/usr/bin/python3 " +
      shell_quote(std::string(MNIST_GPU_SOURCE_DIR) + "/tests/torch_checkpoint_check.py") + " " +
      args + " > " + shell_quote(out.string()) + " 2> " + shell_quote(err.string());
  const int rc = std::system(cmd.c_str());
  return {WIFEXITED(rc) ? WEXITSTATUS(rc) : -1, read_bytes(out), read_bytes(err)};
}

TEST(Checkpoint, ReadsAFileFromAPythonWriter) {
  if (!fs::exists("/usr/bin/python3")) GTEST_SKIP() << "/usr/bin/python3 is not there";
  TempDir dir;
  const Graph& g = small_graph();
  const TrainingState s = random_state(g, 8);
  save_checkpoint(dir / "ours.safetensors", g, s, meta_for(g));
  const ScriptResult r =
      run_check_script(dir, "--rewrite " + shell_quote((dir / "ours.safetensors").string()) + " " +
                                shell_quote((dir / "theirs.safetensors").string()));
  ASSERT_EQ(r.status, 0) << r.err;
  const Checkpoint ck = load_checkpoint(dir / "theirs.safetensors");
  EXPECT_TRUE(ck.has_optimizer_state);
  EXPECT_EQ(ck.state.params, s.params);
  EXPECT_EQ(ck.state.adam_m, s.adam_m);
  EXPECT_EQ(ck.state.adam_v, s.adam_v);
  EXPECT_EQ(ck.state.step, s.step);
  expect_same_meta(ck.meta, meta_for(g));
}

// numpy's .npy v1.0: magic, version, a padded Python-dict header, then the array (C order).
void write_npy(const fs::path& p, const std::vector<float>& values,
               const std::vector<int64_t>& shape) {
  std::string dims;
  for (const int64_t d : shape) dims += std::to_string(d) + ", ";
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }";
  header.append(63 - (10 + header.size()) % 64, ' ');
  header += '\n';
  std::string bytes = "\x93NUMPY\x01";
  bytes += '\0';
  bytes += static_cast<char>(header.size() & 0xff);
  bytes += static_cast<char>(header.size() >> 8);
  bytes += header;
  bytes.append(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float));
  write_bytes(p, bytes);
}

// A model of `spec`, trained a few steps, saved; PyTorch loads it (strict, tensors named `keys`)
// and predicts the same. Its top probability exceeds `min_top` (uniform is 0.1).
void expect_torch_predicts_the_same(std::string_view spec, const json& keys, float min_top) {
  if (!fs::exists("/usr/bin/python3")) GTEST_SKIP() << "/usr/bin/python3 is not there";
  TempDir dir;
  const Graph g = Graph::build(ModelSpec::parse(spec));
  const Squares data(200, g.input());
  EngineOptions opt;
  opt.batch_size = 64;
  auto e = make_cpu_engine(g, opt);
  e->set_dataset(data.dataset());
  e->train_epoch(iota(0, 192), 0);
  const auto test = iota(192, 200);
  std::vector<float> ours;
  e->evaluate(test, &ours);
  CheckpointMeta m;
  m.spec = g.spec().to_string();
  m.epochs_done = 1;
  m.batch_size = opt.batch_size;
  save_checkpoint(dir / "seed.safetensors", g, e->state(), m);

  std::vector<float> x;
  for (const int32_t i : test) {
    const uint8_t* img = data.images.data() + i * g.input().size();
    for (int64_t j = 0; j < g.input().size(); ++j) x.push_back(static_cast<float>(img[j]) / 255.0f);
  }
  write_npy(dir / "x.npy", x, {static_cast<int64_t>(test.size()), 1, 28, 28});
  const ScriptResult run = run_check_script(dir, shell_quote((dir / "seed.safetensors").string()) +
                                                     " " + shell_quote((dir / "x.npy").string()));
  if (run.status == 77) GTEST_SKIP() << run.err;
  ASSERT_EQ(run.status, 0) << run.err << run.out;
  const json r = json::parse(run.out, nullptr, false);
  ASSERT_FALSE(r.is_discarded()) << run.out;
  EXPECT_EQ(r["problems"], json::array());
  EXPECT_EQ(r["keys"], keys);
  EXPECT_EQ(r["metadata"]["step"], "3");
  const auto theirs = r["probs"].get<std::vector<std::vector<double>>>();
  ASSERT_EQ(theirs.size(), test.size());
  // Both sides compute in float32 with different summation orders: probabilities agree to ~1e-7;
  // 1e-5 leaves room and still catches any layout error (those move probabilities by >> 1e-3).
  double worst = 0;
  for (size_t i = 0; i < theirs.size(); ++i) {
    ASSERT_EQ(theirs[i].size(), 10u);
    for (size_t c = 0; c < 10; ++c)
      worst = std::max(worst, std::abs(theirs[i][c] - ours[i * 10 + c]));
  }
  EXPECT_LE(worst, 1e-5);
  // The trained model is not uniform, so agreement is not trivial.
  EXPECT_GT(*std::max_element(ours.begin(), ours.end()), min_top);
}

TEST(Checkpoint, PyTorchLoadsItAndPredictsTheSame) {
  expect_torch_predicts_the_same(kSeedModelSpec,
                                 json({"conv2d.weight", "conv2d.bias", "conv2d_1.weight",
                                       "conv2d_1.bias", "dense.weight", "dense.bias",
                                       "dense_1.weight", "dense_1.bias"}),
                                 0.2f);
}

// Kernel sizes 5, 7 and 1, 'valid' and 'same', activation-free layers and the ReLU layer.
TEST(Checkpoint, PyTorchLoadsKernelSizesPaddingsAndReluLayers) {
  expect_torch_predicts_the_same(
      "conv8k5vn,relu,pool,conv16k7,conv4k1n,pool,drop0.25,dense32n,relu,drop0.5",
      json({"conv2d.weight", "conv2d.bias", "conv2d_1.weight", "conv2d_1.bias", "conv2d_2.weight",
            "conv2d_2.bias", "dense.weight", "dense.bias", "dense_1.weight", "dense_1.bias"}),
      0.13f);
}

// Batch normalization (conv-BN-ReLU blocks): PyTorch's BatchNorm2d names (weight, bias,
// running_mean, running_var, num_batches_tracked) under Keras' layer names, the running statistics
// mnist_gpu trained, and the same predictions in eval mode.
TEST(Checkpoint, PyTorchLoadsBatchNormalizationAndPredictsTheSame) {
  auto bn = [](const std::string& l) {
    return std::vector<std::string>{l + ".weight", l + ".bias", l + ".running_mean",
                                    l + ".running_var", l + ".num_batches_tracked"};
  };
  json keys = json::array({"conv2d.weight", "conv2d.bias"});
  for (const auto& k : bn("batch_normalization")) keys.push_back(k);
  keys.push_back("conv2d_1.weight");
  keys.push_back("conv2d_1.bias");
  for (const auto& k : bn("batch_normalization_1")) keys.push_back(k);
  for (const char* k : {"dense.weight", "dense.bias", "dense_1.weight", "dense_1.bias"})
    keys.push_back(k);
  expect_torch_predicts_the_same(
      "conv32n,bn,relu,pool,conv64k5n,bn,relu,pool,drop0.25,flatten,dense128,drop0.5", keys, 0.13f);
}

// The BN tensors in the file: float32 running statistics beside gamma and beta, an int64
// num_batches_tracked equal to the step, Adam moments for gamma and beta only; all read back.
TEST(Checkpoint, BatchNormTensorsHaveTorchDtypesAndRoundTrip) {
  TempDir dir;
  const Graph g = Graph::build(ModelSpec::parse("conv4n,bn,relu,pool,dense8n,bn"));
  TrainingState s = random_state(g, 7);
  for (int64_t i = g.trainable_count(); i < g.param_count(); ++i) {
    s.adam_m[static_cast<size_t>(i)] = s.adam_v[static_cast<size_t>(i)] = 0.0f;  // never trained
  }
  save_checkpoint(dir / "bn.safetensors", g, s, meta_for(g));
  const std::string bytes = read_bytes(dir / "bn.safetensors");
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= uint64_t{static_cast<unsigned char>(bytes[i])} << (8 * i);
  const json header = json::parse(bytes.substr(8, n));
  const json& count = header.at("batch_normalization.num_batches_tracked");
  EXPECT_EQ(count.at("dtype"), "I64");
  EXPECT_EQ(count.at("shape"), json::array());
  const auto begin = count.at("data_offsets")[0].get<uint64_t>();
  int64_t value = 0;
  std::memcpy(&value, bytes.data() + 8 + n + begin, 8);
  EXPECT_EQ(value, s.step);
  EXPECT_EQ(header.at("batch_normalization_1.running_var").at("shape"), json::array({8}));
  EXPECT_EQ(header.at("batch_normalization.running_mean").at("dtype"), "F32");
  EXPECT_TRUE(header.contains("optimizer.adam_m.batch_normalization.weight"));
  EXPECT_FALSE(header.contains("optimizer.adam_m.batch_normalization.running_mean"));
  const Checkpoint ck = load_checkpoint(dir / "bn.safetensors");
  EXPECT_EQ(ck.state.params, s.params);
  EXPECT_EQ(ck.state.adam_m, s.adam_m);
  EXPECT_EQ(ck.state.adam_v, s.adam_v);
  // A count stored as F32 is refused, naming the tensor.
  std::string bad = bytes;
  const size_t at = bad.find("\"I64\"");
  ASSERT_NE(at, std::string::npos);
  bad.replace(at, 5, "\"F32\"");
  write_bytes(dir / "bad.safetensors", bad);
  try {
    load_checkpoint(dir / "bad.safetensors");
    ADD_FAILURE() << "accepted an F32 batch count";
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("num_batches_tracked"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace mg
