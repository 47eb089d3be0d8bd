#include "host/eval.hpp"

#include <cstdio>
#include <ostream>

namespace mg {

namespace fs = std::filesystem;

void run_eval(const EvalOptions& o, std::ostream& out) {
  const Checkpoint ckpt = load_checkpoint(o.checkpoint);
  const Graph graph = Graph::build(ModelSpec::parse(ckpt.meta.spec));
  DataOptions data_opt = o.data;
  if (data_opt.dataset.empty()) data_opt.dataset = ckpt.meta.dataset;
  const LabeledImages data = load_data(data_opt);
  const DataSplit split = seed_split(data.count, kSplitSeed);
  const fs::path run_dir = make_run_dir(o.out, "eval-");

  EngineOptions eo;
  eo.batch_size = 256;  // inference only: no dropout state, any batch gives the same result
  eo.seed = ckpt.meta.seed;
  eo.precision = o.precision;
  auto engine = build_engine(o.device, graph, eo, out);
  engine->set_parameters(ckpt.state.params);
  engine->set_dataset(view(data));

  RunReport report = base_report(display_name(data.kind) + " CNN evaluation", data, split, graph,
                                 engine->device_name(), ckpt.meta);
  report.precision = precision_name(engine->precision());
  const auto t0 = Clock::now();
  report.test_metrics = engine->evaluate(split.test, &report.test_probs);
  report.engine = engine.get();
  report.eval_seconds = seconds_since(t0);
  write_report(run_dir, report);

  std::vector<uint8_t> test_labels(split.test.size());
  for (size_t i = 0; i < split.test.size(); ++i)
    test_labels[i] = data.labels[static_cast<size_t>(split.test[i])];
  const auto cm = confusion_matrix(test_labels, report.test_probs, graph.classes());
  out << "checkpoint: " << o.checkpoint.string() << " (" << ckpt.meta.spec << ", "
      << ckpt.meta.epochs_done << " epochs)\n";
  out << "data: " << data.source << ", test set " << split.test.size() << " images\n\n";
  out << classification_report(cm, report.class_names) << '\n';
  out << "confusion matrix (rows: true, columns: predicted)\n";
  for (size_t i = 0; i < cm.size(); ++i) {
    char cell[16];
    for (const int64_t c : cm[i]) {
      std::snprintf(cell, sizeof cell, "%6lld", static_cast<long long>(c));
      out << cell;
    }
    out << "   " << report.class_names[i] << '\n';
  }
  out << "\nreport: " << (run_dir / "report.html").string() << '\n';
  print_test_line(out, report.test_metrics);
}

}  // namespace mg
