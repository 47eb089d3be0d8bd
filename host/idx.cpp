#include "host/idx.hpp"

#include <zlib.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <system_error>
#include <utility>

namespace mg {
namespace {

namespace fs = std::filesystem;

constexpr uint32_t kImageMagic = 0x00000803;  // u8 data, 3 dimensions
constexpr uint32_t kLabelMagic = 0x00000801;  // u8 data, 1 dimension

// Far above any real data set (MNIST has 60,000 images of 28x28), yet low enough that a lying
// header is caught before it can ask for gigabytes.
constexpr int64_t kMaxCount = 10'000'000;
constexpr int64_t kMaxSide = 4096;
constexpr int64_t kMaxPayloadBytes = int64_t{1} << 30;

// gzread takes an unsigned and returns an int, so reads go in pieces well below INT_MAX; the
// payload also grows by this much at a time, so memory follows the data actually present.
constexpr int64_t kChunk = int64_t{1} << 20;

constexpr int kMnistSide = 28;
constexpr int kMaxLabel = 9;

[[noreturn]] void fail(const fs::path& path, const std::string& problem) {
  throw DataError(path.string() + ": " + problem);
}

std::string hex32(uint32_t v) {
  std::array<char, 16> buf{};
  std::snprintf(buf.data(), buf.size(), "0x%08x", v);
  return buf.data();
}

std::string describe_magic(uint32_t magic) {
  if (magic == kImageMagic) return hex32(magic) + " (IDX images)";
  if (magic == kLabelMagic) return hex32(magic) + " (IDX labels)";
  return hex32(magic);
}

uint32_t load_be32(const uint8_t* p) {
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | uint32_t{p[3]};
}

// The bytes of one IDX file, raw or gzip, read front to back: from a file (IdxFileStream) or from
// memory (IdxMemoryStream). Both decide gzip by the 1f 8b magic, and both follow gzread: gzip
// members one after the other are read as one stream, and bytes after the last member that do not
// start another are ignored.
class IdxStream {
 public:
  virtual ~IdxStream() = default;
  const std::string& name() const { return name_; }
  bool is_gzip() const { return gzip_; }
  int64_t file_size() const { return file_size_; }
  // Reads up to n bytes; fewer only at the end of the data. A zlib or I/O error throws.
  virtual int64_t read(uint8_t* dst, int64_t n) = 0;

 protected:
  std::string name_;
  int64_t file_size_ = 0;
  bool gzip_ = false;
};

[[noreturn]] void fail(const IdxStream& in, const std::string& problem) {
  throw DataError(in.name() + ": " + problem);
}

class IdxFileStream final : public IdxStream {
 public:
  explicit IdxFileStream(const fs::path& path) {
    name_ = path.string();
    std::error_code ec;
    const fs::file_status status = fs::status(path, ec);
    if (status.type() == fs::file_type::not_found) fail(path, "file not found");
    if (ec) fail(path, "cannot access: " + ec.message());
    if (!fs::is_regular_file(status)) fail(path, "not a regular file");
    const uintmax_t size = fs::file_size(path, ec);
    if (ec) fail(path, "cannot read the file size: " + ec.message());
    if (size == 0) fail(path, "empty file");
    file_size_ = static_cast<int64_t>(size);

    errno = 0;
    file_.reset(gzopen(path.c_str(), "rb"));
    if (!file_) {
      fail(path, std::string("cannot open: ") + (errno ? std::strerror(errno) : "out of memory"));
    }
    // Fewer, larger reads for the 47 MB train images; must precede the first read.
    gzbuffer(file_.get(), 1 << 18);
    // gzdirect looks at the first bytes: it reports a raw file unless they are gzip's 1f 8b.
    gzip_ = gzdirect(file_.get()) == 0;
    check_zlib();
  }

  int64_t read(uint8_t* dst, int64_t n) override {
    int64_t got = 0;
    while (got < n) {
      const auto want = static_cast<unsigned>(std::min(n - got, kChunk));
      const int r = gzread(file_.get(), dst + got, want);
      check_zlib();
      if (r <= 0) break;
      got += r;
    }
    return got;
  }

 private:
  struct GzCloser {
    void operator()(gzFile f) const { gzclose(f); }
  };

  // gzread can hand back good bytes and record an error in the same call (a stream cut short,
  // say), so the error state is checked after every call, not only on a -1.
  void check_zlib() {
    int err = Z_OK;
    const char* message = gzerror(file_.get(), &err);
    if (err == Z_OK) return;
    if (err == Z_ERRNO) fail(*this, std::string("read error: ") + std::strerror(errno));
    if (err == Z_BUF_ERROR) fail(*this, "corrupt gzip stream: truncated (unexpected end of file)");
    fail(*this, std::string("corrupt gzip stream: ") + (message ? message : "zlib error"));
  }

  std::unique_ptr<gzFile_s, GzCloser> file_;
};

bool gzip_magic(std::span<const uint8_t> b) { return b.size() >= 2 && b[0] == 0x1f && b[1] == 0x8b; }

class IdxMemoryStream final : public IdxStream {
 public:
  IdxMemoryStream(std::span<const uint8_t> bytes, const std::string& name) : bytes_(bytes) {
    name_ = name;
    if (bytes.empty()) fail(*this, "empty file");
    file_size_ = static_cast<int64_t>(bytes.size());
    gzip_ = gzip_magic(bytes);
    if (gzip_) {
      if (inflateInit2(&z_, 16 + MAX_WBITS) != Z_OK) fail(*this, "zlib: out of memory");
      z_open_ = true;
      z_.next_in = const_cast<Bytef*>(bytes_.data());
      z_.avail_in = static_cast<uInt>(std::min<size_t>(bytes_.size(), kChunk));
    }
  }
  ~IdxMemoryStream() override {
    if (z_open_) inflateEnd(&z_);
  }
  IdxMemoryStream(const IdxMemoryStream&) = delete;
  IdxMemoryStream& operator=(const IdxMemoryStream&) = delete;

  int64_t read(uint8_t* dst, int64_t n) override {
    if (!gzip_) {
      const int64_t k = std::min(n, file_size_ - pos_);
      std::copy_n(bytes_.data() + pos_, k, dst);
      pos_ += k;
      return k;
    }
    int64_t got = 0;
    while (got < n && !done_) {
      refill();
      z_.next_out = dst + got;
      z_.avail_out = static_cast<uInt>(std::min(n - got, kChunk));
      const uInt before = z_.avail_out;
      const int r = inflate(&z_, Z_NO_FLUSH);
      got += before - z_.avail_out;
      if (r == Z_STREAM_END) {
        // As gzread: another member may follow; anything else after a member is ignored.
        const size_t at = consumed();
        if (gzip_magic(bytes_.subspan(at))) {
          inflateReset(&z_);
        } else {
          done_ = true;
        }
      } else if (r == Z_BUF_ERROR && z_.avail_in == 0 && consumed() == bytes_.size()) {
        fail(*this, "corrupt gzip stream: truncated (unexpected end of file)");
      } else if (r != Z_OK && r != Z_BUF_ERROR) {
        fail(*this, std::string("corrupt gzip stream: ") + (z_.msg ? z_.msg : "zlib error"));
      }
    }
    return got;
  }

 private:
  size_t consumed() const { return static_cast<size_t>(z_.next_in - bytes_.data()); }
  // avail_in is a uInt: hand the input over in pieces.
  void refill() {
    if (z_.avail_in == 0) {
      z_.avail_in = static_cast<uInt>(std::min<size_t>(bytes_.size() - consumed(), kChunk));
    }
  }

  std::span<const uint8_t> bytes_;
  int64_t pos_ = 0;
  z_stream z_{};
  bool z_open_ = false;
  bool done_ = false;
};

// Reads the magic and `dims` header fields; returns the fields.
template <size_t dims>
std::array<uint32_t, dims> read_header(IdxStream& in, uint32_t magic) {
  constexpr int64_t kBytes = 4 * (1 + int64_t{dims});
  std::array<uint8_t, kBytes> buf{};
  const int64_t got = in.read(buf.data(), kBytes);
  // A wrong magic says more than a short header (a label file given for images, say).
  if (got >= 4 && load_be32(buf.data()) != magic) {
    fail(in, "bad magic " + describe_magic(load_be32(buf.data())) + ", expected " +
                        describe_magic(magic));
  }
  if (got < kBytes) {
    fail(in,
         "truncated header: " + std::to_string(got) + " of " + std::to_string(kBytes) + " bytes");
  }
  std::array<uint32_t, dims> fields{};
  for (size_t i = 0; i < dims; ++i) fields[i] = load_be32(buf.data() + 4 * (i + 1));
  return fields;
}

// Reads exactly `size` data bytes after a header of `header_bytes`, and nothing more may follow.
std::vector<uint8_t> read_payload(IdxStream& in, int64_t header_bytes, int64_t size) {
  const std::string expected = std::to_string(size);
  // A raw file's size settles both length checks before anything is read or allocated.
  if (!in.is_gzip()) {
    const int64_t actual = in.file_size() - header_bytes;
    if (actual < size) {
      fail(in, "truncated data: expected " + expected + " bytes after the header, found " +
                          std::to_string(actual));
    }
    if (actual > size) {
      fail(in, "trailing garbage: " + std::to_string(actual - size) + " bytes after the " +
                          expected + " data bytes the header declares");
    }
  }
  // Grow with the bytes that actually arrive, never to the header's claim in one go: a small
  // .gz that lies about its count costs its own size, and a gzip bomb stops at `size` below.
  std::vector<uint8_t> data;
  if (!in.is_gzip()) data.reserve(static_cast<size_t>(size));
  int64_t got = 0;
  while (got < size) {
    const int64_t step = std::min(size - got, kChunk);
    data.resize(static_cast<size_t>(got + step));
    const int64_t r = in.read(data.data() + got, step);
    got += r;
    if (r < step) {
      fail(in, "truncated data: expected " + expected + " bytes after the header, found " +
                          std::to_string(got));
    }
  }
  uint8_t extra = 0;
  if (in.read(&extra, 1) != 0) {
    fail(in, "trailing garbage after the " + expected + " data bytes the header declares");
  }
  return data;
}

std::string mnist_missing_message(const fs::path& raw, const fs::path& gz, const fs::path& dir) {
  return raw.string() + ": file not found (nor " + gz.string() + "); run tools/get_mnist.sh " +
         dir.string() + " to download MNIST";
}

// The raw file when present, else the .gz one.
fs::path find_mnist_file(const fs::path& dir, const std::string& name) {
  const fs::path raw = dir / name;
  const fs::path gz = dir / (name + ".gz");
  std::error_code ec;
  if (fs::exists(raw, ec)) return raw;
  if (fs::exists(gz, ec)) return gz;
  throw DataError(mnist_missing_message(raw, gz, dir));
}

struct MnistPaths {
  fs::path images, labels;
};

MnistPaths find_split(const fs::path& dir, const std::string& prefix) {
  return {find_mnist_file(dir, prefix + "-images-idx3-ubyte"),
          find_mnist_file(dir, prefix + "-labels-idx1-ubyte")};
}

struct Split {
  ImageSet images;
  LabelSet labels;
};

Split load_split(const MnistPaths& paths) {
  Split split{read_idx_images(paths.images), {}};
  const ImageSet& images = split.images;
  if (images.rows != kMnistSide || images.cols != kMnistSide) {
    fail(paths.images, "images are " + std::to_string(images.rows) + "x" +
                           std::to_string(images.cols) + ", MNIST needs 28x28");
  }
  split.labels = read_idx_labels(paths.labels);
  if (split.labels.count != images.count) {
    fail(paths.labels, "count mismatch: " + std::to_string(split.labels.count) + " labels but " +
                           paths.images.string() + " has " + std::to_string(images.count) +
                           " images");
  }
  return split;
}

ImageSet read_images(IdxStream& in) {
  const auto [count, rows, cols] = read_header<3>(in, kImageMagic);
  if (count == 0 || count > kMaxCount) {
    fail(in, "implausible header: " + std::to_string(count) + " images (expected 1.." +
                   std::to_string(kMaxCount) + ")");
  }
  if (rows == 0 || rows > kMaxSide || cols == 0 || cols > kMaxSide) {
    fail(in, "implausible header: images of " + std::to_string(rows) + "x" +
                   std::to_string(cols) + " (each side must be 1.." + std::to_string(kMaxSide) +
                   ")");
  }
  const int64_t size = int64_t{count} * rows * cols;
  if (size > kMaxPayloadBytes) {
    fail(in, "implausible header: " + std::to_string(count) + " images of " +
                   std::to_string(rows) + "x" + std::to_string(cols) + " are " +
                   std::to_string(size) + " bytes, over the limit of " +
                   std::to_string(kMaxPayloadBytes));
  }
  ImageSet set;
  set.pixels = read_payload(in, 16, size);
  set.count = count;
  set.rows = static_cast<int>(rows);
  set.cols = static_cast<int>(cols);
  return set;
}

LabelSet read_labels(IdxStream& in) {
  const auto [count] = read_header<1>(in, kLabelMagic);
  if (count == 0 || count > kMaxCount) {
    fail(in, "implausible header: " + std::to_string(count) + " labels (expected 1.." +
                   std::to_string(kMaxCount) + ")");
  }
  LabelSet set;
  set.labels = read_payload(in, 8, count);
  set.count = count;
  const auto bad = std::find_if(set.labels.begin(), set.labels.end(),
                                [](uint8_t label) { return label > kMaxLabel; });
  if (bad != set.labels.end()) {
    fail(in, "label at index " + std::to_string(bad - set.labels.begin()) + " is " +
                   std::to_string(*bad) + ", above " + std::to_string(kMaxLabel));
  }
  return set;
}

}  // namespace

ImageSet read_idx_images(const fs::path& path) {
  IdxFileStream in(path);
  return read_images(in);
}

LabelSet read_idx_labels(const fs::path& path) {
  IdxFileStream in(path);
  return read_labels(in);
}

ImageSet read_idx_images(std::span<const uint8_t> bytes, const std::string& name) {
  IdxMemoryStream in(bytes, name);
  return read_images(in);
}

LabelSet read_idx_labels(std::span<const uint8_t> bytes, const std::string& name) {
  IdxMemoryStream in(bytes, name);
  return read_labels(in);
}

MnistData load_mnist(const fs::path& dir) {
  // Find all four before reading any, so a missing file is reported before a long decompress.
  const MnistPaths train_paths = find_split(dir, "train");
  const MnistPaths test_paths = find_split(dir, "t10k");

  Split train = load_split(train_paths);
  Split test = load_split(test_paths);

  MnistData data;
  data.train_count = train.images.count;
  data.count = train.images.count + test.images.count;
  data.images = std::move(train.images.pixels);
  data.images.insert(data.images.end(), test.images.pixels.begin(), test.images.pixels.end());
  data.labels = std::move(train.labels.labels);
  data.labels.insert(data.labels.end(), test.labels.labels.begin(), test.labels.labels.end());
  return data;
}

}  // namespace mg
