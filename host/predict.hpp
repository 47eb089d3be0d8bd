// mnist_gpu predict: classifies digit pictures with a checkpoint.
#pragma once

#include <cstdint>
#include <filesystem>
#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

#include "host/command_common.hpp"

namespace mg {

struct PredictOptions {
  std::filesystem::path checkpoint;
  std::vector<std::filesystem::path> images;
  Device device = Device::kCpu;
  bool json = false;
};
void run_predict(const PredictOptions& options, std::ostream& out);

}  // namespace mg
