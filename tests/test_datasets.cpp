// Data sets: Keras npz files written here with libzip (a good one read back exactly, and one
// broken file per validation rule), the torchvision layout, the search order, the not-found
// message, and the real MNIST / Fashion-MNIST files where this machine has them.
#include <gtest/gtest.h>

#include "test_util.hpp"
#include <zip.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "host/datasets.hpp"
#include "host/download.hpp"

namespace mg {
namespace {

namespace fs = std::filesystem;
using Bytes = std::vector<uint8_t>;

constexpr int kPixels = 28 * 28;

Bytes random_bytes(size_t n, uint32_t seed, int modulo = 256) {
  std::mt19937 rng(seed);
  Bytes out(n);
  for (auto& b : out) b = static_cast<uint8_t>(rng() % static_cast<uint32_t>(modulo));
  return out;
}

fs::path make_temp_dir(const std::string& tag) {
  std::string pattern = (fs::temp_directory_path() / ("mg_" + tag + "_XXXXXX")).string();
  if (::mkdtemp(pattern.data()) == nullptr) return {};
  return pattern;
}

void write_file(const fs::path& path, const Bytes& bytes) {
  fs::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

// ---- .npy / .npz builders ----------------------------------------------------------------------

struct NpyOptions {
  std::string descr = "|u1";
  std::string fortran = "False";
  int version = 1;
  std::string magic = "\x93NUMPY";
};

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

// A .npy file as numpy writes it: magic, version, header length, the dict padded with spaces to
// a multiple of 64 bytes and ended by a newline, then the data.
Bytes npy(const std::vector<int64_t>& shape, const Bytes& data, const NpyOptions& o = {}) {
  std::string dict = "{'descr': '" + o.descr + "', 'fortran_order': " + o.fortran +
                     ", 'shape': " + shape_text(shape) + ", }";
  const size_t prefix = o.version == 1 ? 10 : 12;
  while ((prefix + dict.size() + 1) % 64 != 0) dict += ' ';
  dict += '\n';
  Bytes out(o.magic.begin(), o.magic.end());
  out.push_back(static_cast<uint8_t>(o.version));
  out.push_back(0);
  const auto len = static_cast<uint32_t>(dict.size());
  out.push_back(static_cast<uint8_t>(len));
  out.push_back(static_cast<uint8_t>(len >> 8));
  if (o.version != 1) {
    out.push_back(static_cast<uint8_t>(len >> 16));
    out.push_back(static_cast<uint8_t>(len >> 24));
  }
  out.insert(out.end(), dict.begin(), dict.end());
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

using Members = std::map<std::string, Bytes>;

void write_zip(const fs::path& path, const Members& members, bool store = false) {
  fs::create_directories(path.parent_path());
  int err = 0;
  zip_t* zip = zip_open(path.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &err);
  ASSERT_NE(zip, nullptr) << path << ": libzip error " << err;
  for (const auto& [name, bytes] : members) {
    // libzip reads the buffers at zip_close; `members` outlives it.
    zip_source_t* src = zip_source_buffer(zip, bytes.data(), bytes.size(), 0);
    ASSERT_NE(src, nullptr);
    const zip_int64_t index = zip_file_add(zip, name.c_str(), src, ZIP_FL_OVERWRITE);
    ASSERT_GE(index, 0) << zip_strerror(zip);
    if (store) {
      ASSERT_EQ(zip_set_file_compression(zip, static_cast<zip_uint64_t>(index), ZIP_CM_STORE, 0),
                0);
    }
  }
  ASSERT_EQ(zip_close(zip), 0) << path;
}

// A small, valid MNIST-shaped data set and the members of its npz.
struct Synthetic {
  int64_t train = 3, test = 2;
  Bytes x_train, y_train, x_test, y_test;

  explicit Synthetic(uint32_t seed, int64_t n_train = 3, int64_t n_test = 2)
      : train(n_train), test(n_test) {
    x_train = random_bytes(static_cast<size_t>(train * kPixels), seed);
    y_train = random_bytes(static_cast<size_t>(train), seed + 1, 10);
    x_test = random_bytes(static_cast<size_t>(test * kPixels), seed + 2);
    y_test = random_bytes(static_cast<size_t>(test), seed + 3, 10);
  }
  Members members(const NpyOptions& o = {}) const {
    return {{"x_train.npy", npy({train, 28, 28}, x_train, o)},
            {"y_train.npy", npy({train}, y_train, o)},
            {"x_test.npy", npy({test, 28, 28}, x_test, o)},
            {"y_test.npy", npy({test}, y_test, o)}};
  }
  Bytes images() const {
    Bytes all = x_train;
    all.insert(all.end(), x_test.begin(), x_test.end());
    return all;
  }
  Bytes labels() const {
    Bytes all = y_train;
    all.insert(all.end(), y_test.begin(), y_test.end());
    return all;
  }
};

void expect_same(const LabeledImages& got, const Synthetic& want) {
  EXPECT_EQ(got.count, want.train + want.test);
  EXPECT_EQ(got.train_count, want.train);
  EXPECT_EQ(got.rows, 28);
  EXPECT_EQ(got.cols, 28);
  EXPECT_EQ(got.images, want.images());
  EXPECT_EQ(got.labels, want.labels());
}

// ---- IDX builders (for directory layouts) ------------------------------------------------------

void append_be32(Bytes& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<uint8_t>(v >> shift));
}

void write_gz(const fs::path& path, const Bytes& bytes) {
  fs::create_directories(path.parent_path());
  gzFile file = gzopen(path.c_str(), "wb");
  ASSERT_NE(file, nullptr) << path;
  ASSERT_EQ(gzwrite(file, bytes.data(), static_cast<unsigned>(bytes.size())),
            static_cast<int>(bytes.size()));
  ASSERT_EQ(gzclose(file), Z_OK);
}

// The four IDX files of `data` in dir, the train files gzipped when gz (as torchvision and
// Keras keep them), the test files raw.
void write_idx_set(const fs::path& dir, const Synthetic& data, bool gz = true) {
  auto images = [](int64_t n, const Bytes& px) {
    Bytes out;
    append_be32(out, 0x803);
    append_be32(out, static_cast<uint32_t>(n));
    append_be32(out, 28);
    append_be32(out, 28);
    out.insert(out.end(), px.begin(), px.end());
    return out;
  };
  auto labels = [](const Bytes& y) {
    Bytes out;
    append_be32(out, 0x801);
    append_be32(out, static_cast<uint32_t>(y.size()));
    out.insert(out.end(), y.begin(), y.end());
    return out;
  };
  if (gz) {
    write_gz(dir / "train-images-idx3-ubyte.gz", images(data.train, data.x_train));
    write_gz(dir / "train-labels-idx1-ubyte.gz", labels(data.y_train));
  } else {
    write_file(dir / "train-images-idx3-ubyte", images(data.train, data.x_train));
    write_file(dir / "train-labels-idx1-ubyte", labels(data.y_train));
  }
  write_file(dir / "t10k-images-idx3-ubyte", images(data.test, data.x_test));
  write_file(dir / "t10k-labels-idx1-ubyte", labels(data.y_test));
}

using test::EnvGuard;

// A scratch directory, removed afterwards.
class Scratch : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = make_temp_dir("data");
    ASSERT_FALSE(dir_.empty());
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  fs::path dir_;
};

// ---- names
// ---------------------------------------------------------------------------------------

TEST(DatasetKinds, ParseAndName) {
  EXPECT_EQ(parse_dataset_kind("mnist"), DatasetKind::kMnist);
  EXPECT_EQ(parse_dataset_kind("fashion-mnist"), DatasetKind::kFashionMnist);
  EXPECT_EQ(dataset_name(DatasetKind::kMnist), "mnist");
  EXPECT_EQ(dataset_name(DatasetKind::kFashionMnist), "fashion-mnist");
  try {
    parse_dataset_kind("cifar10");
    FAIL() << "must throw";
  } catch (const std::invalid_argument& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("cifar10"), std::string::npos) << what;
    EXPECT_NE(what.find("mnist, fashion-mnist"), std::string::npos) << what;
  }
  EXPECT_THROW(parse_dataset_kind("MNIST"), std::invalid_argument);
}

TEST(DatasetKinds, ClassNames) {
  const auto& digits = class_names(DatasetKind::kMnist);
  ASSERT_EQ(digits.size(), 10u);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(digits[static_cast<size_t>(i)], std::to_string(i));
  EXPECT_EQ(class_names(DatasetKind::kFashionMnist),
            (std::vector<std::string>{"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                      "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"}));
}

// ---- npz
// -----------------------------------------------------------------------------------------

using Npz = Scratch;

TEST_F(Npz, RoundTrip) {
  const Synthetic data(100);
  const fs::path path = dir_ / "mnist.npz";
  write_zip(path, data.members());
  const LabeledImages got = read_mnist_npz(path);
  expect_same(got, data);
  EXPECT_EQ(got.kind, DatasetKind::kMnist);
  EXPECT_NE(got.source.find(path.string()), std::string::npos) << got.source;
  EXPECT_NE(got.source.find("npz"), std::string::npos) << got.source;
}

TEST_F(Npz, StoredMembersAndNpyVersions2And3) {
  for (const int version : {2, 3}) {
    const Synthetic data(200 + static_cast<uint32_t>(version), 4, 1);
    const fs::path path = dir_ / ("v" + std::to_string(version) + ".npz");
    NpyOptions o;
    o.version = version;
    write_zip(path, data.members(o), /*store=*/true);
    expect_same(read_mnist_npz(path), data);
  }
}

TEST_F(Npz, AcceptsEquivalentUint8Descrs) {
  const Synthetic data(300);
  NpyOptions o;
  o.descr = "<u1";
  write_zip(dir_ / "a.npz", data.members(o));
  expect_same(read_mnist_npz(dir_ / "a.npz"), data);
}

// Writes the npz with `member` replaced by `bytes` (or removed when nullopt) and expects a
// DataError naming the file, the member and `problem`.
void expect_npz_error(const fs::path& path, const std::string& member,
                      const std::optional<Bytes>& bytes, const std::string& problem) {
  const Synthetic data(400);
  Members members = data.members();
  if (bytes) {
    members[member] = *bytes;
  } else {
    members.erase(member);
  }
  write_zip(path, members);
  try {
    read_mnist_npz(path);
    ADD_FAILURE() << member << ": expected a DataError containing '" << problem << "'";
  } catch (const DataError& e) {
    const std::string what = e.what();
    EXPECT_EQ(what.rfind(path.string() + ": " + member + ": ", 0), 0u) << what;
    EXPECT_NE(what.find(problem), std::string::npos) << what;
  }
}

TEST_F(Npz, NotAZip) {
  const fs::path path = dir_ / "mnist.npz";
  write_file(path, random_bytes(5000, 1));
  try {
    read_mnist_npz(path);
    FAIL() << "must throw";
  } catch (const DataError& e) {
    const std::string what = e.what();
    EXPECT_EQ(what.rfind(path.string() + ": ", 0), 0u) << what;
    EXPECT_NE(what.find("not a zip"), std::string::npos) << what;
  }
  EXPECT_THROW(read_mnist_npz(dir_ / "absent.npz"), DataError);
}

TEST_F(Npz, MissingMember) {
  expect_npz_error(dir_ / "m.npz", "y_test.npy", std::nullopt, "member not found");
}

TEST_F(Npz, BadMagic) {
  NpyOptions o;
  o.magic = "\x93NUMPx";
  expect_npz_error(dir_ / "m.npz", "x_train.npy", npy({3, 28, 28}, Bytes(3 * kPixels), o),
                   "bad magic");
}

TEST_F(Npz, UnsupportedVersion) {
  NpyOptions o;
  o.version = 4;
  expect_npz_error(dir_ / "m.npz", "x_test.npy", npy({2, 28, 28}, Bytes(2 * kPixels), o),
                   "unsupported .npy format version 4.0");
}

TEST_F(Npz, WrongDtype) {
  NpyOptions o;
  o.descr = "<f4";
  expect_npz_error(dir_ / "m.npz", "x_train.npy", npy({3, 28, 28}, Bytes(3 * kPixels * 4), o),
                   "dtype '<f4', expected '|u1'");
}

TEST_F(Npz, FortranOrder) {
  NpyOptions o;
  o.fortran = "True";
  expect_npz_error(dir_ / "m.npz", "x_train.npy", npy({3, 28, 28}, Bytes(3 * kPixels), o),
                   "fortran_order is True");
}

TEST_F(Npz, ShapeMismatch) {
  expect_npz_error(dir_ / "m.npz", "x_train.npy", npy({3, 28, 27}, Bytes(3 * 28 * 27)),
                   "shape (3, 28, 27), expected (N, 28, 28)");
  expect_npz_error(dir_ / "m.npz", "y_train.npy", npy({3, 1}, Bytes(3)),
                   "shape (3, 1), expected (N,)");
  // Labels and images disagree on the count.
  expect_npz_error(dir_ / "m.npz", "y_train.npy", npy({2}, Bytes(2)),
                   "2 labels but x_train.npy has 3 images");
}

TEST_F(Npz, TruncatedMember) {
  // The header says 3 images; the member holds 2.
  expect_npz_error(dir_ / "m.npz", "x_train.npy", npy({3, 28, 28}, Bytes(2 * kPixels)),
                   "truncated data");
  // The member ends inside the header.
  Bytes cut = npy({3, 28, 28}, Bytes(3 * kPixels));
  cut.resize(40);
  expect_npz_error(dir_ / "m.npz", "x_train.npy", cut, "truncated .npy header");
  // Extra bytes after the data are refused as well.
  expect_npz_error(dir_ / "m.npz", "y_test.npy", npy({2}, Bytes(3)), "trailing bytes");
}

TEST_F(Npz, BadHeaderDict) {
  auto with_header = [](const std::string& dict) {
    Bytes out = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, static_cast<uint8_t>(dict.size()), 0};
    for (const char c : dict) out.push_back(static_cast<uint8_t>(c));
    out.resize(out.size() + 3, 0);
    return out;
  };
  const fs::path p = dir_ / "m.npz";
  expect_npz_error(p, "y_train.npy", with_header("{'descr': '|u1', 'shape': (3,), }\n"),
                   "must have the keys");
  expect_npz_error(p, "y_train.npy",
                   with_header("{'descr': '|u1', 'fortran_order': False, 'shape': (3), }\n"),
                   "not a tuple");
  expect_npz_error(p, "y_train.npy",
                   with_header("{'descr': '|u1', 'fortran_order': False, 'shape': (3,), 'x': 1}\n"),
                   "unexpected key 'x'");
  expect_npz_error(p, "y_train.npy",
                   with_header("{'descr': '|u1', 'fortran_order': Fals, 'shape': (3,)}\n"),
                   "expected True or False");
  expect_npz_error(p, "y_train.npy",
                   with_header("{'descr': '|u1', 'fortran_order': False, 'shape': (3,)} junk\n"),
                   "unexpected text after the dict");
}

TEST_F(Npz, LabelAboveNine) {
  expect_npz_error(dir_ / "m.npz", "y_test.npy", npy({2}, Bytes{3, 10}), "label at index 1 is 10");
}

// ---- layouts and search order ------------------------------------------------------------------

// Each test runs with a clean environment: HOME, the working directory and the variables point
// into the scratch directory, so nothing on this machine (data/mnist, ~/.keras) is found.
class DatasetSearch : public Scratch {
 protected:
  void SetUp() override {
    Scratch::SetUp();
    home_ = dir_ / "home";
    cwd_ = dir_ / "cwd";
    fs::create_directories(home_);
    fs::create_directories(cwd_);
    env_.set("HOME", home_.string());
    env_.set("KERAS_HOME", std::nullopt);
    env_.set("MNIST_GPU_DATA", std::nullopt);
    env_.set("MNIST_GPU_FASHION_DATA", std::nullopt);
    env_.set("MNIST_GPU_MIRROR", "http://127.0.0.1:9/");  // never reached by these tests
    env_.chdir(cwd_);
  }
  void TearDown() override {
    env_.restore();  // restores the environment and the directory before the files go
    Scratch::TearDown();
  }
  static DataLocation no_download(std::optional<fs::path> dir = std::nullopt) {
    return {std::move(dir), false};
  }

  EnvGuard env_;
  fs::path home_, cwd_;
};

TEST_F(DatasetSearch, PathsInOrder) {
  using P = std::vector<fs::path>;
  const fs::path keras = home_ / ".keras" / "datasets";
  EXPECT_EQ(search_paths(DatasetKind::kMnist, {}), (P{"./data/mnist", keras}));
  EXPECT_EQ(search_paths(DatasetKind::kFashionMnist, {}),
            (P{"./data/fashion-mnist", keras, "/usr/share/datasets/fashion-mnist"}));
  env_.set("KERAS_HOME", (dir_ / "kh").string());
  EXPECT_EQ(search_paths(DatasetKind::kMnist, {}),
            (P{"./data/mnist", dir_ / "kh" / "datasets", keras}));
  // A folder given explicitly is the only place looked in: --data, else the variable.
  env_.set("MNIST_GPU_DATA", (dir_ / "env").string());
  EXPECT_EQ(search_paths(DatasetKind::kMnist, {}), (P{dir_ / "env"}));
  EXPECT_EQ(search_paths(DatasetKind::kMnist, {dir_ / "only"}), (P{dir_ / "only"}));
  EXPECT_EQ(search_paths(DatasetKind::kFashionMnist, {dir_ / "only"}), (P{dir_ / "only"}));
  // Fashion-MNIST has its own variable: MNIST's directory is never read as Fashion-MNIST.
  EXPECT_EQ(search_paths(DatasetKind::kFashionMnist, {}).front(), "./data/fashion-mnist");
  env_.set("MNIST_GPU_FASHION_DATA", (dir_ / "fenv").string());
  EXPECT_EQ(search_paths(DatasetKind::kFashionMnist, {}), (P{dir_ / "fenv"}));
}

TEST_F(DatasetSearch, DataDirIdxNpzAndTorchvision) {
  const Synthetic a(1), b(2, 2, 3), c(3, 4, 1);
  write_idx_set(dir_ / "idx", a);
  write_zip(dir_ / "keras" / "mnist.npz", b.members());
  write_idx_set(dir_ / "torch" / "MNIST" / "raw", c);

  LabeledImages got = load_dataset(DatasetKind::kMnist, no_download(dir_ / "idx"));
  expect_same(got, a);
  EXPECT_EQ(got.source, (dir_ / "idx").string() + " (IDX files)");

  got = load_dataset(DatasetKind::kMnist, no_download(dir_ / "keras"));
  expect_same(got, b);
  EXPECT_EQ(got.source, (dir_ / "keras" / "mnist.npz").string() + " (Keras npz)");

  got = load_dataset(DatasetKind::kMnist, no_download(dir_ / "torch"));
  expect_same(got, c);
  EXPECT_EQ(got.source, (dir_ / "torch" / "MNIST" / "raw").string() + " (torchvision IDX files)");
}

TEST_F(DatasetSearch, FashionLayouts) {
  const Synthetic a(4), b(5, 1, 1);
  write_idx_set(dir_ / "torch" / "FashionMNIST" / "raw", a);
  write_idx_set(dir_ / "torch" / "MNIST" / "raw", b);  // must not be taken for Fashion
  LabeledImages got = load_dataset(DatasetKind::kFashionMnist, no_download(dir_ / "torch"));
  expect_same(got, a);
  EXPECT_EQ(got.kind, DatasetKind::kFashionMnist);
  expect_same(load_dataset(DatasetKind::kMnist, no_download(dir_ / "torch")), b);

  // Keras keeps Fashion-MNIST's .gz files in <cache>/datasets/fashion-mnist/.
  env_.set("KERAS_HOME", (dir_ / "kh").string());
  write_idx_set(dir_ / "kh" / "datasets" / "fashion-mnist", b);
  got = load_dataset(DatasetKind::kFashionMnist, no_download());
  expect_same(got, b);
  EXPECT_EQ(got.source,
            (dir_ / "kh" / "datasets" / "fashion-mnist").string() + " (Keras IDX files)");
}

TEST_F(DatasetSearch, EnvBeforeLocalBeforeKeras) {
  const Synthetic env_data(10), local(11, 2, 2), keras(12, 1, 2), home_keras(13, 2, 1);
  write_idx_set(dir_ / "env", env_data);
  write_idx_set(cwd_ / "data" / "mnist", local, /*gz=*/false);
  write_zip(dir_ / "kh" / "datasets" / "mnist.npz", keras.members());
  write_zip(home_ / ".keras" / "datasets" / "mnist.npz", home_keras.members());
  env_.set("MNIST_GPU_DATA", (dir_ / "env").string());
  env_.set("KERAS_HOME", (dir_ / "kh").string());

  expect_same(load_dataset(DatasetKind::kMnist, no_download()), env_data);
  // $MNIST_GPU_DATA is used as it is or refused: gone, it is an error, not a fallback.
  fs::remove_all(dir_ / "env");
  EXPECT_THROW(load_dataset(DatasetKind::kMnist, no_download()), DataError);
  env_.set("MNIST_GPU_DATA", std::nullopt);
  LabeledImages got = load_dataset(DatasetKind::kMnist, no_download());
  expect_same(got, local);
  EXPECT_EQ(got.source, "./data/mnist (IDX files)");
  fs::remove_all(cwd_ / "data");
  got = load_dataset(DatasetKind::kMnist, no_download());
  expect_same(got, keras);
  EXPECT_NE(got.source.find((dir_ / "kh").string()), std::string::npos) << got.source;
  fs::remove_all(dir_ / "kh");
  expect_same(load_dataset(DatasetKind::kMnist, no_download()), home_keras);
}

TEST_F(DatasetSearch, DataDirIsTheOnlyPlace) {
  write_idx_set(cwd_ / "data" / "mnist", Synthetic(20));
  fs::create_directories(dir_ / "empty");
  try {
    load_dataset(DatasetKind::kMnist, no_download(dir_ / "empty"));
    FAIL() << "--data must be the only place looked in";
  } catch (const DataError& e) {
    const std::string what = e.what();
    EXPECT_EQ(
        what.rfind(
            "MNIST not found in " + (dir_ / "empty").string() + " (--data): nothing usable\n", 0),
        0u)
        << what;
    EXPECT_EQ(what.find("./data/mnist  ["), std::string::npos) << what;
  }
}

TEST_F(DatasetSearch, BrokenFileIsAnErrorNotAFallback) {
  write_file(dir_ / "env" / "mnist.npz", random_bytes(100, 1));
  write_idx_set(cwd_ / "data" / "mnist", Synthetic(21));
  env_.set("MNIST_GPU_DATA", (dir_ / "env").string());
  try {
    load_dataset(DatasetKind::kMnist, no_download());
    FAIL() << "a broken npz must not be skipped";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find((dir_ / "env" / "mnist.npz").string() + ": not a zip"),
              std::string::npos)
        << e.what();
  }
}

TEST_F(DatasetSearch, NothingFoundListsEveryPlace) {
  env_.set("KERAS_HOME", (dir_ / "kh").string());
  // A partial set is reported, not silently ignored.
  write_file(home_ / ".keras" / "datasets" / "train-images-idx3-ubyte", {1});
  try {
    load_dataset(DatasetKind::kMnist, no_download());
    FAIL() << "must throw";
  } catch (const DataError& e) {
    const std::string what = e.what();
    for (const fs::path& p : search_paths(DatasetKind::kMnist, {})) {
      EXPECT_NE(what.find("\n  " + p.string() + "  ["), std::string::npos) << p << "\n" << what;
    }
    EXPECT_NE(what.find("./data/mnist  [./data/mnist]: does not exist"), std::string::npos) << what;
    EXPECT_NE(what.find("lacks train-labels-idx1-ubyte"), std::string::npos) << what;
    EXPECT_NE(what.find("tools/get_mnist.sh"), std::string::npos) << what;
    EXPECT_NE(what.find("allow mnist_gpu to download it"), std::string::npos) << what;
  }
}

TEST_F(DatasetSearch, FashionNothingFoundSaysHowToInstall) {
  fs::create_directories(dir_ / "empty");
  try {
    load_dataset(DatasetKind::kFashionMnist, {dir_ / "empty", true});  // no download for Fashion
    FAIL() << "must throw";
  } catch (const DataError& e) {
    const std::string what = e.what();
    EXPECT_EQ(what.rfind("Fashion-MNIST not found", 0), 0u) << what;
    EXPECT_NE(what.find("apt-get install dataset-fashion-mnist"), std::string::npos) << what;
  }
}

// ---- folders given explicitly ------------------------------------------------------------------

// Names and sizes of the files under dir, to show that a refused folder is left as it was.
std::map<std::string, uintmax_t> listing(const fs::path& dir) {
  std::map<std::string, uintmax_t> out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    out[fs::relative(e.path(), dir).string()] = e.is_regular_file() ? e.file_size() : 0;
  }
  return out;
}

int64_t line_count(const std::string& text) {
  return 1 + std::count(text.begin(), text.end(), '\n');
}

// A Fashion-MNIST-like folder lacking its test labels, given by --data or the variable, with the
// download allowed: refused in at most three lines naming the file, nothing fetched (the mirror
// is unreachable, and nothing may even be tried: no output), the folder unchanged.
TEST_F(DatasetSearch, IncompleteFolderGivenExplicitlyIsRefusedNotCompleted) {
  const fs::path given = dir_ / "given";
  write_idx_set(given, Synthetic(30));
  fs::remove(given / "t10k-labels-idx1-ubyte");
  write_idx_set(cwd_ / "data" / "mnist", Synthetic(31));  // never a fallback
  const auto before = listing(given);
  struct Case {
    DatasetKind kind;
    const char* var;  // nullptr: --data
  };
  for (const Case c :
       {Case{DatasetKind::kMnist, nullptr}, Case{DatasetKind::kMnist, "MNIST_GPU_DATA"},
        Case{DatasetKind::kFashionMnist, nullptr},
        Case{DatasetKind::kFashionMnist, "MNIST_GPU_FASHION_DATA"}}) {
    const std::string origin = c.var ? std::string("$") + c.var : "--data";
    SCOPED_TRACE(dataset_name(c.kind) + " " + origin);
    EnvGuard env;
    DataLocation where{std::nullopt, /*allow_download=*/true};
    if (c.var) {
      env.set(c.var, given.string());
    } else {
      where.dir = given;
    }
    ::testing::internal::CaptureStderr();
    try {
      load_dataset(c.kind, where);
      ::testing::internal::GetCapturedStderr();
      ADD_FAILURE() << "an incomplete folder was used";
    } catch (const DataError& e) {
      EXPECT_EQ(::testing::internal::GetCapturedStderr(), "");
      const std::string what = e.what();
      EXPECT_LE(line_count(what), 3) << what;
      EXPECT_NE(what.find(given.string() + " (" + origin +
                          ") is incomplete: it lacks t10k-labels-idx1-ubyte (raw or .gz)"),
                std::string::npos)
          << what;
      EXPECT_NE(what.find("never completed by a download"), std::string::npos) << what;
    }
    EXPECT_EQ(listing(given), before);
  }
}

TEST_F(DatasetSearch, MissingFolderGivenExplicitlyIsRefusedNotCreated) {
  write_idx_set(cwd_ / "data" / "mnist", Synthetic(32));  // never a fallback
  env_.set("MNIST_GPU_DATA", (dir_ / "nowhere").string());
  ::testing::internal::CaptureStderr();
  try {
    load_dataset(DatasetKind::kMnist, {std::nullopt, /*allow_download=*/true});
    ::testing::internal::GetCapturedStderr();
    FAIL() << "a missing $MNIST_GPU_DATA was not refused";
  } catch (const DataError& e) {
    EXPECT_EQ(::testing::internal::GetCapturedStderr(), "");
    const std::string what = e.what();
    EXPECT_LE(line_count(what), 3) << what;
    EXPECT_EQ(what.rfind("MNIST not found in " + (dir_ / "nowhere").string() +
                             " ($MNIST_GPU_DATA): does not exist\n",
                         0),
              0u)
        << what;
    EXPECT_NE(what.find("unset $MNIST_GPU_DATA"), std::string::npos) << what;
  }
  EXPECT_FALSE(fs::exists(dir_ / "nowhere"));
}

// ---- the published sets ------------------------------------------------------------------------

class PublishedSets : public Scratch {};

TEST_F(PublishedSets, RawIdxSha256IsTheHashOfEachRawFile) {
  const Synthetic a(40, 5, 3);
  write_idx_set(dir_, a, /*gz=*/false);
  const LabeledImages d = load_dataset(DatasetKind::kMnist, {dir_, false});
  const std::array<std::string, 4> got = raw_idx_sha256(d);
  const char* names[] = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"};
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ(got[i], sha256_file(dir_ / names[i])) << names[i];
  EXPECT_FALSE(d.verified);
  EXPECT_TRUE(d.warnings.empty()) << "custom sizes are not compared";
}

// 60,000 + 10,000 blank images with made-up labels: MNIST's sizes, none of its hashes.
TEST_F(PublishedSets, PublishedSizesWithOtherBytesWarnOrWithStrictFail) {
  Synthetic blank(0, 0, 0);
  blank.train = 60'000;
  blank.test = 10'000;
  blank.x_train.assign(60'000 * kPixels, 0);
  blank.x_test.assign(10'000 * kPixels, 0);
  for (int64_t i = 0; i < 60'000; ++i) blank.y_train.push_back(static_cast<uint8_t>(i % 10));
  for (int64_t i = 0; i < 10'000; ++i) blank.y_test.push_back(static_cast<uint8_t>(i % 10));
  write_idx_set(dir_, blank);
  for (const DatasetKind kind : {DatasetKind::kMnist, DatasetKind::kFashionMnist}) {
    SCOPED_TRACE(dataset_name(kind));
    const LabeledImages d = load_dataset(kind, {dir_, false});
    EXPECT_FALSE(d.verified);
    ASSERT_EQ(d.warnings.size(), 1u);
    const std::string& w = d.warnings[0];
    const std::string name = kind == DatasetKind::kMnist ? "MNIST" : "Fashion-MNIST";
    EXPECT_EQ(w.rfind(d.source + ": has " + name + "'s sizes but not its SHA-256 (", 0), 0u) << w;
    for (const char* f : {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                          "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"}) {
      EXPECT_NE(w.find(f), std::string::npos) << f << ": " << w;
    }
    EXPECT_NE(w.find("--strict-data refuses it"), std::string::npos) << w;
    EXPECT_EQ(w.find('\n'), std::string::npos) << w;
    try {
      load_dataset(kind, {dir_, false, /*strict=*/true});
      ADD_FAILURE() << "--strict-data accepted it";
    } catch (const DataError& e) {
      EXPECT_NE(std::string(e.what()).find("has " + name + "'s sizes but not its SHA-256"),
                std::string::npos)
          << e.what();
    }
  }
}

// The real files where this machine has them: verified as themselves, the one the other's, and
// a copy with one label changed named by the file that differs.
TEST_F(PublishedSets, RealSetsAreVerifiedAndADamagedCopyIsNamed) {
  const fs::path mnist = fs::path(MNIST_GPU_SOURCE_DIR) / "data" / "mnist";
  const fs::path fashion = "/usr/share/datasets/fashion-mnist";
  if (!fs::exists(mnist / "t10k-labels-idx1-ubyte")) {
    GTEST_SKIP() << mnist << " has no raw MNIST (run tools/get_mnist.sh)";
  }
  LabeledImages d = load_dataset(DatasetKind::kMnist, {mnist, false, true});
  EXPECT_TRUE(d.verified);
  EXPECT_TRUE(d.warnings.empty());

  for (const char* name :
       {"train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte"}) {
    fs::create_symlink(fs::absolute(mnist / name), dir_ / name);
  }
  std::ifstream in(mnist / "t10k-labels-idx1-ubyte", std::ios::binary);
  Bytes labels((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_EQ(labels.size(), 10'008u);
  labels.back() = static_cast<uint8_t>((labels.back() + 1) % 10);  // still a valid label
  write_file(dir_ / "t10k-labels-idx1-ubyte", labels);
  d = load_dataset(DatasetKind::kMnist, {dir_, false});
  EXPECT_FALSE(d.verified);
  ASSERT_EQ(d.warnings.size(), 1u);
  EXPECT_NE(
      d.warnings[0].find("has MNIST's sizes but not its SHA-256 (t10k-labels-idx1-ubyte differs)"),
      std::string::npos)
      << d.warnings[0];
  EXPECT_THROW(load_dataset(DatasetKind::kMnist, {dir_, false, true}), DataError);

  if (!fs::exists(fashion / "train-images-idx3-ubyte.gz")) {
    GTEST_SKIP() << fashion << " not installed (apt-get install dataset-fashion-mnist)";
  }
  d = load_dataset(DatasetKind::kFashionMnist, {fashion, false, true});
  EXPECT_TRUE(d.verified);
  d = load_dataset(DatasetKind::kMnist, {fashion, false});
  ASSERT_EQ(d.warnings.size(), 1u);
  EXPECT_NE(d.warnings[0].find("these are Fashion-MNIST's files (their SHA-256), not MNIST's: "
                               "pass --dataset fashion-mnist"),
            std::string::npos)
      << d.warnings[0];
}

// ---- the real files, where installed -----------------------------------------------------------

std::array<int64_t, 10> histogram(const Bytes& labels, size_t begin, size_t end) {
  std::array<int64_t, 10> h{};
  for (size_t i = begin; i < end; ++i) ++h[labels[i]];
  return h;
}

TEST_F(DatasetSearch, RealFashionMnistFromDebian) {
  const fs::path debian = "/usr/share/datasets/fashion-mnist";
  if (!fs::exists(debian / "train-images-idx3-ubyte.gz")) {
    GTEST_SKIP() << debian << " not installed (apt-get install dataset-fashion-mnist)";
  }
  const LabeledImages d = load_dataset(DatasetKind::kFashionMnist, no_download());
  EXPECT_EQ(d.source, debian.string() + " (IDX files)");
  ASSERT_EQ(d.count, 70'000);
  EXPECT_EQ(d.train_count, 60'000);
  ASSERT_EQ(d.images.size(), size_t{70'000} * kPixels);
  ASSERT_EQ(d.labels.size(), size_t{70'000});
  std::array<int64_t, 10> per_class{};
  per_class.fill(7000);
  EXPECT_EQ(histogram(d.labels, 0, d.labels.size()), per_class);
  per_class.fill(6000);
  EXPECT_EQ(histogram(d.labels, 0, 60'000), per_class);
}

TEST(DatasetReal, MnistFromTheSourceTree) {
  const fs::path dir = fs::path(MNIST_GPU_SOURCE_DIR) / "data" / "mnist";
  if (!fs::exists(dir / "train-images-idx3-ubyte") &&
      !fs::exists(dir / "train-images-idx3-ubyte.gz")) {
    GTEST_SKIP() << dir << " has no MNIST (run tools/get_mnist.sh)";
  }
  const LabeledImages d = load_dataset(DatasetKind::kMnist, {dir, false});
  ASSERT_EQ(d.count, 70'000);
  EXPECT_EQ(d.train_count, 60'000);
  ASSERT_EQ(d.labels.size(), size_t{70'000});
  // docs/data.md
  const std::array<int64_t, 10> train = {5923, 6742, 5958, 6131, 5842,
                                         5421, 5918, 6265, 5851, 5949};
  const std::array<int64_t, 10> test = {980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009};
  EXPECT_EQ(histogram(d.labels, 0, 60'000), train);
  EXPECT_EQ(histogram(d.labels, 60'000, 70'000), test);
}

}  // namespace
}  // namespace mg
