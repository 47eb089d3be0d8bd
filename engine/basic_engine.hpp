// Engine over any backend: keeps the dataset on the device, runs epochs through Network<>, reads
// metrics once per epoch. Besides Network's ops, the backend provides
//   upload(dst, host_src, count), download(host_dst, src, count), fill_zero(ptr, count),
//   shuffle(order, indices, n, seed, epoch)   same result as epoch_order()
//   run_step(key, fn)                         runs fn() (CUDA: eagerly the first time per key,
//                                             then captured once and replayed)
//   device_name(), precision()
#pragma once

#include <span>
#include <string>
#include <vector>

#include "engine/engine.hpp"
#include "engine/init.hpp"
#include "engine/network.hpp"

namespace mg {

template <class Backend>
class BasicEngine final : public Engine {
 public:
  template <class... BackendArgs>
  BasicEngine(const Graph& graph, const EngineOptions& options, BackendArgs&&... args)
      : be_(std::forward<BackendArgs>(args)...),
        net_(be_, graph, options.batch_size, options.seed, options.adam, options.augment) {
    std::vector<float> init(static_cast<size_t>(graph.param_count()));
    glorot_uniform_init<float>(graph, options.seed, init);
    set_parameters(init);
  }

  std::string device_name() const override { return be_.device_name(); }
  Precision precision() const override { return be_.precision(); }
  const Graph& graph() const override { return net_.graph(); }
  Network<Backend>& network() { return net_; }

  void set_dataset(const Dataset& data) override {
    if (!(data.shape == net_.graph().input())) {
      throw std::invalid_argument("dataset image shape does not match the model input");
    }
    const int64_t bytes = data.count * data.shape.size();
    images_ = be_.template alloc<uint8_t>(bytes);
    labels_ = be_.template alloc<uint8_t>(data.count);
    be_.upload(images_.data(), data.images, bytes);
    be_.upload(labels_.data(), data.labels, data.count);
    dataset_count_ = data.count;
  }

  Metrics train_epoch(std::span<const int32_t> indices, int64_t epoch,
                      const StepCallback& on_step = {}) override {
    const int64_t n = load_indices(indices);
    be_.shuffle(order_.data(), indices_.data(), n, net_.seed(), epoch);
    begin_pass();
    const int64_t batch = net_.max_batch();
    const int64_t steps = (n + batch - 1) / batch;
    for (int64_t s = 0; s < steps; ++s) {
      const int64_t b = std::min(batch, n - s * batch);
      be_.run_step(b, [&] { net_.train_step(images_.data(), labels_.data(), order_.data(), b); });
      if (on_step) on_step(s + 1, steps);
    }
    return read_metrics();
  }

  Metrics running_metrics() override { return read_metrics(); }

  Metrics evaluate(std::span<const int32_t> indices, std::vector<float>* probs) override {
    const int64_t n = load_indices(indices);
    be_.copy_indices(order_.data(), indices_.data(), n);
    begin_pass();
    const int64_t batch = net_.max_batch();
    const int64_t classes = net_.graph().classes();
    if (probs) probs->assign(static_cast<size_t>(n * classes), 0.0f);
    for (int64_t start = 0; start < n; start += batch) {
      const int64_t b = std::min(batch, n - start);
      net_.eval_step(images_.data(), labels_.data(), order_.data(), b);
      if (probs) {
        be_.softmax(b, classes, net_.logits(), net_.logits_grad());
        be_.download(probs->data() + start * classes, net_.logits_grad(), b * classes);
      }
    }
    return read_metrics();
  }

  std::vector<float> parameters() override {
    std::vector<float> out(static_cast<size_t>(net_.graph().param_count()));
    be_.download(out.data(), net_.params(), static_cast<int64_t>(out.size()));
    return out;
  }

  void set_parameters(std::span<const float> values) override {
    if (static_cast<int64_t>(values.size()) != net_.graph().param_count()) {
      throw std::invalid_argument("parameter count does not match the model");
    }
    be_.upload(net_.params(), values.data(), static_cast<int64_t>(values.size()));
  }

  void set_learning_rate(double lr) override {
    if (!(lr > 0)) throw std::invalid_argument("the learning rate must be positive");
    net_.set_learning_rate(lr);
  }
  double learning_rate() override { return net_.learning_rate(); }

  int64_t step() override {
    int64_t counters[kCounterCount];
    be_.download(counters, net_.counters(), kCounterCount);
    return counters[kStepCounter];
  }

  TrainingState state() override {
    const auto p = static_cast<size_t>(net_.graph().param_count());
    TrainingState s;
    s.params.resize(p);
    s.adam_m.resize(p);
    s.adam_v.resize(p);
    be_.download(s.params.data(), net_.params(), static_cast<int64_t>(p));
    be_.download(s.adam_m.data(), net_.adam_m(), static_cast<int64_t>(p));
    be_.download(s.adam_v.data(), net_.adam_v(), static_cast<int64_t>(p));
    s.step = step();
    return s;
  }

  void set_state(const TrainingState& s) override {
    const auto p = static_cast<size_t>(net_.graph().param_count());
    if (s.params.size() != p || s.adam_m.size() != p || s.adam_v.size() != p || s.step < 0) {
      throw std::invalid_argument("training state does not match the model");
    }
    set_parameters(s.params);
    be_.upload(net_.adam_m(), s.adam_m.data(), static_cast<int64_t>(p));
    be_.upload(net_.adam_v(), s.adam_v.data(), static_cast<int64_t>(p));
    const int64_t counters[kCounterCount] = {s.step, 0};
    be_.upload(net_.counters(), counters, kCounterCount);
  }

 private:
  int64_t load_indices(std::span<const int32_t> indices) {
    const auto n = static_cast<int64_t>(indices.size());
    if (dataset_count_ == 0) throw std::logic_error("set_dataset() must come before training");
    for (const int32_t i : indices) {
      if (i < 0 || i >= dataset_count_) throw std::out_of_range("sample index outside the dataset");
    }
    if (n > capacity_) {
      indices_ = be_.template alloc<int32_t>(n);
      order_ = be_.template alloc<int32_t>(n);
      capacity_ = n;
    }
    be_.upload(indices_.data(), indices.data(), n);
    return n;
  }

  // Zero the metric sums and the batch cursor; the step counter runs on across epochs.
  void begin_pass() {
    be_.fill_zero(net_.metric_sums(), kMetricCount);
    be_.fill_zero(net_.counters() + kCursorCounter, 1);
  }

  Metrics read_metrics() {
    double sums[kMetricCount];
    be_.download(sums, net_.metric_sums(), kMetricCount);
    Metrics m;
    m.count = static_cast<int64_t>(sums[kSampleSum]);
    if (m.count > 0) {
      m.loss = sums[kLossSum] / sums[kSampleSum];
      m.accuracy = sums[kCorrectSum] / sums[kSampleSum];
    }
    return m;
  }

  Backend be_;
  Network<Backend> net_;
  typename Backend::template Buffer<uint8_t> images_, labels_;
  typename Backend::template Buffer<int32_t> indices_, order_;
  int64_t dataset_count_ = 0, capacity_ = 0;
};

}  // namespace mg
