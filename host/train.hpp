// mnist_gpu train: the notebook's protocol, a run folder with checkpoint and report.
#pragma once

#include <cstdint>
#include <filesystem>
#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

#include "host/command_common.hpp"

namespace mg {

struct TrainOptions {
  DataOptions data;
  int epochs = 20;
  // Unset: the defaults below, or the checkpoint's values with --resume.
  std::optional<int64_t> batch_size;  // 128
  std::optional<double> lr;           // 1e-3
  std::optional<uint64_t> seed;       // 42
  std::optional<std::string> model;   // kSeedModelSpec
  Device device = Device::kAuto;
  Precision precision = Precision::kFp32;  // CUDA: kTf32 for TF32 GEMMs; no effect on the CPU
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

}  // namespace mg
