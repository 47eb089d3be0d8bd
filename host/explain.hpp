// mnist_gpu explain: pictures of what a checkpoint's network does with digit pictures: the first
// conv layer's filters, every conv and pool layer's feature maps, and a saliency map per digit.
#pragma once

#include <filesystem>
#include <iosfwd>
#include <optional>
#include <vector>

#include "host/command_common.hpp"

namespace mg {

struct ExplainOptions {
  std::filesystem::path checkpoint;
  std::vector<std::filesystem::path> images;
  std::optional<std::filesystem::path> out;  // default runs/explain-<timestamp>/; never overwritten
  Device device = Device::kCpu;
};
void run_explain(const ExplainOptions& options, std::ostream& out);

}  // namespace mg
