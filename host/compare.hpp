// mnist_gpu compare: several run folders side by side. Reads each run's history.csv, metrics.json
// and checkpoint.safetensors (what train writes) and writes compare.html with its SVG charts into a
// new folder. docs/report.md describes the files.
#pragma once

#include <cstdint>
#include <filesystem>
#include <iosfwd>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "host/report.hpp"

namespace mg {

// what() is one line: "<folder or file>: <problem>".
class CompareError : public std::runtime_error {
  using std::runtime_error::runtime_error;
};

// What compare takes from one run folder.
struct RunSummary {
  std::filesystem::path dir;
  std::string name;  // the folder's name, or its path where two runs share a name
  std::string spec, device;
  std::string dataset;      // the checkpoint's: "mnist" or "fashion-mnist"
  std::string data_source;  // metrics.json's "dataset": the files the run read
  int64_t param_count = 0;
  bool augment = false;
  double max_shift = 0, max_rotation_deg = 0;  // with augment
  std::vector<EpochRecord> history;            // history.csv, 0-based epochs
  double test_accuracy = 0, test_loss = 0;
  double train_seconds = 0, images_per_second = 0;
  std::vector<std::string> class_names;
  std::vector<double> f1;                       // per class, test
  std::vector<std::vector<int64_t>> confusion;  // [true][predicted], test
};

// Keras' CSVLogger text: an "epoch" column and accuracy, loss, val_accuracy, val_loss in any order
// (other columns, such as lr, are ignored); epochs 0, 1, 2, ... Throws CompareError naming `file`,
// the line and the problem.
std::vector<EpochRecord> parse_history_csv(std::string_view text, const std::string& file);

// Reads and cross-checks one run folder (history.csv against metrics.json, the checkpoint's spec
// and dataset against metrics.json). Throws CompareError naming the folder or file.
RunSummary read_run(const std::filesystem::path& dir);

struct CompareOptions {
  std::vector<std::filesystem::path> runs;   // 2 or more run folders
  std::optional<std::filesystem::path> out;  // default runs/compare-<timestamp>/; never overwritten
  bool diff_first_two = false;               // confusion difference of the first two given runs,
                                             // not of the best two
};

// Distinguishable colours for runs 1 to 12 (matplotlib's tab10, then black and gold); later runs
// reuse them with dashed lines.
const std::vector<std::string>& run_colors();

// The files compare writes, compare.html last.
const std::vector<std::string>& compare_files();

// Reads every run (all checks before anything is written), refuses runs of different datasets,
// then creates the output folder and writes compare_files() into it. Prints the runs ranked by
// test accuracy and the report's path.
void run_compare(const CompareOptions& options, std::ostream& out);

}  // namespace mg
