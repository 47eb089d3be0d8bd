#include "host/predictor.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace mg {

Predictor::Predictor(std::unique_ptr<Engine> engine, int64_t max_batch, size_t max_queue)
    : engine_(std::move(engine)),
      max_batch_(std::max<int64_t>(1, max_batch)),
      max_queue_(std::max<size_t>(1, max_queue)),
      classes_(engine_->graph().classes()),
      device_name_(engine_->device_name()) {
  if (!(engine_->graph().input() == Shape{1, 28, 28})) {
    throw std::invalid_argument("the model does not take 28x28 images");
  }
  thread_ = std::thread([this] { run(); });
}

Predictor::~Predictor() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
  for (auto& job : queue_) {
    job->result.set_exception(std::make_exception_ptr(PredictorBusy("the server is stopping")));
  }
}

std::vector<float> normalized_saliency(std::span<const float> v) {
  float top = 0;
  for (const float x : v) top = std::max(top, std::abs(x));
  std::vector<float> out(v.size(), 0.0f);
  if (top > 0 && std::isfinite(top)) {
    for (size_t i = 0; i < v.size(); ++i) out[i] = std::min(1.0f, std::abs(v[i]) / top);
  }
  return out;
}

Prediction Predictor::predict(const MnistImage& image, std::chrono::milliseconds timeout) {
  auto job = std::make_shared<Job>();
  job->image = image;
  std::future<Prediction> result = job->result.get_future();
  {
    std::lock_guard lock(mutex_);
    if (stopping_) throw PredictorBusy("the server is stopping");
    if (queue_.size() >= max_queue_) {
      throw PredictorBusy("too many predictions waiting (" + std::to_string(max_queue_) + ")");
    }
    queue_.push_back(std::move(job));
  }
  wake_.notify_one();
  if (result.wait_for(timeout) != std::future_status::ready) {
    // The job stays queued and is computed later; only this caller gives up on it.
    throw PredictorBusy("no answer within " + std::to_string(timeout.count()) + " ms");
  }
  return result.get();
}

PredictorStats Predictor::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

void Predictor::run() {
  std::vector<uint8_t> images, labels;
  std::vector<int32_t> order;
  std::vector<float> probs, saliency;
  std::vector<int> predicted;
  const int64_t pixels = engine_->graph().input().size();
  for (;;) {
    std::vector<std::shared_ptr<Job>> batch;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      while (!queue_.empty() && static_cast<int64_t>(batch.size()) < max_batch_) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    const auto n = static_cast<int64_t>(batch.size());
    try {
      images.clear();
      for (const auto& job : batch) images.insert(images.end(), job->image.begin(), job->image.end());
      labels.assign(static_cast<size_t>(n), 0);
      order.resize(static_cast<size_t>(n));
      std::iota(order.begin(), order.end(), 0);
      engine_->set_dataset({images.data(), labels.data(), n, Shape{1, 28, 28}});
      engine_->evaluate(order, &probs);
      saliency = engine_->saliency(images, &predicted);
    } catch (...) {
      for (const auto& job : batch) job->result.set_exception(std::current_exception());
      continue;
    }
    {
      // Counted before anyone is answered, so a caller that got its answer sees it counted.
      std::lock_guard lock(mutex_);
      stats_.images += n;
      stats_.batches += 1;
      stats_.largest_batch = std::max(stats_.largest_batch, n);
    }
    for (int64_t i = 0; i < n; ++i) {
      const float* p = probs.data() + i * classes_;
      Prediction answer;
      answer.probabilities.assign(p, p + classes_);
      // saliency() seeds the argmax of the logits, which is the argmax of the probabilities.
      answer.saliency = normalized_saliency({saliency.data() + i * pixels, static_cast<size_t>(pixels)});
      batch[static_cast<size_t>(i)]->result.set_value(std::move(answer));
    }
  }
}

}  // namespace mg
