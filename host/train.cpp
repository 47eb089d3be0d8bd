#include "host/train.hpp"

#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "host/atomic_file.hpp"
#include "host/checkpoint.hpp"
#include "host/datasets.hpp"
#include "host/digit_image.hpp"
#include "host/progress.hpp"
#include "host/report.hpp"
#include "host/split.hpp"

namespace mg {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr int64_t kDefaultBatch = 128;
constexpr double kDefaultLr = 1e-3;
constexpr uint64_t kDefaultSeed = 42;
constexpr uint32_t kSplitSeed = 42;  // the notebook's random_state, whatever --seed says
constexpr const char* kCheckpointName = "checkpoint.safetensors";

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::string display_name(DatasetKind kind) {
  return kind == DatasetKind::kMnist ? "MNIST" : "Fashion-MNIST";
}

std::string timestamp() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  localtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%d-%H%M%S", &tm);
  return buf;
}

// A new, empty folder: the one asked for (which must not exist yet), or runs/<prefix><timestamp>.
fs::path make_run_dir(const std::optional<fs::path>& asked, const std::string& prefix) {
  fs::path dir;
  if (asked) {
    dir = *asked;
    if (fs::exists(dir)) {
      throw FileError(dir.string() + ": already exists; a run folder is never overwritten, choose "
                      "another --out");
    }
  } else {
    const fs::path base = fs::path("runs") / (prefix + timestamp());
    dir = base;
    for (int k = 1; fs::exists(dir); ++k) dir = base.string() + "-" + std::to_string(k);
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw FileError(dir.string() + ": cannot create the output folder (" + ec.message() + ")");
  return dir;
}

LabeledImages load_data(const DataOptions& o) {
  return load_dataset(parse_dataset_kind(o.dataset), DataLocation{o.dir, o.allow_download});
}

Dataset view(const LabeledImages& d) {
  return {d.images.data(), d.labels.data(), d.count, Shape{1, d.rows, d.cols}};
}

void export_split(const fs::path& file, const DataSplit& split) {
  const nlohmann::json j = {{"train", split.train}, {"val", split.val}, {"test", split.test}};
  write_file_atomic(file, j.dump() + "\n");
}

// Keras' CSVLogger file of an earlier run, so a resumed run's curves start at epoch 1.
std::vector<EpochRecord> read_history_csv(const fs::path& file, int64_t epochs) {
  std::vector<EpochRecord> rows;
  std::ifstream in(file);
  std::string line;
  if (!std::getline(in, line) || line.rfind("epoch,accuracy,loss,val_accuracy,val_loss", 0) != 0) {
    return rows;
  }
  while (std::getline(in, line) && static_cast<int64_t>(rows.size()) < epochs) {
    EpochRecord r;
    char comma;
    std::istringstream s(line);
    if (s >> r.epoch >> comma >> r.accuracy >> comma >> r.loss >> comma >> r.val_accuracy >> comma >>
        r.val_loss) {
      rows.push_back(r);
    }
  }
  return rows;
}

template <class T>
T pick(const std::optional<T>& given, const T& saved, const char* option, bool resuming) {
  if (resuming && given && !(*given == saved)) {
    std::ostringstream msg;
    msg << option << " differs from the checkpoint's (" << saved
        << "); a resumed run keeps its checkpoint's settings";
    throw std::invalid_argument(msg.str());
  }
  return given ? *given : saved;
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
  r.seed = meta.seed;
  return r;
}

std::unique_ptr<Engine> build_engine(Device device, const Graph& graph, const EngineOptions& eo,
                                     std::ostream& out) {
  std::string notice;
  auto engine = make_engine(device, graph, eo, &notice);
  if (!notice.empty()) out << "note: " << notice << '\n';
  return engine;
}

}  // namespace

void run_train(const TrainOptions& o, std::ostream& out) {
  if (o.epochs < 1) throw std::invalid_argument("--epochs must be at least 1");

  // Everything that can be wrong with the input is checked before anything is written.
  std::optional<Checkpoint> resume;
  if (o.resume) resume = load_checkpoint(*o.resume);
  const bool resuming = resume.has_value();
  const CheckpointMeta saved = resuming ? resume->meta : CheckpointMeta{};
  CheckpointMeta meta;
  // Specs are compared in canonical form ("dense128" and "flatten,dense128" are one model).
  const std::optional<std::string> model =
      o.model ? std::optional(ModelSpec::parse(*o.model).to_string()) : std::nullopt;
  meta.spec = pick(model, resuming ? saved.spec : std::string(kSeedModelSpec), "--model", resuming);
  meta.seed = pick(o.seed, resuming ? saved.seed : kDefaultSeed, "--seed", resuming);
  meta.batch_size = pick(o.batch_size, resuming ? saved.batch_size : kDefaultBatch, "--batch-size", resuming);
  meta.lr = pick(o.lr, resuming ? saved.lr : kDefaultLr, "--lr", resuming);
  meta.augment.enabled = pick(o.augment ? std::optional<bool>(true) : std::nullopt,
                              resuming ? saved.augment.enabled : false, "--augment", resuming);
  if (resuming) meta.augment = saved.augment;
  if (meta.batch_size < 1) throw std::invalid_argument("--batch-size must be at least 1");
  if (!(meta.lr > 0)) throw std::invalid_argument("--lr must be positive");
  DataOptions data_opt = o.data;
  if (resuming) {
    if (data_opt.dataset != saved.dataset && data_opt.dataset != "mnist") {
      throw std::invalid_argument("--dataset differs from the checkpoint's (" + saved.dataset + ")");
    }
    data_opt.dataset = saved.dataset;
    if (saved.epochs_done >= o.epochs) {
      throw std::invalid_argument(o.resume->string() + ": already trained " +
                                  std::to_string(saved.epochs_done) +
                                  " epochs; ask for more with --epochs");
    }
  }
  const Graph graph = Graph::build(ModelSpec::parse(meta.spec));
  meta.spec = graph.spec().to_string();

  const auto t_load = Clock::now();
  const LabeledImages data = load_data(data_opt);
  const double load_seconds = seconds_since(t_load);
  const DataSplit split = seed_split(data.count, kSplitSeed);
  const DatasetKind kind = data.kind;
  meta.dataset = dataset_name(kind);
  meta.class_names = class_names(kind);
  meta.epochs_done = resuming ? saved.epochs_done : 0;

  if (o.export_split && fs::exists(*o.export_split)) {
    throw FileError(o.export_split->string() +
                    ": already exists; --export-split never overwrites a file");
  }
  const fs::path run_dir = make_run_dir(o.out, "");
  if (o.export_split) export_split(*o.export_split, split);

  EngineOptions eo;
  eo.batch_size = meta.batch_size;
  eo.seed = meta.seed;
  eo.adam.lr = meta.lr;
  eo.cuda_graph = o.cuda_graph;
  eo.augment = meta.augment;
  auto engine = build_engine(o.device, graph, eo, out);
  engine->set_dataset(view(data));
  std::vector<EpochRecord> history;
  if (resuming) {
    engine->set_state(resume->state);
    history = read_history_csv(o.resume->parent_path() / "history.csv", saved.epochs_done);
  }

  out << "data: " << data.source << " (" << data.count << " images; train " << split.train.size()
      << ", val " << split.val.size() << ", test " << split.test.size() << ")\n";
  out << "model: " << meta.spec << " (" << graph.param_count() << " parameters), device "
      << engine->device_name() << ", batch " << meta.batch_size << ", lr " << meta.lr
      << (meta.augment.enabled ? ", augmented" : "") << '\n';
  out << "output: " << run_dir.string() << '\n';
  if (resuming) out << "resuming after epoch " << saved.epochs_done << " from " << o.resume->string() << '\n';

  const bool live = stdout_is_terminal() && &out == &std::cout;
  const auto steps = (static_cast<int64_t>(split.train.size()) + meta.batch_size - 1) / meta.batch_size;
  double train_seconds = 0, eval_seconds = 0;
  for (int64_t epoch = meta.epochs_done; epoch < o.epochs; ++epoch) {
    out << "Epoch " << epoch + 1 << '/' << o.epochs << (live ? "\n" : " - ") << std::flush;
    EpochProgress progress(out, live, [&] { return engine->running_metrics(); });
    const auto t0 = Clock::now();
    const Metrics train = engine->train_epoch(
        split.train, epoch, [&](int64_t done, int64_t total) { progress.step(done, total); });
    const double seconds = seconds_since(t0);
    const auto t1 = Clock::now();
    const Metrics val = engine->evaluate(split.val, nullptr);
    eval_seconds += seconds_since(t1);
    train_seconds += seconds;
    out << progress.finish(steps, seconds, train, val) << std::endl;
    history.push_back({static_cast<int>(epoch), train.loss, train.accuracy, val.loss, val.accuracy, seconds});
    meta.epochs_done = epoch + 1;
    save_checkpoint(run_dir / kCheckpointName, graph, engine->state(), meta);
  }

  const auto t2 = Clock::now();
  RunReport report = base_report(display_name(kind) + " CNN training run", data, split, graph,
                                 engine->device_name(), meta);
  report.test_metrics = engine->evaluate(split.test, &report.test_probs);
  eval_seconds += seconds_since(t2);
  report.history = history;
  report.train_seconds = train_seconds;
  report.eval_seconds = eval_seconds;
  report.load_seconds = load_seconds;
  write_report(run_dir, report);
  out << "report: " << (run_dir / "report.html").string() << '\n';
  print_test_line(out, report.test_metrics);
}

void run_eval(const EvalOptions& o, std::ostream& out) {
  const Checkpoint ckpt = load_checkpoint(o.checkpoint);
  const Graph graph = Graph::build(ModelSpec::parse(ckpt.meta.spec));
  DataOptions data_opt = o.data;
  if (data_opt.dataset.empty()) data_opt.dataset = ckpt.meta.dataset;
  const LabeledImages data = load_data(data_opt);
  const DataSplit split = seed_split(data.count, kSplitSeed);
  const fs::path run_dir = make_run_dir(o.out, "eval-");

  EngineOptions eo;
  eo.batch_size = 256;  // inference only: no dropout state, any batch gives the same result
  eo.seed = ckpt.meta.seed;
  auto engine = build_engine(o.device, graph, eo, out);
  engine->set_parameters(ckpt.state.params);
  engine->set_dataset(view(data));

  RunReport report = base_report(display_name(data.kind) + " CNN evaluation", data, split, graph,
                                 engine->device_name(), ckpt.meta);
  const auto t0 = Clock::now();
  report.test_metrics = engine->evaluate(split.test, &report.test_probs);
  report.eval_seconds = seconds_since(t0);
  write_report(run_dir, report);

  std::vector<uint8_t> test_labels(split.test.size());
  for (size_t i = 0; i < split.test.size(); ++i) test_labels[i] = data.labels[static_cast<size_t>(split.test[i])];
  const auto cm = confusion_matrix(test_labels, report.test_probs, graph.classes());
  out << "checkpoint: " << o.checkpoint.string() << " (" << ckpt.meta.spec << ", "
      << ckpt.meta.epochs_done << " epochs)\n";
  out << "data: " << data.source << ", test set " << split.test.size() << " images\n\n";
  out << classification_report(cm, report.class_names) << '\n';
  out << "confusion matrix (rows: true, columns: predicted)\n";
  for (size_t i = 0; i < cm.size(); ++i) {
    char cell[16];
    for (const int64_t c : cm[i]) {
      std::snprintf(cell, sizeof cell, "%6lld", static_cast<long long>(c));
      out << cell;
    }
    out << "   " << report.class_names[i] << '\n';
  }
  out << "\nreport: " << (run_dir / "report.html").string() << '\n';
  print_test_line(out, report.test_metrics);
}

void run_predict(const PredictOptions& o, std::ostream& out) {
  const Checkpoint ckpt = load_checkpoint(o.checkpoint);
  const Graph graph = Graph::build(ModelSpec::parse(ckpt.meta.spec));
  if (!(graph.input() == Shape{1, 28, 28})) {
    throw std::invalid_argument(o.checkpoint.string() + ": predict needs a model of 28x28 images");
  }
  // Decode everything first: one bad image fails the command before any output.
  std::vector<uint8_t> images;
  for (const fs::path& p : o.images) {
    const MnistImage img = load_digit_image(p);
    images.insert(images.end(), img.begin(), img.end());
  }
  const auto n = static_cast<int64_t>(o.images.size());
  const std::vector<uint8_t> labels(static_cast<size_t>(n), 0);
  EngineOptions eo;
  eo.batch_size = std::min<int64_t>(n, 256);
  auto engine = build_engine(o.device, graph, eo, std::cerr);
  engine->set_parameters(ckpt.state.params);
  engine->set_dataset({images.data(), labels.data(), n, graph.input()});
  std::vector<int32_t> order(static_cast<size_t>(n));
  for (int32_t i = 0; i < static_cast<int32_t>(n); ++i) order[static_cast<size_t>(i)] = i;
  std::vector<float> probs;
  engine->evaluate(order, &probs);

  std::vector<std::string> names = ckpt.meta.class_names;
  const int classes = graph.classes();
  if (static_cast<int>(names.size()) != classes) {
    names.clear();
    for (int c = 0; c < classes; ++c) names.push_back(std::to_string(c));
  }
  nlohmann::json results = nlohmann::json::array();
  for (int64_t i = 0; i < n; ++i) {
    const float* p = probs.data() + i * classes;
    const int best = static_cast<int>(std::max_element(p, p + classes) - p);
    if (o.json) {
      results.push_back({{"image", o.images[static_cast<size_t>(i)].string()},
                         {"class", best},
                         {"label", names[static_cast<size_t>(best)]},
                         {"probabilities", std::vector<float>(p, p + classes)}});
      continue;
    }
    char head[64];
    std::snprintf(head, sizeof head, " (p=%.4f)\n ", static_cast<double>(p[best]));
    out << o.images[static_cast<size_t>(i)].string() << ": " << names[static_cast<size_t>(best)] << head;
    for (int c = 0; c < classes; ++c) {
      char cell[48];
      std::snprintf(cell, sizeof cell, " %s:%.4f", names[static_cast<size_t>(c)].c_str(), static_cast<double>(p[c]));
      out << cell;
    }
    out << '\n';
  }
  if (o.json) out << results.dump(2) << '\n';
}

void run_summary(const std::string& model, std::ostream& out) {
  out << model_summary(Graph::build(ModelSpec::parse(model)));
}

}  // namespace mg
