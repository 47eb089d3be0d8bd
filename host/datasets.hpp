// The data sets mnist_gpu trains on (MNIST and Fashion-MNIST), where it looks for them and the
// formats it reads: IDX files (raw or .gz, host/idx.hpp), Keras' mnist.npz, torchvision's
// <root>/MNIST/raw/. See docs/data.md ("Where the data comes from").
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
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
};

struct DataLocation {
  std::optional<std::filesystem::path> dir;  // --data: when set, the only place looked in
  bool allow_download = true;                // MNIST only: fetch it when found nowhere
};

// The directories looked in, in order. With where.dir, only that one. Otherwise:
//   MNIST:   $MNIST_GPU_DATA, ./data/mnist, $KERAS_HOME/datasets, ~/.keras/datasets
//   Fashion: $MNIST_GPU_FASHION_DATA, ./data/fashion-mnist, $KERAS_HOME/datasets,
//            ~/.keras/datasets, /usr/share/datasets/fashion-mnist (Debian dataset-fashion-mnist)
// Unset variables are left out. Within each directory D the first layout present wins:
//   MNIST:   the four IDX files in D; D/mnist.npz (Keras); D/MNIST/raw/ (torchvision)
//   Fashion: the four IDX files in D; D/fashion-mnist/ (Keras); D/FashionMNIST/raw/
// (Fashion-MNIST has its own variable: its IDX files look exactly like MNIST's, so a directory
// meant for one must never be read as the other.)
std::vector<std::filesystem::path> search_paths(DatasetKind kind, const DataLocation& where);

// Where download_mnist puts MNIST when load_dataset finds it nowhere: where.dir, else
// $MNIST_GPU_DATA, else ./data/mnist.
std::filesystem::path download_dir(const DataLocation& where);

// Loads the first data set found along search_paths. A file that is present but broken is a
// DataError at once (no silent fallback to another copy). When none is found: for MNIST with
// allow_download, downloads it (host/download.hpp) into download_dir(where) and loads that;
// otherwise a DataError listing every place looked in and how to get the files.
LabeledImages load_dataset(DatasetKind kind, const DataLocation& where);

// Reads a Keras-style npz (a zip of x_train.npy, y_train.npy, x_test.npy, y_test.npy; uint8,
// images N x 28 x 28, labels N, C order). Errors are DataError "<file>: <member>: <problem>".
LabeledImages read_mnist_npz(const std::filesystem::path& path,
                             DatasetKind kind = DatasetKind::kMnist);

}  // namespace mg
