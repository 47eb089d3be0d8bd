// mnist_gpu eval: test metrics, per-class scores, the confusion matrix and a report of a
// checkpoint.
#pragma once

#include <cstdint>
#include <filesystem>
#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

#include "host/command_common.hpp"

namespace mg {

struct EvalOptions {
  std::filesystem::path checkpoint;
  DataOptions data;  // dataset defaults to the checkpoint's
  Device device = Device::kAuto;
  Precision precision = Precision::kFp32;    // as train's --precision
  std::optional<std::filesystem::path> out;  // the report folder; default runs/eval-<timestamp>/
};
void run_eval(const EvalOptions& options, std::ostream& out);

}  // namespace mg
