#include "host/train.hpp"

#include <cmath>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "host/atomic_file.hpp"
#include "host/interrupt.hpp"
#include "host/progress.hpp"
#include "host/training_controls.hpp"

namespace mg {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kDefaultBatch = 128;
constexpr double kDefaultLr = 1e-3;
constexpr uint64_t kDefaultSeed = 42;

void export_split(const fs::path& file, const DataSplit& split) {
  const nlohmann::json j = {{"train", split.train}, {"val", split.val}, {"test", split.test}};
  write_file_atomic(file, j.dump() + "\n");
}

// Keras' CSVLogger file of an earlier run, so a resumed run's curves start at epoch 1. Columns by
// name: files written before the "lr" column existed read with lr 0 (not recorded).
std::vector<EpochRecord> read_history_csv(const fs::path& file, int64_t epochs) {
  std::vector<EpochRecord> rows;
  std::ifstream in(file);
  std::string line;
  if (!std::getline(in, line)) return rows;
  std::vector<std::string> names;
  for (std::istringstream h(line); std::getline(h, names.emplace_back(), ',');) {
  }
  names.pop_back();
  if (names.empty() || names.front() != "epoch") return rows;
  while (std::getline(in, line) && static_cast<int64_t>(rows.size()) < epochs) {
    EpochRecord r;
    std::istringstream s(line);
    std::string cell;
    for (size_t i = 0; i < names.size() && std::getline(s, cell, ','); ++i) {
      const double v = std::strtod(cell.c_str(), nullptr);
      const std::string& n = names[i];
      if (n == "epoch") r.epoch = static_cast<int>(v);
      if (n == "accuracy") r.accuracy = v;
      if (n == "loss") r.loss = v;
      if (n == "lr") r.lr = v;
      if (n == "l2_loss") r.l2_loss = v;
      if (n == "val_l2_loss") r.val_l2_loss = v;
      if (n == "val_accuracy") r.val_accuracy = v;
      if (n == "val_loss") r.val_loss = v;
    }
    rows.push_back(r);
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

// What the schedule and early stopping did, in words, for the report.
std::string controls_note(const TrainingControls& c, const std::vector<EpochRecord>& history) {
  std::ostringstream s;
  const ControlOptions& o = c.options;
  if (o.schedule == LrSchedule::kCosine) {
    s << "cosine learning-rate schedule from " << c.base_lr << " over " << o.cosine_epochs
      << " epochs";
  } else if (o.schedule == LrSchedule::kPlateau) {
    s << "ReduceLROnPlateau on val_loss (factor " << o.plateau_factor << ", patience "
      << o.plateau_patience << "): learning rate " << c.state.lr << " at the end";
  }
  if (c.early_stopping() && !history.empty()) {
    if (s.tellp() > 0) s << "; ";
    s << "early stopping on val_loss (patience " << o.early_stopping_patience << "): ";
    if (c.state.stopped_epoch >= 0) {
      s << "stopped after epoch " << c.state.stopped_epoch + 1 << ", no improvement for "
        << o.early_stopping_patience << " epochs";
    } else {
      s << "ran every epoch";
    }
    s << "; the model is epoch " << c.state.stop_best_epoch + 1 << "'s (val_loss "
      << c.state.stop_best << ")";
  }
  return s.str();
}

// A word of a shell command, quoted when it needs to be.
std::string shell_word(const std::string& w) {
  const bool plain = !w.empty() && w.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                                       "0123456789_-./=:,+@%") == std::string::npos;
  if (plain) return w;
  std::string q = "'";
  for (const char c : w) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// The command that continues this run from `checkpoint` (its settings travel in the checkpoint;
// the options that are not part of it are repeated).
std::string resume_command(const TrainOptions& o, const fs::path& checkpoint) {
  std::vector<std::string> w = {o.program, "train", "--resume", checkpoint.string(), "--epochs",
                                std::to_string(o.epochs)};
  if (o.data.dir) w.insert(w.end(), {"--data", o.data.dir->string()});
  if (!o.data.allow_download) w.emplace_back("--no-download");
  if (o.data.strict) w.emplace_back("--strict-data");
  if (o.device != Device::kAuto) {
    w.insert(w.end(), {"--device", o.device == Device::kCpu ? "cpu" : "cuda"});
  }
  if (o.precision != Precision::kFp32) w.insert(w.end(), {"--precision", precision_name(o.precision)});
  if (!o.cuda_graph) w.emplace_back("--no-cuda-graph");
  std::string cmd;
  for (const std::string& word : w) {
    if (!cmd.empty()) cmd += ' ';
    cmd += shell_word(word);
  }
  return cmd;
}

}  // namespace

int run_train(const TrainOptions& o, std::ostream& out) {
  if (o.epochs < 1) throw std::invalid_argument("--epochs must be at least 1");
  for (const auto& [name, value] : {std::pair{"--weight-decay", o.weight_decay}, std::pair{"--l2", o.l2}}) {
    if (value && (!(*value >= 0) || !std::isfinite(*value))) {
      std::ostringstream msg;
      msg << name << " must be a finite number >= 0 (got " << *value << ")";
      throw std::invalid_argument(msg.str());
    }
  }
  // From here on SIGINT and SIGTERM stop the run after its current step (host/interrupt.hpp).
  const InterruptScope interrupts;

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
  meta.batch_size =
      pick(o.batch_size, resuming ? saved.batch_size : kDefaultBatch, "--batch-size", resuming);
  meta.lr = pick(o.lr, resuming ? saved.lr : kDefaultLr, "--lr", resuming);
  meta.weight_decay =
      pick(o.weight_decay, resuming ? saved.weight_decay : 0.0, "--weight-decay", resuming);
  meta.l2 = pick(o.l2, resuming ? saved.l2 : 0.0, "--l2", resuming);
  meta.augment.enabled = pick(o.augment ? std::optional<bool>(true) : std::nullopt,
                              resuming ? saved.augment.enabled : false, "--augment", resuming);
  if (resuming) meta.augment = saved.augment;
  if (meta.batch_size < 1) throw std::invalid_argument("--batch-size must be at least 1");
  if (!(meta.lr > 0)) throw std::invalid_argument("--lr must be positive");
  // The schedule: a new run's from the options, a resumed run's from its checkpoint (a file from
  // before schedules had a constant rate).
  TrainingControls controls;
  if (resuming && !saved.training_controls.empty()) {
    controls = TrainingControls::from_json(saved.training_controls);
  } else {
    ControlOptions co;
    co.schedule = parse_lr_schedule(o.lr_schedule.value_or("constant"));
    if (co.schedule == LrSchedule::kCosine) co.cosine_epochs = o.epochs;
    if (o.lr_factor) co.plateau_factor = *o.lr_factor;
    if (o.lr_patience) co.plateau_patience = *o.lr_patience;
    if (o.early_stopping) co.early_stopping_patience = *o.early_stopping;
    if (resuming) co = ControlOptions{};
    controls = TrainingControls(co, meta.lr);
  }
  const ControlOptions& co = controls.options;
  pick(o.lr_schedule, std::string(lr_schedule_name(co.schedule)), "--lr-schedule", resuming);
  pick(o.lr_factor, co.plateau_factor, "--lr-factor", resuming);
  pick(o.lr_patience, co.plateau_patience, "--lr-patience", resuming);
  pick(o.early_stopping, co.early_stopping_patience, "--early-stopping", resuming);
  // A run that stopped early goes on from its best epoch's weights, its early stopping afresh (as
  // Keras' EarlyStopping does at the start of every fit()).
  const int64_t stopped_before = controls.state.stopped_epoch;
  // A run interrupted part-way through an epoch goes on from that step.
  const EpochPosition resume_position = resuming ? saved.epoch_position : EpochPosition{};
  if (stopped_before >= 0) {
    controls.state.stop_seen = false;
    controls.state.stop_wait = 0;
    controls.state.stop_best_epoch = -1;
    controls.state.stopped_epoch = -1;
  }
  DataOptions data_opt = o.data;
  if (resuming) {
    if (data_opt.dataset != saved.dataset && data_opt.dataset != "mnist") {
      throw std::invalid_argument("--dataset differs from the checkpoint's (" + saved.dataset +
                                  ")");
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

  const auto steps =
      (static_cast<int64_t>(split.train.size()) + meta.batch_size - 1) / meta.batch_size;
  if (resume_position.steps_done >= steps) {
    throw std::invalid_argument(o.resume->string() + ": stopped after step " +
                                std::to_string(resume_position.steps_done) + " of an epoch, but " +
                                "an epoch of this data has " + std::to_string(steps) +
                                " steps (different data?)");
  }
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
  eo.adam.weight_decay = meta.weight_decay;
  eo.l2 = meta.l2;
  eo.cuda_graph = o.cuda_graph;
  eo.augment = meta.augment;
  eo.precision = o.precision;
  auto engine = build_engine(o.device, graph, eo, out);
  engine->set_dataset(view(data));
  std::vector<EpochRecord> history;
  // --early-stopping: the parameters of the best validation loss so far (restored at the end).
  std::vector<float> best_params;
  if (resuming) {
    engine->set_state(resume->state);
    history = read_history_csv(o.resume->parent_path() / "history.csv", saved.epochs_done);
    if (controls.early_stopping()) {
      // Mid-epoch, the parameters are not an epoch's: the best ones are in restore_params, if any.
      best_params = resume->restore_params.empty() && resume_position.steps_done == 0
                        ? resume->state.params
                        : resume->restore_params;
    }
  }

  out << "data: " << data.source << " (" << data.count << " images; train " << split.train.size()
      << ", val " << split.val.size() << ", test " << split.test.size() << ")\n";
  out << "model: " << meta.spec << " (" << graph.param_count() << " parameters), device "
      << engine->device_name() << ", batch " << meta.batch_size << ", lr " << meta.lr << ", "
      << precision_name(engine->precision()) << (meta.augment.enabled ? ", augmented" : "");
  if (meta.weight_decay > 0) out << ", weight decay " << meta.weight_decay;
  if (meta.l2 > 0) out << ", l2 " << meta.l2;
  if (co.schedule != LrSchedule::kConstant) out << ", " << lr_schedule_name(co.schedule) << " schedule";
  out << '\n';
  out << "output: " << run_dir.string() << '\n';
  if (resuming && resume_position.steps_done > 0) {
    out << "resuming epoch " << saved.epochs_done + 1 << " after step " << resume_position.steps_done
        << '/' << steps << " from " << o.resume->string() << '\n';
  } else if (resuming) {
    out << "resuming after epoch " << saved.epochs_done << " from " << o.resume->string() << '\n';
  }
  if (stopped_before >= 0) {
    out << "the run had stopped early after epoch " << stopped_before + 1
        << "; training goes on from its best epoch's weights, early stopping afresh\n";
  }

  const bool live = stdout_is_terminal() && &out == &std::cout;
  const std::function<Metrics()> running = [&] { return engine->running_metrics(); };
  if (o.observer) {
    o.observer->on_start({run_dir, meta.spec, meta.dataset, engine->device_name(),
                          graph.param_count(), meta.batch_size,
                          static_cast<int64_t>(split.train.size()),
                          static_cast<int64_t>(split.val.size()),
                          static_cast<int64_t>(split.test.size()), steps, o.epochs,
                          meta.epochs_done, history});
  }
  double train_seconds = 0, eval_seconds = 0;
  // best.safetensors: the epoch of the best validation accuracy so far (Keras' ModelCheckpoint
  // with save_best_only=True), counting the epochs of a resumed run's history.
  double best_val_accuracy = -1;
  for (const EpochRecord& r : history) best_val_accuracy = std::max(best_val_accuracy, r.val_accuracy);
  const int64_t first_epoch = meta.epochs_done;
  // Set when a signal stops the run: the epoch it stopped in and its position there.
  int signal = 0;
  int64_t stopped_epoch = -1;
  EpochPosition stopped_at;
  for (int64_t epoch = first_epoch; epoch < o.epochs; ++epoch) {
    const EpochPosition from = epoch == first_epoch ? resume_position : EpochPosition{};
    if ((signal = interrupt_signal()) != 0) {
      stopped_epoch = epoch;
      stopped_at = from;
      break;
    }
    const double lr = controls.lr_for(epoch);
    engine->set_learning_rate(lr);
    out << "Epoch " << epoch + 1 << '/' << o.epochs << (live ? "\n" : " - ") << std::flush;
    EpochProgress progress(out, live, [&] { return engine->running_metrics(); });
    const auto t0 = Clock::now();
    const EpochPosition reached = engine->train_steps(
        split.train, epoch, from,
        [&](int64_t done, int64_t total) {
          progress.step(done, total);
          if (o.observer) o.observer->on_step(epoch, done, total, running);
        },
        [] { return interrupt_signal() != 0; });
    train_seconds += seconds_since(t0);
    if (reached.steps_done < steps) {
      signal = interrupt_signal();
      stopped_epoch = epoch;
      stopped_at = reached;
      out << '\n';
      break;
    }
    const Metrics train = metrics_of(reached);
    const double seconds = seconds_since(t0);
    const auto t1 = Clock::now();
    const Metrics val = engine->evaluate(split.val, nullptr);
    eval_seconds += seconds_since(t1);
    out << progress.finish(steps, seconds, train, val) << std::endl;
    history.push_back({static_cast<int>(epoch), train.loss, train.accuracy, val.loss, val.accuracy,
                       seconds, lr, train.l2_loss, val.l2_loss});
    const TrainingControls::Verdict verdict = controls.end_epoch(epoch, val.loss);
    if (verdict.lr_reduced) {
      out << "Epoch " << epoch + 1 << ": ReduceLROnPlateau reducing learning rate to "
          << controls.state.lr << ".\n";
    }
    meta.epochs_done = epoch + 1;
    meta.training_controls = controls.to_json();
    const TrainingState state = engine->state();
    if (verdict.improved) best_params = state.params;
    const bool keep_best = controls.early_stopping() && !verdict.improved;
    try {
      save_checkpoint(run_dir / kCheckpointName, graph, state, meta,
                      keep_best ? std::span<const float>(best_params) : std::span<const float>());
    } catch (const CheckpointError& e) {
      // The save is atomic (host/atomic_file.hpp): the previous epoch's file is still there.
      if (epoch == first_epoch) throw;
      throw CheckpointError(std::string(e.what()) + "; " + (run_dir / kCheckpointName).string() +
                            " still holds epoch " + std::to_string(epoch) +
                            " (--resume continues from it)");
    }
    // history.csv after every epoch too, so a resume from this checkpoint has its curves even
    // when the process is killed (write_report rewrites it at the end).
    write_file_atomic(run_dir / "history.csv", history_csv_text(history, meta.l2));
    if (val.accuracy > best_val_accuracy) {  // an error here names best.safetensors
      best_val_accuracy = val.accuracy;
      save_checkpoint(run_dir / kBestCheckpointName, graph, state, meta);
    }
    if (o.observer) o.observer->on_epoch(history.back());
    if (verdict.stop) {
      out << "Epoch " << epoch + 1 << ": early stopping (val_loss has not improved for "
          << co.early_stopping_patience << " epochs since epoch "
          << controls.state.stop_best_epoch + 1 << ")\n";
      break;
    }
  }
  if (signal != 0) {
    // Interrupted: the checkpoint of where the run stands, then the report of what it has done.
    meta.epochs_done = stopped_epoch;
    meta.training_controls = controls.to_json();
    meta.epoch_position = stopped_at;
    const fs::path ckpt = run_dir / kCheckpointName;
    out << "interrupted by " << signal_name(signal);
    if (stopped_at.steps_done > 0) {
      out << " after step " << stopped_at.steps_done << '/' << steps << " of epoch "
          << stopped_epoch + 1 << '/' << o.epochs;
    } else {
      out << " before epoch " << stopped_epoch + 1 << '/' << o.epochs;
    }
    out << "; saving " << ckpt.string() << std::endl;
    {
      // A second signal now waits for these two files (host/interrupt.hpp).
      const DeferExit defer;
      // After an epoch of this run its checkpoint is already there, and is this very state.
      if (stopped_at.steps_done > 0 || stopped_epoch == first_epoch) {
        const TrainingState state = engine->state();  // on a GPU: after the last step is done
        const bool keep_best = controls.early_stopping() && !best_params.empty() &&
                               (stopped_at.steps_done > 0 || best_params != state.params);
        save_checkpoint(ckpt, graph, state, meta,
                        keep_best ? std::span<const float>(best_params) : std::span<const float>());
      }
      write_file_atomic(run_dir / "history.csv", history_csv_text(history, meta.l2));
      out << "to resume: " << resume_command(o, ckpt) << std::endl;
    }
  } else if (controls.early_stopping() && !history.empty() &&
             controls.state.stop_best_epoch != history.back().epoch && !best_params.empty()) {
    // Keras' restore_best_weights: the model the run ends with, and tests, is the best epoch's
    // (with the last epoch's optimizer state, as Keras keeps it).
    engine->set_parameters(best_params);
    out << "Restoring model weights from the end of the best epoch: "
        << controls.state.stop_best_epoch + 1 << ".\n";
    save_checkpoint(run_dir / kCheckpointName, graph, engine->state(), meta);
  }

  const auto t2 = Clock::now();
  RunReport report = base_report(display_name(kind) + " CNN training run", data, split, graph,
                                 engine->device_name(), meta);
  report.precision = precision_name(engine->precision());
  report.training_note = controls_note(controls, history);
  if (signal != 0) {
    std::ostringstream note;
    note << "interrupted by " << signal_name(signal) << " after " << history.size()
         << (history.size() == 1 ? " epoch" : " epochs");
    if (stopped_at.steps_done > 0) note << " and " << stopped_at.steps_done << '/' << steps << " steps";
    note << "; the test metrics are of the weights at that point";
    report.training_note += (report.training_note.empty() ? "" : "; ") + note.str();
  }
  report.test_metrics = engine->evaluate(split.test, &report.test_probs);
  report.engine = engine.get();
  eval_seconds += seconds_since(t2);
  report.history = history;
  report.train_seconds = train_seconds;
  report.eval_seconds = eval_seconds;
  report.load_seconds = load_seconds;
  write_report(run_dir, report);
  out << "report: " << (run_dir / "report.html").string() << '\n';
  if (signal != 0) return signal;
  if (o.observer) o.observer->on_finish(run_dir / "report.html", report.test_metrics);
  print_test_line(out, report.test_metrics);
  return 0;  // a signal after the last epoch's checkpoint changes nothing: the run is complete
}

}  // namespace mg
