#include "host/training_controls.hpp"

#include <cmath>
#include <nlohmann/json.hpp>
#include <numbers>
#include <stdexcept>

namespace mg {

using nlohmann::json;

LrSchedule parse_lr_schedule(const std::string& name) {
  if (name == "constant") return LrSchedule::kConstant;
  if (name == "cosine") return LrSchedule::kCosine;
  if (name == "plateau") return LrSchedule::kPlateau;
  throw std::invalid_argument("unknown learning-rate schedule '" + name +
                              "' (constant, cosine or plateau)");
}

const char* lr_schedule_name(LrSchedule s) {
  switch (s) {
    case LrSchedule::kConstant: return "constant";
    case LrSchedule::kCosine: return "cosine";
    case LrSchedule::kPlateau: return "plateau";
  }
  return "constant";
}

TrainingControls::TrainingControls(const ControlOptions& o, double lr) : options(o), base_lr(lr) {
  if (!(lr > 0)) throw std::invalid_argument("the learning rate must be positive");
  if (o.schedule == LrSchedule::kCosine && o.cosine_epochs < 1) {
    throw std::invalid_argument("a cosine schedule needs at least one epoch");
  }
  if (!(o.plateau_factor > 0 && o.plateau_factor < 1)) {
    throw std::invalid_argument("--lr-factor must be between 0 and 1");
  }
  if (o.plateau_patience < 0) throw std::invalid_argument("--lr-patience must not be negative");
  if (o.early_stopping_patience < 0) {
    throw std::invalid_argument("--early-stopping must not be negative");
  }
  state.lr = lr;
}

double TrainingControls::lr_for(int64_t epoch) const {
  if (options.schedule == LrSchedule::kCosine) {
    const double t = static_cast<double>(epoch) / static_cast<double>(options.cosine_epochs);
    return base_lr * (1 + std::cos(std::numbers::pi * t)) / 2;
  }
  return state.lr;
}

TrainingControls::Verdict TrainingControls::end_epoch(int64_t epoch, double val_loss) {
  Verdict v;
  // ReduceLROnPlateau.on_epoch_end (Keras 3): an improvement is val_loss < best - min_delta.
  if (options.schedule == LrSchedule::kPlateau) {
    constexpr double kMinDelta = 1e-4;
    ControlState& s = state;
    if (!s.plateau_seen || val_loss < s.plateau_best - kMinDelta) {
      s.plateau_best = val_loss;
      s.plateau_seen = true;
      s.plateau_wait = 0;
    } else if (++s.plateau_wait >= options.plateau_patience) {
      s.lr *= options.plateau_factor;
      s.plateau_wait = 0;
      v.lr_reduced = true;
    }
  }
  // EarlyStopping.on_epoch_end (Keras 3, min_delta 0, no baseline): wait counts every epoch and
  // is reset by an improvement; training stops once it reaches the patience (never at epoch 0).
  if (early_stopping()) {
    ControlState& s = state;
    ++s.stop_wait;
    if (!s.stop_seen || val_loss < s.stop_best) {
      s.stop_best = val_loss;
      s.stop_seen = true;
      s.stop_best_epoch = epoch;
      s.stop_wait = 0;
      v.improved = true;
    } else if (s.stop_wait >= options.early_stopping_patience && epoch > 0) {
      s.stopped_epoch = epoch;
      v.stop = true;
    }
  }
  return v;
}

std::string TrainingControls::to_json() const {
  const json j = {
      {"lr_schedule", lr_schedule_name(options.schedule)},
      {"base_lr", base_lr},
      {"cosine_epochs", options.cosine_epochs},
      {"lr_factor", options.plateau_factor},
      {"lr_patience", options.plateau_patience},
      {"early_stopping", options.early_stopping_patience},
      {"lr", state.lr},
      {"plateau_best", state.plateau_best},
      {"plateau_seen", state.plateau_seen},
      {"plateau_wait", state.plateau_wait},
      {"stop_best", state.stop_best},
      {"stop_seen", state.stop_seen},
      {"stop_best_epoch", state.stop_best_epoch},
      {"stop_wait", state.stop_wait},
      {"stopped_epoch", state.stopped_epoch},
  };
  return j.dump();
}

TrainingControls TrainingControls::from_json(const std::string& text) {
  try {
    const json j = json::parse(text);
    ControlOptions o;
    o.schedule = parse_lr_schedule(j.at("lr_schedule").get<std::string>());
    o.cosine_epochs = j.at("cosine_epochs").get<int64_t>();
    o.plateau_factor = j.at("lr_factor").get<double>();
    o.plateau_patience = j.at("lr_patience").get<int64_t>();
    o.early_stopping_patience = j.at("early_stopping").get<int64_t>();
    TrainingControls c(o, j.at("base_lr").get<double>());
    ControlState& s = c.state;
    s.lr = j.at("lr").get<double>();
    if (!(s.lr > 0)) throw std::invalid_argument("the learning rate must be positive");
    s.plateau_best = j.at("plateau_best").get<double>();
    s.plateau_seen = j.at("plateau_seen").get<bool>();
    s.plateau_wait = j.at("plateau_wait").get<int64_t>();
    s.stop_best = j.at("stop_best").get<double>();
    s.stop_seen = j.at("stop_seen").get<bool>();
    s.stop_best_epoch = j.at("stop_best_epoch").get<int64_t>();
    s.stop_wait = j.at("stop_wait").get<int64_t>();
    s.stopped_epoch = j.at("stopped_epoch").get<int64_t>();
    if (s.plateau_wait < 0 || s.stop_wait < 0 || s.stop_best_epoch < -1 || s.stopped_epoch < -1) {
      throw std::invalid_argument("a negative counter");
    }
    return c;
  } catch (const json::exception& e) {
    throw std::invalid_argument(std::string("training_controls: ") + e.what());
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(std::string("training_controls: ") + e.what());
  }
}

}  // namespace mg
