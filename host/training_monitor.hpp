// The live state of a training run, for train --serve: the training thread writes it through the
// TrainObserver calls (a short lock, no I/O), HTTP workers read it as JSON.
#pragma once

#include <chrono>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "host/train.hpp"

namespace mg {

class TrainingMonitor final : public TrainObserver {
 public:
  void on_start(const TrainStart& start) override;
  void on_step(int64_t epoch, int64_t done, int64_t total,
               const std::function<Metrics()>& running) override;
  void on_epoch(const EpochRecord& record) override;
  void on_finish(const std::filesystem::path& report, const Metrics& test) override;
  void fail(const std::string& message);

  // {"status": "starting|training|testing|done|failed", "epoch", "epochs", "step", "steps",
  //  "images_per_second", "running": {loss, accuracy}, "history": [...], "test", "report", ...}
  nlohmann::json snapshot() const;
  std::optional<std::filesystem::path> run_dir() const;  // once started
  bool finished() const;  // done or failed

 private:
  using Clock = std::chrono::steady_clock;
  mutable std::mutex mutex_;
  std::string status_ = "starting", error_;
  std::optional<TrainStart> start_;
  Clock::time_point t_start_ = Clock::now(), t_epoch_first_step_, t_last_running_;
  int64_t epoch_ = 0, step_ = 0, steps_ = 0;
  double images_per_second_ = 0;
  std::optional<Metrics> running_, test_;
  std::vector<EpochRecord> history_;
  bool has_report_ = false;
  double elapsed_at_finish_ = 0;
};

}  // namespace mg
