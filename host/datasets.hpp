// The data sets mnist_gpu trains on (MNIST and Fashion-MNIST), where it looks for them and the
// formats it reads: IDX files (raw or .gz, host/idx.hpp), Keras' mnist.npz, torchvision's
// <root>/MNIST/raw/. See docs/data.md ("Where the data comes from").
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "host/idx.hpp"

namespace mg {

enum class DatasetKind { kMnist, kFashionMnist };

// "mnist" or "fashion-mnist"; anything else is std::invalid_argument listing the choices.
DatasetKind parse_dataset_kind(std::string_view name);
// The name parse_dataset_kind accepts: "mnist", "fashion-mnist".
std::string dataset_name(DatasetKind kind);
// The ten class names, by label: "0".."9" for MNIST; "T-shirt/top" .. "Ankle boot" for Fashion.
const std::vector<std::string>& class_names(DatasetKind kind);

// A whole data set, train images first, then test (as load_mnist), 28x28 u8 pixels.
struct LabeledImages {
  DatasetKind kind = DatasetKind::kMnist;
  int64_t count = 0;
  int64_t train_count = 0;  // images [0, train_count) are the train set
  int rows = 28, cols = 28;
  std::vector<uint8_t> images;  // count * rows * cols bytes, image after image, row-major
  std::vector<uint8_t> labels;  // count bytes, each 0..9
  std::string source;           // where it came from: "<path> (<format>)"
  // True when the 70,000 images and labels are byte for byte the published set of `kind`
  // (the SHA-256 of each of the four files, compared as raw IDX bytes).
  bool verified = false;
  // One line each, for stderr: a set with the sizes of MNIST or Fashion-MNIST but not their
  // SHA-256 (see load_dataset).
  std::vector<std::string> warnings;
};

struct DataLocation {
  std::optional<std::filesystem::path> dir;  // --data: when set, the only place looked in
  bool allow_download = true;                // MNIST only: fetch it when found nowhere
  bool strict = false;  // --strict-data: a known set's sizes without its SHA-256 is an error
};

// The directories looked in, in order. A folder given explicitly (where.dir, else
// $MNIST_GPU_DATA for MNIST, $MNIST_GPU_FASHION_DATA for Fashion-MNIST) is the only one.
// Otherwise:
//   MNIST:   ./data/mnist, $KERAS_HOME/datasets, ~/.keras/datasets
//   Fashion: ./data/fashion-mnist, $KERAS_HOME/datasets, ~/.keras/datasets,
//            /usr/share/datasets/fashion-mnist (Debian dataset-fashion-mnist)
// Unset variables are left out. Within each directory D the first layout present wins:
//   MNIST:   the four IDX files in D; D/mnist.npz (Keras); D/MNIST/raw/ (torchvision)
//   Fashion: the four IDX files in D; D/fashion-mnist/ (Keras); D/FashionMNIST/raw/
// (Fashion-MNIST has its own variable: its IDX files look exactly like MNIST's, so a directory
// meant for one must never be read as the other.)
std::vector<std::filesystem::path> search_paths(DatasetKind kind, const DataLocation& where);

// Where download_mnist puts MNIST when load_dataset finds it nowhere: ./data/mnist, the default
// location, and never a folder given explicitly.
std::filesystem::path download_dir();

// Loads the first data set found along search_paths. A file that is present but broken is a
// DataError at once (no silent fallback to another copy). A folder given explicitly is used as
// it is: when it holds no complete set, a DataError of at most three lines names what is missing,
// and nothing is downloaded into it. When the search finds nothing: for MNIST with
// allow_download, downloads it (host/download.hpp) into download_dir() and loads it only when
// all four files are MNIST's (SHA-256); otherwise a DataError listing every place looked in and
// how to get the files.
// A set with the sizes of MNIST or Fashion-MNIST (60,000 + 10,000 images of 28x28) is compared
// with the published files of `kind`: a mismatch adds a line to warnings, or is a DataError with
// where.strict. Sets of other sizes (custom IDX data) are used as they are.
LabeledImages load_dataset(DatasetKind kind, const DataLocation& where);

// The SHA-256 of each of the four raw IDX files (train images, train labels, test images, test
// labels; uncompressed) of the published set, lower-case hex.
const std::array<std::string, 4>& published_sha256(DatasetKind kind);
// The same four hashes of d, each as the raw IDX file its arrays come from (the header is
// rebuilt: load_mnist accepts exactly one header for a given count). d must hold the train
// images first, 28x28.
std::array<std::string, 4> raw_idx_sha256(const LabeledImages& d);

// Reads a Keras-style npz (a zip of x_train.npy, y_train.npy, x_test.npy, y_test.npy; uint8,
// images N x 28 x 28, labels N, C order). Errors are DataError "<file>: <member>: <problem>".
LabeledImages read_mnist_npz(const std::filesystem::path& path,
                             DatasetKind kind = DatasetKind::kMnist);
// The same from the bytes of an npz in memory; `name` stands for the path in errors.
LabeledImages read_mnist_npz(std::span<const uint8_t> bytes, const std::string& name,
                             DatasetKind kind = DatasetKind::kMnist);

}  // namespace mg
