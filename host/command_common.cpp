#include "host/command_common.hpp"

#include <cstdio>
#include <ctime>
#include <ostream>

#include "host/atomic_file.hpp"

namespace mg {
namespace {

namespace fs = std::filesystem;

std::string timestamp() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  localtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%d-%H%M%S", &tm);
  return buf;
}

}  // namespace

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::string display_name(DatasetKind kind) {
  return kind == DatasetKind::kMnist ? "MNIST" : "Fashion-MNIST";
}

// A new, empty folder: the one asked for (which must not exist yet), or runs/<prefix><timestamp>.
std::filesystem::path make_run_dir(const std::optional<fs::path>& asked,
                                   const std::string& prefix) {
  fs::path dir;
  if (asked) {
    dir = *asked;
    if (fs::exists(dir)) {
      throw FileError(dir.string() +
                      ": already exists; a run folder is never overwritten, choose "
                      "another --out");
    }
  } else {
    const fs::path base = fs::path("runs") / (prefix + timestamp());
    dir = base;
    for (int k = 1; fs::exists(dir); ++k) dir = base.string() + "-" + std::to_string(k);
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec)
    throw FileError(dir.string() + ": cannot create the output folder (" + ec.message() + ")");
  return dir;
}

LabeledImages load_data(const DataOptions& o) {
  LabeledImages d =
      load_dataset(parse_dataset_kind(o.dataset), DataLocation{o.dir, o.allow_download, o.strict});
  for (const std::string& w : d.warnings) std::fprintf(stderr, "warning: %s\n", w.c_str());
  return d;
}

Dataset view(const LabeledImages& d) {
  return {d.images.data(), d.labels.data(), d.count, Shape{1, d.rows, d.cols}};
}

// The last line of train and eval, which scripts read.
void print_test_line(std::ostream& out, const Metrics& m) {
  char line[96];
  std::snprintf(line, sizeof line, "test: loss=%.4f accuracy=%.4f", m.loss, m.accuracy);
  out << line << std::endl;
}

// The parts of a report that train and eval share.
RunReport base_report(const std::string& title, const LabeledImages& data, const DataSplit& split,
                      const Graph& graph, const std::string& device, const CheckpointMeta& meta) {
  RunReport r;
  r.title = title;
  r.dataset = data.source;
  r.device = device;
  r.spec = meta.spec;
  r.class_names = class_names(data.kind);
  r.graph = &graph;
  r.rows = data.rows;
  r.cols = data.cols;
  r.images = data.images.data();
  r.labels = data.labels.data();
  r.train = split.train;
  r.val = split.val;
  r.test = split.test;
  r.batch_size = meta.batch_size;
  r.lr = meta.lr;
  r.weight_decay = meta.weight_decay;
  r.l2 = meta.l2;
  r.seed = meta.seed;
  return r;
}

std::unique_ptr<Engine> build_engine(Device device, const Graph& graph, const EngineOptions& eo,
                                     std::ostream& out) {
  std::string notice;
  auto engine = make_engine(device, graph, eo, &notice);
  if (!notice.empty()) out << "note: " << notice << '\n';
  if (engine->precision() != eo.precision) {
    out << "note: --precision " << precision_name(eo.precision) << " has no effect on "
        << engine->device_name() << ", which computes in " << precision_name(engine->precision())
        << '\n';
  }
  return engine;
}

}  // namespace mg
