// mnist_gpu compare on made-up run folders: history.csv parsing, the checks of a run folder, the
// refusals (too few runs, other datasets, an existing --out) and the files of a comparison.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <sstream>
#include <string>

#include "engine/model_spec.hpp"
#include "host/charts.hpp"
#include "host/checkpoint.hpp"
#include "host/compare.hpp"

namespace mg {
namespace {

namespace fs = std::filesystem;

struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() /
           ("mg_compare_" + std::to_string(std::random_device{}()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

void write(const fs::path& file, const std::string& text) {
  std::ofstream(file, std::ios::binary) << text;
}

std::string read(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

struct FakeRun {
  std::string spec = "dense16";
  std::string dataset = "mnist";
  double test_accuracy = 0.9;
  int epochs = 3;
  uint64_t seed = 1;
  bool augment = false;
};

// A run folder as train writes it: history.csv, metrics.json (the fields compare reads) and a
// checkpoint of the spec, with numbers drawn from the seed.
fs::path make_run(const fs::path& dir, const FakeRun& f) {
  fs::create_directories(dir);
  std::mt19937_64 rng(f.seed);
  std::uniform_real_distribution<double> u(0.5, 0.99);
  nlohmann::json history = nlohmann::json::array();
  std::string csv = "epoch,accuracy,loss,val_accuracy,val_loss\n";
  for (int e = 0; e < f.epochs; ++e) {
    const double acc = u(rng), loss = 1 - u(rng), val = u(rng), val_loss = 1 - u(rng);
    std::ostringstream line;
    line.precision(17);
    line << e << ',' << acc << ',' << loss << ',' << val << ',' << val_loss << '\n';
    csv += line.str();
    history.push_back({{"epoch", e},
                       {"accuracy", acc},
                       {"loss", loss},
                       {"val_accuracy", val},
                       {"val_loss", val_loss},
                       {"seconds", 1.5}});
  }
  write(dir / "history.csv", csv);
  const Graph g = Graph::build(ModelSpec::parse(f.spec));
  nlohmann::json per_class = nlohmann::json::array();
  nlohmann::json cm = nlohmann::json::array();
  std::vector<std::string> names;
  for (int k = 0; k < g.classes(); ++k) {
    names.push_back(std::to_string(k));
    per_class.push_back({{"class", names.back()},
                         {"f1", u(rng)},
                         {"precision", 0.9},
                         {"recall", 0.9},
                         {"support", 100}});
    std::vector<int64_t> row(static_cast<size_t>(g.classes()), 1);
    row[static_cast<size_t>(k)] = 90 + static_cast<int64_t>(rng() % 10);
    cm.push_back(row);
  }
  nlohmann::json j = {
      {"dataset", "/data/" + f.dataset + " (IDX files)"},
      {"device", "cpu (test)"},
      {"model", {{"spec", g.spec().to_string()}, {"param_count", g.param_count()}}},
      {"epochs", f.epochs},
      {"test", {{"accuracy", f.test_accuracy}, {"loss", 1 - f.test_accuracy}, {"count", 1000}}},
      {"timings", {{"train_seconds", 4.5}, {"train_images_per_second", 12345.0}}},
      {"class_names", names},
      {"per_class", per_class},
      {"confusion_matrix", cm},
      {"history", history}};
  write(dir / "metrics.json", j.dump(2));
  CheckpointMeta meta;
  meta.spec = g.spec().to_string();
  meta.dataset = f.dataset;
  meta.epochs_done = f.epochs;
  meta.augment.enabled = f.augment;
  TrainingState state;
  state.params.assign(static_cast<size_t>(g.param_count()), 0.25f);
  save_checkpoint(dir / "checkpoint.safetensors", g, state, meta);
  return dir;
}

// The CompareError message of f(), or "" when it does not throw one.
template <class F>
std::string error_of(F f) {
  try {
    f();
  } catch (const CompareError& e) {
    return e.what();
  }
  return "";
}

TEST(CompareHistory, ReadsColumnsInAnyOrderAndIgnoresOthers) {
  const auto rows = parse_history_csv(
      "epoch,accuracy,loss,lr,val_accuracy,val_loss\n0,0.5,2,0.001,0.6,1.5\n1,0.7,1,0.001,0.8,0."
      "5\n",
      "h.csv");
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[1].epoch, 1);
  EXPECT_DOUBLE_EQ(rows[1].accuracy, 0.7);
  EXPECT_DOUBLE_EQ(rows[1].loss, 1);
  EXPECT_DOUBLE_EQ(rows[1].val_accuracy, 0.8);
  EXPECT_DOUBLE_EQ(rows[0].val_loss, 1.5);
  const auto swapped = parse_history_csv(
      "val_loss,epoch,val_accuracy,loss,accuracy\r\n0.25,0,0.75,0.5,0.125\r\n", "h");
  ASSERT_EQ(swapped.size(), 1u);
  EXPECT_DOUBLE_EQ(swapped[0].val_loss, 0.25);
  EXPECT_DOUBLE_EQ(swapped[0].accuracy, 0.125);
}

TEST(CompareHistory, BadFilesNameTheFileLineAndProblem) {
  const std::string header = "epoch,accuracy,loss,val_accuracy,val_loss\n";
  auto err = [](const std::string& text) {
    return error_of([&] { parse_history_csv(text, "runs/a/history.csv"); });
  };
  EXPECT_NE(err("").find("runs/a/history.csv: empty"), std::string::npos);
  EXPECT_NE(err("epoch,accuracy,loss,val_accuracy\n0,1,1,1\n").find("no \"val_loss\" column"),
            std::string::npos);
  EXPECT_NE(err(header + "0,0.5,1,0.5,x\n").find("line 2: val_loss \"x\" is not a number"),
            std::string::npos);
  EXPECT_NE(err(header + "0,0.5,1,0.5,nan\n").find("line 2: val_loss"), std::string::npos);
  EXPECT_NE(err(header + "0,0.5,1,0.5,1\n2,0.5,1,0.5,1\n").find("line 3: epoch 2 where 1"),
            std::string::npos);
  EXPECT_NE(err(header + "0,0.5,1,0.5\n").find("line 2: 4 fields, the header has 5"),
            std::string::npos);
  EXPECT_NE(err(header).find("no epochs"), std::string::npos);
  EXPECT_EQ(err(header + "0,0.5,1,0.5,1\n"), "");
}

TEST(CompareRun, ReadsWhatTrainWrites) {
  TempDir t;
  const fs::path dir = make_run(t.path / "aug", {"conv4,pool,dense16", "mnist", 0.93, 4, 7, true});
  const RunSummary r = read_run(dir);
  EXPECT_EQ(r.name, "aug");
  EXPECT_EQ(r.spec, ModelSpec::parse("conv4,pool,dense16").to_string());
  EXPECT_EQ(r.param_count, Graph::build(ModelSpec::parse("conv4,pool,dense16")).param_count());
  EXPECT_TRUE(r.augment);
  EXPECT_EQ(r.history.size(), 4u);
  EXPECT_DOUBLE_EQ(r.history[3].seconds, 1.5);
  EXPECT_DOUBLE_EQ(r.test_accuracy, 0.93);
  EXPECT_EQ(r.f1.size(), 10u);
  EXPECT_EQ(r.confusion.size(), 10u);
  EXPECT_EQ(r.device, "cpu (test)");
  EXPECT_EQ(r.dataset, "mnist");
  EXPECT_EQ(r.data_source, "/data/mnist (IDX files)");
}

TEST(CompareRun, NotARunFolderIsNamed) {
  TempDir t;
  EXPECT_NE(error_of([&] { read_run(t.path / "nope"); }).find("nope: does not exist"),
            std::string::npos);
  write(t.path / "file", "x");
  EXPECT_NE(error_of([&] { read_run(t.path / "file"); }).find("file: not a folder"),
            std::string::npos);
  const fs::path unfinished = make_run(t.path / "u", {});
  fs::remove(unfinished / "metrics.json");
  EXPECT_NE(error_of([&] { read_run(unfinished); }).find("the run has not finished"),
            std::string::npos);
  const fs::path dir = make_run(t.path / "r", {});
  fs::remove(dir / "checkpoint.safetensors");
  const std::string e = error_of([&] { read_run(dir); });
  EXPECT_NE(e.find((t.path / "r").string() + ": not a run folder: no checkpoint.safetensors"),
            std::string::npos)
      << e;
}

TEST(CompareRun, MismatchedOrBrokenFilesAreRefused) {
  TempDir t;
  {  // history.csv of another run: fewer epochs than metrics.json
    const fs::path dir = make_run(t.path / "a", {});
    make_run(t.path / "other", {.epochs = 2});
    fs::copy_file(t.path / "other" / "history.csv", dir / "history.csv",
                  fs::copy_options::overwrite_existing);
    const std::string e = error_of([&] { read_run(dir); });
    EXPECT_NE(e.find("metrics.json: \"epochs\" is 3 but history.csv has 2"), std::string::npos)
        << e;
  }
  {  // same length, other values
    const fs::path dir = make_run(t.path / "b", {});
    make_run(t.path / "other3", {.seed = 99});
    fs::copy_file(t.path / "other3" / "history.csv", dir / "history.csv",
                  fs::copy_options::overwrite_existing);
    EXPECT_NE(error_of([&] { read_run(dir); }).find("val_accuracy differs from history.csv"),
              std::string::npos);
  }
  {  // the checkpoint of another model
    const fs::path dir = make_run(t.path / "c", {});
    make_run(t.path / "other4", {.spec = "dense32"});
    fs::copy_file(t.path / "other4" / "checkpoint.safetensors", dir / "checkpoint.safetensors",
                  fs::copy_options::overwrite_existing);
    const std::string e = error_of([&] { read_run(dir); });
    EXPECT_NE(e.find("checkpoint.safetensors: its model"), std::string::npos) << e;
  }
  {  // broken JSON, a missing key, a broken checkpoint
    const fs::path dir = make_run(t.path / "d", {});
    write(dir / "metrics.json", "{\"dataset\": ");
    EXPECT_NE(error_of([&] { read_run(dir); }).find("metrics.json: not valid JSON"),
              std::string::npos);
    write(dir / "metrics.json", "{\"dataset\": \"mnist\"}");
    EXPECT_NE(error_of([&] { read_run(dir); }).find("metrics.json: no \"device\""),
              std::string::npos);
    make_run(dir, {});
    write(dir / "checkpoint.safetensors", "short");
    EXPECT_NE(error_of([&] { read_run(dir); }).find("checkpoint.safetensors"), std::string::npos);
  }
}

TEST(CompareRuns, WritesEveryFileRankedByTestAccuracy) {
  TempDir t;
  const fs::path a = make_run(t.path / "low", {.test_accuracy = 0.91, .seed = 1});
  const fs::path b =
      make_run(t.path / "high", {.spec = "dense32", .test_accuracy = 0.97, .epochs = 5, .seed = 2});
  const fs::path c = make_run(t.path / "mid", {.test_accuracy = 0.95, .epochs = 2, .seed = 3});
  std::ostringstream out;
  run_compare({{a, b, c}, t.path / "cmp", false}, out);
  for (const auto& f : compare_files()) EXPECT_TRUE(fs::is_regular_file(t.path / "cmp" / f)) << f;
  const std::string text = out.str();
  EXPECT_LT(text.find("1. high"), text.find("2. mid"));
  EXPECT_LT(text.find("2. mid"), text.find("3. low"));
  const std::string html = read(t.path / "cmp" / "compare.html");
  EXPECT_LT(html.find("high<span class=\"mark\">"), html.find(">mid<"));
  EXPECT_NE(html.find("Confusion matrix: high minus mid"), std::string::npos);
  EXPECT_NE(html.find(ModelSpec::parse("dense32").to_string()), std::string::npos);
  // every run in the curves' legend, in its own colour
  const std::string acc = read(t.path / "cmp" / "accuracy.svg");
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_NE(acc.find("stroke=\"" + run_colors()[i] + "\""), std::string::npos);
  }
  EXPECT_NE(acc.find("low: "), std::string::npos);

  std::ostringstream first;
  run_compare({{a, b, c}, t.path / "cmp2", true}, first);
  EXPECT_NE(read(t.path / "cmp2" / "compare.html").find("Confusion matrix: low minus high"),
            std::string::npos);
}

TEST(CompareRuns, RefusalsWriteNothing) {
  TempDir t;
  const fs::path a = make_run(t.path / "a", {});
  const fs::path b = make_run(t.path / "b", {.seed = 2});
  const fs::path f = make_run(t.path / "f", {.dataset = "fashion-mnist", .seed = 3});
  std::ostringstream out;
  EXPECT_NE(error_of([&] {
              run_compare({{a}, t.path / "o1", false}, out);
            }).find("at least 2 run folders, got 1"),
            std::string::npos);
  const std::string e = error_of([&] { run_compare({{a, b, f}, t.path / "o2", false}, out); });
  EXPECT_NE(e.find("a run on fashion-mnist, but"), std::string::npos) << e;
  EXPECT_NE(error_of([&] {
              run_compare({{a, t.path / "a"}, t.path / "o3", false}, out);
            }).find("given twice"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              run_compare({{a, t.path / "missing"}, t.path / "o4", false}, out);
            }).find("missing: does not exist"),
            std::string::npos);
  for (const char* o : {"o1", "o2", "o3", "o4"}) EXPECT_FALSE(fs::exists(t.path / o)) << o;

  fs::create_directories(t.path / "taken");
  write(t.path / "taken" / "keep", "x");
  EXPECT_THROW(run_compare({{a, b}, t.path / "taken", false}, out), std::exception);
  EXPECT_EQ(read(t.path / "taken" / "keep"), "x");
  EXPECT_FALSE(fs::exists(t.path / "taken" / "compare.html"));
}

TEST(CompareRuns, ThirteenRunsTwelveColours) {
  const auto& colors = run_colors();
  EXPECT_EQ(std::set<std::string>(colors.begin(), colors.end()).size(), 12u);
  TempDir t;
  std::vector<fs::path> runs;
  for (int i = 0; i < 13; ++i) {
    runs.push_back(make_run(t.path / ("run" + std::to_string(i)),
                            {.test_accuracy = 0.9 + 0.001 * i, .seed = static_cast<uint64_t>(i)}));
  }
  std::ostringstream out;
  run_compare({runs, t.path / "cmp", false}, out);
  EXPECT_NE(out.str().find("1. run12"), std::string::npos);
  const std::string loss = read(t.path / "cmp" / "loss.svg");
  for (const auto& c : colors) EXPECT_NE(loss.find(c), std::string::npos) << c;
  EXPECT_NE(loss.find("stroke-dasharray"), std::string::npos);  // the 13th run: dashed
  for (int i = 0; i < 13; ++i)
    EXPECT_NE(loss.find("run" + std::to_string(i) + ": "), std::string::npos);
}

// The chart options compare needs, on their own.
double svg_height(const std::string& svg) {
  const size_t at = svg.find("height=\"");
  return std::stod(svg.substr(at + 8));
}

TEST(CompareCharts, LongLegendsWrapAndPushThePlotDown) {
  auto chart = [](int series) {
    LinePanel p{"t", "y", {}, {}, {}};
    for (int i = 0; i < series; ++i) {
      p.series.push_back({"run" + std::to_string(i) + ": conv32,pool,conv64,pool,flatten,dense128",
                          run_colors()[static_cast<size_t>(i)],
                          {0.1, 0.2},
                          false});
    }
    return svg_line_panels("title", {1, 2}, {p, p}, "Epoch");
  };
  const std::string two = chart(2), twelve = chart(12);
  EXPECT_GT(svg_height(twelve), svg_height(two) + 100);  // several legend rows
  // every legend entry stays inside the chart's width
  const size_t w_at = twelve.find("width=\"", twelve.find("<svg"));
  const double width = std::stod(twelve.substr(w_at + 7));
  size_t pos = 0;
  while ((pos = twelve.find("<text x=\"", pos)) != std::string::npos) {
    pos += 9;
    EXPECT_GE(std::stod(twelve.substr(pos)), 0);
    EXPECT_LE(std::stod(twelve.substr(pos)), width);
  }
}

TEST(CompareCharts, DivergingHeatmapColoursBothSigns) {
  HeatmapSpec h;
  h.title = "diff";
  h.x_label = "Predicted";
  h.y_label = "True";
  h.labels = {"a", "b"};
  h.values = {{-8, 0}, {3, 8}};
  h.diverging = true;
  const std::string svg = svg_heatmap(h);
  EXPECT_NE(svg.find("fill=\"#b2182b\""), std::string::npos);  // -8: full red
  EXPECT_NE(svg.find("fill=\"#2166ac\""), std::string::npos);  // +8: full blue
  EXPECT_NE(svg.find("fill=\"#ffffff\"><title>True a, Predicted b: 0"), std::string::npos);
  EXPECT_NE(svg.find(">-8</text>"), std::string::npos);  // a cell's value
  EXPECT_NE(svg.find(">-5</text>"), std::string::npos);  // the colour bar reaches below zero
  h.diverging = false;
  EXPECT_EQ(svg_heatmap(h).find("#b2182b"), std::string::npos);
}

TEST(CompareCharts, BarsWithAFloorAndDecimals) {
  BarOptions o;
  o.decimals = 3;
  o.totals = false;
  o.y_floor = 0.8;
  const std::string svg =
      svg_grouped_bars("F1", {"0", "1"}, {{"r", "#000000", {0.9, 0.95}}}, "Class", "F1", o);
  EXPECT_NE(svg.find("r, 0: 0.900"), std::string::npos);
  EXPECT_EQ(svg.find("r ("), std::string::npos);           // no total in the legend
  EXPECT_NE(svg.find(">0.80</text>"), std::string::npos);  // the axis starts at the floor
  EXPECT_EQ(svg.find(">0.00</text>"), std::string::npos);
}

}  // namespace
}  // namespace mg
