// What the commands (train, eval, predict, ...) share: the data options, the run folder, the
// engine with its device notice, the report's common part and the last line scripts read.
#pragma once

#include <chrono>
#include <filesystem>
#include <iosfwd>
#include <memory>
#include <optional>
#include <string>

#include "engine/engine.hpp"
#include "host/checkpoint.hpp"
#include "host/datasets.hpp"
#include "host/report.hpp"
#include "host/split.hpp"

namespace mg {

struct DataOptions {
  std::optional<std::filesystem::path> dir;  // --data; else the search order of host/datasets.hpp
  std::string dataset = "mnist";             // mnist | fashion-mnist
  bool allow_download = true;
  bool strict = false;  // --strict-data: MNIST's or Fashion-MNIST's sizes without their SHA-256
};

using Clock = std::chrono::steady_clock;
inline constexpr uint32_t kSplitSeed = 42;  // the notebook's random_state, whatever --seed says
inline constexpr const char* kCheckpointName = "checkpoint.safetensors";
// The epoch of the best validation accuracy, beside the last one (train writes both).
inline constexpr const char* kBestCheckpointName = "best.safetensors";

double seconds_since(Clock::time_point t0);
std::string display_name(DatasetKind kind);  // "MNIST", "Fashion-MNIST"

// A new, empty folder: the one asked for (which must not exist yet), or runs/<prefix><timestamp>.
std::filesystem::path make_run_dir(const std::optional<std::filesystem::path>& asked,
                                   const std::string& prefix);

// load_dataset, printing its warnings to stderr as "warning: ...".
LabeledImages load_data(const DataOptions& o);
Dataset view(const LabeledImages& d);

// The last line of train and eval, which scripts read: "test: loss=<x> accuracy=<y>".
void print_test_line(std::ostream& out, const Metrics& m);

// The parts of a report that train and eval share.
RunReport base_report(const std::string& title, const LabeledImages& data, const DataSplit& split,
                      const Graph& graph, const std::string& device, const CheckpointMeta& meta);

// make_engine, printing its one-line device notice (if any) as "note: ..." to out, and another
// when the device does not compute in the precision asked for (the CPU has no TF32).
std::unique_ptr<Engine> build_engine(Device device, const Graph& graph, const EngineOptions& eo,
                                     std::ostream& out);

}  // namespace mg
