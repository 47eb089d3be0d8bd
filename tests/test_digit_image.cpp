// Turning an arbitrary digit picture into an MNIST-like 28x28 image.
#include <gtest/gtest.h>
#include <vector>
#include <iterator>
#include <stb_image_write.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "host/digit_image.hpp"

namespace mg {
namespace {

namespace fs = std::filesystem;

fs::path temp_file(const std::string& name) {
  return fs::temp_directory_path() / ("mg_digit_" + std::to_string(::getpid()) + "_" + name);
}

// A thick "7": a bar along the top and a diagonal stroke, on a canvas of any size.
std::vector<uint8_t> draw_seven(int w, int h, bool dark_on_light) {
  std::vector<uint8_t> p(static_cast<size_t>(w) * h, dark_on_light ? 240 : 10);
  const uint8_t ink = dark_on_light ? 20 : 250;
  const int t = std::max(2, w / 14);
  for (int y = h / 5; y < h / 5 + t; ++y)
    for (int x = w / 3; x < 2 * w / 3; ++x) p[static_cast<size_t>(y) * w + x] = ink;
  for (int y = h / 5; y < 4 * h / 5; ++y) {
    const int xc = 2 * w / 3 - (y - h / 5) * (w / 4) / (3 * h / 5);
    for (int x = xc - t / 2; x <= xc + t / 2; ++x) p[static_cast<size_t>(y) * w + x] = ink;
  }
  return p;
}

void expect_mnist_like(const MnistImage& img) {
  double mass = 0, mx = 0, my = 0;
  int x0 = 28, x1 = -1, y0 = 28, y1 = -1;
  for (int y = 0; y < 28; ++y)
    for (int x = 0; x < 28; ++x) {
      const double v = img[y * 28 + x];
      mass += v, mx += v * x, my += v * y;
      if (v > 64) x0 = std::min(x0, x), x1 = std::max(x1, x), y0 = std::min(y0, y), y1 = std::max(y1, y);
    }
  ASSERT_GT(mass, 0);
  EXPECT_NEAR(mx / mass, 13.5, 1.0);  // centred by mass
  EXPECT_NEAR(my / mass, 13.5, 1.0);
  EXPECT_LE(std::max(x1 - x0, y1 - y0) + 1, 21);  // fitted into 20x20 (one pixel of resampling blur)
  EXPECT_GE(std::max(x1 - x0, y1 - y0) + 1, 17);
  EXPECT_EQ(img[0], 0);  // black background
}

TEST(DigitImage, PngOfAnySizeAndPolarityBecomesMnistLike) {
  for (const auto& [w, h, dark] : {std::tuple{200, 300, true}, std::tuple{64, 64, false}, std::tuple{500, 180, true}}) {
    const auto pixels = draw_seven(w, h, dark);
    const fs::path f = temp_file("seven.png");
    ASSERT_TRUE(stbi_write_png(f.c_str(), w, h, 1, pixels.data(), w));
    const MnistImage a = load_digit_image(f);
    const MnistImage b = mnist_from_gray(pixels.data(), w, h, "memory");
    EXPECT_EQ(a, b);
    expect_mnist_like(a);
    fs::remove(f);
  }
}

TEST(DigitImage, PgmAndJpegDecode) {
  const auto pixels = draw_seven(90, 90, true);
  const fs::path pgm = temp_file("seven.pgm"), jpg = temp_file("seven.jpg");
  {
    std::ofstream f(pgm, std::ios::binary);
    f << "P5\n90 90\n255\n";
    f.write(reinterpret_cast<const char*>(pixels.data()), static_cast<std::streamsize>(pixels.size()));
  }
  ASSERT_TRUE(stbi_write_jpg(jpg.c_str(), 90, 90, 1, pixels.data(), 95));
  const MnistImage from_pgm = load_digit_image(pgm), from_jpg = load_digit_image(jpg);
  expect_mnist_like(from_pgm);
  expect_mnist_like(from_jpg);
  int diff = 0;
  for (int i = 0; i < 784; ++i) diff = std::max(diff, std::abs(from_pgm[i] - from_jpg[i]));
  EXPECT_LT(diff, 96);  // JPEG is lossy, but it is the same digit in the same place
  fs::remove(pgm);
  fs::remove(jpg);
}

TEST(DigitImage, BadFilesSayWhatIsWrong) {
  const fs::path text = temp_file("notes.png"), blank = temp_file("blank.png");
  std::ofstream(text) << "this is not an image";
  const std::vector<uint8_t> white(40 * 40, 255);
  ASSERT_TRUE(stbi_write_png(blank.c_str(), 40, 40, 1, white.data(), 40));
  const std::pair<fs::path, const char*> cases[] = {
      {text, "cannot decode"}, {blank, "no digit"}, {temp_file("missing.png"), "cannot decode"}};
  for (const auto& [path, needle] : cases) {
    try {
      load_digit_image(path);
      ADD_FAILURE() << path << " was accepted";
    } catch (const ImageError& e) {
      const std::string msg = e.what();
      EXPECT_EQ(msg.rfind(path.string() + ": ", 0), 0u) << msg;
      EXPECT_NE(msg.find(needle), std::string::npos) << msg;
    }
  }
  fs::remove(text);
  fs::remove(blank);
}

// A JPEG whose Huffman table claims more than 256 codes (found by tests/fuzz/fuzz_image.cpp: stb
// 2.27 writes past its code-length list) is refused before stb decodes it, from memory and from
// a file, and a good JPEG still loads.
TEST(DigitImage, RefusesAJpegHuffmanTableOfOver256Codes) {
  const fs::path bad = fs::path(MNIST_GPU_SOURCE_DIR) / "tests/fuzz/regress/image" /
                       "jpeg_huffman_table_over_256_codes.jpg";
  std::ifstream in(bad, std::ios::binary);
  const std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), {});
  ASSERT_GT(bytes.size(), 100u);
  for (int from_file = 0; from_file < 2; ++from_file) {
    try {
      if (from_file) {
        load_digit_image(bad);
      } else {
        load_digit_image(bytes, "upload");
      }
      ADD_FAILURE() << "the JPEG was decoded";
    } catch (const ImageError& e) {
      EXPECT_NE(std::string(e.what()).find("corrupt JPEG: a Huffman table (DHT) of "),
                std::string::npos)
          << e.what();
    }
  }
  const fs::path good = fs::path(MNIST_GPU_SOURCE_DIR) / "tests/fuzz/corpus/image/item_x3.jpg";
  EXPECT_NO_THROW(load_digit_image(good));
}

// A PGM whose width is over INT_MAX (found by tests/fuzz/fuzz_image.cpp: stb's int overflows)
// is refused before stb reads it; a good PGM still loads.
TEST(DigitImage, RefusesAPgmSizeOverIntMax) {
  const fs::path bad =
      fs::path(MNIST_GPU_SOURCE_DIR) / "tests/fuzz/regress/image/pnm_width_over_int_max.pgm";
  try {
    load_digit_image(bad);
    ADD_FAILURE() << "the PGM was decoded";
  } catch (const ImageError& e) {
    EXPECT_EQ(std::string(e.what()),
              bad.string() + ": unreadable PGM/PPM header: a size over 2147483647");
  }
  const std::string text = "P5 # a comment\n 1 2\n255\n";
  EXPECT_THROW(load_digit_image(std::span<const uint8_t>(
                                    reinterpret_cast<const uint8_t*>(text.data()), text.size()),
                                "short"),
               ImageError);
  EXPECT_NO_THROW(
      load_digit_image(fs::path(MNIST_GPU_SOURCE_DIR) / "tests/fuzz/corpus/image/item.pgm"));
}

// A file shorter than the pixels its header claims is refused before stb allocates the picture
// (tests/fuzz/fuzz_image.cpp found a 54-byte BMP claiming 13824 x 10240); whole files still decode.
TEST(DigitImage, RefusesAFileShorterThanItsPixels) {
  const fs::path bmp = fs::path(MNIST_GPU_SOURCE_DIR) /
                       "tests/fuzz/regress/image/bmp_54_bytes_claims_13824x10240.bmp";
  try {
    load_digit_image(bmp);
    ADD_FAILURE() << "the BMP was decoded";
  } catch (const ImageError& e) {
    EXPECT_EQ(std::string(e.what()), bmp.string() +
                                         ": unreadable BMP: 13824x10240 at 24 bits needs "
                                         "424673280 bytes of pixels after its 54-byte headers, "
                                         "the file has 54 bytes (truncated?)");
  }
  const std::string pgm = "P5 300 200 255\n" + std::string(1000, '\x80');
  try {
    load_digit_image(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(pgm.data()),
                                              pgm.size()),
                     "upload");
    ADD_FAILURE() << "the PGM was decoded";
  } catch (const ImageError& e) {
    EXPECT_NE(std::string(e.what()).find("upload: unreadable PGM/PPM header: 300x200 needs 60000 bytes of samples after "
                                   "its 15-byte header, the file has 1015 bytes"),
              std::string::npos)
        << e.what();
  }
  for (const char* name : {"item.bmp", "item.pgm", "item.ppm"}) {
    EXPECT_NO_THROW(
        load_digit_image(fs::path(MNIST_GPU_SOURCE_DIR) / "tests/fuzz/corpus/image" / name))
        << name;
  }
}

}  // namespace
}  // namespace mg
