// What the host program sees of an engine: a model, a dataset held by the device, and whole epochs.
// The device behind it (CPU or CUDA) is chosen once, by make_engine.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "engine/adam.hpp"
#include "engine/graph.hpp"
#include "engine/precision.hpp"
#include "kernels/augment.cuh"

namespace mg {

struct Metrics {
  // As Keras reports it: the mean cross-entropy plus, with an L2 regularizer, the mean penalty
  // (l2_loss); the data loss alone is loss - l2_loss.
  double loss = 0;
  double accuracy = 0;  // fraction of argmax == label
  int64_t count = 0;
  double l2_loss = 0;   // mean of l2 * sum(kernel^2) over the pass's batches (0 without --l2)
};

// A host view of a labelled uint8 image set; the engine copies it to its device once.
struct Dataset {
  const uint8_t* images = nullptr;  // count * shape.size() bytes, 0 = background
  const uint8_t* labels = nullptr;  // count bytes, each < classes
  int64_t count = 0;
  Shape shape{1, 28, 28};
};

struct EngineOptions {
  int64_t batch_size = 128;
  uint64_t seed = 42;  // weights, dropout masks and the per-epoch shuffle all derive from it
  AdamConfig adam;  // adam.weight_decay: AdamW's decoupled decay of the kernel weights
  double l2 = 0;    // Keras' kernel_regularizer l2 factor on every conv and dense kernel
  bool cuda_graph = true;  // CUDA: capture the training step in a graph and replay it
  AugmentConfig augment;   // random shifts and small rotations of training batches
  Precision precision = Precision::kFp32;  // CUDA: TF32 GEMMs when kTf32; the CPU ignores it
};

enum class Device { kAuto, kCpu, kCuda };

// Everything a training run carries from one step to the next, for checkpoints and exact resume:
// the RNG is counter-based (seed, step, epoch), so parameters, Adam moments and the step suffice.
struct TrainingState {
  std::vector<float> params, adam_m, adam_v;  // flat, in the graph's parameter layout
  int64_t step = 0;                           // Adam updates done
};

// Called after each training step has been issued: (steps done in this epoch, steps in the epoch).
using StepCallback = std::function<void(int64_t, int64_t)>;

// Where a training epoch stands between two steps: with the TrainingState, all it takes to stop
// the epoch there and go on later bit for bit (the shuffle is a function of (seed, epoch), the
// random draws of (seed, step, ...)). The sums are the running metrics' raw double accumulators.
struct EpochPosition {
  int64_t steps_done = 0;  // steps of the epoch done; 0: at its start
  double loss_sum = 0, correct_sum = 0, sample_sum = 0;
  double l2_sum = 0;  // the L2 penalty times each batch's size (0 without --l2)
};

// The epoch's metrics so far (what train_epoch returns when steps_done is the whole epoch).
inline Metrics metrics_of(const EpochPosition& p) {
  Metrics m;
  m.count = static_cast<int64_t>(p.sample_sum);
  if (m.count > 0) {
    m.l2_loss = p.l2_sum / p.sample_sum;
    m.loss = p.loss_sum / p.sample_sum + m.l2_loss;
    m.accuracy = p.correct_sum / p.sample_sum;
  }
  return m;
}

class Engine {
 public:
  virtual ~Engine() = default;
  virtual std::string device_name() const = 0;
  // The GEMMs' arithmetic this engine really uses (the CPU's is kFp32 whatever was asked).
  virtual Precision precision() const = 0;
  virtual const Graph& graph() const = 0;
  // Copies the images and labels to the device; indices passed later point into this set.
  virtual void set_dataset(const Dataset& data) = 0;
  // One epoch over `indices` in the order epoch_order(indices, seed, epoch), in batches of the
  // configured size (the last one partial). Returns the training loss and accuracy (dropout on).
  Metrics train_epoch(std::span<const int32_t> indices, int64_t epoch,
                      const StepCallback& on_step = {}) {
    return metrics_of(train_steps(indices, epoch, {}, on_step, {}));
  }
  // The steps of that epoch from `from` on (a position this returned before, on this engine or on
  // one set to the same TrainingState; {} for the epoch's start), to the epoch's end or until
  // stop(), asked after every step, returns true. Returns the position reached (a GPU engine
  // waits for the device first): steps_done is the epoch's step count when the epoch is complete.
  // Throws std::invalid_argument when from.steps_done is past the epoch's end.
  virtual EpochPosition train_steps(std::span<const int32_t> indices, int64_t epoch,
                                    const EpochPosition& from, const StepCallback& on_step,
                                    const std::function<bool()>& stop) = 0;
  // The metrics of the pass in progress (for a live progress bar; on a GPU this waits for the
  // device, so call it sparingly).
  virtual Metrics running_metrics() = 0;
  // Inference over `indices` in the given order; optionally the softmax probabilities
  // ([indices.size(), classes]).
  virtual Metrics evaluate(std::span<const int32_t> indices, std::vector<float>* probs) = 0;
  virtual std::vector<float> parameters() = 0;
  virtual void set_parameters(std::span<const float> values) = 0;
  virtual int64_t step() = 0;  // Adam updates done so far
  // Adam's learning rate for the steps that follow (EngineOptions::adam.lr at first). On CUDA it
  // is in device memory, read by the captured step: changing it needs no recapture.
  virtual void set_learning_rate(double lr) = 0;
  virtual double learning_rate() = 0;
  // AdamW's weight decay (EngineOptions::adam.weight_decay at first), in device memory like the
  // learning rate. Throws std::invalid_argument unless finite and >= 0.
  virtual void set_weight_decay(double weight_decay) = 0;
  virtual double weight_decay() = 0;
  // Inference on `images` (count * graph().input().size() bytes, as in Dataset, count >= 1) with
  // the engine's own forward: out[i] is the output of layer i, [count, layers()[i].out], and the
  // last one the logits (before softmax). Changes no training state.
  virtual std::vector<std::vector<float>> activations(std::span<const uint8_t> images) = 0;
  // Saliency by the engine's own backward pass: d(logit of the predicted class)/d(input), where the
  // input is the image scaled to [0, 1] ([count, C, H, W]). Dropout is off; no training state
  // (parameters, Adam moments, step) changes. predicted, when given, receives the argmax classes.
  virtual std::vector<float> saliency(std::span<const uint8_t> images,
                                      std::vector<int>* predicted = nullptr) = 0;
  virtual TrainingState state() = 0;
  virtual void set_state(const TrainingState& state) = 0;  // throws if sizes do not match
};

// Builds an engine. kAuto picks CUDA when a usable GPU is there, else the CPU and sets *notice to
// a one-line explanation. kCuda without a usable GPU throws std::runtime_error naming the cause.
std::unique_ptr<Engine> make_engine(Device device, const Graph& graph, const EngineOptions& options,
                                    std::string* notice = nullptr);
std::unique_ptr<Engine> make_cpu_engine(const Graph& graph, const EngineOptions& options);

// The shuffled order of one epoch: indices sorted by a Philox key per position (ties by position),
// identical on every backend (the CUDA engine sorts the same keys on the device).
std::vector<int32_t> epoch_order(std::span<const int32_t> indices, uint64_t seed, int64_t epoch);

}  // namespace mg
