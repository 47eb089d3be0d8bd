#include "host/compare.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>
#include <ostream>
#include <sstream>

#include "host/atomic_file.hpp"
#include "host/charts.hpp"
#include "host/checkpoint.hpp"
#include "host/command_common.hpp"

namespace mg {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr size_t kMinRuns = 2;

[[noreturn]] void fail(const fs::path& where, const std::string& problem) {
  throw CompareError(where.string() + ": " + problem);
}

std::string read_text(const fs::path& file) {
  std::error_code ec;
  if (!fs::is_regular_file(file, ec)) fail(file, "missing (not a run folder written by train?)");
  std::ifstream in(file, std::ios::binary);
  if (!in) fail(file, "cannot be read");
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) fail(file, "cannot be read");
  return text.str();
}

std::vector<std::string> split_csv_line(const std::string& line) {
  std::vector<std::string> out(1);
  for (const char c : line) {
    if (c == ',') {
      out.emplace_back();
    } else if (c != '\r') {
      out.back() += c;
    }
  }
  return out;
}

bool parse_number(const std::string& s, double& v) {
  if (s.empty()) return false;
  std::istringstream in(s);
  in.imbue(std::locale::classic());
  in >> v;
  return !in.fail() && in.eof() && std::isfinite(v);
}

// metrics.json fields, with errors that name the file and the key.
const json& field(const json& j, const char* key, const fs::path& file, const char* parent = "") {
  if (!j.is_object() || !j.contains(key)) {
    fail(file, std::string("no \"") + parent + key + "\" (not written by this version of train?)");
  }
  return j.at(key);
}
double number(const json& j, const char* key, const fs::path& file, const char* parent = "") {
  const json& v = field(j, key, file, parent);
  if (!v.is_number() || !std::isfinite(v.get<double>())) {
    fail(file, std::string("\"") + parent + key + "\" is not a number");
  }
  return v.get<double>();
}
std::string text(const json& j, const char* key, const fs::path& file, const char* parent = "") {
  const json& v = field(j, key, file, parent);
  if (!v.is_string()) fail(file, std::string("\"") + parent + key + "\" is not a string");
  return v.get<std::string>();
}

void read_metrics(const fs::path& file, RunSummary& r) {
  json j;
  try {
    j = json::parse(read_text(file));
  } catch (const json::exception& e) {
    fail(file, std::string("not valid JSON (") + e.what() + ")");
  }
  if (!j.is_object()) fail(file, "not a JSON object");
  r.data_source = text(j, "dataset", file);  // where the images came from
  r.device = text(j, "device", file);
  const json& model = field(j, "model", file);
  r.spec = text(model, "spec", file, "model.");
  r.param_count = static_cast<int64_t>(number(model, "param_count", file, "model."));
  const json& test = field(j, "test", file);
  r.test_accuracy = number(test, "accuracy", file, "test.");
  r.test_loss = number(test, "loss", file, "test.");
  const json& timings = field(j, "timings", file);
  r.train_seconds = number(timings, "train_seconds", file, "timings.");
  r.images_per_second = number(timings, "train_images_per_second", file, "timings.");

  const json& names = field(j, "class_names", file);
  if (!names.is_array() || names.empty()) fail(file, "\"class_names\" is not a list of names");
  for (const json& n : names) {
    if (!n.is_string()) fail(file, "\"class_names\" is not a list of names");
    r.class_names.push_back(n.get<std::string>());
  }
  const size_t classes = r.class_names.size();
  const json& per_class = field(j, "per_class", file);
  if (!per_class.is_array() || per_class.size() != classes) {
    fail(file, "\"per_class\" does not have one entry per class (" + std::to_string(classes) + ")");
  }
  for (const json& c : per_class) r.f1.push_back(number(c, "f1", file, "per_class[]."));
  const json& cm = field(j, "confusion_matrix", file);
  bool square = cm.is_array() && cm.size() == classes;
  for (size_t i = 0; square && i < classes; ++i) {
    square = cm[i].is_array() && cm[i].size() == classes;
    std::vector<int64_t> row;
    for (size_t k = 0; square && k < classes; ++k) {
      square = cm[i][k].is_number_integer() && cm[i][k].get<int64_t>() >= 0;
      if (square) row.push_back(cm[i][k].get<int64_t>());
    }
    r.confusion.push_back(row);
  }
  if (!square) {
    fail(file, "\"confusion_matrix\" is not a " + std::to_string(classes) + "x" +
                   std::to_string(classes) + " matrix of counts");
  }
  const json& epochs = field(j, "epochs", file);
  if (!epochs.is_number_integer() ||
      epochs.get<int64_t>() != static_cast<int64_t>(r.history.size())) {
    fail(file, "\"epochs\" is " + epochs.dump() + " but history.csv has " +
                   std::to_string(r.history.size()) + " epochs (files of different runs?)");
  }
  const json& history = field(j, "history", file);
  if (!history.is_array() || history.size() != r.history.size()) {
    fail(file, "\"history\" does not match history.csv (files of different runs?)");
  }
  for (size_t e = 0; e < r.history.size(); ++e) {
    const double v = number(history[e], "val_accuracy", file, "history[].");
    if (std::abs(v - r.history[e].val_accuracy) > 1e-9) {
      fail(file, "epoch " + std::to_string(e + 1) + "'s val_accuracy differs from history.csv's " +
                     "(files of different runs?)");
    }
    r.history[e].seconds = number(history[e], "seconds", file, "history[].");
  }
}

// Every column of a table or chart is per run, in the order the runs were given.
std::string color_of(size_t run) { return run_colors()[run % run_colors().size()]; }
bool dashed_of(size_t run) { return run >= run_colors().size(); }

std::string percent(double fraction, int decimals = 2) {
  return format_fixed(100 * fraction, decimals) + "%";
}

std::string duration(double seconds) {
  if (seconds < 120) return format_fixed(seconds, 1) + " s";
  const auto total = static_cast<int64_t>(std::llround(seconds));
  return std::to_string(total / 60) + " min " + std::to_string(total % 60) + " s";
}

std::string augment_text(const RunSummary& r) {
  if (!r.augment) return "none";
  return "shift " + format_fixed(r.max_shift, 0) + " px, rotation " +
         format_fixed(r.max_rotation_deg, 0) + "\u00b0";
}

std::string legend_label(const RunSummary& r) {
  return r.name + ": " + r.spec + (r.augment ? " +augment" : "");
}

size_t best_epoch(const RunSummary& r) {
  size_t best = 0;
  for (size_t e = 1; e < r.history.size(); ++e) {
    if (r.history[e].val_accuracy > r.history[best].val_accuracy) best = e;
  }
  return best;
}

// Curves of every run on shared axes: two panels (training, validation) of one quantity.
std::string curves_svg(const std::vector<RunSummary>& runs, const char* title, const char* y_label,
                       double EpochRecord::*train, double EpochRecord::*val, bool accuracy) {
  size_t epochs = 0;
  for (const auto& r : runs) epochs = std::max(epochs, r.history.size());
  std::vector<double> x(epochs);
  std::iota(x.begin(), x.end(), 1.0);
  LinePanel tp{std::string("Training ") + y_label, y_label, {}, {}, {}};
  LinePanel vp{std::string("Validation ") + y_label, y_label, {}, {}, {}};
  if (accuracy) tp.y_ceiling = vp.y_ceiling = 1.0, tp.y_floor = vp.y_floor = 0.0;
  if (!accuracy) tp.y_floor = vp.y_floor = 0.0;
  for (size_t i = 0; i < runs.size(); ++i) {
    LineSeries ts{legend_label(runs[i]), color_of(i), {}, dashed_of(i)};
    LineSeries vs = ts;
    for (const EpochRecord& e : runs[i].history) {
      ts.y.push_back(e.*train);
      vs.y.push_back(e.*val);
    }
    tp.series.push_back(ts);
    vp.series.push_back(vs);
  }
  return svg_line_panels(title, x, {tp, vp}, "Epoch");
}

std::string gap_svg(const std::vector<RunSummary>& runs) {
  size_t epochs = 0;
  for (const auto& r : runs) epochs = std::max(epochs, r.history.size());
  std::vector<double> x(epochs);
  std::iota(x.begin(), x.end(), 1.0);
  LinePanel p{"Training minus validation accuracy", "Accuracy gap", {}, {}, {}};
  for (size_t i = 0; i < runs.size(); ++i) {
    LineSeries s{legend_label(runs[i]), color_of(i), {}, dashed_of(i)};
    for (const EpochRecord& e : runs[i].history) s.y.push_back(e.accuracy - e.val_accuracy);
    p.series.push_back(s);
  }
  return svg_line_panels("Generalization gap", x, {p}, "Epoch");
}

double f1_floor(const std::vector<RunSummary>& runs) {
  double lo = 1;
  for (const auto& r : runs) {
    for (const double f : r.f1) lo = std::min(lo, f);
  }
  return std::clamp(std::floor((lo - 0.02) * 20) / 20, 0.0, 0.95);
}

std::string f1_svg(const std::vector<RunSummary>& runs) {
  std::vector<BarSeries> series;
  for (size_t i = 0; i < runs.size(); ++i)
    series.push_back({runs[i].name, color_of(i), runs[i].f1});
  BarOptions o;
  o.decimals = 4;
  o.totals = false;
  o.y_floor = f1_floor(runs);
  return svg_grouped_bars("Per-class F1-score (test)", runs[0].class_names, series, "Class",
                          "F1-score", o);
}

std::string diff_svg(const RunSummary& a, const RunSummary& b) {
  HeatmapSpec h;
  h.title = "Confusion matrix: " + a.name + " minus " + b.name;
  h.x_label = "Predicted";
  h.y_label = "True";
  h.labels = a.class_names;
  h.diverging = true;
  for (size_t t = 0; t < a.confusion.size(); ++t) {
    std::vector<double> row;
    for (size_t p = 0; p < a.confusion[t].size(); ++p) {
      row.push_back(static_cast<double>(a.confusion[t][p] - b.confusion[t][p]));
    }
    h.values.push_back(row);
  }
  return svg_heatmap(h);
}

constexpr const char* kCss = R"css(
:root { --ink: #222; --muted: #666; --line: #e3e5e8; --best: #2ca02c; }
* { box-sizing: border-box; }
body { margin: 0; background: #f4f5f7; color: var(--ink);
       font: 15px/1.5 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", Helvetica, Arial,
             sans-serif; }
main { max-width: 1240px; margin: 0 auto; padding: 28px 28px 48px; }
header h1 { margin: 0 0 4px; font-size: 28px; }
header p { margin: 0; color: var(--muted); }
section { background: #fff; border: 1px solid var(--line); border-radius: 10px; padding: 20px 24px;
          margin-top: 22px; overflow-x: auto; }
h2 { margin: 0 0 12px; font-size: 20px; }
figure { margin: 0; text-align: center; }
figure svg { max-width: 100%; height: auto; }
figcaption { color: var(--muted); font-size: 13px; margin-top: 6px; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { padding: 5px 8px; border-bottom: 1px solid var(--line); text-align: right; }
th:first-child, td:first-child, td.left, th.left { text-align: left; }
th { font-size: 13px; color: var(--muted); font-weight: 600; }
tr.best td { background: #eef8ee; font-weight: 650; }
td.top { color: var(--best); font-weight: 650; }
.swatch { display: inline-block; width: 12px; height: 12px; border-radius: 2px; margin-right: 6px;
          vertical-align: -1px; }
.mark { color: var(--best); font-weight: 700; margin-left: 6px; }
code { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 13px; }
footer { color: var(--muted); font-size: 13px; margin-top: 18px; text-align: center; }
)css";

// Line breaks after commas only.
std::string spec_html(const std::string& spec) {
  std::string out;
  for (const char c : xml_escape(spec)) out += c == ',' ? std::string(",<wbr>") : std::string(1, c);
  return out;
}

std::string swatch(size_t run) {
  return "<span class=\"swatch\" style=\"background:" + color_of(run) + "\"></span>";
}

struct Pictures {
  std::string accuracy, loss, gap, f1, diff;
};

std::string compare_html(const std::vector<RunSummary>& runs, const std::vector<size_t>& ranked,
                         size_t diff_a, size_t diff_b, const Pictures& p) {
  const std::string title = std::to_string(runs.size()) + " runs compared";
  std::string h =
      "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
      "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>" +
      xml_escape(title) + "</title>\n<style>" + kCss + "</style>\n</head>\n<body>\n<main>\n";
  const RunSummary& best = runs[ranked[0]];
  h += "<header><h1>" + xml_escape(title) + "</h1><p>" + xml_escape(best.dataset) +
       " &middot; best: " + xml_escape(best.name) + " (test accuracy " +
       percent(best.test_accuracy) + ")</p></header>\n";

  h += "<section id=\"runs\"><h2>Runs, by test accuracy</h2>\n<table>\n<tr><th>#</th>"
       "<th class=\"left\">Run</th><th class=\"left\">Model</th><th>Parameters</th>"
       "<th class=\"left\">Augmentation</th><th>Epochs</th><th>Best val. accuracy (epoch)</th>"
       "<th>Test accuracy</th><th>Test loss</th><th>Training time</th><th>Images / s</th>"
       "<th class=\"left\">Device</th></tr>\n";
  for (size_t rank = 0; rank < ranked.size(); ++rank) {
    const size_t i = ranked[rank];
    const RunSummary& r = runs[i];
    const size_t be = best_epoch(r);
    h += std::string(rank == 0 ? "<tr class=\"best\">" : "<tr>") + "<td>" +
         std::to_string(rank + 1) + "</td><td class=\"left\">" + swatch(i) + xml_escape(r.name) +
         (rank == 0 ? "<span class=\"mark\">&#9733; best</span>" : "") +
         "</td><td class=\"left\"><code>" + spec_html(r.spec) + "</code></td><td>" +
         format_thousands(r.param_count) + "</td><td class=\"left\">" +
         xml_escape(augment_text(r)) + "</td><td>" + std::to_string(r.history.size()) +
         "</td><td>" + percent(r.history[be].val_accuracy) + " (" + std::to_string(be + 1) +
         ")</td><td>" + percent(r.test_accuracy) + "</td><td>" + format_fixed(r.test_loss, 4) +
         "</td><td>" + duration(r.train_seconds) + "</td><td>" +
         format_thousands(std::llround(r.images_per_second)) + "</td><td class=\"left\">" +
         xml_escape(r.device) + "</td></tr>\n";
  }
  h += "</table>\n</section>\n";

  h += "<section id=\"accuracy\"><h2>Accuracy</h2>" +
       figure(p.accuracy, "accuracy.svg",
              "Every run on shared axes, one colour per run; training accuracy is averaged over "
              "the epoch with dropout on, validation is measured after it") +
       "</section>\n";
  h += "<section id=\"loss\"><h2>Loss</h2>" +
       figure(p.loss, "loss.svg", "Cross-entropy of training (during the epoch) and validation") +
       "</section>\n";
  h += "<section id=\"gap\"><h2>Generalization gap</h2>" +
       figure(p.gap, "generalization_gap.svg",
              "Training minus validation accuracy per epoch: a curve that climbs is a run that "
              "starts to overfit; below zero, dropout or augmentation make training harder than "
              "validation") +
       "</section>\n";

  h += "<section id=\"per-class\"><h2>Per-class F1-score (test)</h2>" +
       figure(p.f1, "per_class_f1.svg",
              "The axis starts at " + format_fixed(f1_floor(runs), 2) +
                  ", not 0, so that close "
                  "scores can be told apart");
  h += "<table>\n<tr><th>Class</th>";
  for (size_t i = 0; i < runs.size(); ++i) {
    h += "<th>" + swatch(i) + xml_escape(runs[i].name) + "</th>";
  }
  h += "</tr>\n";
  for (size_t k = 0; k < runs[0].class_names.size(); ++k) {
    double top = 0;
    for (const auto& r : runs) top = std::max(top, r.f1[k]);
    h += "<tr><td>" + xml_escape(runs[0].class_names[k]) + "</td>";
    for (const auto& r : runs) {
      h += std::string(r.f1[k] == top ? "<td class=\"top\">" : "<td>") + format_fixed(r.f1[k], 4) +
           "</td>";
    }
    h += "</tr>\n";
  }
  h += "</table>\n</section>\n";

  const RunSummary &a = runs[diff_a], &b = runs[diff_b];
  h += "<section id=\"confusion-diff\"><h2>Confusion matrix difference</h2>" +
       figure(p.diff, "confusion_diff.svg",
              "Test counts of " + xml_escape(a.name) + " minus those of " + xml_escape(b.name) +
                  " (rows true, columns predicted). On the diagonal blue means " +
                  xml_escape(a.name) + " gets more of the class right; off it, blue means " +
                  xml_escape(a.name) + " makes that mistake more often, red less often") +
       "</section>\n";

  h += "<footer>Folders: ";
  for (size_t i = 0; i < runs.size(); ++i) {
    h += (i ? ", " : "") + std::string("<code>") + xml_escape(runs[i].dir.string()) + "</code>";
  }
  h += " &middot; written by mnist_gpu compare</footer>\n</main>\n</body>\n</html>\n";
  return h;
}

}  // namespace

std::vector<EpochRecord> parse_history_csv(std::string_view text, const std::string& file) {
  std::istringstream in{std::string(text)};
  std::string line;
  if (!std::getline(in, line)) fail(file, "empty (no header line)");
  const std::vector<std::string> header = split_csv_line(line);
  std::map<std::string, size_t> column;
  for (size_t c = 0; c < header.size(); ++c) column[header[c]] = c;
  const char* needed[] = {"epoch", "accuracy", "loss", "val_accuracy", "val_loss"};
  for (const char* n : needed) {
    if (!column.count(n)) {
      fail(file, std::string("no \"") + n +
                     "\" column in the header (a Keras CSVLogger file "
                     "has epoch,accuracy,loss,val_accuracy,val_loss)");
    }
  }
  std::vector<EpochRecord> rows;
  for (int64_t number_of_line = 2; std::getline(in, line); ++number_of_line) {
    if (line.empty() || line == "\r") continue;
    const std::vector<std::string> cells = split_csv_line(line);
    const std::string where = "line " + std::to_string(number_of_line) + ": ";
    if (cells.size() != header.size()) {
      fail(file, where + std::to_string(cells.size()) + " fields, the header has " +
                     std::to_string(header.size()));
    }
    double v[5];
    for (int k = 0; k < 5; ++k) {
      if (!parse_number(cells[column[needed[k]]], v[k])) {
        fail(file, where + needed[k] + " \"" + cells[column[needed[k]]] + "\" is not a number");
      }
    }
    if (v[0] != static_cast<double>(rows.size())) {
      fail(file, where + "epoch " + cells[column["epoch"]] + " where " +
                     std::to_string(rows.size()) + " was expected (epochs count from 0)");
    }
    EpochRecord r;
    r.epoch = static_cast<int>(rows.size());
    r.accuracy = v[1], r.loss = v[2], r.val_accuracy = v[3], r.val_loss = v[4];
    rows.push_back(r);
  }
  if (rows.empty()) fail(file, "no epochs");
  return rows;
}

RunSummary read_run(const fs::path& dir) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) fail(dir, "does not exist");
  if (!fs::is_directory(dir, ec)) fail(dir, "not a folder (compare takes run folders)");
  if (fs::is_regular_file(dir / kCheckpointName, ec) && !fs::exists(dir / "metrics.json", ec)) {
    fail(dir, "no metrics.json: the run has not finished (train writes it after the test pass)");
  }
  for (const char* f : {"history.csv", "metrics.json", kCheckpointName}) {
    if (!fs::is_regular_file(dir / f, ec)) {
      fail(dir, std::string("not a run folder: no ") + f +
                    " (train writes history.csv, "
                    "metrics.json and checkpoint.safetensors into its --out folder)");
    }
  }
  RunSummary r;
  r.dir = dir;
  r.history = parse_history_csv(read_text(dir / "history.csv"), (dir / "history.csv").string());
  read_metrics(dir / "metrics.json", r);
  const fs::path ckpt = dir / kCheckpointName;
  Checkpoint c;
  try {
    c = load_checkpoint(ckpt);
  } catch (const std::exception& e) {
    throw CompareError(e.what());  // names the file already
  }
  if (c.meta.spec != r.spec) {
    fail(ckpt, "its model " + c.meta.spec + " is not metrics.json's " + r.spec +
                   " (files of different runs?)");
  }
  r.dataset = c.meta.dataset;
  if (static_cast<size_t>(c.meta.classes) != r.class_names.size()) {
    fail(ckpt, "its " + std::to_string(c.meta.classes) + " classes are not metrics.json's " +
                   std::to_string(r.class_names.size()));
  }
  r.augment = c.meta.augment.enabled;
  r.max_shift = c.meta.augment.max_shift;
  r.max_rotation_deg = c.meta.augment.max_rotation_deg;
  fs::path name = dir.filename();
  if (name.empty()) name = dir.parent_path().filename();  // "runs/a/"
  r.name = name.empty() ? dir.string() : name.string();
  return r;
}

const std::vector<std::string>& run_colors() {
  static const std::vector<std::string> colors = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728",
                                                  "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                                                  "#bcbd22", "#17becf", "#000000", "#ffd700"};
  return colors;
}

const std::vector<std::string>& compare_files() {
  static const std::vector<std::string> files = {"accuracy.svg",           "loss.svg",
                                                 "generalization_gap.svg", "per_class_f1.svg",
                                                 "confusion_diff.svg",     "compare.html"};
  return files;
}

void run_compare(const CompareOptions& o, std::ostream& out) {
  if (o.runs.size() < kMinRuns) {
    throw CompareError("compare needs at least " + std::to_string(kMinRuns) + " run folders, got " +
                       std::to_string(o.runs.size()));
  }
  std::vector<RunSummary> runs;
  for (const fs::path& dir : o.runs) runs.push_back(read_run(dir));
  std::map<std::string, int> name_count;
  for (const auto& r : runs) ++name_count[r.name];
  for (auto& r : runs) {
    if (name_count[r.name] > 1) r.name = r.dir.lexically_normal().string();
  }
  for (size_t i = 0; i < runs.size(); ++i) {
    for (size_t k = 0; k < i; ++k) {
      if (fs::equivalent(runs[i].dir, runs[k].dir)) {
        fail(runs[i].dir, "given twice (as " + runs[k].dir.string() + " too)");
      }
    }
    if (runs[i].dataset != runs[0].dataset) {
      fail(runs[i].dir, "a run on " + runs[i].dataset + ", but " + runs[0].dir.string() +
                            " is on " + runs[0].dataset + "; compare takes runs of one dataset");
    }
    if (runs[i].class_names != runs[0].class_names) {
      fail(runs[i].dir / "metrics.json",
           "its class names differ from those of " + (runs[0].dir / "metrics.json").string());
    }
  }

  std::vector<size_t> ranked(runs.size());
  std::iota(ranked.begin(), ranked.end(), size_t{0});
  std::stable_sort(ranked.begin(), ranked.end(), [&](size_t a, size_t b) {
    if (runs[a].test_accuracy != runs[b].test_accuracy) {
      return runs[a].test_accuracy > runs[b].test_accuracy;
    }
    return runs[a].test_loss < runs[b].test_loss;
  });
  const size_t diff_a = o.diff_first_two ? 0 : ranked[0];
  const size_t diff_b = o.diff_first_two ? 1 : ranked[1];

  Pictures p;
  p.accuracy = curves_svg(runs, "Accuracy", "accuracy", &EpochRecord::accuracy,
                          &EpochRecord::val_accuracy, true);
  p.loss = curves_svg(runs, "Loss", "loss", &EpochRecord::loss, &EpochRecord::val_loss, false);
  p.gap = gap_svg(runs);
  p.f1 = f1_svg(runs);
  p.diff = diff_svg(runs[diff_a], runs[diff_b]);
  const std::string html = compare_html(runs, ranked, diff_a, diff_b, p);

  // Everything is read and drawn: only now is the output folder made.
  const fs::path dir = make_run_dir(o.out, "compare-");
  const std::string* contents[] = {&p.accuracy, &p.loss, &p.gap, &p.f1, &p.diff, &html};
  for (size_t f = 0; f < compare_files().size(); ++f) {
    write_file_atomic(dir / compare_files()[f], *contents[f]);
  }

  for (size_t rank = 0; rank < ranked.size(); ++rank) {
    const RunSummary& r = runs[ranked[rank]];
    out << rank + 1 << ". " << r.name << "  test accuracy " << format_fixed(r.test_accuracy, 4)
        << "  loss " << format_fixed(r.test_loss, 4) << "  " << r.spec
        << (r.augment ? " +augment" : "") << '\n';
  }
  out << "report: " << (dir / "compare.html").string() << '\n';
}

}  // namespace mg
