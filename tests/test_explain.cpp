// mnist_gpu explain on a small checkpoint trained on MNIST by the program itself: PGM, PNG and JPEG
// digits, every picture written, an existing --out and a bad picture refused with nothing written.
#include <gtest/gtest.h>
#include <stb_image_write.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "host/atomic_file.hpp"
#include "host/explain.hpp"

namespace mg {
namespace {

namespace fs = std::filesystem;

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

class Explain : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const fs::path data = fs::path(MNIST_GPU_SOURCE_DIR) / "data" / "mnist";
    if (!fs::exists(data / "train-images-idx3-ubyte") &&
        !fs::exists(data / "train-images-idx3-ubyte.gz")) {
      skip_ = "no MNIST in " + data.string() + " (run tools/get_mnist.sh)";
      return;
    }
    dir_ = fs::temp_directory_path() / ("mg_explain_" + std::to_string(getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    const std::string cmd = std::string(MNIST_GPU_BINARY) + " train --device cpu --data " +
                            data.string() + " --model conv4,pool,dense16 --epochs 1 --out " +
                            (dir_ / "run").string() + " >" + (dir_ / "train.log").string() +
                            " 2>&1";
    if (std::system(cmd.c_str()) != 0) skip_ = "training failed: " + read_text(dir_ / "train.log");
  }
  static void TearDownTestSuite() {
    if (!dir_.empty()) fs::remove_all(dir_);
  }
  void SetUp() override {
    if (!skip_.empty()) GTEST_SKIP() << skip_;
  }
  // A thick black ring on white, 60x60 (a zero as drawn on paper).
  static std::vector<uint8_t> ring() {
    std::vector<uint8_t> px(60 * 60, 255);
    for (int y = 0; y < 60; ++y) {
      for (int x = 0; x < 60; ++x) {
        const double r = std::hypot(x - 30.0, (y - 30.0) * 0.7);
        if (r > 12 && r < 19) px[static_cast<size_t>(y * 60 + x)] = 0;
      }
    }
    return px;
  }
  static inline std::string skip_;
  static inline fs::path dir_;
};

TEST_F(Explain, DrawsFiltersFeatureMapsAndSaliencyForPgmPngAndJpegDigits) {
  const std::vector<uint8_t> px = ring();
  const fs::path pgm = dir_ / "zero.pgm", png = dir_ / "zero.png", jpg = dir_ / "zero.jpg";
  {
    std::ofstream f(pgm, std::ios::binary);
    f << "P5\n60 60\n255\n";
    f.write(reinterpret_cast<const char*>(px.data()), static_cast<std::streamsize>(px.size()));
  }
  ASSERT_TRUE(stbi_write_png(png.c_str(), 60, 60, 1, px.data(), 60));
  ASSERT_TRUE(stbi_write_jpg(jpg.c_str(), 60, 60, 1, px.data(), 95));
  ExplainOptions o;
  o.checkpoint = dir_ / "run" / "checkpoint.safetensors";
  o.images = {pgm, png, jpg};
  o.out = dir_ / "x";
  std::ostringstream out;
  run_explain(o, out);
  EXPECT_EQ(count(out.str(), ": predicted "), 3u) << out.str();
  const std::string html = read_text(dir_ / "x" / "explain.html");
  for (const char* f :
       {"filters.svg", "feature_maps_0_conv.svg", "feature_maps_1_pool.svg", "saliency.svg"}) {
    const std::string svg = read_text(dir_ / "x" / f);
    EXPECT_NE(svg.find("</svg>"), std::string::npos) << f;
    EXPECT_NE(html.find(f), std::string::npos) << "explain.html does not show " << f;
  }
  EXPECT_EQ(count(read_text(dir_ / "x" / "filters.svg"), "<image "), 4u) << "conv4: four filters";
  // A row per digit, a column per channel: 3 x 4 maps; the saliency: each digit and its map.
  EXPECT_EQ(count(read_text(dir_ / "x" / "feature_maps_0_conv.svg"), "<image "), 12u);
  EXPECT_EQ(count(read_text(dir_ / "x" / "saliency.svg"), "<image "), 6u);
  // The three decodings of one picture give (nearly) one answer each time.
  EXPECT_NE(html.find("zero.jpg"), std::string::npos);

  EXPECT_THROW(run_explain(o, out), FileError) << "an existing --out must never be overwritten";
}

TEST_F(Explain, RefusesABadPictureAndWritesNothing) {
  const fs::path bad = dir_ / "bad.png";
  std::ofstream(bad) << "not a picture";
  ExplainOptions o;
  o.checkpoint = dir_ / "run" / "checkpoint.safetensors";
  o.images = {bad};
  o.out = dir_ / "bad_out";
  std::ostringstream out;
  try {
    run_explain(o, out);
    ADD_FAILURE() << "explained a text file";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("bad.png"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(dir_ / "bad_out"));
  o.checkpoint = dir_ / "train.log";
  EXPECT_ANY_THROW(run_explain(o, out));
  EXPECT_FALSE(fs::exists(dir_ / "bad_out"));
}

}  // namespace
}  // namespace mg
