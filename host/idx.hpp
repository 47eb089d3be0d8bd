// MNIST in the IDX format (http://yann.lecun.com/exdb/mnist/): a big-endian header, then u8 data.
// Files may be raw or gzip-compressed; gzip is recognised by its 1f 8b magic, never by the name.
// Every reader validates before it allocates, so a corrupt or hostile file costs an error message,
// not a crash or a huge allocation.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace mg {

// Thrown for any bad data file; what() is one line "<path>: <problem>".
class DataError : public std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct ImageSet {
  int64_t count = 0;
  int rows = 0, cols = 0;
  std::vector<uint8_t> pixels;  // count * rows * cols bytes, image after image, row-major
};

struct LabelSet {
  int64_t count = 0;
  std::vector<uint8_t> labels;  // each 0..9
};

// Magic 0x00000803; then count, rows, cols (u32 big-endian); then the pixels.
ImageSet read_idx_images(const std::filesystem::path& path);
// Magic 0x00000801; then count (u32 big-endian); then the labels, each 0..9.
LabelSet read_idx_labels(const std::filesystem::path& path);
// The same from the bytes of a file in memory (raw or gzip); `name` stands for the path in errors.
ImageSet read_idx_images(std::span<const uint8_t> bytes, const std::string& name);
LabelSet read_idx_labels(std::span<const uint8_t> bytes, const std::string& name);

// MNIST's 60k train + 10k test combined, train first (70,000 images of 28x28), as the model uses
// it.
struct MnistData {
  int64_t count = 0;
  std::vector<uint8_t> images;  // count * 28 * 28 bytes
  std::vector<uint8_t> labels;  // count bytes
  int64_t train_count = 0;      // images [0, train_count) came from the train files
};

// Looks in dir for train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and
// t10k-labels-idx1-ubyte, each either raw or with a .gz suffix (raw preferred when both exist).
// A missing file is a DataError naming the paths looked for and saying to run tools/get_mnist.sh.
MnistData load_mnist(const std::filesystem::path& dir);

}  // namespace mg
