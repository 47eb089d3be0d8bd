// mnist_gpu export: a checkpoint as a model file other runtimes load (ONNX).
#pragma once

#include <filesystem>
#include <iosfwd>

namespace mg {

struct ExportOptions {
  std::filesystem::path checkpoint;
  std::filesystem::path onnx;  // the file to write
  bool force = false;          // replace an existing file (atomically)
};

// Writes the ONNX model and prints one line naming it. Throws on a bad checkpoint or an existing
// file (without force) before anything is written.
void run_export(const ExportOptions& options, std::ostream& out);

}  // namespace mg
