// Engine over any backend: keeps the dataset on the device, runs epochs through Network<>, reads
// metrics once per epoch. Besides Network's ops, the backend provides
//   upload(dst, host_src, count), download(host_dst, src, count), fill_zero(ptr, count),
//   shuffle(order, indices, n, seed, epoch)   same result as epoch_order()
//   run_step(key, fn)                         runs fn() (CUDA: eagerly the first time per key,
//                                             then captured once and replayed)
//   device_name(), precision()
#pragma once

#include <algorithm>
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
        net_(be_, graph, options.batch_size, options.seed, options.adam, options.augment,
             options.l2) {
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

  EpochPosition train_steps(std::span<const int32_t> indices, int64_t epoch,
                            const EpochPosition& from, const StepCallback& on_step,
                            const std::function<bool()>& stop) override {
    const int64_t n = load_indices(indices);
    const int64_t batch = net_.max_batch();
    const int64_t steps = (n + batch - 1) / batch;
    if (from.steps_done < 0 || from.steps_done > steps) {
      throw std::invalid_argument("epoch position: step " + std::to_string(from.steps_done) +
                                  " is outside the epoch's " + std::to_string(steps) + " steps");
    }
    be_.shuffle(order_.data(), indices_.data(), n, net_.seed(), epoch);
    begin_pass();
    if (from.steps_done > 0) {
      const double sums[kMetricCount] = {from.loss_sum, from.correct_sum, from.sample_sum,
                                          from.l2_sum};
      const int64_t cursor = from.steps_done * batch;
      be_.upload(net_.metric_sums(), sums, kMetricCount);
      be_.upload(net_.counters() + kCursorCounter, &cursor, 1);
    }
    int64_t s = from.steps_done;
    while (s < steps) {
      const int64_t b = std::min(batch, n - s * batch);
      be_.run_step(b, [&] { net_.train_step(images_.data(), labels_.data(), order_.data(), b); });
      ++s;
      if (on_step) on_step(s, steps);
      if (stop && s < steps && stop()) break;
    }
    double sums[kMetricCount];
    be_.download(sums, net_.metric_sums(), kMetricCount);
    return {s, sums[kLossSum], sums[kCorrectSum], sums[kSampleSum], sums[kL2Sum]};
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
  void set_weight_decay(double wd) override { net_.set_weight_decay(wd); }
  double weight_decay() override { return net_.weight_decay(); }

  int64_t step() override {
    int64_t counters[kCounterCount];
    be_.download(counters, net_.counters(), kCounterCount);
    return counters[kStepCounter];
  }

  std::vector<std::vector<float>> activations(std::span<const uint8_t> images) override {
    const int64_t count = load_images(images);
    const auto& layers = net_.graph().layers();
    std::vector<std::vector<float>> out(layers.size());
    for (size_t i = 0; i < layers.size(); ++i) {
      out[i].resize(static_cast<size_t>(count * layers[i].out.size()));
    }
    std::vector<T> host;
    for (int64_t start = 0; start < count; start += net_.max_batch()) {
      const int64_t b = std::min(net_.max_batch(), count - start);
      gather_images(b);
      net_.forward(b, false);
      for (size_t i = 0; i < layers.size(); ++i) {
        const int64_t size = layers[i].out.size();
        host.resize(static_cast<size_t>(b * size));
        be_.download(host.data(), net_.activation(i + 1), b * size);
        std::copy(host.begin(), host.end(), out[i].begin() + start * size);
      }
    }
    return out;
  }

  std::vector<float> saliency(std::span<const uint8_t> images,
                              std::vector<int>* predicted = nullptr) override {
    const int64_t count = load_images(images);
    const int64_t size = net_.graph().input().size();
    const int64_t batch = net_.max_batch();
    if (!input_grad_.data()) input_grad_ = be_.template alloc<T>(batch * size);
    std::vector<float> out(static_cast<size_t>(count * size));
    std::vector<int32_t> classes(static_cast<size_t>(batch));
    std::vector<T> host(static_cast<size_t>(batch * size));
    if (predicted) predicted->assign(static_cast<size_t>(count), 0);
    for (int64_t start = 0; start < count; start += batch) {
      const int64_t b = std::min(batch, count - start);
      gather_images(b);
      net_.saliency(b, input_grad_.data(), classes.data());
      be_.download(host.data(), input_grad_.data(), b * size);
      std::copy(host.begin(), host.begin() + b * size, out.begin() + start * size);
      if (predicted) std::copy(classes.begin(), classes.begin() + b, predicted->begin() + start);
    }
    return out;
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
  using T = typename Backend::Scalar;

  // Copies images to the device for activations() and saliency(), with an identity order; resets
  // the batch cursor (as every pass does). Returns the image count.
  int64_t load_images(std::span<const uint8_t> images) {
    const int64_t size = net_.graph().input().size();
    const auto bytes = static_cast<int64_t>(images.size());
    if (bytes == 0 || bytes % size != 0) {
      throw std::invalid_argument("image bytes are not a whole number of model inputs");
    }
    const int64_t count = bytes / size;
    if (count > explain_capacity_) {
      explain_images_ = be_.template alloc<uint8_t>(bytes);
      explain_labels_ = be_.template alloc<uint8_t>(count);
      explain_order_ = be_.template alloc<int32_t>(count);
      std::vector<int32_t> iota(static_cast<size_t>(count));
      for (int64_t i = 0; i < count; ++i) iota[static_cast<size_t>(i)] = static_cast<int32_t>(i);
      be_.upload(explain_order_.data(), iota.data(), count);
      explain_capacity_ = count;
    }
    be_.upload(explain_images_.data(), images.data(), bytes);
    be_.fill_zero(net_.counters() + kCursorCounter, 1);
    return count;
  }

  // The next b loaded images into the network's input (the labels are unused zeros).
  void gather_images(int64_t b) {
    net_.backend().gather(explain_images_.data(), explain_labels_.data(),
                          net_.graph().input().size(), explain_order_.data(), net_.counters(), b,
                          net_.input(), net_.labels());
    be_.advance_cursor(net_.counters(), b);
  }

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
    return metrics_of({0, sums[kLossSum], sums[kCorrectSum], sums[kSampleSum], sums[kL2Sum]});
  }

  Backend be_;
  Network<Backend> net_;
  typename Backend::template Buffer<uint8_t> images_, labels_;
  typename Backend::template Buffer<int32_t> indices_, order_;
  int64_t dataset_count_ = 0, capacity_ = 0;
  typename Backend::template Buffer<uint8_t> explain_images_, explain_labels_;
  typename Backend::template Buffer<int32_t> explain_order_;
  typename Backend::template Buffer<T> input_grad_;
  int64_t explain_capacity_ = 0;
};

}  // namespace mg
