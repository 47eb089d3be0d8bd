// The mnist_gpu commands: train, eval, predict, summary.
#pragma once

#include <cstdint>
#include <filesystem>
#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

#include "engine/engine.hpp"
#include "engine/model_spec.hpp"

namespace mg {

struct DataOptions {
  std::optional<std::filesystem::path> dir;  // --data; else the search order of host/datasets.hpp
  std::string dataset = "mnist";             // mnist | fashion-mnist
  bool allow_download = true;
};

struct TrainOptions {
  DataOptions data;
  int epochs = 20;
  // Unset: the defaults below, or the checkpoint's values with --resume.
  std::optional<int64_t> batch_size;  // 128
  std::optional<double> lr;           // 1e-3
  std::optional<uint64_t> seed;       // 42
  std::optional<std::string> model;   // kSeedModelSpec
  Device device = Device::kAuto;
  bool cuda_graph = true;
  bool augment = false;
  std::optional<std::filesystem::path> out;  // default runs/<timestamp>/
  std::optional<std::filesystem::path> resume;
  std::optional<std::filesystem::path> export_split;
};

// Trains, writing the run folder (checkpoint, history, metrics, pictures, report.html). Prints
// Keras-style progress; the last line is "test: loss=<x> accuracy=<y>". Throws on bad input before
// anything is written.
void run_train(const TrainOptions& options, std::ostream& out);

struct EvalOptions {
  std::filesystem::path checkpoint;
  DataOptions data;  // dataset defaults to the checkpoint's
  Device device = Device::kAuto;
  std::optional<std::filesystem::path> out;  // the report folder; default runs/eval-<timestamp>/
};
void run_eval(const EvalOptions& options, std::ostream& out);

struct PredictOptions {
  std::filesystem::path checkpoint;
  std::vector<std::filesystem::path> images;
  Device device = Device::kCpu;
  bool json = false;
};
void run_predict(const PredictOptions& options, std::ostream& out);

void run_summary(const std::string& model, std::ostream& out);

}  // namespace mg
