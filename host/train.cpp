#include "host/train.hpp"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "host/idx.hpp"
#include "host/split.hpp"

namespace mg {
namespace {

std::string format_metrics(const char* prefix, const Metrics& m) {
  char buf[128];
  std::snprintf(buf, sizeof buf, "%sloss: %.4f - %saccuracy: %.4f", prefix, m.loss, prefix,
                m.accuracy);
  return buf;
}

}  // namespace

std::filesystem::path default_data_dir() {
  if (const char* env = std::getenv("MNIST_GPU_DATA"); env != nullptr && *env != '\0') return env;
  return std::filesystem::path("data") / "mnist";
}

void run_train(const TrainOptions& options, std::ostream& out) {
  using Clock = std::chrono::steady_clock;
  if (options.epochs < 1) throw std::invalid_argument("--epochs must be at least 1");
  if (options.batch_size < 1) throw std::invalid_argument("--batch-size must be at least 1");
  if (!(options.lr > 0)) throw std::invalid_argument("--lr must be positive");

  const Graph graph = Graph::build(ModelSpec::parse(options.model));
  const std::filesystem::path dir = options.data_dir.empty() ? default_data_dir() : options.data_dir;
  const MnistData data = load_mnist(dir);
  const DataSplit split = seed_split(data.count, 42);

  EngineOptions eo;
  eo.batch_size = options.batch_size;
  eo.seed = options.seed;
  eo.adam.lr = options.lr;
  std::string notice;
  auto engine = make_engine(options.device, graph, eo, &notice);
  if (!notice.empty()) out << "note: " << notice << '\n';
  engine->set_dataset({data.images.data(), data.labels.data(), data.count, graph.input()});

  out << "data: " << dir.string() << " (" << data.count << " images; train " << split.train.size()
      << ", val " << split.val.size() << ", test " << split.test.size() << ")\n";
  out << "model: " << graph.spec().to_string() << " (" << graph.param_count()
      << " parameters), device " << engine->device_name() << ", batch " << options.batch_size
      << '\n';

  const int64_t steps = (static_cast<int64_t>(split.train.size()) + options.batch_size - 1) /
                        options.batch_size;
  for (int epoch = 0; epoch < options.epochs; ++epoch) {
    const auto t0 = Clock::now();
    const Metrics train = engine->train_epoch(split.train, epoch);
    const double train_s = std::chrono::duration<double>(Clock::now() - t0).count();
    const Metrics val = engine->evaluate(split.val, nullptr);
    char head[96];
    std::snprintf(head, sizeof head, "epoch %d/%d - %lld steps - %.2fs - %.1fms/step - ", epoch + 1,
                  options.epochs, static_cast<long long>(steps), train_s,
                  1e3 * train_s / static_cast<double>(steps));
    out << head << format_metrics("", train) << " - " << format_metrics("val_", val) << std::endl;
  }
  const Metrics test = engine->evaluate(split.test, nullptr);
  char line[96];
  std::snprintf(line, sizeof line, "test: loss=%.4f accuracy=%.4f", test.loss, test.accuracy);
  out << line << std::endl;
}

}  // namespace mg
