// The run report: Keras' model summary, confusion matrix and per-class scores worked out by hand,
// every file write_report writes (well-formed SVG, history.csv, metrics.json), I/O errors, and a
// headless Chromium rendering of report.html.
#include <gtest/gtest.h>
#include <zlib.h>

#include <array>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <regex>
#include <set>
#include <sstream>

#include "host/charts.hpp"
#include "host/report.hpp"

namespace mg {
namespace {

namespace fs = std::filesystem;

std::string read_text(const fs::path& path) {
  std::ifstream f(path, std::ios::binary);
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

// A fresh folder under the system temp dir, removed at the end of the test.
struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& name) {
    path = fs::temp_directory_path() /
           (name + "_" + std::to_string(std::random_device{}()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

// Collapses runs of spaces and drops them at line ends, so a Keras line can be matched without
// counting columns.
std::string squeeze(const std::string& text) {
  std::string out;
  for (const char c : text) {
    if (c == ' ' && !out.empty() && (out.back() == ' ' || out.back() == '\n')) continue;
    if (c == '\n' && !out.empty() && out.back() == ' ') out.pop_back();
    out += c;
  }
  return out;
}

TEST(ReportSummary, SeedModelMatchesKeras) {
  const Graph graph = Graph::build(ModelSpec::seed());
  const std::string summary = model_summary(graph);
  const std::string text = squeeze(summary);
  // Keras' summary of the notebook's model (channels last), parameter counts by hand:
  // conv 1*32*9+32 = 320, conv 32*64*9+64 = 18,496, dense 3136*128+128 = 401,536,
  // dense 128*10+10 = 1,290; total 421,642.
  for (const char* line : {
           "\nLayer (type) Output Shape Param #\n",
           "\nconv2d (Conv2D) (None, 28, 28, 32) 320\n",
           "\nmax_pooling2d (MaxPooling2D) (None, 14, 14, 32) 0\n",
           "\nconv2d_1 (Conv2D) (None, 14, 14, 64) 18,496\n",
           "\nmax_pooling2d_1 (MaxPooling2D) (None, 7, 7, 64) 0\n",
           "\ndropout (Dropout) (None, 7, 7, 64) 0\n",
           "\nflatten (Flatten) (None, 3136) 0\n",
           "\ndense (Dense) (None, 128) 401,536\n",
           "\ndropout_1 (Dropout) (None, 128) 0\n",
           "\ndense_1 (Dense) (None, 10) 1,290\n",
           "\nTotal params: 421,642\n",
           "\nTrainable params: 421,642\n",
           "\nNon-trainable params: 0\n",
       }) {
    EXPECT_NE(text.find(line), std::string::npos) << "missing: " << line << "in\n" << summary;
  }
  // Columns line up: every shape starts in the same column, as in Keras' fixed-width table.
  std::set<size_t> shape_columns;
  std::istringstream lines(summary);
  for (std::string l; std::getline(lines, l);) {
    if (const size_t p = l.find("(None"); p != std::string::npos) shape_columns.insert(p);
  }
  EXPECT_EQ(shape_columns.size(), 1u) << summary;

  const std::vector<SummaryRow> rows = model_summary_rows(graph);
  ASSERT_EQ(rows.size(), 9u);
  EXPECT_EQ(rows[0].output_shape, (std::vector<int64_t>{28, 28, 32}));
  int64_t total = 0;
  for (const auto& r : rows) total += r.params;
  EXPECT_EQ(total, 421642);
}

// 3 classes, 8 test images. Rows are the true label, columns the argmax of the probabilities:
//   true 0: predicted 0, 0, 1          -> cm row 0 = [2, 1, 0]
//   true 1: predicted 1, 1, 1, 2       -> cm row 1 = [0, 3, 1]
//   true 2: predicted 0                -> cm row 2 = [1, 0, 0]
// Column sums (predicted): 3, 4, 1. Row sums (support): 3, 4, 1.
// class 0: precision 2/3, recall 2/3, F1 2/3
// class 1: precision 3/4, recall 3/4, F1 3/4
// class 2: precision 0/1 = 0, recall 0/1 = 0, F1 0
// macro: precision = recall = f1 = (2/3 + 3/4 + 0) / 3 = 17/36
// weighted: (3 * 2/3 + 4 * 3/4 + 1 * 0) / 8 = 5/8 for all three; support 8.
struct HandExample {
  std::vector<uint8_t> labels{0, 0, 0, 1, 1, 1, 1, 2};
  std::vector<float> probs{
      0.8f, 0.1f, 0.1f,  //
      0.5f, 0.3f, 0.2f,  //
      0.2f, 0.7f, 0.1f,  // true 0 -> 1
      0.1f, 0.8f, 0.1f,  //
      0.3f, 0.4f, 0.3f,  //
      0.0f, 1.0f, 0.0f,  //
      0.1f, 0.2f, 0.7f,  // true 1 -> 2
      0.6f, 0.1f, 0.3f,  // true 2 -> 0
  };
};

TEST(ReportMetrics, ConfusionMatrixHandExample) {
  const HandExample ex;
  const auto cm = confusion_matrix(ex.labels, ex.probs, 3);
  const std::vector<std::vector<int64_t>> expected{{2, 1, 0}, {0, 3, 1}, {1, 0, 0}};
  EXPECT_EQ(cm, expected);
}

TEST(ReportMetrics, ConfusionMatrixTiesGoToTheFirstClass) {
  const std::vector<uint8_t> labels{1};
  const std::vector<float> probs{0.4f, 0.4f, 0.2f};
  EXPECT_EQ(confusion_matrix(labels, probs, 3)[1][0], 1);
}

TEST(ReportMetrics, PerClassHandExample) {
  const HandExample ex;
  const auto m = per_class_metrics(confusion_matrix(ex.labels, ex.probs, 3));
  ASSERT_EQ(m.size(), 3u);
  // Exact fractions of small integers; 1e-12 only absorbs the last-bit rounding of a division.
  constexpr double kTol = 1e-12;
  EXPECT_NEAR(m[0].precision, 2.0 / 3, kTol);
  EXPECT_NEAR(m[0].recall, 2.0 / 3, kTol);
  EXPECT_NEAR(m[0].f1, 2.0 / 3, kTol);
  EXPECT_NEAR(m[1].precision, 0.75, kTol);
  EXPECT_NEAR(m[1].recall, 0.75, kTol);
  EXPECT_NEAR(m[1].f1, 0.75, kTol);
  EXPECT_EQ(m[2].precision, 0.0);
  EXPECT_EQ(m[2].recall, 0.0);
  EXPECT_EQ(m[2].f1, 0.0);
  EXPECT_EQ(m[0].support, 3);
  EXPECT_EQ(m[1].support, 4);
  EXPECT_EQ(m[2].support, 1);
  const ClassMetrics macro = macro_average(m), weighted = weighted_average(m);
  EXPECT_NEAR(macro.precision, 17.0 / 36, kTol);
  EXPECT_NEAR(macro.recall, 17.0 / 36, kTol);
  EXPECT_NEAR(macro.f1, 17.0 / 36, kTol);
  EXPECT_NEAR(weighted.precision, 5.0 / 8, kTol);
  EXPECT_NEAR(weighted.f1, 5.0 / 8, kTol);
  EXPECT_EQ(weighted.support, 8);

  // Precision differs from recall: cm [[1, 0], [2, 1]]: class 0 precision 1/3, recall 1;
  // F1 = 2 * (1/3) / (4/3) = 1/2. Class 1 precision 1, recall 1/3, F1 1/2.
  const auto m2 = per_class_metrics({{1, 0}, {2, 1}});
  EXPECT_NEAR(m2[0].precision, 1.0 / 3, kTol);
  EXPECT_NEAR(m2[0].recall, 1.0, kTol);
  EXPECT_NEAR(m2[0].f1, 0.5, kTol);
  EXPECT_NEAR(m2[1].precision, 1.0, kTol);
  EXPECT_NEAR(m2[1].recall, 1.0 / 3, kTol);
}

TEST(ReportMetrics, ClassificationReportLikeSklearn) {
  const HandExample ex;
  const std::string text =
      classification_report(confusion_matrix(ex.labels, ex.probs, 3), {"a", "b", "c"});
  // sklearn.metrics.classification_report(y_true, y_pred, target_names=["a", "b", "c"]):
  const std::string expected =
      "              precision    recall  f1-score   support\n"
      "\n"
      "           a       0.67      0.67      0.67         3\n"
      "           b       0.75      0.75      0.75         4\n"
      "           c       0.00      0.00      0.00         1\n"
      "\n"
      "    accuracy                           0.62         8\n"
      "   macro avg       0.47      0.47      0.47         8\n"
      "weighted avg       0.62      0.62      0.62         8\n";
  EXPECT_EQ(text, expected);
}

TEST(ReportMetrics, RejectsInconsistentInput) {
  const std::vector<uint8_t> labels{0, 1};
  const std::vector<float> three(3, 0.5f), four{1, 0, 0, 1};
  EXPECT_THROW(confusion_matrix(labels, three, 2), std::invalid_argument);
  const std::vector<uint8_t> bad_label{0, 2};
  EXPECT_THROW(confusion_matrix(bad_label, four, 2), std::invalid_argument);
  EXPECT_THROW(per_class_metrics({{1, 2}, {3}}), std::invalid_argument);
}

// --- PNG: our encoder, and a small decoder the Chromium test uses for its screenshot ------------

struct Png {
  int width = 0, height = 0, channels = 0;
  std::vector<uint8_t> pixels;
};

uint32_t be32(const std::string& s, size_t at) {
  return static_cast<uint32_t>(static_cast<unsigned char>(s[at])) << 24 |
         static_cast<uint32_t>(static_cast<unsigned char>(s[at + 1])) << 16 |
         static_cast<uint32_t>(static_cast<unsigned char>(s[at + 2])) << 8 |
         static_cast<uint32_t>(static_cast<unsigned char>(s[at + 3]));
}

// 8-bit, non-interlaced gray / RGB / RGBA PNGs (what Chromium and encode_png_gray write).
// Returns false with *why set otherwise. Checks every chunk's CRC.
bool decode_png(const std::string& file, Png* png, std::string* why) {
  if (file.size() < 8 || file.compare(0, 8, std::string("\x89PNG\r\n\x1a\n", 8)) != 0) {
    *why = "no PNG signature";
    return false;
  }
  std::string idat;
  int color_type = -1;
  for (size_t at = 8; at + 12 <= file.size();) {
    const uint32_t len = be32(file, at);
    if (at + 12 + len > file.size()) {
      *why = "truncated chunk";
      return false;
    }
    const std::string type = file.substr(at + 4, 4);
    const auto* crc_data = reinterpret_cast<const Bytef*>(file.data() + at + 4);
    if (crc32(0L, crc_data, len + 4) != be32(file, at + 8 + len)) {
      *why = "bad CRC in " + type;
      return false;
    }
    if (type == "IHDR") {
      png->width = static_cast<int>(be32(file, at + 8));
      png->height = static_cast<int>(be32(file, at + 12));
      if (file[at + 16] != 8 || file[at + 20] != 0) {
        *why = "not 8-bit or interlaced";
        return false;
      }
      color_type = file[at + 17];
    } else if (type == "IDAT") {
      idat += file.substr(at + 8, len);
    }
    at += 12 + len;
  }
  png->channels = color_type == 0 ? 1 : color_type == 2 ? 3 : color_type == 6 ? 4 : 0;
  if (png->channels == 0 || png->width <= 0 || png->height <= 0) {
    *why = "unsupported colour type " + std::to_string(color_type);
    return false;
  }
  const size_t stride = static_cast<size_t>(png->width) * static_cast<size_t>(png->channels);
  std::vector<uint8_t> raw(static_cast<size_t>(png->height) * (stride + 1));
  uLongf raw_size = static_cast<uLongf>(raw.size());
  if (uncompress(raw.data(), &raw_size, reinterpret_cast<const Bytef*>(idat.data()),
                 static_cast<uLong>(idat.size())) != Z_OK ||
      raw_size != raw.size()) {
    *why = "IDAT does not inflate to the image size";
    return false;
  }
  const size_t bpp = static_cast<size_t>(png->channels);
  png->pixels.assign(static_cast<size_t>(png->height) * stride, 0);
  for (size_t y = 0; y < static_cast<size_t>(png->height); ++y) {
    const uint8_t filter = raw[y * (stride + 1)];
    const uint8_t* in = &raw[y * (stride + 1) + 1];
    uint8_t* out = &png->pixels[y * stride];
    const uint8_t* up = y > 0 ? out - stride : nullptr;
    for (size_t x = 0; x < stride; ++x) {
      const int a = x >= bpp ? out[x - bpp] : 0, b = up ? up[x] : 0;
      const int c = x >= bpp && up ? up[x - bpp] : 0;
      int pred = 0;
      switch (filter) {
        case 0:
          pred = 0;
          break;
        case 1:
          pred = a;
          break;
        case 2:
          pred = b;
          break;
        case 3:
          pred = (a + b) / 2;
          break;
        case 4: {
          const int p = a + b - c, pa = std::abs(p - a), pb = std::abs(p - b), pc = std::abs(p - c);
          pred = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
          break;
        }
        default:
          *why = "bad filter type";
          return false;
      }
      out[x] = static_cast<uint8_t>(in[x] + pred);
    }
  }
  return true;
}

TEST(ReportCharts, PngRoundTrip) {
  std::mt19937 rng(7);
  std::vector<uint8_t> pixels(28 * 13);
  for (auto& p : pixels) p = static_cast<uint8_t>(rng());
  const std::string file = encode_png_gray(pixels, 28, 13);
  Png png;
  std::string why;
  ASSERT_TRUE(decode_png(file, &png, &why)) << why;
  EXPECT_EQ(png.width, 28);
  EXPECT_EQ(png.height, 13);
  EXPECT_EQ(png.channels, 1);
  EXPECT_EQ(png.pixels, pixels);
  EXPECT_THROW(encode_png_gray(pixels, 28, 14), std::invalid_argument);
}

TEST(ReportCharts, TextHelpers) {
  // RFC 4648 test vectors.
  EXPECT_EQ(base64_encode(""), "");
  EXPECT_EQ(base64_encode("f"), "Zg==");
  EXPECT_EQ(base64_encode("fo"), "Zm8=");
  EXPECT_EQ(base64_encode("foo"), "Zm9v");
  EXPECT_EQ(base64_encode("foobar"), "Zm9vYmFy");
  EXPECT_EQ(xml_escape("a<b & \"c\">'"), "a&lt;b &amp; &quot;c&quot;&gt;&#39;");
  EXPECT_EQ(format_thousands(0), "0");
  EXPECT_EQ(format_thousands(999), "999");
  EXPECT_EQ(format_thousands(421642), "421,642");
  EXPECT_EQ(format_thousands(-1234567), "-1,234,567");
  EXPECT_EQ(format_fixed(0.98765, 2), "0.99");
}

// --- write_report on synthetic data --------------------------------------------------------------

// Digits from a 5x7 bitmap font, scaled into 28x28 with a random shift, thickness and noise: they
// read as digits in the screenshot, and each image is different.
std::vector<uint8_t> synthetic_digit(int digit, std::mt19937& rng) {
  static constexpr std::array<std::array<const char*, 7>, 10> kFont = {{
      {" ### ", "#   #", "#  ##", "# # #", "##  #", "#   #", " ### "},
      {"  #  ", " ##  ", "  #  ", "  #  ", "  #  ", "  #  ", " ### "},
      {" ### ", "#   #", "    #", "   # ", "  #  ", " #   ", "#####"},
      {"#####", "   # ", "  #  ", "   # ", "    #", "#   #", " ### "},
      {"   # ", "  ## ", " # # ", "#  # ", "#####", "   # ", "   # "},
      {"#####", "#    ", "#### ", "    #", "    #", "#   #", " ### "},
      {"  ## ", " #   ", "#    ", "#### ", "#   #", "#   #", " ### "},
      {"#####", "    #", "   # ", "  #  ", " #   ", " #   ", " #   "},
      {" ### ", "#   #", "#   #", " ### ", "#   #", "#   #", " ### "},
      {" ### ", "#   #", "#   #", " ####", "    #", "   # ", " ##  "},
  }};
  std::uniform_int_distribution<int> shift(-2, 2);
  std::uniform_real_distribution<double> noise(0, 1);
  const int dx = 4 + shift(rng), dy = 3 + shift(rng);
  const double radius = 1.2 + 0.6 * noise(rng), slant = 0.3 * (noise(rng) - 0.5);
  std::vector<uint8_t> img(28 * 28, 0);
  for (int y = 0; y < 28; ++y) {
    for (int x = 0; x < 28; ++x) {
      double ink = 0;
      for (int r = 0; r < 7; ++r) {
        for (int c = 0; c < 5; ++c) {
          if (kFont[static_cast<size_t>(digit)][static_cast<size_t>(r)][c] != '#') continue;
          const double cx = dx + 4 * c + 2 + slant * (3 - r) * 4, cy = dy + 3 * r + 1.5;
          const double d = std::hypot(x - cx, y - cy);
          ink = std::max(ink, std::clamp(1.0 + radius - d, 0.0, 1.0));
        }
      }
      img[static_cast<size_t>(y * 28 + x)] =
          static_cast<uint8_t>(255 * ink * (0.85 + 0.15 * noise(rng)));
    }
  }
  return img;
}

struct SyntheticRun {
  Graph graph = Graph::build(ModelSpec::seed());
  std::vector<uint8_t> images, labels;
  std::vector<int32_t> train, val, test;
  RunReport report;

  explicit SyntheticRun(int n = 1000, int epochs = 8) {
    std::mt19937 rng(1234);
    for (int i = 0; i < n; ++i) {
      const int label = static_cast<int>(rng() % 10);
      labels.push_back(static_cast<uint8_t>(label));
      const auto img = synthetic_digit(label, rng);
      images.insert(images.end(), img.begin(), img.end());
      (i % 20 < 14 ? train : i % 20 < 17 ? val : test).push_back(i);
    }
    report.title = "Synthetic run";
    report.dataset = "synthetic digits (" + std::to_string(n) + " images)";
    report.device = "CPU (test)";
    report.spec = graph.spec().to_string();
    report.graph = &graph;
    report.images = images.data();
    report.labels = labels.data();
    report.train = train;
    report.val = val;
    report.test = test;
    for (int e = 0; e < epochs; ++e) {
      const double t = 1.0 - std::exp(-0.6 * (e + 1));
      report.history.push_back({e, 0.6 * (1 - t) + 0.03, 0.80 + 0.19 * t, 0.4 * (1 - t) + 0.04,
                                0.85 + 0.135 * t, 10.0 + 0.1 * e, 1e-3 * std::pow(0.5, e)});
      report.train_seconds += 10.0 + 0.1 * e;
    }
    // Softmax outputs: mostly right and confident, about one in eight wrong.
    std::uniform_real_distribution<float> u(0, 1);
    int64_t correct = 0;
    double loss = 0;
    for (const int32_t i : test) {
      const int label = labels[static_cast<size_t>(i)];
      const int predicted = u(rng) < 0.88f ? label : static_cast<int>(rng() % 10);
      std::vector<float> p(10);
      for (auto& v : p) v = 0.05f * u(rng);
      p[static_cast<size_t>(predicted)] += 1.0f + 3.0f * u(rng);
      float sum = 0;
      for (const float v : p) sum += v;
      for (auto& v : p) v /= sum;
      int arg = 0;
      for (int k = 1; k < 10; ++k) {
        if (p[static_cast<size_t>(k)] > p[static_cast<size_t>(arg)]) arg = k;
      }
      correct += arg == label;
      loss -= std::log(p[static_cast<size_t>(label)]);
      report.test_probs.insert(report.test_probs.end(), p.begin(), p.end());
    }
    report.test_metrics.count = static_cast<int64_t>(test.size());
    report.test_metrics.accuracy = static_cast<double>(correct) / static_cast<double>(test.size());
    report.test_metrics.loss = loss / static_cast<double>(test.size());
    report.eval_seconds = 1.5;
    report.load_seconds = 0.25;
    report.batch_size = 128;
    report.lr = 1e-3;
    report.seed = 42;
  }
};

// Well-formed XML, checked by a scan: every element closed in order, one root, quotes balanced.
// Returns "" or the first problem.
std::string xml_problem(const std::string& xml) {
  std::vector<std::string> open;
  int roots = 0;
  for (size_t at = xml.find('<'); at != std::string::npos; at = xml.find('<', at)) {
    if (xml.compare(at, 2, "<?") == 0) {
      at = xml.find("?>", at);
      if (at == std::string::npos) return "unterminated <?";
      continue;
    }
    if (xml.compare(at, 4, "<!--") == 0) {
      at = xml.find("-->", at);
      if (at == std::string::npos) return "unterminated comment";
      continue;
    }
    size_t end = at + 1;
    char quote = 0;
    for (; end < xml.size(); ++end) {
      if (quote) {
        if (xml[end] == quote) quote = 0;
        if (xml[end] == '<') return "'<' inside an attribute at " + std::to_string(end);
      } else if (xml[end] == '"' || xml[end] == '\'') {
        quote = xml[end];
      } else if (xml[end] == '>') {
        break;
      }
    }
    if (end >= xml.size()) return "unterminated tag at " + std::to_string(at);
    const std::string tag = xml.substr(at + 1, end - at - 1);
    const bool closing = tag[0] == '/', self_closing = tag.back() == '/';
    const std::string name =
        tag.substr(closing, tag.find_first_of(" \t\n/", closing) - (closing ? 1 : 0));
    if (closing) {
      if (open.empty() || open.back() != name) return "unexpected </" + name + ">";
      open.pop_back();
    } else if (!self_closing) {
      if (open.empty()) ++roots;
      open.push_back(name);
    } else if (open.empty()) {
      ++roots;
    }
    at = end + 1;
  }
  // Text may hold '&' only as an entity.
  static const std::regex bare_amp("&(?!(amp|lt|gt|quot|#[0-9]+);)");
  if (std::regex_search(xml, bare_amp)) return "bare '&'";
  if (!open.empty()) return "<" + open.back() + "> never closed";
  if (roots != 1) return std::to_string(roots) + " root elements";
  return "";
}

bool have_xmllint() { return std::system("xmllint --version >/dev/null 2>&1") == 0; }

TEST(ReportFiles, WritesEveryFile) {
  const SyntheticRun run;
  TempDir dir("mg_report");
  write_report(dir.path, run.report);

  for (const std::string& name : report_files()) {
    EXPECT_TRUE(fs::is_regular_file(dir.path / name)) << name;
    EXPECT_GT(fs::file_size(dir.path / name), 0u) << name;
  }
  // Nothing else: the temporary files were all renamed into place.
  size_t entries = 0;
  for (const auto& e : fs::directory_iterator(dir.path)) {
    ++entries;
    EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << e.path();
  }
  EXPECT_EQ(entries, report_files().size());

  const bool xmllint = have_xmllint();
  for (const std::string& name : report_files()) {
    if (!name.ends_with(".svg")) continue;
    const std::string svg = read_text(dir.path / name);
    EXPECT_EQ(xml_problem(svg), "") << name;
    EXPECT_NE(svg.find("viewBox=\"0 0 "), std::string::npos) << name;
    EXPECT_NE(svg.find("<title>"), std::string::npos) << name;
    if (xmllint) {
      const std::string cmd = "xmllint --noout '" + (dir.path / name).string() + "'";
      EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
    }
  }
  // Digits are PNG data URIs: 5 of each class in samples.svg, up to 40 in misclassified.svg.
  auto count = [](const std::string& s, const std::string& what) {
    size_t n = 0;
    for (size_t at = s.find(what); at != std::string::npos; at = s.find(what, at + 1)) ++n;
    return n;
  };
  EXPECT_EQ(count(read_text(dir.path / "samples.svg"), "data:image/png;base64,"), 50u);
  const std::string wrong_svg = read_text(dir.path / "misclassified.svg");
  const auto wrong_tiles = count(wrong_svg, "data:image/png;base64,");
  EXPECT_GT(wrong_tiles, 0u);
  EXPECT_LE(wrong_tiles, 40u);
  EXPECT_NE(wrong_svg.find("\u2192"), std::string::npos);
  EXPECT_NE(wrong_svg.find("(p=0."), std::string::npos);

  // history.csv: CSVLogger's header and one row per epoch, epochs 0-based.
  std::istringstream csv(read_text(dir.path / "history.csv"));
  std::vector<std::string> lines;
  for (std::string l; std::getline(csv, l);) lines.push_back(l);
  ASSERT_EQ(lines.size(), run.report.history.size() + 1);
  EXPECT_EQ(lines[0], "epoch,accuracy,loss,lr,val_accuracy,val_loss");
  for (size_t e = 0; e < run.report.history.size(); ++e) {
    const EpochRecord& r = run.report.history[e];
    double acc = 0, loss = 0, lr = -1, val_acc = 0, val_loss = 0;
    int epoch = -1;
    ASSERT_EQ(std::sscanf(lines[e + 1].c_str(), "%d,%lf,%lf,%lf,%lf,%lf", &epoch, &acc, &loss, &lr,
                          &val_acc, &val_loss),
              6)
        << lines[e + 1];
    EXPECT_EQ(epoch, static_cast<int>(e));
    // Shortest round-trip printing: the values read back exactly.
    EXPECT_EQ(acc, r.accuracy);
    EXPECT_EQ(loss, r.loss);
    EXPECT_EQ(lr, r.lr);
    EXPECT_EQ(val_acc, r.val_accuracy);
    EXPECT_EQ(val_loss, r.val_loss);
  }

  // metrics.json: parses, and its numbers are those of the inputs.
  const auto j = nlohmann::json::parse(read_text(dir.path / "metrics.json"));
  for (const char* key :
       {"title", "dataset", "device", "model", "seed", "batch_size", "learning_rate", "epochs",
        "split", "class_names", "test", "per_class", "macro_avg", "weighted_avg",
        "confusion_matrix", "timings", "history", "class_distribution"}) {
    EXPECT_TRUE(j.contains(key)) << key;
  }
  EXPECT_EQ(j["model"]["param_count"], 421642);
  EXPECT_EQ(j["model"]["spec"], run.graph.spec().to_string());
  EXPECT_EQ(j["model"]["layers"].size(), 9u);
  EXPECT_EQ(j["device"], "CPU (test)");
  EXPECT_EQ(j["seed"], 42);
  EXPECT_EQ(j["batch_size"], 128);
  EXPECT_EQ(j["split"]["train"], run.train.size());
  EXPECT_EQ(j["split"]["val"], run.val.size());
  EXPECT_EQ(j["split"]["test"], run.test.size());
  EXPECT_EQ(j["test"]["accuracy"].get<double>(), run.report.test_metrics.accuracy);
  EXPECT_EQ(j["test"]["loss"].get<double>(), run.report.test_metrics.loss);
  EXPECT_EQ(j["history"].size(), run.report.history.size());
  EXPECT_EQ(j["history"][3]["val_accuracy"].get<double>(), run.report.history[3].val_accuracy);
  EXPECT_EQ(j["timings"]["train_seconds"].get<double>(), run.report.train_seconds);
  EXPECT_EQ(j["timings"]["epoch_seconds"].size(), run.report.history.size());

  const auto cm = j["confusion_matrix"].get<std::vector<std::vector<int64_t>>>();
  ASSERT_EQ(cm.size(), 10u);
  int64_t total = 0, diagonal = 0;
  std::vector<int64_t> row_sums(10, 0);
  for (size_t r = 0; r < 10; ++r) {
    ASSERT_EQ(cm[r].size(), 10u);
    for (size_t c = 0; c < 10; ++c) total += cm[r][c], row_sums[r] += cm[r][c];
    diagonal += cm[r][r];
  }
  EXPECT_EQ(total, static_cast<int64_t>(run.test.size()));
  EXPECT_DOUBLE_EQ(static_cast<double>(diagonal) / static_cast<double>(total),
                   run.report.test_metrics.accuracy);
  int64_t test_support = 0;
  for (size_t k = 0; k < 10; ++k) {
    EXPECT_EQ(j["per_class"][k]["support"], row_sums[k]);
    EXPECT_EQ(j["class_distribution"]["test"][k], row_sums[k]);
    EXPECT_EQ(j["per_class"][k]["class"], std::to_string(k));
    test_support += j["per_class"][k]["support"].get<int64_t>();
  }
  EXPECT_EQ(test_support, static_cast<int64_t>(run.test.size()));
  EXPECT_EQ(j["weighted_avg"]["support"], run.test.size());
  // Weighted recall is accuracy (sklearn's identity).
  EXPECT_NEAR(j["weighted_avg"]["recall"].get<double>(), run.report.test_metrics.accuracy, 1e-12);

  // report.html: every section, all charts inline, nothing fetched from elsewhere.
  const std::string html = read_text(dir.path / "report.html");
  for (const char* id : {"overview", "curves", "confusion", "per-class", "misclassified", "model",
                         "data", "history", "files"}) {
    EXPECT_NE(html.find(std::string("<section id=\"") + id + "\""), std::string::npos) << id;
  }
  EXPECT_EQ(count(html, "<svg "), 6u);
  EXPECT_EQ(html.find("<?xml"), std::string::npos);
  for (const char* external : {"src=\"http", "href=\"http", "url(http", "<link", "<script"}) {
    EXPECT_EQ(html.find(external), std::string::npos) << external;
  }
  EXPECT_NE(html.find("conv2d (Conv2D)"), std::string::npos);
  EXPECT_NE(html.find("421,642"), std::string::npos);
}

TEST(ReportFiles, OneEpochAndNoMistakes) {
  SyntheticRun run(200, 1);
  // Every prediction right: misclassified.svg says so instead of drawing an empty grid.
  for (size_t i = 0; i < run.test.size(); ++i) {
    for (size_t k = 0; k < 10; ++k) {
      run.report.test_probs[i * 10 + k] = k == run.labels[static_cast<size_t>(run.test[i])] ? 1 : 0;
    }
  }
  TempDir dir("mg_report");
  write_report(dir.path, run.report);
  const std::string wrong = read_text(dir.path / "misclassified.svg");
  EXPECT_NE(wrong.find("No misclassified test images"), std::string::npos);
  for (const std::string& name : report_files()) {
    if (name.ends_with(".svg")) {
      EXPECT_EQ(xml_problem(read_text(dir.path / name)), "") << name;
    }
  }
}

TEST(ReportFiles, LongClassNames) {
  SyntheticRun run(400, 3);
  run.report.class_names = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                            "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
  TempDir dir("mg_report");
  write_report(dir.path, run.report);
  for (const std::string& name : report_files()) {
    if (name.ends_with(".svg")) {
      EXPECT_EQ(xml_problem(read_text(dir.path / name)), "") << name;
    }
  }
  // Names are escaped where they appear: on the heatmap's axes and in the digit captions.
  EXPECT_NE(read_text(dir.path / "confusion_matrix.svg").find(">Ankle boot<"), std::string::npos);
  EXPECT_NE(read_text(dir.path / "samples.svg").find(">T-shirt/top<"), std::string::npos);
  const auto j = nlohmann::json::parse(read_text(dir.path / "metrics.json"));
  EXPECT_EQ(j["per_class"][9]["class"], "Ankle boot");
  run.report.class_names.pop_back();
  EXPECT_THROW(write_report(dir.path, run.report), std::invalid_argument);
  if (const char* keep = std::getenv("MG_REPORT_KEEP"); keep != nullptr && *keep != '\0') {
    fs::create_directories(keep);
    fs::copy(dir.path, fs::path(keep) / "long_names",
             fs::copy_options::recursive | fs::copy_options::overwrite_existing);
  }
}

TEST(ReportFiles, RejectsInconsistentReport) {
  SyntheticRun run(200, 2);
  TempDir dir("mg_report");
  run.report.test_probs.pop_back();
  EXPECT_THROW(write_report(dir.path, run.report), std::invalid_argument);
  run.report.graph = nullptr;
  EXPECT_THROW(write_report(dir.path, run.report), std::invalid_argument);
}

TEST(ReportFiles, UnwritableFolderIsNamed) {
  const SyntheticRun run(200, 2);
  TempDir dir("mg_report");
  // A folder that cannot exist (its parent is a file): fails even when the tests run as root.
  std::ofstream(dir.path / "plain_file") << "x";
  const fs::path missing = dir.path / "plain_file" / "run";
  try {
    write_report(missing, run.report);
    FAIL() << "write_report into " << missing << " did not throw";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(missing.string()), std::string::npos) << e.what();
  }
  // A file that cannot be replaced (a folder holds its name): the error names that file.
  const fs::path out = dir.path / "out";
  fs::create_directories(out / "metrics.json" / "inside");
  try {
    write_report(out, run.report);
    FAIL() << "write_report over a folder named metrics.json did not throw";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find((out / "metrics.json").string()), std::string::npos)
        << e.what();
  }
  for (const auto& e : fs::directory_iterator(out)) {
    EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << e.path();
  }
}

// --- Chromium renders report.html
// ------------------------------------------------------------------

TEST(ReportRender, ChromiumScreenshotShowsTheReport) {
  if (!fs::exists("/usr/bin/chromium")) {
    GTEST_SKIP() << "/usr/bin/chromium is not installed (apt-get install chromium)";
  }
  const SyntheticRun run;
  TempDir dir("mg_report_render");
  const fs::path run_dir = dir.path / "run";
  fs::create_directories(run_dir);
  write_report(run_dir, run.report);
  const fs::path shot = dir.path / "report.png", dom = dir.path / "dom.html";
  const std::string cmd = std::string("bash '") + MNIST_GPU_SOURCE_DIR +
                          "/tools/render_report.sh' '" + run_dir.string() + "' '" + shot.string() +
                          "' '" + dom.string() + "' >'" + (dir.path / "log.txt").string() +
                          "' 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd << "\n" << read_text(dir.path / "log.txt");
  // MG_REPORT_KEEP=DIR keeps the report and its screenshot, to look at.
  if (const char* keep = std::getenv("MG_REPORT_KEEP"); keep != nullptr && *keep != '\0') {
    fs::create_directories(keep);
    fs::copy(dir.path, keep, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
  }

  // The DOM Chromium built holds every section and the six inline charts.
  const std::string html = read_text(dom);
  for (const char* id : {"overview", "curves", "confusion", "per-class", "misclassified", "model",
                         "data", "history", "files"}) {
    EXPECT_NE(html.find(std::string("id=\"") + id + "\""), std::string::npos) << id;
  }

  ASSERT_TRUE(fs::is_regular_file(shot));
  // A near-blank 1400x4000 page compresses to about 26 KB; this report, to several hundred.
  EXPECT_GT(fs::file_size(shot), 100'000u);
  Png png;
  std::string why;
  ASSERT_TRUE(decode_png(read_text(shot), &png, &why)) << why;
  EXPECT_EQ(png.width, 1400);
  EXPECT_EQ(png.height, 4000);
  // Not blank: many colours (palette, heatmap blues, anti-aliased text, gray digits), and ink
  // (pixels far from the page's light background) over a good part of the page.
  std::set<uint32_t> colours;
  int64_t dark = 0;
  const auto ch = static_cast<size_t>(png.channels);
  for (size_t i = 0; i + ch <= png.pixels.size(); i += ch) {
    const uint32_t r = png.pixels[i], g = png.pixels[i + (ch >= 3 ? 1 : 0)],
                   b = png.pixels[i + (ch >= 3 ? 2 : 0)];
    if (colours.size() < 100000) colours.insert(r << 16 | g << 8 | b);
    dark += r + g + b < 3 * 160;
  }
  const double dark_fraction = static_cast<double>(dark) /
                               (static_cast<double>(png.width) * static_cast<double>(png.height));
  EXPECT_GT(colours.size(), 500u);
  EXPECT_GT(dark_fraction, 0.02) << "the screenshot is almost all background";
}

}  // namespace
}  // namespace mg
