#include "host/serve.hpp"

#include <csignal>
#include <fstream>
#include <iostream>
#include <ostream>

#include "host/checkpoint.hpp"
#include "host/interrupt.hpp"
#include "host/report.hpp"

namespace mg {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// A client that hangs up mid-answer must not end the server.
class IgnoreSigpipe {
 public:
  IgnoreSigpipe() {
    struct sigaction ignore {};
    ignore.sa_handler = SIG_IGN;
    ::sigaction(SIGPIPE, &ignore, &old_);
  }
  ~IgnoreSigpipe() { ::sigaction(SIGPIPE, &old_, nullptr); }
  IgnoreSigpipe(const IgnoreSigpipe&) = delete;
  IgnoreSigpipe& operator=(const IgnoreSigpipe&) = delete;

 private:
  struct sigaction old_ {};
};

// metrics.json of the run that wrote this checkpoint, when it is about this very model and epoch.
std::optional<json> run_metrics(const fs::path& checkpoint, const CheckpointMeta& meta) {
  const fs::path file = checkpoint.parent_path() / "metrics.json";
  std::ifstream in(file);
  if (!in) return std::nullopt;
  try {
    json j = json::parse(in);
    if (j.at("model").at("spec") != meta.spec) return std::nullopt;
    if (j.at("epochs").get<int64_t>() != meta.epochs_done) return std::nullopt;
    return j;
  } catch (const std::exception&) {
    return std::nullopt;  // not ours to judge: the card just says the accuracy is unknown
  }
}

void warn_if_exposed(const HttpOptions& http, std::ostream& out) {
  if (is_loopback_host(http.host)) return;
  const std::string line =
      "warning: --host " + http.host +
      ": this server is reachable from other machines, without authentication; anyone who can "
      "reach it can use the model and read its description (use --host 127.0.0.1 to keep it "
      "on this machine)";
  out << line << std::endl;
  if (&out != &std::cerr) std::cerr << line << std::endl;
}

}  // namespace

ServedModel load_served_model(const fs::path& checkpoint, Device device, std::ostream& out) {
  const Checkpoint ckpt = load_checkpoint(checkpoint);
  const Graph graph =
      Graph::build(ModelSpec::parse(ckpt.meta.spec), ckpt.meta.input, ckpt.meta.classes);
  if (!(graph.input() == Shape{1, 28, 28})) {
    throw std::invalid_argument(checkpoint.string() + ": serve needs a model of 28x28 images");
  }
  EngineOptions eo;
  eo.batch_size = 64;
  auto engine = build_engine(device, graph, eo, out);
  engine->set_parameters(ckpt.state.params);

  ServedModel m;
  m.class_names = ckpt.meta.class_names;
  if (static_cast<int>(m.class_names.size()) != graph.classes()) {
    m.class_names.clear();
    for (int c = 0; c < graph.classes(); ++c) m.class_names.push_back(std::to_string(c));
  }
  json& card = m.card;
  card["checkpoint"] = checkpoint.filename().string();
  card["spec"] = ckpt.meta.spec;
  card["dataset"] = ckpt.meta.dataset;
  card["classes"] = m.class_names;
  card["param_count"] = graph.param_count();
  card["epochs"] = ckpt.meta.epochs_done;
  card["input"] = {graph.input().c, graph.input().h, graph.input().w};
  json layers = json::array();
  for (const SummaryRow& row : model_summary_rows(graph)) {
    layers.push_back({{"layer", row.layer}, {"output_shape", row.output_shape}, {"params", row.params}});
  }
  card["layers"] = layers;
  card["test_accuracy"] = nullptr;
  card["test_loss"] = nullptr;

  if (const auto metrics = run_metrics(checkpoint, ckpt.meta)) {
    card["test_accuracy"] = metrics->at("test").at("accuracy");
    card["test_loss"] = metrics->at("test").at("loss");
    card["test_source"] = "metrics.json of the run";
  } else {
    // Measured here, on the same split train and eval use, if the data is on this machine.
    try {
      DataOptions data;
      data.dataset = ckpt.meta.dataset;
      data.allow_download = false;
      const LabeledImages images = load_data(data);
      const DataSplit split = seed_split(images.count, kSplitSeed);
      engine->set_dataset(view(images));
      const Metrics test = engine->evaluate(split.test, nullptr);
      card["test_accuracy"] = test.accuracy;
      card["test_loss"] = test.loss;
      card["test_source"] = "measured at startup on " + std::to_string(split.test.size()) +
                            " test images of " + images.source;
    } catch (const std::exception& e) {
      card["test_source"] = std::string("unknown: no metrics.json beside the checkpoint, and ") +
                            e.what();
    }
  }
  if (fs::exists(checkpoint.parent_path() / "report.html")) m.report_dir = checkpoint.parent_path();
  m.predictor = std::make_shared<Predictor>(std::move(engine), eo.batch_size);
  return m;
}

void run_serve(const ServeOptions& o, std::ostream& out) {
  ServedModel model = load_served_model(o.checkpoint, o.device, out);
  const std::string summary = model.card["spec"].get<std::string>() + ", " +
                              model.card["dataset"].get<std::string>() + ", device " +
                              model.predictor->device_name();
  // Before the port opens: a signal from then on stops the server cleanly (a second one ends the
  // program at once, host/interrupt.hpp).
  const InterruptScope interrupts;
  const IgnoreSigpipe no_sigpipe;
  WebServer web(o.http);
  web.set_model(std::move(model));
  web.start();
  warn_if_exposed(o.http, out);
  out << "serving " << o.checkpoint.string() << " (" << summary << ") on " << web.url()
      << " ; Ctrl-C to stop" << std::endl;
  const char* why = signal_name(wait_for_interrupt());
  out << "stopping (" << why << ")" << std::endl;
  web.stop();
  out << "stopped" << std::endl;
}

int run_train_serving(TrainOptions o, const HttpOptions& http, std::ostream& out) {
  // One handler and one flag for both parts: during training a signal stops the run after its
  // step (run_train checks the flag), afterwards it stops the server.
  const InterruptScope interrupts;
  const IgnoreSigpipe no_sigpipe;
  auto monitor = std::make_shared<TrainingMonitor>();
  WebServer web(http);
  web.set_training(monitor);
  web.start();
  warn_if_exposed(http, out);
  out << "live view: " << web.url() << std::endl;
  o.observer = monitor.get();
  int signal = 0;
  try {
    signal = run_train(o, out);
  } catch (const std::exception& e) {
    monitor->fail(e.what());
    web.stop();
    throw;
  }
  if (signal != 0) {
    monitor->fail(std::string("interrupted by ") + signal_name(signal));
    web.stop();
    out << "live view stopped" << std::endl;
    return 128 + signal;
  }
  const auto run_dir = monitor->run_dir();
  if (run_dir) {
    ServedModel model = load_served_model(*run_dir / kCheckpointName, o.device, out);
    model.report_dir = *run_dir;
    web.set_model(std::move(model));
  }
  out << "training done; still serving " << web.url()
      << " (the report, and the trained model to draw digits for) ; Ctrl-C to stop" << std::endl;
  const char* why = signal_name(wait_for_interrupt());
  out << "stopping (" << why << ")" << std::endl;
  web.stop();
  out << "stopped" << std::endl;
  return 0;
}

}  // namespace mg
