// One engine, many callers: predict() queues the image and waits; a single thread takes whatever
// is queued (up to max_batch images) and runs it through the engine as one batch. So the engine,
// and on a GPU its stream and cuBLAS handle, is only ever used by that thread, and concurrent
// callers share batches instead of waiting for each other one by one.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <future>
#include <memory>
#include <mutex>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "engine/engine.hpp"
#include "host/digit_image.hpp"

namespace mg {

// The queue is full or the answer did not come in time: a caller may retry later (HTTP 503).
class PredictorBusy : public std::runtime_error {
  using std::runtime_error::runtime_error;
};

// One image's answer: the softmax probabilities and the saliency of the predicted class (the
// argmax of the probabilities): |d(its logit)/d(pixel)| over the 28x28 input the network saw,
// divided by its largest value so it lies in [0, 1] (all 0 when the gradient is 0 everywhere), as
// explain's pictures scale it. Row-major, 28 * 28 values.
struct Prediction {
  std::vector<float> probabilities;
  std::vector<float> saliency;
};

// |v| / max|v|, or zeros when v is all zeros.
std::vector<float> normalized_saliency(std::span<const float> v);

struct PredictorStats {
  int64_t images = 0, batches = 0, largest_batch = 0;
};

class Predictor {
 public:
  // engine: built for a 28x28 single-channel model, with options.batch_size >= max_batch.
  Predictor(std::unique_ptr<Engine> engine, int64_t max_batch = 64, size_t max_queue = 256);
  ~Predictor();  // stops the thread; callers still waiting get an error
  Predictor(const Predictor&) = delete;
  Predictor& operator=(const Predictor&) = delete;

  // The answer for one image (its batch's probabilities by the inference forward, its saliency by
  // Engine::saliency, both on this object's thread). Throws PredictorBusy when max_queue images
  // are already waiting or no answer came within `timeout`; rethrows the engine's error otherwise.
  Prediction predict(const MnistImage& image, std::chrono::milliseconds timeout);

  int classes() const { return classes_; }
  std::string device_name() const { return device_name_; }
  PredictorStats stats() const;

 private:
  struct Job {
    MnistImage image;
    std::promise<Prediction> result;
  };
  void run();

  std::unique_ptr<Engine> engine_;
  const int64_t max_batch_;
  const size_t max_queue_;
  const int classes_;
  const std::string device_name_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::shared_ptr<Job>> queue_;
  bool stopping_ = false;
  PredictorStats stats_;
  std::thread thread_;
};

}  // namespace mg
