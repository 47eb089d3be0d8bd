// Keras' training controls, epoch by epoch: the learning-rate schedule (constant, cosine, or
// ReduceLROnPlateau) and EarlyStopping on the validation loss. Their whole state is here, saved in
// the checkpoint's metadata after every epoch, so --resume continues them exactly.
#pragma once

#include <cstdint>
#include <string>

namespace mg {

enum class LrSchedule { kConstant, kCosine, kPlateau };

LrSchedule parse_lr_schedule(const std::string& name);  // throws std::invalid_argument
const char* lr_schedule_name(LrSchedule s);

struct ControlOptions {
  LrSchedule schedule = LrSchedule::kConstant;
  // cosine: lr * (1 + cos(pi * epoch / cosine_epochs)) / 2 for the 0-based epoch (PyTorch's
  // CosineAnnealingLR, eta_min 0, stepped per epoch); cosine_epochs is the run's --epochs.
  int64_t cosine_epochs = 0;
  // plateau: Keras' ReduceLROnPlateau on val_loss (mode min, min_delta 1e-4, cooldown 0, min_lr 0).
  double plateau_factor = 0.1;
  int64_t plateau_patience = 10;
  // EarlyStopping on val_loss (min_delta 0, restore_best_weights=True); 0: off.
  int64_t early_stopping_patience = 0;
};

struct ControlState {
  double lr = 0;  // the rate of the next epoch
  // ReduceLROnPlateau
  double plateau_best = 0;  // meaningful once plateau_seen
  bool plateau_seen = false;
  int64_t plateau_wait = 0;
  // EarlyStopping
  double stop_best = 0;  // meaningful once stop_seen
  bool stop_seen = false;
  int64_t stop_best_epoch = -1;  // 0-based; the epoch whose weights are restored
  int64_t stop_wait = 0;
  int64_t stopped_epoch = -1;  // 0-based; -1: not stopped
};

struct TrainingControls {
  ControlOptions options;
  ControlState state;
  double base_lr = 0;

  TrainingControls() = default;
  TrainingControls(const ControlOptions& o, double lr);

  // The learning rate of the 0-based epoch (call before it runs): cosine's from the epoch, the
  // others' from the state.
  double lr_for(int64_t epoch) const;

  struct Verdict {
    bool improved = false;  // EarlyStopping: this epoch is the new best (its weights to keep)
    bool stop = false;      // EarlyStopping: stop after this epoch
    bool lr_reduced = false;
  };
  // After the 0-based epoch, given its validation loss: Keras' on_epoch_end of both callbacks.
  Verdict end_epoch(int64_t epoch, double val_loss);

  bool early_stopping() const { return options.early_stopping_patience > 0; }

  // The checkpoint's "training_controls" metadata: JSON, every double as exact text.
  std::string to_json() const;
  static TrainingControls from_json(const std::string& text);  // throws std::invalid_argument
};

}  // namespace mg
