#include "host/report.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "host/atomic_file.hpp"
#include "host/charts.hpp"
#include "host/report_inside.hpp"

namespace mg {
namespace {

namespace fs = std::filesystem;
using Matrix = std::vector<std::vector<int64_t>>;

const char* keras_type(LayerKind kind) {
  switch (kind) {
    case LayerKind::kConv2d:
      return "Conv2D";
    case LayerKind::kMaxPool:
      return "MaxPooling2D";
    case LayerKind::kDropout:
      return "Dropout";
    case LayerKind::kFlatten:
      return "Flatten";
    case LayerKind::kDense:
      return "Dense";
    case LayerKind::kRelu:
      return "ReLU";
    case LayerKind::kBatchNorm:
      return "BatchNormalization";
  }
  return "Layer";
}

// Python's repr of a float (shortest round-trip), as Keras' CSVLogger writes values.
std::string shortest(double v) {
  char buf[64];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return ec == std::errc() ? std::string(buf, end) : std::string("nan");
}

std::string pad_right(std::string s, size_t width) {
  if (s.size() < width) s.append(width - s.size(), ' ');
  return s;
}

std::string rstrip(std::string s) {
  while (!s.empty() && s.back() == ' ') s.pop_back();
  return s;
}

std::string percent(double fraction, int decimals = 2) {
  return format_fixed(100 * fraction, decimals) + "%";
}

std::string duration(double seconds) {
  if (!(seconds >= 0)) return "n/a";
  if (seconds < 120) return format_fixed(seconds, 1) + " s";
  const auto total = static_cast<int64_t>(std::llround(seconds));
  return std::to_string(total / 60) + " min " + std::to_string(total % 60) + " s";
}

int argmax(std::span<const float> row) {
  int best = 0;
  for (size_t k = 1; k < row.size(); ++k) {
    if (row[k] > row[static_cast<size_t>(best)]) best = static_cast<int>(k);
  }
  return best;
}

// Everything write_report derives from a RunReport before it writes anything.
struct Derived {
  int classes = 0;
  std::vector<std::string> names;
  std::vector<uint8_t> test_labels;
  Matrix cm;
  std::vector<ClassMetrics> per_class;
  ClassMetrics macro, weighted;
  std::vector<int64_t> train_counts, val_counts, test_counts;
};

std::span<const uint8_t> image_of(const RunReport& r, int32_t index) {
  const auto size = static_cast<size_t>(r.rows) * static_cast<size_t>(r.cols);
  return {r.images + static_cast<size_t>(index) * size, size};
}

Derived derive(const RunReport& r) {
  if (r.graph == nullptr) throw std::invalid_argument("write_report: RunReport.graph is null");
  if (r.rows <= 0 || r.cols <= 0) throw std::invalid_argument("write_report: empty image size");
  const bool any = !r.train.empty() || !r.val.empty() || !r.test.empty();
  if (any && (r.images == nullptr || r.labels == nullptr)) {
    throw std::invalid_argument("write_report: RunReport.images and labels are required");
  }
  Derived d;
  d.classes = r.graph->classes();
  d.names = r.class_names;
  if (d.names.empty()) {
    for (int k = 0; k < d.classes; ++k) d.names.push_back(std::to_string(k));
  }
  if (static_cast<int>(d.names.size()) != d.classes) {
    throw std::invalid_argument("write_report: " + std::to_string(d.names.size()) +
                                " class names for " + std::to_string(d.classes) + " classes");
  }
  for (const int32_t i : r.test) d.test_labels.push_back(r.labels[i]);
  d.cm = confusion_matrix(d.test_labels, r.test_probs, d.classes);
  d.per_class = per_class_metrics(d.cm);
  d.macro = macro_average(d.per_class);
  d.weighted = weighted_average(d.per_class);
  auto count = [&](std::span<const int32_t> indices) {
    std::vector<int64_t> counts(static_cast<size_t>(d.classes), 0);
    for (const int32_t i : indices) {
      const uint8_t label = r.labels[i];
      if (label >= d.classes) {
        throw std::invalid_argument("write_report: label " + std::to_string(label) + " of image " +
                                    std::to_string(i) + " is not a class");
      }
      ++counts[label];
    }
    return counts;
  };
  d.train_counts = count(r.train);
  d.val_counts = count(r.val);
  d.test_counts = count(r.test);
  return d;
}

// --- the files -----------------------------------------------------------------------------------

std::string history_csv(const RunReport& r) { return history_csv_text(r.history, r.l2); }

nlohmann::json scores_json(const ClassMetrics& m) {
  return {{"precision", m.precision}, {"recall", m.recall}, {"f1", m.f1}, {"support", m.support}};
}

std::string metrics_json(const RunReport& r, const Derived& d) {
  using nlohmann::json;
  json layers = json::array();
  for (const SummaryRow& row : model_summary_rows(*r.graph)) {
    json shape = json::array({nullptr});
    for (const int64_t s : row.output_shape) shape.push_back(s);
    layers.push_back({{"layer", row.layer}, {"output_shape", shape}, {"params", row.params}});
  }
  json per_class = json::array();
  for (int k = 0; k < d.classes; ++k) {
    json entry = scores_json(d.per_class[static_cast<size_t>(k)]);
    entry["class"] = d.names[static_cast<size_t>(k)];
    per_class.push_back(entry);
  }
  json history = json::array();
  json epoch_seconds = json::array();
  for (const EpochRecord& e : r.history) {
    history.push_back({{"epoch", e.epoch},
                       {"loss", e.loss},
                       {"accuracy", e.accuracy},
                       {"val_loss", e.val_loss},
                       {"val_accuracy", e.val_accuracy},
                       {"lr", e.lr},
                       {"seconds", e.seconds}});
    if (r.l2 > 0) {
      history.back()["l2_loss"] = e.l2_loss;
      history.back()["val_l2_loss"] = e.val_l2_loss;
    }
    epoch_seconds.push_back(e.seconds);
  }
  const double seen = static_cast<double>(r.train.size()) * static_cast<double>(r.history.size());
  json j;
  j["title"] = r.title;
  j["dataset"] = r.dataset;
  j["device"] = r.device;
  j["precision"] = r.precision;
  j["model"] = {{"spec", r.spec.empty() ? r.graph->spec().to_string() : r.spec},
                {"param_count", r.graph->param_count()},
                {"trainable_params", r.graph->trainable_count()},
                {"non_trainable_params", r.graph->param_count() - r.graph->trainable_count()},
                {"layers", layers}};
  j["seed"] = r.seed;
  j["batch_size"] = r.batch_size;
  j["learning_rate"] = r.lr;
  j["weight_decay"] = r.weight_decay;
  j["l2"] = r.l2;
  j["training_controls"] = r.training_note;
  j["epochs"] = r.history.size();
  j["split"] = {{"train", r.train.size()}, {"val", r.val.size()}, {"test", r.test.size()}};
  j["class_names"] = d.names;
  j["class_distribution"] = {
      {"train", d.train_counts}, {"val", d.val_counts}, {"test", d.test_counts}};
  j["test"] = {{"loss", r.test_metrics.loss},
               {"accuracy", r.test_metrics.accuracy},
               {"count", r.test_metrics.count}};
  j["per_class"] = per_class;
  j["macro_avg"] = scores_json(d.macro);
  j["weighted_avg"] = scores_json(d.weighted);
  j["confusion_matrix"] = d.cm;
  j["timings"] = {{"train_seconds", r.train_seconds},
                  {"eval_seconds", r.eval_seconds},
                  {"load_seconds", r.load_seconds},
                  {"epoch_seconds", epoch_seconds},
                  {"train_images_per_second", r.train_seconds > 0 ? seen / r.train_seconds : 0.0}};
  j["history"] = history;
  return j.dump(2) + "\n";
}

std::string class_distribution_svg(const Derived& d) {
  auto as_double = [](const std::vector<int64_t>& v) {
    return std::vector<double>(v.begin(), v.end());
  };
  return svg_grouped_bars("Images per class", d.names,
                          {{"train", palette::kTrain, as_double(d.train_counts)},
                           {"validation", palette::kVal, as_double(d.val_counts)},
                           {"test", palette::kTest, as_double(d.test_counts)}},
                          "Class", "Images");
}

std::string samples_svg(const RunReport& r, const Derived& d) {
  constexpr size_t kPerClass = 5;
  std::vector<std::vector<int32_t>> by_class(static_cast<size_t>(d.classes));
  for (const int32_t i : r.train) {
    auto& list = by_class[r.labels[i]];
    if (list.size() < kPerClass) list.push_back(i);
  }
  const bool per_class =
      d.classes <= 10 && std::all_of(by_class.begin(), by_class.end(),
                                     [](const auto& l) { return l.size() == kPerClass; });
  std::vector<int32_t> chosen;
  int columns = 10;
  if (per_class) {
    columns = d.classes;
    for (size_t row = 0; row < kPerClass; ++row) {
      for (const auto& list : by_class) chosen.push_back(list[row]);
    }
  } else {
    for (size_t k = 0; k < r.train.size() && k < 50; ++k) chosen.push_back(r.train[k]);
  }
  std::vector<DigitTile> tiles;
  for (const int32_t i : chosen) tiles.push_back({image_of(r, i), d.names[r.labels[i]], {}});
  return svg_digit_grid(per_class ? "Training images, five of each class" : "Training images",
                        tiles, r.rows, r.cols, columns, 3, "No training images");
}

std::string curves_svg(const RunReport& r) {
  std::vector<double> x;
  LineSeries acc{"train", palette::kTrain, {}, false},
      val_acc{"validation", palette::kVal, {}, true};
  LineSeries loss = acc, val_loss = val_acc;
  for (const EpochRecord& e : r.history) {
    x.push_back(e.epoch + 1);
    acc.y.push_back(e.accuracy);
    val_acc.y.push_back(e.val_accuracy);
    loss.y.push_back(e.loss);
    val_loss.y.push_back(e.val_loss);
  }
  LinePanel accuracy{"Accuracy", "Accuracy", {acc, val_acc}, 0.0, 1.0};
  LinePanel losses{"Loss", "Loss (cross-entropy)", {loss, val_loss}, 0.0, std::nullopt};
  std::vector<LinePanel> panels = {accuracy, losses};
  // A schedule's learning rate, when it changed during the run.
  const bool scheduled = std::any_of(r.history.begin(), r.history.end(), [&](const EpochRecord& e) {
    return e.lr > 0 && e.lr != r.history.front().lr;
  });
  if (scheduled) {
    LineSeries lr{"learning rate", palette::kInk, {}, false};
    for (const EpochRecord& e : r.history) lr.y.push_back(e.lr);
    panels.push_back({"Learning rate", "Learning rate (Adam)", {lr}, 0.0, std::nullopt});
  }
  return svg_line_panels("Training and validation, per epoch", x, panels, "Epoch");
}

std::string confusion_svg(const Derived& d, bool normalized) {
  HeatmapSpec spec;
  spec.title = normalized ? "Confusion matrix, normalized over true labels"
                          : "Confusion matrix (test images)";
  spec.x_label = "Predicted label";
  spec.y_label = "True label";
  spec.labels = d.names;
  spec.decimals = normalized ? 2 : 0;
  for (const auto& row : d.cm) {
    int64_t total = 0;
    for (const int64_t v : row) total += v;
    std::vector<double> values;
    for (const int64_t v : row) {
      values.push_back(!normalized ? static_cast<double>(v)
                       : total > 0 ? static_cast<double>(v) / static_cast<double>(total)
                                   : 0.0);
    }
    spec.values.push_back(std::move(values));
  }
  return svg_heatmap(spec);
}

std::string misclassified_svg(const RunReport& r, const Derived& d, int64_t* total_wrong) {
  struct Wrong {
    int32_t index;
    int predicted;
    float p;
  };
  std::vector<Wrong> wrong;
  const auto k = static_cast<size_t>(d.classes);
  for (size_t i = 0; i < r.test.size(); ++i) {
    const std::span<const float> row(r.test_probs.data() + i * k, k);
    const int predicted = argmax(row);
    if (predicted != d.test_labels[i]) {
      wrong.push_back({r.test[i], predicted, row[static_cast<size_t>(predicted)]});
    }
  }
  *total_wrong = static_cast<int64_t>(wrong.size());
  // The most confident mistakes first: they are the ones worth looking at.
  std::stable_sort(wrong.begin(), wrong.end(),
                   [](const Wrong& a, const Wrong& b) { return a.p > b.p; });
  if (wrong.size() > 40) wrong.resize(40);
  std::vector<DigitTile> tiles;
  for (const Wrong& w : wrong) {
    const std::string names =
        d.names[r.labels[w.index]] + " \u2192 " + d.names[static_cast<size_t>(w.predicted)];
    const std::string p = "p=" + format_fixed(w.p, 2);
    if (names.size() <= 12) {
      tiles.push_back({image_of(r, w.index), names + " (" + p + ")", {}, palette::kError});
    } else {
      tiles.push_back({image_of(r, w.index), names, p, palette::kError});
    }
  }
  const std::string title = wrong.empty() ? "Misclassified test images"
                                          : "Misclassified test images, most confident first (" +
                                                std::to_string(wrong.size()) + " of " +
                                                format_thousands(*total_wrong) + ")";
  return svg_digit_grid(title, tiles, r.rows, r.cols, 8, 3, "No misclassified test images");
}

// --- report.html ---------------------------------------------------------------------------------

constexpr const char* kCss = R"css(
:root { --ink: #222; --muted: #666; --line: #e3e5e8; --train: #1f77b4; --val: #ff7f0e;
        --test: #2ca02c; --error: #d62728; }
* { box-sizing: border-box; }
body { margin: 0; background: #f4f5f7; color: var(--ink);
       font: 15px/1.5 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", Helvetica, Arial,
             sans-serif; }
main { max-width: 1240px; margin: 0 auto; padding: 28px 28px 48px; }
header h1 { margin: 0 0 4px; font-size: 28px; }
header p { margin: 0; color: var(--muted); }
section { background: #fff; border: 1px solid var(--line); border-radius: 10px; padding: 20px 24px;
          margin-top: 22px; }
h2 { margin: 0 0 12px; font-size: 20px; }
.cards { display: grid; grid-template-columns: repeat(4, 1fr); gap: 14px; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 12px 16px; }
.card .label { color: var(--muted); font-size: 13px; }
.card .value { font-size: 26px; font-weight: 650; }
.card.main .value { color: var(--test); }
figure { margin: 0; text-align: center; }
figure svg { max-width: 100%; height: auto; }
figcaption { color: var(--muted); font-size: 13px; margin-top: 6px; }
.pair { display: grid; grid-template-columns: repeat(auto-fit, minmax(520px, 1fr)); gap: 20px;
        align-items: start; }
.pair > * { min-width: 0; }
td code { overflow-wrap: anywhere; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { padding: 5px 10px; border-bottom: 1px solid var(--line); text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { font-size: 13px; color: var(--muted); font-weight: 600; }
tr.total td { font-weight: 650; border-top: 2px solid #ccc; }
td.nowrap, th.nowrap { white-space: nowrap; }
.track { display: inline-block; width: 160px; height: 10px; margin-right: 12px;
         background: #eef1f5; border-radius: 3px; vertical-align: middle; overflow: hidden; }
.track span { display: block; height: 100%; background: #6baed6; }
details summary { cursor: pointer; color: var(--muted); margin-top: 14px; }
code, pre { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 13px; }
pre { background: #f7f7f9; border: 1px solid var(--line); border-radius: 6px; padding: 10px 12px;
      overflow-x: auto; text-align: left; }
ul.files { columns: 3; margin: 0; }
footer { color: var(--muted); font-size: 13px; margin-top: 18px; text-align: center; }
)css";

std::string card(const std::string& label, const std::string& value, bool main = false) {
  return std::string("<div class=\"card") + (main ? " main" : "") + "\"><div class=\"label\">" +
         xml_escape(label) + "</div><div class=\"value\">" + xml_escape(value) + "</div></div>";
}

std::string row(const std::vector<std::string>& cells, const char* cls = nullptr) {
  std::string out = cls ? std::string("<tr class=\"") + cls + "\">" : std::string("<tr>");
  for (size_t i = 0; i < cells.size(); ++i) {
    out += (i == 0 ? "<td class=\"nowrap\">" : "<td>") + cells[i] + "</td>";
  }
  return out + "</tr>\n";
}

std::string score_cell(double v) {
  return "<span class=\"track\"><span style=\"width:" +
         format_fixed(100 * std::clamp(v, 0.0, 1.0), 1) + "%\"></span></span>" + format_fixed(v, 4);
}

struct Svgs {
  std::string distribution, samples, curves, cm, cm_normalized, misclassified;
  std::vector<InsideSvg> inside;  // empty without RunReport.engine
  int64_t wrong = 0;
};

std::string report_html(const RunReport& r, const Derived& d, const Svgs& s) {
  const std::string spec = r.spec.empty() ? r.graph->spec().to_string() : r.spec;
  std::string h =
      "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
      "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
      "<title>" +
      xml_escape(r.title) + "</title>\n<style>" + kCss + "</style>\n</head>\n<body>\n<main>\n";
  h += "<header><h1>" + xml_escape(r.title) + "</h1><p>" + xml_escape(r.dataset) + " &middot; " +
       xml_escape(r.device) + " &middot; <code>" + xml_escape(spec) + "</code></p></header>\n";

  // Overview: the numbers a Keras user looks for first.
  const double seen = static_cast<double>(r.train.size()) * static_cast<double>(r.history.size());
  h += "<section id=\"overview\"><h2>Result</h2><div class=\"cards\">";
  h += card("Test accuracy", percent(r.test_metrics.accuracy), true);
  h += card("Test loss", format_fixed(r.test_metrics.loss, 4));
  if (!r.history.empty()) {
    const auto best = std::max_element(r.history.begin(), r.history.end(), [](auto& a, auto& b) {
      return a.val_accuracy < b.val_accuracy;
    });
    h += card("Best val. accuracy (epoch " + std::to_string(best->epoch + 1) + ")",
              percent(best->val_accuracy));
  }
  h += card("Misclassified", format_thousands(s.wrong) + " of " +
                                 format_thousands(static_cast<int64_t>(r.test.size())));
  h += card("Epochs", std::to_string(r.history.size()));
  h += card("Training time", duration(r.train_seconds));
  if (r.train_seconds > 0)
    h += card("Images / s", format_thousands(std::llround(seen / r.train_seconds)));
  h += card("Parameters", format_thousands(r.graph->param_count()));
  h += "</div></section>\n";

  h += "<section id=\"curves\"><h2>Learning curves</h2>" +
       figure(s.curves, "curves.svg",
              "Solid: training (dropout on, averaged over the epoch); dashed: validation after "
              "the epoch") +
       "</section>\n";

  h += "<section id=\"confusion\"><h2>Confusion matrix</h2><div class=\"pair\">" +
       figure(s.cm, "confusion_matrix.svg", "Counts of test images: rows true, columns predicted") +
       figure(s.cm_normalized, "confusion_matrix_normalized.svg",
              "Each row divided by its total: the diagonal is the recall of the class") +
       "</div></section>\n";

  h += "<section id=\"per-class\"><h2>Per-class metrics (test)</h2>\n<table>\n<tr><th>Class</th>"
       "<th>Precision</th><th>Recall</th><th>F1-score</th><th>Support</th></tr>\n";
  for (int k = 0; k < d.classes; ++k) {
    const ClassMetrics& m = d.per_class[static_cast<size_t>(k)];
    h += "<tr><td>" + xml_escape(d.names[static_cast<size_t>(k)]) + "</td><td class=\"bar\">" +
         score_cell(m.precision) + "</td><td class=\"bar\">" + score_cell(m.recall) +
         "</td><td class=\"bar\">" + score_cell(m.f1) + "</td><td>" + format_thousands(m.support) +
         "</td></tr>\n";
  }
  for (const auto& [name, m] :
       {std::pair{"macro avg", d.macro}, std::pair{"weighted avg", d.weighted}}) {
    h += row({name, format_fixed(m.precision, 4), format_fixed(m.recall, 4), format_fixed(m.f1, 4),
              format_thousands(m.support)},
             "total");
  }
  h += "</table></section>\n";

  h += "<section id=\"misclassified\"><h2>Misclassified test images</h2>" +
       figure(s.misclassified, "misclassified.svg",
              "true &rarr; predicted, with the softmax probability of the prediction") +
       "</section>\n";

  if (!s.inside.empty()) {
    h += "<section id=\"inside\"><h2>Inside the network</h2>";
    for (const InsideSvg& f : s.inside) h += figure(f.svg, f.name, xml_escape(f.title));
    h += "</section>\n";
  }

  // The model, as Keras' summary() shows it, beside the run's settings.
  h += "<section id=\"model\"><h2>Model</h2><div class=\"pair\"><div>\n<table>\n<tr><th>Layer "
       "(type)</th><th>Output Shape</th><th>Param #</th></tr>\n";
  for (const SummaryRow& sr : model_summary_rows(*r.graph)) {
    h += row({xml_escape(sr.layer), keras_shape(sr.output_shape), format_thousands(sr.params)});
  }
  h += row({"Total params", "", format_thousands(r.graph->param_count())}, "total");
  if (r.graph->trainable_count() != r.graph->param_count()) {
    h += row({"Non-trainable params", "",
              format_thousands(r.graph->param_count() - r.graph->trainable_count())},
             "total");
  }
  h += "</table>\n</div><div>\n<table>\n<tr><th>Setting</th><th>Value</th></tr>\n";
  std::string spec_breakable;  // line breaks after commas only
  for (const char c : xml_escape(spec))
    spec_breakable += c == ',' ? std::string(",<wbr>") : std::string(1, c);
  h += row({"Model spec", "<code>" + spec_breakable + "</code>"});
  h += row({"Dataset", xml_escape(r.dataset)});
  h += row({"Split (train / val / test)",
            format_thousands(static_cast<int64_t>(r.train.size())) + " / " +
                format_thousands(static_cast<int64_t>(r.val.size())) + " / " +
                format_thousands(static_cast<int64_t>(r.test.size()))});
  h += row({"Device", xml_escape(r.device)});
  h += row({"Precision", xml_escape(r.precision)});
  h += row({"Batch size", std::to_string(r.batch_size)});
  h += row({"Learning rate (Adam)", shortest(r.lr)});
  if (r.weight_decay > 0) h += row({"Weight decay (AdamW, kernels)", shortest(r.weight_decay)});
  if (r.l2 > 0) h += row({"L2 regularizer (kernels; in the loss)", shortest(r.l2)});
  if (!r.training_note.empty()) h += row({"Training controls", xml_escape(r.training_note)});
  h += row({"Seed", std::to_string(r.seed)});
  h += row({"Data loading", duration(r.load_seconds)});
  h += row({"Training", duration(r.train_seconds)});
  h += row({"Evaluation", duration(r.eval_seconds)});
  h += "</table>\n</div></div>\n<details><summary>As Keras prints it "
       "(model_summary.txt)</summary><pre>" +
       xml_escape(model_summary(*r.graph)) + "</pre></details></section>\n";

  h += "<section id=\"data\"><h2>Data</h2>" +
       figure(s.distribution, "class_distribution.svg", "Images of each class in each split") +
       figure(s.samples, "samples.svg",
              "Training images as the model sees them (" + std::to_string(r.rows) + "&times;" +
                  std::to_string(r.cols) + " pixels)") +
       "</section>\n";

  h += "<section id=\"history\"><h2>History</h2>\n<table>\n<tr><th>Epoch</th><th>Loss</th>"
       "<th>Accuracy</th><th>Val. loss</th><th>Val. accuracy</th><th>Time</th></tr>\n";
  for (const EpochRecord& e : r.history) {
    h += row({std::to_string(e.epoch + 1), format_fixed(e.loss, 4), format_fixed(e.accuracy, 4),
              format_fixed(e.val_loss, 4), format_fixed(e.val_accuracy, 4),
              format_fixed(e.seconds, 2) + " s"});
  }
  h += "</table></section>\n";

  h += "<section id=\"files\"><h2>Files</h2><ul class=\"files\">";
  for (const std::string& f : report_files()) {
    h += "<li><a href=\"" + f + "\">" + f + "</a></li>";
  }
  for (const InsideSvg& f : s.inside) h += "<li><a href=\"" + f.name + "\">" + f.name + "</a></li>";
  h += "</ul></section>\n<footer>Written by mnist_gpu</footer>\n</main>\n</body>\n</html>\n";
  return h;
}

void write_file(const fs::path& dir, const std::string& name, std::string_view content) {
  write_file_atomic(dir / name, content);
}

}  // namespace

std::string keras_shape(const std::vector<int64_t>& shape) {
  std::string out = "(None";
  for (const int64_t s : shape) out += ", " + std::to_string(s);
  return out + ")";
}

std::vector<SummaryRow> model_summary_rows(const Graph& graph) {
  std::vector<SummaryRow> rows;
  bool flat = false;  // after Flatten or Dense, shapes are (None, units)
  for (const Layer& layer : graph.layers()) {
    if (layer.kind == LayerKind::kFlatten || layer.kind == LayerKind::kDense) flat = true;
    SummaryRow row;
    row.layer = layer.name + " (" + keras_type(layer.kind) + ")";
    row.output_shape = flat ? std::vector<int64_t>{layer.out.size()}
                            : std::vector<int64_t>{layer.out.h, layer.out.w, layer.out.c};
    row.params = layer.param_count();
    rows.push_back(std::move(row));
  }
  return rows;
}

std::string model_summary(const Graph& graph) {
  const std::vector<SummaryRow> rows = model_summary_rows(graph);
  // Keras' Sequential columns end at 29, 55 and 65; the first widens for long names.
  size_t name_w = 29;
  for (const auto& r : rows) name_w = std::max(name_w, r.layer.size() + 3);
  const size_t width = name_w + 36;
  std::string out = "Model: \"sequential\"\n" + std::string(width, '_') + "\n";
  out += rstrip(pad_right(" Layer (type)", name_w) + pad_right("Output Shape", 26) + "Param #") +
         "\n" + std::string(width, '=') + "\n";
  for (size_t i = 0; i < rows.size(); ++i) {
    if (i > 0) out += "\n";  // Keras separates rows with an empty line
    out += rstrip(pad_right(" " + rows[i].layer, name_w) +
                  pad_right(keras_shape(rows[i].output_shape), 26) +
                  format_thousands(rows[i].params)) +
           "\n";
  }
  out += std::string(width, '=') + "\n";
  out += "Total params: " + format_thousands(graph.param_count()) + "\n";
  out += "Trainable params: " + format_thousands(graph.trainable_count()) + "\n";
  out += "Non-trainable params: " +
         format_thousands(graph.param_count() - graph.trainable_count()) + "\n" +
         std::string(width, '_') + "\n";
  return out;
}

Matrix confusion_matrix(std::span<const uint8_t> labels_of_test, std::span<const float> probs,
                        int classes) {
  if (classes <= 0) throw std::invalid_argument("confusion_matrix: classes must be positive");
  const auto k = static_cast<size_t>(classes);
  if (probs.size() != labels_of_test.size() * k) {
    throw std::invalid_argument("confusion_matrix: " + std::to_string(probs.size()) +
                                " probabilities for " + std::to_string(labels_of_test.size()) +
                                " labels of " + std::to_string(classes) + " classes");
  }
  Matrix cm(k, std::vector<int64_t>(k, 0));
  for (size_t i = 0; i < labels_of_test.size(); ++i) {
    if (labels_of_test[i] >= classes) {
      throw std::invalid_argument("confusion_matrix: label " + std::to_string(labels_of_test[i]) +
                                  " at " + std::to_string(i) + " is not one of " +
                                  std::to_string(classes) + " classes");
    }
    ++cm[labels_of_test[i]][static_cast<size_t>(argmax(probs.subspan(i * k, k)))];
  }
  return cm;
}

std::vector<ClassMetrics> per_class_metrics(const Matrix& cm) {
  const size_t k = cm.size();
  std::vector<ClassMetrics> out(k);
  for (size_t c = 0; c < k; ++c) {
    if (cm[c].size() != k) throw std::invalid_argument("per_class_metrics: matrix is not square");
    int64_t predicted = 0, actual = 0;
    for (size_t j = 0; j < k; ++j) {
      predicted += cm[j][c];
      actual += cm[c][j];
    }
    const auto tp = static_cast<double>(cm[c][c]);
    ClassMetrics& m = out[c];
    m.support = actual;
    m.precision = predicted > 0 ? tp / static_cast<double>(predicted) : 0.0;
    m.recall = actual > 0 ? tp / static_cast<double>(actual) : 0.0;
    m.f1 = m.precision + m.recall > 0 ? 2 * m.precision * m.recall / (m.precision + m.recall) : 0.0;
  }
  return out;
}

ClassMetrics macro_average(const std::vector<ClassMetrics>& per_class) {
  ClassMetrics avg;
  for (const auto& m : per_class) {
    avg.precision += m.precision;
    avg.recall += m.recall;
    avg.f1 += m.f1;
    avg.support += m.support;
  }
  if (!per_class.empty()) {
    const auto n = static_cast<double>(per_class.size());
    avg.precision /= n, avg.recall /= n, avg.f1 /= n;
  }
  return avg;
}

ClassMetrics weighted_average(const std::vector<ClassMetrics>& per_class) {
  ClassMetrics avg;
  for (const auto& m : per_class) {
    const auto w = static_cast<double>(m.support);
    avg.precision += w * m.precision;
    avg.recall += w * m.recall;
    avg.f1 += w * m.f1;
    avg.support += m.support;
  }
  if (avg.support > 0) {
    const auto n = static_cast<double>(avg.support);
    avg.precision /= n, avg.recall /= n, avg.f1 /= n;
  }
  return avg;
}

std::string classification_report(const Matrix& cm, const std::vector<std::string>& class_names) {
  const std::vector<ClassMetrics> per_class = per_class_metrics(cm);
  if (class_names.size() != per_class.size()) {
    throw std::invalid_argument("classification_report: " + std::to_string(class_names.size()) +
                                " names for " + std::to_string(per_class.size()) + " classes");
  }
  int width = 12;  // len("weighted avg")
  for (const auto& n : class_names) width = std::max(width, static_cast<int>(n.size()));
  char buf[256];
  std::snprintf(buf, sizeof buf, "%*s  %9s %9s %9s %9s\n\n", width, "", "precision", "recall",
                "f1-score", "support");
  std::string out = buf;
  auto line = [&](const std::string& name, const ClassMetrics& m) {
    std::snprintf(buf, sizeof buf, "%*s  %9.2f %9.2f %9.2f %9lld\n", width, name.c_str(),
                  m.precision, m.recall, m.f1, static_cast<long long>(m.support));
    out += buf;
  };
  int64_t correct = 0;
  for (size_t c = 0; c < per_class.size(); ++c) {
    line(class_names[c], per_class[c]);
    correct += cm[c][c];
  }
  const ClassMetrics weighted = weighted_average(per_class);
  const double accuracy = weighted.support > 0
                              ? static_cast<double>(correct) / static_cast<double>(weighted.support)
                              : 0.0;
  std::snprintf(buf, sizeof buf, "\n%*s  %9s %9s %9.2f %9lld\n", width, "accuracy", "", "",
                accuracy, static_cast<long long>(weighted.support));
  out += buf;
  line("macro avg", macro_average(per_class));
  line("weighted avg", weighted);
  return out;
}

std::string history_csv_text(const std::vector<EpochRecord>& history, double l2) {
  // CSVLogger sorts its columns by name after "epoch"; "lr" is the learning rate of the epoch, as
  // Keras logs it with a schedule. loss and val_loss include the L2 penalty (as Keras' do); with
  // --l2, l2_loss and val_l2_loss are that penalty's share (the data loss is loss - l2_loss).
  if (l2 > 0) {
    std::string out = "epoch,accuracy,l2_loss,loss,lr,val_accuracy,val_l2_loss,val_loss\n";
    for (const EpochRecord& e : history) {
      out += std::to_string(e.epoch) + "," + shortest(e.accuracy) + "," + shortest(e.l2_loss) +
             "," + shortest(e.loss) + "," + shortest(e.lr) + "," + shortest(e.val_accuracy) + "," +
             shortest(e.val_l2_loss) + "," + shortest(e.val_loss) + "\n";
    }
    return out;
  }
  std::string out = "epoch,accuracy,loss,lr,val_accuracy,val_loss\n";
  for (const EpochRecord& e : history) {
    out += std::to_string(e.epoch) + "," + shortest(e.accuracy) + "," + shortest(e.loss) + "," +
           shortest(e.lr) + "," + shortest(e.val_accuracy) + "," + shortest(e.val_loss) + "\n";
  }
  return out;
}

const std::vector<std::string>& report_files() {
  static const std::vector<std::string> files = {
      "model_summary.txt", "history.csv", "metrics.json",         "class_distribution.svg",
      "samples.svg",       "curves.svg",  "confusion_matrix.svg", "confusion_matrix_normalized.svg",
      "misclassified.svg", "report.html"};
  return files;
}

void write_report(const fs::path& dir, const RunReport& report) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    throw std::runtime_error("cannot write the report: " + dir.string() + " is not a folder");
  }
  const Derived d = derive(report);
  Svgs s;
  s.distribution = class_distribution_svg(d);
  s.samples = samples_svg(report, d);
  s.curves = curves_svg(report);
  s.cm = confusion_svg(d, false);
  s.cm_normalized = confusion_svg(d, true);
  s.misclassified = misclassified_svg(report, d, &s.wrong);
  if (report.engine) s.inside = report_inside_pictures(*report.engine, report);

  write_file(dir, "model_summary.txt", model_summary(*report.graph));
  write_file(dir, "history.csv", history_csv(report));
  write_file(dir, "metrics.json", metrics_json(report, d));
  write_file(dir, "class_distribution.svg", s.distribution);
  write_file(dir, "samples.svg", s.samples);
  write_file(dir, "curves.svg", s.curves);
  write_file(dir, "confusion_matrix.svg", s.cm);
  write_file(dir, "confusion_matrix_normalized.svg", s.cm_normalized);
  write_file(dir, "misclassified.svg", s.misclassified);
  for (const InsideSvg& f : s.inside) write_file(dir, f.name, f.svg);
  write_file(dir, "report.html", report_html(report, d, s));  // last: it links the others
}

}  // namespace mg
