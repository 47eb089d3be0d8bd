#include "host/training_monitor.hpp"

#include <algorithm>

namespace mg {
namespace {

// The running metrics cost a device sync on a GPU: once a second is plenty for a person.
constexpr auto kRunningInterval = std::chrono::seconds(1);

nlohmann::json epoch_json(const EpochRecord& e) {
  return {{"epoch", e.epoch + 1},        {"loss", e.loss},         {"accuracy", e.accuracy},
          {"val_loss", e.val_loss},      {"val_accuracy", e.val_accuracy},
          {"seconds", e.seconds}};
}

}  // namespace

void TrainingMonitor::on_start(const TrainStart& start) {
  std::lock_guard lock(mutex_);
  start_ = start;
  history_ = start.history;
  steps_ = start.steps_per_epoch;
  epoch_ = start.first_epoch;
  status_ = "training";
}

void TrainingMonitor::on_step(int64_t epoch, int64_t done, int64_t total,
                              const std::function<Metrics()>& running) {
  const auto now = Clock::now();
  std::optional<Metrics> metrics;
  {
    std::lock_guard lock(mutex_);
    epoch_ = epoch;
    if (done == 1) t_epoch_first_step_ = now;
    step_ = done;
    steps_ = total;
    // Steps after the first one over their time: the first one includes the epoch's shuffle.
    const double seconds = std::chrono::duration<double>(now - t_epoch_first_step_).count();
    if (done > 1 && seconds > 0 && start_) {
      const int64_t images =
          std::min(done * start_->batch_size, start_->train_count) - start_->batch_size;
      images_per_second_ = static_cast<double>(std::max<int64_t>(images, 0)) / seconds;
    }
    if (now - t_last_running_ < kRunningInterval && done != total) return;
    t_last_running_ = now;
  }
  metrics = running();  // outside the lock: on a GPU it waits for the device
  std::lock_guard lock(mutex_);
  running_ = metrics;
}

void TrainingMonitor::on_epoch(const EpochRecord& record) {
  std::lock_guard lock(mutex_);
  history_.push_back(record);
  running_.reset();
  epoch_ = record.epoch + 1;
  step_ = 0;
  if (start_ && epoch_ >= start_->epochs) status_ = "testing";
}

void TrainingMonitor::on_finish(const std::filesystem::path&, const Metrics& test) {
  std::lock_guard lock(mutex_);
  test_ = test;
  has_report_ = true;
  status_ = "done";
  elapsed_at_finish_ = std::chrono::duration<double>(Clock::now() - t_start_).count();
}

void TrainingMonitor::fail(const std::string& message) {
  std::lock_guard lock(mutex_);
  status_ = "failed";
  error_ = message;
  elapsed_at_finish_ = std::chrono::duration<double>(Clock::now() - t_start_).count();
}

bool TrainingMonitor::finished() const {
  std::lock_guard lock(mutex_);
  return status_ == "done" || status_ == "failed";
}

std::optional<std::filesystem::path> TrainingMonitor::run_dir() const {
  std::lock_guard lock(mutex_);
  if (!start_) return std::nullopt;
  return start_->run_dir;
}

nlohmann::json TrainingMonitor::snapshot() const {
  std::lock_guard lock(mutex_);
  nlohmann::json j;
  j["status"] = status_;
  const bool finished = status_ == "done" || status_ == "failed";
  j["elapsed_seconds"] =
      finished ? elapsed_at_finish_
               : std::chrono::duration<double>(Clock::now() - t_start_).count();
  if (!error_.empty()) j["error"] = error_;
  nlohmann::json history = nlohmann::json::array();
  for (const EpochRecord& e : history_) history.push_back(epoch_json(e));
  j["history"] = history;
  if (start_) {
    j["run_dir"] = start_->run_dir.string();
    j["spec"] = start_->spec;
    j["dataset"] = start_->dataset;
    j["device"] = start_->device;
    j["param_count"] = start_->param_count;
    j["batch_size"] = start_->batch_size;
    j["split"] = {{"train", start_->train_count},
                  {"val", start_->val_count},
                  {"test", start_->test_count}};
    j["epochs"] = start_->epochs;
    // The epoch in progress (1-based); once all are done, the last one.
    j["epoch"] = std::min<int64_t>(epoch_ + 1, start_->epochs);
    j["step"] = status_ == "training" ? step_ : steps_;
    j["steps"] = steps_;
    j["images_per_second"] = images_per_second_;
  }
  if (running_) j["running"] = {{"loss", running_->loss}, {"accuracy", running_->accuracy}};
  if (test_) j["test"] = {{"loss", test_->loss}, {"accuracy", test_->accuracy}};
  if (has_report_) j["report"] = "/run/report.html";
  return j;
}

}  // namespace mg
