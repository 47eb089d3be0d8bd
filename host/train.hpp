// The `mnist_gpu train` job: load MNIST, split it as the notebook does, train, report.
#pragma once

#include <cstdint>
#include <filesystem>
#include <iosfwd>
#include <string>

#include "engine/engine.hpp"
#include "engine/model_spec.hpp"

namespace mg {

struct TrainOptions {
  std::filesystem::path data_dir;  // empty: default_data_dir()
  int epochs = 20;
  int64_t batch_size = 128;
  double lr = 1e-3;
  uint64_t seed = 42;
  std::string model{kSeedModelSpec};
  Device device = Device::kAuto;
};

// $MNIST_GPU_DATA when set, else ./data/mnist (where tools/get_mnist.sh puts the files).
std::filesystem::path default_data_dir();

// Runs the job, printing Keras-style progress to out. The last line is
// "test: loss=<x> accuracy=<y>". Throws DataError / SpecError / std::runtime_error on bad input.
void run_train(const TrainOptions& options, std::ostream& out);

}  // namespace mg
