// Checkpoints: a model and its training state in one safetensors file that PyTorch can read.
//   8-byte little-endian header length N | N bytes of JSON header (space-padded to 8 bytes) | data
// Tensors are float32, little-endian, with PyTorch names and layouts ("conv2d.weight" [out,in,3,3],
// "dense.weight" [out,in], "<layer>.bias" [out]); the Adam moments travel beside them as
// "optimizer.adam_m.<name>" and "optimizer.adam_v.<name>". The format, the metadata keys and the
// resume rules are in docs/checkpoints.md; tools/mnist_gpu_torch.py loads a checkpoint in PyTorch.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "engine/engine.hpp"
#include "engine/graph.hpp"

namespace mg {

// what() is one line: "<path>: <problem>".
class CheckpointError : public std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The value of the "format" metadata key; a reader refuses any other.
inline constexpr std::string_view kCheckpointFormat = "mnist_gpu/1";

// What a checkpoint says besides its tensors: enough to rebuild the model and resume the run.
struct CheckpointMeta {
  std::string spec;  // ModelSpec::to_string(); on save, empty means "the graph's"
  Shape input{1, 28, 28};
  int classes = 10;
  std::vector<std::string> class_names;  // empty, or one per class
  std::string dataset = "mnist";
  int64_t epochs_done = 0;  // whole epochs trained; the next one to run is epoch `epochs_done`
  uint64_t seed = 42;
  int64_t batch_size = 128;
  double lr = 1e-3;
  double adam_beta1 = 0.9, adam_beta2 = 0.999, adam_epsilon = 1e-7;
  double weight_decay = 0;  // AdamW's decoupled decay of the kernel weights (0: Adam)
  double l2 = 0;            // Keras' kernel_regularizer l2 on conv and dense kernels (0: none)
  AugmentConfig augment;  // the training batches' random shifts and rotations
  // The learning-rate schedule's settings and state (host/training_controls.hpp's JSON); empty in
  // a file written before schedules existed, which means a constant rate of `lr`.
  std::string training_controls;
  // A run stopped part-way through epoch `epochs_done` (SIGINT, SIGTERM): its steps done and
  // metric sums so far. steps_done 0 (the keys absent): the checkpoint is at an epoch boundary.
  EpochPosition epoch_position;
};

struct Checkpoint {
  CheckpointMeta meta;
  // params always; adam_m and adam_v only with has_optimizer_state (else empty). step is the
  // metadata's, which keys the dropout masks of the next update.
  TrainingState state;
  bool has_optimizer_state = false;
  // --early-stopping: the parameters of the epoch of the best validation loss so far, when that is
  // not the last epoch (tensors "early_stopping.best.<name>"); else empty.
  std::vector<float> restore_params;
};

// Writes `path` atomically: "<path>.tmp-<pid>" is written, fsynced and renamed over `path`, then
// the directory is fsynced. On failure the temporary file is removed, any previous file at `path`
// is left as it was, and CheckpointError is thrown. state.params must hold graph.param_count()
// values; adam_m and adam_v likewise, or both be empty (a checkpoint without optimizer state).
// meta.spec (when set), meta.input and meta.classes must describe `graph`. Two saves to one path
// from one process at once are not supported (they share the temporary file's name).
// restore: Checkpoint::restore_params, or empty.
void save_checkpoint(const std::filesystem::path& path, const Graph& graph,
                     const TrainingState& state, const CheckpointMeta& meta,
                     std::span<const float> restore = {});

// Reads and validates a checkpoint: the header, every metadata field, and every tensor's name,
// dtype, shape and data offsets against the Graph built from the metadata's spec. Any problem
// throws CheckpointError naming it; no input crashes the reader or makes it allocate more than
// the file holds.
Checkpoint load_checkpoint(const std::filesystem::path& path);
// The same from the bytes of a checkpoint in memory; `name` stands for the path in errors.
Checkpoint load_checkpoint(std::span<const uint8_t> file, const std::filesystem::path& name);

}  // namespace mg
