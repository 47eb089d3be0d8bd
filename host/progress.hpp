// Keras-style progress for one epoch: on a terminal a live bar
//   123/383 [=========>....................] - 6s 49ms/step - loss: 0.4123 - accuracy: 0.8712
// redrawn at most a few times a second; elsewhere (a log, a pipe) nothing until the epoch's line.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <string>

#include "engine/engine.hpp"

namespace mg {

bool stdout_is_terminal();

class EpochProgress {
 public:
  // running() reads the metrics so far (it may wait for the GPU, hence the rate limit).
  EpochProgress(std::ostream& out, bool live, std::function<Metrics()> running);
  void step(int64_t done, int64_t total);  // an Engine StepCallback
  // The closing line: "383/383 - 19s - 49ms/step - loss: ... - val_accuracy: ...".
  std::string finish(int64_t total, double seconds, const Metrics& train, const Metrics& val) const;
  bool live() const { return live_; }

 private:
  std::ostream& out_;
  bool live_;
  std::function<Metrics()> running_;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

std::string format_metric_pair(const char* prefix, const Metrics& m);  // "loss: x - accuracy: y"

}  // namespace mg
