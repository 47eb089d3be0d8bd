// The IDX reader against small files written here: good raw and gzip files, the combined MNIST
// layout, and one broken file per validation rule. The real MNIST test runs only where
// tools/get_mnist.sh has installed the files.
#include <gtest/gtest.h>
#include <zlib.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "host/idx.hpp"

namespace mg {
namespace {

namespace fs = std::filesystem;
using Bytes = std::vector<uint8_t>;

constexpr uint32_t kImageMagic = 0x00000803;
constexpr uint32_t kLabelMagic = 0x00000801;

void append_be32(Bytes& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<uint8_t>(v >> shift));
}

Bytes image_file(uint32_t count, uint32_t rows, uint32_t cols, const Bytes& pixels,
                 uint32_t magic = kImageMagic) {
  Bytes out;
  append_be32(out, magic);
  append_be32(out, count);
  append_be32(out, rows);
  append_be32(out, cols);
  out.insert(out.end(), pixels.begin(), pixels.end());
  return out;
}

Bytes label_file(const Bytes& labels, uint32_t magic = kLabelMagic) {
  Bytes out;
  append_be32(out, magic);
  append_be32(out, static_cast<uint32_t>(labels.size()));
  out.insert(out.end(), labels.begin(), labels.end());
  return out;
}

// n bytes that differ from position to position, seeded so two sets differ too.
Bytes pattern(size_t n, uint8_t seed) {
  Bytes out(n);
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<uint8_t>(i * 7 + seed);
  return out;
}

void write_raw(const fs::path& path, const Bytes& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

void write_gz(const fs::path& path, const Bytes& bytes) {
  gzFile file = gzopen(path.c_str(), "wb");
  ASSERT_NE(file, nullptr) << path;
  if (!bytes.empty()) {
    ASSERT_EQ(gzwrite(file, bytes.data(), static_cast<unsigned>(bytes.size())),
              static_cast<int>(bytes.size()));
  }
  ASSERT_EQ(gzclose(file), Z_OK);
}

Bytes read_all(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Peak resident memory of this process in KiB, or -1 where /proc is not there.
int64_t peak_rss_kib() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6));
  }
  return -1;
}

// Passes when f throws a DataError whose one-line message starts with "<path>: " and contains
// every word; anything else, including another exception type, fails with the reason.
::testing::AssertionResult throws_data_error(const std::function<void()>& f, const fs::path& path,
                                             const std::vector<std::string>& words) {
  try {
    f();
  } catch (const DataError& e) {
    const std::string message = e.what();
    if (message.rfind(path.string() + ": ", 0) != 0) {
      return ::testing::AssertionFailure() << "message does not start with the path: " << message;
    }
    if (message.find('\n') != std::string::npos) {
      return ::testing::AssertionFailure() << "message is not one line: " << message;
    }
    for (const std::string& word : words) {
      if (message.find(word) == std::string::npos) {
        return ::testing::AssertionFailure() << "no '" << word << "' in: " << message;
      }
    }
    return ::testing::AssertionSuccess() << message;
  } catch (const std::exception& e) {
    return ::testing::AssertionFailure() << "not a DataError: " << e.what();
  }
  return ::testing::AssertionFailure() << "nothing thrown";
}

class IdxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::random_device random;
    const auto ticks = std::chrono::steady_clock::now().time_since_epoch().count();
    dir_ = fs::temp_directory_path() / ("mg_idx_test_" + std::string(info->name()) + "_" +
                                        std::to_string(random()) + "_" + std::to_string(ticks));
    ASSERT_TRUE(fs::create_directories(dir_)) << dir_;
  }

  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  fs::path path(const std::string& name) const { return dir_ / name; }

  // Writes a synthetic MNIST split of n 28x28 images; gz picks the .gz names and compression.
  void write_split(const std::string& prefix, const Bytes& pixels, const Bytes& labels, bool gz) {
    const auto n = static_cast<uint32_t>(labels.size());
    const std::string suffix = gz ? ".gz" : "";
    const auto write = gz ? write_gz : write_raw;
    write(path(prefix + "-images-idx3-ubyte" + suffix), image_file(n, 28, 28, pixels));
    write(path(prefix + "-labels-idx1-ubyte" + suffix), label_file(labels));
  }

  fs::path dir_;
};

// --- good files --------------------------------------------------------------------------------

TEST_F(IdxTest, ReadsRawImages) {
  const Bytes pixels = pattern(3 * 4 * 5, 1);
  write_raw(path("images"), image_file(3, 4, 5, pixels));
  const ImageSet set = read_idx_images(path("images"));
  EXPECT_EQ(set.count, 3);
  EXPECT_EQ(set.rows, 4);
  EXPECT_EQ(set.cols, 5);
  EXPECT_EQ(set.pixels, pixels);
}

TEST_F(IdxTest, ReadsGzipImages) {
  const Bytes pixels = pattern(2 * 28 * 28, 2);
  write_gz(path("images.gz"), image_file(2, 28, 28, pixels));
  const ImageSet set = read_idx_images(path("images.gz"));
  EXPECT_EQ(set.count, 2);
  EXPECT_EQ(set.rows, 28);
  EXPECT_EQ(set.cols, 28);
  EXPECT_EQ(set.pixels, pixels);
}

TEST_F(IdxTest, ReadsRawAndGzipLabels) {
  const Bytes labels = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 0};
  write_raw(path("labels"), label_file(labels));
  write_gz(path("labels.gz"), label_file(labels));
  for (const char* name : {"labels", "labels.gz"}) {
    const LabelSet set = read_idx_labels(path(name));
    EXPECT_EQ(set.count, 12) << name;
    EXPECT_EQ(set.labels, labels) << name;
  }
}

TEST_F(IdxTest, DetectsGzipByMagicNotByName) {
  const Bytes pixels = pattern(2 * 3 * 3, 3);
  write_gz(path("compressed-without-suffix"), image_file(2, 3, 3, pixels));
  write_raw(path("raw-with-suffix.gz"), image_file(2, 3, 3, pixels));
  EXPECT_EQ(read_idx_images(path("compressed-without-suffix")).pixels, pixels);
  EXPECT_EQ(read_idx_images(path("raw-with-suffix.gz")).pixels, pixels);
}

TEST_F(IdxTest, ReadsALargeGzipFileAcrossChunks) {
  // Over 1 MiB of pixels, so both the payload growth and gzread go around more than once.
  const Bytes pixels = pattern(1500 * 28 * 28, 4);
  write_gz(path("images.gz"), image_file(1500, 28, 28, pixels));
  EXPECT_EQ(read_idx_images(path("images.gz")).pixels, pixels);
}

// The memory entry points (fuzzed by tests/fuzz/fuzz_idx.cpp) read what the file ones read, and
// refuse what they refuse with the same message, the name standing for the path.
TEST_F(IdxTest, MemoryReadsAsTheFileDoes) {
  const Bytes pixels = pattern(2 * 28 * 28, 3);
  const Bytes labels = {1, 9, 0, 4};
  write_raw(path("images"), image_file(2, 28, 28, pixels));
  write_gz(path("images.gz"), image_file(2, 28, 28, pixels));
  write_gz(path("labels.gz"), label_file(labels));
  for (const char* name : {"images", "images.gz"}) {
    const ImageSet from_file = read_idx_images(path(name));
    const ImageSet from_memory = read_idx_images(read_all(path(name)), "upload");
    EXPECT_EQ(from_memory.pixels, from_file.pixels) << name;
    EXPECT_EQ(from_memory.count, 2);
    EXPECT_EQ(from_memory.rows, 28);
  }
  EXPECT_EQ(read_idx_labels(read_all(path("labels.gz")), "upload").labels, labels);

  // Two gzip members read as one stream, as gzread does; bytes after the last member are ignored.
  Bytes gz = read_all(path("images.gz"));
  const size_t half = 16 + 28 * 28;
  const Bytes whole = image_file(2, 28, 28, pixels);
  write_gz(path("a.gz"), Bytes(whole.begin(), whole.begin() + static_cast<long>(half)));
  write_gz(path("b.gz"), Bytes(pixels.begin() + 28 * 28, pixels.end()));
  Bytes two = read_all(path("a.gz"));
  const Bytes b = read_all(path("b.gz"));
  two.insert(two.end(), b.begin(), b.end());
  write_raw(path("two.gz"), two);
  EXPECT_EQ(read_idx_images(two, "two").pixels, read_idx_images(path("two.gz")).pixels);
  EXPECT_EQ(read_idx_images(two, "two").pixels, pixels);

  // Cut short: the same error as from the file, with the name in place of the path.
  const Bytes cut(gz.begin(), gz.end() - 30);
  write_raw(path("cut.gz"), cut);
  std::string file_error, memory_error;
  try {
    read_idx_images(path("cut.gz"));
  } catch (const DataError& e) {
    file_error = e.what();
  }
  try {
    read_idx_images(cut, path("cut.gz").string());
  } catch (const DataError& e) {
    memory_error = e.what();
  }
  EXPECT_FALSE(file_error.empty());
  EXPECT_EQ(memory_error, file_error);
  EXPECT_THROW(read_idx_images(Bytes{}, "empty"), DataError);
}

TEST_F(IdxTest, LoadMnistCombinesTrainThenTest) {
  const Bytes train_pixels = pattern(3 * 784, 10), test_pixels = pattern(2 * 784, 20);
  const Bytes train_labels = {5, 0, 4}, test_labels = {7, 2};
  write_split("train", train_pixels, train_labels, /*gz=*/false);
  write_split("t10k", test_pixels, test_labels, /*gz=*/true);

  const MnistData data = load_mnist(dir_);
  EXPECT_EQ(data.count, 5);
  EXPECT_EQ(data.train_count, 3);
  Bytes images = train_pixels;
  images.insert(images.end(), test_pixels.begin(), test_pixels.end());
  EXPECT_EQ(data.images, images);
  EXPECT_EQ(data.labels, (Bytes{5, 0, 4, 7, 2}));
}

TEST_F(IdxTest, LoadMnistPrefersRawOverGz) {
  write_split("train", pattern(784, 1), {3}, /*gz=*/false);
  write_split("t10k", pattern(784, 2), {4}, /*gz=*/false);
  // Were the .gz files read, these would fail.
  for (const char* name : {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                           "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"}) {
    write_raw(path(name), {0x1f, 0x8b, 0xde, 0xad});
  }
  const MnistData data = load_mnist(dir_);
  EXPECT_EQ(data.count, 2);
  EXPECT_EQ(data.labels, (Bytes{3, 4}));
}

// --- missing and empty files -------------------------------------------------------------------

TEST_F(IdxTest, LoadMnistMissingFileNamesBothPathsAndTheScript) {
  const fs::path raw = path("train-images-idx3-ubyte");
  EXPECT_TRUE(throws_data_error([&] { load_mnist(dir_); }, raw,
                                {"not found", raw.string() + ".gz", "tools/get_mnist.sh"}));
}

TEST_F(IdxTest, LoadMnistReportsTheOneMissingFile) {
  write_split("train", pattern(784, 1), {3}, /*gz=*/false);
  write_split("t10k", pattern(784, 2), {4}, /*gz=*/false);
  const fs::path raw = path("t10k-labels-idx1-ubyte");
  fs::remove(raw);
  EXPECT_TRUE(throws_data_error([&] { load_mnist(dir_); }, raw,
                                {"not found", raw.string() + ".gz", "tools/get_mnist.sh"}));
}

TEST_F(IdxTest, MissingFile) {
  const fs::path p = path("nothing-here");
  EXPECT_TRUE(throws_data_error([&] { read_idx_images(p); }, p, {"not found"}));
  EXPECT_TRUE(throws_data_error([&] { read_idx_labels(p); }, p, {"not found"}));
}

TEST_F(IdxTest, DirectoryIsNotAFile) {
  const fs::path p = path("a-directory");
  fs::create_directory(p);
  EXPECT_TRUE(throws_data_error([&] { read_idx_images(p); }, p, {"not a regular file"}));
}

TEST_F(IdxTest, EmptyFile) {
  write_raw(path("empty"), {});
  EXPECT_TRUE(throws_data_error([&] { read_idx_images(path("empty")); }, path("empty"), {"empty"}));
  EXPECT_TRUE(throws_data_error([&] { read_idx_labels(path("empty")); }, path("empty"), {"empty"}));
}

TEST_F(IdxTest, EmptyGzipStreamIsATruncatedHeader) {
  write_gz(path("empty.gz"), {});
  EXPECT_TRUE(throws_data_error([&] { read_idx_labels(path("empty.gz")); }, path("empty.gz"),
                                {"truncated header", "0 of 8"}));
}

// --- header ------------------------------------------------------------------------------------

TEST_F(IdxTest, WrongMagicSaysFoundAndExpected) {
  write_raw(path("labels"), label_file({1, 2, 3}));
  EXPECT_TRUE(throws_data_error([&] { read_idx_images(path("labels")); }, path("labels"),
                                {"magic", "0x00000801", "expected 0x00000803"}));
  write_gz(path("images.gz"), image_file(1, 2, 2, pattern(4, 0)));
  EXPECT_TRUE(throws_data_error([&] { read_idx_labels(path("images.gz")); }, path("images.gz"),
                                {"magic", "0x00000803", "expected 0x00000801"}));
  write_raw(path("other"), image_file(1, 2, 2, pattern(4, 0), 0x12345678));
  EXPECT_TRUE(throws_data_error([&] { read_idx_images(path("other")); }, path("other"),
                                {"magic", "0x12345678", "expected 0x00000803"}));
}

TEST_F(IdxTest, TruncatedHeader) {
  Bytes header = image_file(1, 28, 28, {});
  header.resize(10);
  write_raw(path("images"), header);
  EXPECT_TRUE(throws_data_error([&] { read_idx_images(path("images")); }, path("images"),
                                {"truncated header", "10 of 16"}));
  write_raw(path("tiny"), {0x00, 0x00});
  EXPECT_TRUE(throws_data_error([&] { read_idx_labels(path("tiny")); }, path("tiny"),
                                {"truncated header", "2 of 8"}));
  write_gz(path("labels.gz"), {0x00, 0x00, 0x08, 0x01, 0x00});
  EXPECT_TRUE(throws_data_error([&] { read_idx_labels(path("labels.gz")); }, path("labels.gz"),
                                {"truncated header", "5 of 8"}));
}

TEST_F(IdxTest, ImplausibleHeaderIsRejected) {
  struct Case {
    uint32_t count, rows, cols;
  };
  for (const Case c :
       {Case{20'000'000, 28, 28}, Case{0, 28, 28}, Case{1, 5000, 28}, Case{1, 28, 0},
        Case{1, 0, 28}, Case{0xffffffff, 0xffffffff, 0xffffffff}, Case{10'000'000, 4096, 4096}}) {
    SCOPED_TRACE(std::to_string(c.count) + " " + std::to_string(c.rows) + "x" +
                 std::to_string(c.cols));
    write_raw(path("images"), image_file(c.count, c.rows, c.cols, pattern(16, 0)));
    EXPECT_TRUE(throws_data_error([&] { read_idx_images(path("images")); }, path("images"),
                                  {"implausible header"}));
    write_gz(path("images.gz"), image_file(c.count, c.rows, c.cols, pattern(16, 0)));
    EXPECT_TRUE(throws_data_error([&] { read_idx_images(path("images.gz")); }, path("images.gz"),
                                  {"implausible header"}));
  }
  Bytes labels = label_file({1, 2});
  labels[4] = 0xff;  // count 0xff000002
  write_raw(path("labels"), labels);
  EXPECT_TRUE(throws_data_error([&] { read_idx_labels(path("labels")); }, path("labels"),
                                {"implausible header", "labels"}));
}

// --- data --------------------------------------------------------------------------------------

TEST_F(IdxTest, TruncatedDataSaysExpectedAndActualBytes) {
  Bytes file = image_file(3, 4, 5, pattern(60, 0));
  file.pop_back();
  write_raw(path("images"), file);
  EXPECT_TRUE(throws_data_error([&] { read_idx_images(path("images")); }, path("images"),
                                {"truncated data", "expected 60", "found 59"}));
  write_gz(path("images.gz"), file);
  EXPECT_TRUE(throws_data_error([&] { read_idx_images(path("images.gz")); }, path("images.gz"),
                                {"truncated data", "expected 60", "found 59"}));
  write_raw(path("labels"), {0x00, 0x00, 0x08, 0x01, 0x00, 0x00, 0x00, 0x05, 1, 2});
  EXPECT_TRUE(throws_data_error([&] { read_idx_labels(path("labels")); }, path("labels"),
                                {"truncated data", "expected 5", "found 2"}));
}

TEST_F(IdxTest, TrailingGarbage) {
  Bytes file = image_file(3, 4, 5, pattern(60, 0));
  file.push_back(0);
  file.push_back(0);
  write_raw(path("images"), file);
  EXPECT_TRUE(throws_data_error([&] { read_idx_images(path("images")); }, path("images"),
                                {"trailing garbage", "2 bytes", "60"}));
  write_gz(path("images.gz"), file);
  EXPECT_TRUE(throws_data_error([&] { read_idx_images(path("images.gz")); }, path("images.gz"),
                                {"trailing garbage", "60"}));
  Bytes labels = label_file({1, 2});
  labels.push_back(3);
  write_raw(path("labels"), labels);
  EXPECT_TRUE(throws_data_error([&] { read_idx_labels(path("labels")); }, path("labels"),
                                {"trailing garbage"}));
}

TEST_F(IdxTest, LabelAboveNineGivesIndexAndValue) {
  write_raw(path("labels"), label_file({0, 9, 3, 1, 12, 4, 200}));
  EXPECT_TRUE(throws_data_error([&] { read_idx_labels(path("labels")); }, path("labels"),
                                {"label", "index 4", "12"}));
}

// --- load_mnist checks -------------------------------------------------------------------------

TEST_F(IdxTest, LoadMnistCountMismatchNamesBothFiles) {
  write_split("train", pattern(2 * 784, 1), {1, 2}, /*gz=*/false);
  write_split("t10k", pattern(784, 2), {3}, /*gz=*/false);
  write_raw(path("train-labels-idx1-ubyte"), label_file({1, 2, 3}));
  const fs::path labels = path("train-labels-idx1-ubyte");
  EXPECT_TRUE(throws_data_error(
      [&] { load_mnist(dir_); }, labels,
      {"mismatch", "3 labels", path("train-images-idx3-ubyte").string(), "2 images"}));
}

TEST_F(IdxTest, LoadMnistRejectsImagesOtherThan28x28) {
  write_split("train", pattern(784, 1), {1}, /*gz=*/false);
  write_split("t10k", pattern(784, 2), {3}, /*gz=*/false);
  const fs::path images = path("t10k-images-idx3-ubyte");
  write_raw(images, image_file(1, 27, 28, pattern(27 * 28, 0)));
  EXPECT_TRUE(throws_data_error([&] { load_mnist(dir_); }, images, {"27x28", "28x28"}));
}

// --- corrupt gzip ------------------------------------------------------------------------------

TEST_F(IdxTest, CorruptGzip) {
  write_raw(path("junk.gz"), {0x1f, 0x8b, 0x08, 0x00, 0xde, 0xad, 0xbe, 0xef, 0x00, 0x03,
                              0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a});
  EXPECT_TRUE(throws_data_error([&] { read_idx_images(path("junk.gz")); }, path("junk.gz"),
                                {"corrupt", "gzip"}));
  // A broken CRC only shows at the end of the stream, after all the data was read.
  write_gz(path("good.gz"), label_file({1, 2, 3}));
  Bytes bytes = read_all(path("good.gz"));
  bytes[bytes.size() - 8] ^= 0xff;
  write_raw(path("bad-crc.gz"), bytes);
  EXPECT_TRUE(throws_data_error([&] { read_idx_labels(path("bad-crc.gz")); }, path("bad-crc.gz"),
                                {"corrupt", "gzip"}));
}

TEST_F(IdxTest, TruncatedGzipStream) {
  write_gz(path("good.gz"), image_file(4, 28, 28, pattern(4 * 784, 5)));
  const Bytes bytes = read_all(path("good.gz"));
  // Cut in the deflate data, and cut only the 8-byte trailer: both are incomplete downloads.
  for (const size_t keep : {bytes.size() / 2, bytes.size() - 8, bytes.size() - 1}) {
    SCOPED_TRACE(keep);
    write_raw(path("cut.gz"), Bytes(bytes.begin(), bytes.begin() + static_cast<long>(keep)));
    EXPECT_TRUE(throws_data_error([&] { read_idx_images(path("cut.gz")); }, path("cut.gz"),
                                  {"gzip", "truncated"}));
  }
}

TEST_F(IdxTest, GzipBombStopsAtTheDeclaredSize) {
  // One 28x28 image declared, 128 MiB of zeros behind it, compressed to about 128 KiB.
  const fs::path p = path("bomb.gz");
  gzFile file = gzopen(p.c_str(), "wb1");
  ASSERT_NE(file, nullptr);
  const Bytes header = image_file(1, 28, 28, {});
  ASSERT_EQ(gzwrite(file, header.data(), static_cast<unsigned>(header.size())), 16);
  const Bytes zeros(1 << 20, 0);
  for (int i = 0; i < 128; ++i) {
    ASSERT_EQ(gzwrite(file, zeros.data(), static_cast<unsigned>(zeros.size())), 1 << 20);
  }
  ASSERT_EQ(gzclose(file), Z_OK);

  const int64_t before = peak_rss_kib();
  EXPECT_TRUE(throws_data_error([&] { read_idx_images(p); }, p, {"trailing garbage", "784"}));
  if (before >= 0) {
    EXPECT_LT(peak_rss_kib() - before, 32 * 1024) << "KiB of peak memory grew";
  }
}

TEST_F(IdxTest, ShortGzipThatClaimsALotAllocatesLittle) {
  // 784 MB of pixels claimed (under the 1 GiB cap), one image present.
  const fs::path p = path("liar.gz");
  write_gz(p, image_file(1'000'000, 28, 28, pattern(784, 0)));
  const int64_t before = peak_rss_kib();
  EXPECT_TRUE(throws_data_error([&] { read_idx_images(p); }, p,
                                {"truncated data", "expected 784000000", "found 784"}));
  if (before >= 0) {
    EXPECT_LT(peak_rss_kib() - before, 64 * 1024) << "KiB of peak memory grew";
  }
}

// Every prefix and many random corruptions of a good file: each is read or is a DataError.
TEST_F(IdxTest, NoCrashOnMutatedInput) {
  write_raw(path("images"), image_file(2, 3, 3, pattern(18, 0)));
  write_gz(path("images.gz"), image_file(2, 3, 3, pattern(18, 0)));
  write_raw(path("labels"), label_file({1, 2, 3, 4}));
  write_gz(path("labels.gz"), label_file({1, 2, 3, 4}));
  std::mt19937 rng(12345);
  for (const char* name : {"images", "images.gz", "labels", "labels.gz"}) {
    const Bytes good = read_all(path(name));
    const bool images = std::string(name).starts_with("images");
    const auto read = [&](const Bytes& bytes) {
      write_raw(path("mutant"), bytes);
      try {
        if (images) {
          read_idx_images(path("mutant"));
        } else {
          read_idx_labels(path("mutant"));
        }
      } catch (const DataError&) {
      }
    };
    for (size_t n = 0; n <= good.size(); ++n) read(Bytes(good.begin(), good.begin() + n));
    for (int i = 0; i < 150; ++i) {
      Bytes bytes = good;
      const int flips = 1 + static_cast<int>(rng() % 4);
      for (int f = 0; f < flips; ++f) bytes[rng() % bytes.size()] = static_cast<uint8_t>(rng());
      read(bytes);
    }
  }
}

// --- the real files ----------------------------------------------------------------------------

TEST(RealMnist, LoadsAll70000WithTheKnownClassCounts) {
#ifndef MNIST_GPU_SOURCE_DIR
  GTEST_SKIP() << "MNIST_GPU_SOURCE_DIR is not defined, so data/mnist cannot be found";
#else
  const fs::path dir = fs::path(MNIST_GPU_SOURCE_DIR) / "data" / "mnist";
  for (const char* name : {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                           "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"}) {
    if (!fs::exists(dir / name) && !fs::exists(dir / (std::string(name) + ".gz"))) {
      GTEST_SKIP() << "real MNIST is not installed (" << (dir / name).string()
                   << " is missing); run tools/get_mnist.sh to fetch it";
    }
  }
  const MnistData data = load_mnist(dir);
  ASSERT_EQ(data.count, 70'000);
  EXPECT_EQ(data.train_count, 60'000);
  ASSERT_EQ(data.images.size(), size_t{70'000} * 28 * 28);
  ASSERT_EQ(data.labels.size(), size_t{70'000});

  std::array<int64_t, 10> train{}, test{};
  for (int64_t i = 0; i < data.count; ++i) {
    (i < data.train_count ? train : test)[data.labels[static_cast<size_t>(i)]]++;
  }
  EXPECT_EQ(train,
            (std::array<int64_t, 10>{5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949}));
  EXPECT_EQ(test, (std::array<int64_t, 10>{980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009}));
  // The well-known first digits of each split, as a check of the train-then-test order.
  EXPECT_EQ(data.labels[0], 5);
  EXPECT_EQ(data.labels[60'000], 7);
#endif
}

}  // namespace
}  // namespace mg
