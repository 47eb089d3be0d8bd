// mnist_gpu train: the notebook's protocol, a run folder with checkpoint and report.
#pragma once

#include <cstdint>
#include <functional>
#include <filesystem>
#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

#include "host/command_common.hpp"

namespace mg {

// What a run is, as an observer is told at its start.
struct TrainStart {
  std::filesystem::path run_dir;
  std::string spec, dataset, device;
  int64_t param_count = 0, batch_size = 0, train_count = 0, val_count = 0, test_count = 0;
  int64_t steps_per_epoch = 0;
  int epochs = 0;                    // in all
  int64_t first_epoch = 0;           // 0-based: the epochs a resumed run had done
  std::vector<EpochRecord> history;  // the epochs done before (a resumed run), else empty
};

// Told of a run's progress by the training thread (train --serve's live view implements it). The
// calls come between steps, so they must return quickly; running() reads the metrics of the epoch
// so far (on a GPU it waits for the device: call it at most about once a second).
class TrainObserver {
 public:
  virtual ~TrainObserver() = default;
  virtual void on_start(const TrainStart& start) = 0;
  virtual void on_step(int64_t epoch, int64_t done, int64_t total,
                       const std::function<Metrics()>& running) = 0;
  virtual void on_epoch(const EpochRecord& record) = 0;  // validated, its checkpoint saved
  virtual void on_finish(const std::filesystem::path& report, const Metrics& test) = 0;
};

struct TrainOptions {
  DataOptions data;
  int epochs = 20;
  // Unset: the defaults below, or the checkpoint's values with --resume.
  std::optional<int64_t> batch_size;  // 128
  std::optional<double> lr;           // 1e-3
  std::optional<double> weight_decay; // 0: AdamW's decoupled decay of conv and dense kernels
  std::optional<double> l2;           // 0: Keras' kernel_regularizer l2 on the same kernels
  std::optional<uint64_t> seed;       // 42
  std::optional<std::string> model;   // kSeedModelSpec
  std::optional<std::string> lr_schedule;  // constant, cosine or plateau (host/training_controls)
  std::optional<double> lr_factor;         // plateau: 0.1
  std::optional<int64_t> lr_patience;      // plateau: 10
  std::optional<int64_t> early_stopping;   // patience on val_loss; 0: off
  Device device = Device::kAuto;
  Precision precision = Precision::kFp32;  // CUDA: kTf32 for TF32 GEMMs; no effect on the CPU
  bool cuda_graph = true;
  bool augment = false;
  std::optional<std::filesystem::path> out;  // default runs/<timestamp>/
  std::optional<std::filesystem::path> resume;
  std::optional<std::filesystem::path> export_split;
  TrainObserver* observer = nullptr;  // not owned; may be null
  std::string program = "mnist_gpu";  // argv[0], for the command printed to resume an interrupted run
};

// Trains, writing the run folder (checkpoint, history, metrics, pictures, report.html). Prints
// Keras-style progress; the last line is "test: loss=<x> accuracy=<y>". Throws on bad input before
// anything is written. Returns 0, or the signal (SIGINT, SIGTERM) that stopped it: then it has
// finished its current step, saved a checkpoint of that point (CheckpointMeta::epoch_position) and
// history.csv, printed "to resume: <command>", and written the report of the run so far. A signal
// after the last epoch's checkpoint lets the run finish (it returns 0).
int run_train(const TrainOptions& options, std::ostream& out);

}  // namespace mg
