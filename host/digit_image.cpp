#include "host/digit_image.hpp"

#include <stb_image.h>
#include <stb_image_resize.h>

#include <algorithm>
#include <cctype>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

namespace mg {
namespace {

constexpr int kMaxSide = 16384;

// The background level: the median of the border pixels (a digit rarely touches the border).
int border_median(const uint8_t* p, int w, int h) {
  std::vector<uint8_t> border;
  for (int x = 0; x < w; ++x) {
    border.push_back(p[x]);
    border.push_back(p[(h - 1) * w + x]);
  }
  for (int y = 0; y < h; ++y) {
    border.push_back(p[y * w]);
    border.push_back(p[y * w + w - 1]);
  }
  std::nth_element(border.begin(), border.begin() + static_cast<long>(border.size() / 2), border.end());
  return border[border.size() / 2];
}

// The formats an upload may be in, by their first bytes.
bool known_signature(std::span<const uint8_t> b) {
  auto starts = [&](std::initializer_list<uint8_t> sig) {
    return b.size() >= sig.size() && std::equal(sig.begin(), sig.end(), b.begin());
  };
  return starts({0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'}) || starts({0xff, 0xd8, 0xff}) ||
         starts({'P', '5'}) || starts({'P', '6'}) || starts({'B', 'M'});
}

bool is_jpeg(std::span<const uint8_t> b) { return b.size() >= 2 && b[0] == 0xff && b[1] == 0xd8; }

// Debian's stb_image (2.27) fills a Huffman table's code-length list without checking that the
// DHT segment's counts add up to at most 256: a table claiming more writes past the list (found
// by tests/fuzz/fuzz_image.cpp). So every DHT table a decoder could reach is checked first:
// the marker segments are walked by their lengths, and entropy-coded data is scanned for the next
// marker, as stb does (its scans and junk handling reach no DHT this walk misses). Returns the
// problem, or an empty string.
std::string jpeg_huffman_problem(std::span<const uint8_t> b) {
  size_t p = 2;  // after SOI
  while (p + 1 < b.size()) {
    if (b[p] != 0xff) {  // entropy-coded data or junk between segments
      ++p;
      continue;
    }
    const uint8_t m = b[p + 1];
    if (m == 0xff) {  // fill byte
      ++p;
      continue;
    }
    if (m == 0x00 || m == 0x01 || m == 0xd8 || (m >= 0xd0 && m <= 0xd7)) {  // no length
      p += 2;
      continue;
    }
    if (m == 0xd9) return {};  // EOI: stb reads no further
    if (p + 3 >= b.size()) return {};
    const size_t len = size_t{b[p + 2]} << 8 | b[p + 3];
    if (m == 0xc4) {  // DHT: tables of 1 + 16 count bytes + their values, until len - 2 is used
      size_t used = 0;
      size_t q = p + 4;
      // Past the end of the data stb reads zeros, so a table cut short still counts.
      while (len >= 2 && used < len - 2 && q < b.size()) {
        int codes = 0;
        for (size_t i = q + 1; i <= q + 16 && i < b.size(); ++i) codes += b[i];
        if (codes > 256) {
          return "a Huffman table (DHT) of " + std::to_string(codes) + " codes, at most 256";
        }
        used += 17 + static_cast<size_t>(codes);
        q += 17 + static_cast<size_t>(codes);
      }
    }
    p += 2 + len;
  }
  return {};
}

bool is_pnm(std::span<const uint8_t> b) {
  return b.size() >= 2 && b[0] == 'P' && (b[1] == '5' || b[1] == '6');
}

// stb_image reads a PGM/PPM header's width, height and maximum into an int without an overflow
// check, and its 16-bit samples (a maximum over 255) overrun its buffer (both found by
// tests/fuzz/fuzz_image.cpp). The three numbers are read here first the way stb reads them
// (whitespace and # comments between them): any over INT_MAX, or a maximum over 255, is refused.
// So is a file shorter than its samples (a few bytes claiming a huge picture: stb would allocate
// it all and fill it with zeros). Returns the problem, or an empty string.
std::string pnm_problem(std::span<const uint8_t> b) {
  size_t p = 2;
  int64_t fields[3] = {0, 0, 0};
  for (int64_t& value : fields) {
    while (p < b.size() && (std::isspace(b[p]) || b[p] == '#')) {
      if (b[p] == '#') {
        while (p < b.size() && b[p] != '\n' && b[p] != '\r') ++p;
      } else {
        ++p;
      }
    }
    for (; p < b.size() && b[p] >= '0' && b[p] <= '9'; ++p) {
      value = value * 10 + (b[p] - '0');
      if (value > INT32_MAX) return "a size over 2147483647";
    }
  }
  if (fields[2] > 255) {
    return "16-bit samples (maximum " + std::to_string(fields[2]) + "), 8-bit expected";
  }
  if (fields[0] > kMaxSide || fields[1] > kMaxSide) return {};  // refused by the size check
  // The samples start after the one whitespace byte that ends the header, as stb reads them.
  const int64_t header = static_cast<int64_t>(p) + 1;
  const int64_t samples = fields[0] * fields[1] * (b[1] == '6' ? 3 : 1);
  if (header + samples > static_cast<int64_t>(b.size())) {
    return std::to_string(fields[0]) + "x" + std::to_string(fields[1]) + " needs " +
           std::to_string(samples) + " bytes of samples after its " + std::to_string(header) +
           "-byte header, the file has " + std::to_string(b.size()) + " bytes (truncated?)";
  }
  return {};
}

bool is_bmp(std::span<const uint8_t> b) { return b.size() >= 2 && b[0] == 'B' && b[1] == 'M'; }

// A BMP stb_image decodes is uncompressed (it has no RLE), so a file shorter than its header's
// rows cannot be whole; stb would still allocate the full picture (a 54-byte file can claim
// 13824 x 10240, found by tests/fuzz/fuzz_image.cpp) and fill it with zeros. Such a file is
// refused before stb sees it. Returns the problem, or an empty string.
std::string bmp_problem(std::span<const uint8_t> b) {
  auto u16 = [&](size_t at) { return static_cast<uint32_t>(b[at] | (b[at + 1] << 8)); };
  auto u32 = [&](size_t at) { return u16(at) | (u16(at + 2) << 16); };
  if (b.size() < 26) return {};  // stb refuses it itself
  const uint32_t info_size = u32(14);
  int64_t w = 0, h = 0, bpp = 0;
  if (info_size == 12) {  // OS/2 BITMAPCOREHEADER: 16-bit sizes
    w = u16(18), h = u16(20), bpp = u16(24);
  } else {
    if (b.size() < 30) return {};
    w = static_cast<int32_t>(u32(18));
    h = static_cast<int32_t>(u32(22));
    bpp = u16(28);
  }
  if (w <= 0 || h == 0 || bpp <= 0) return {};  // stb refuses these itself
  const int64_t rows = std::abs(h);  // a negative height is a top-down picture
  if (w > kMaxSide || rows > kMaxSide) return {};  // refused by the size check
  const int64_t stride = (w * bpp + 31) / 32 * 4;
  const int64_t header = 14 + info_size;  // the file header and the info header, at the least
  if (header + stride * rows > static_cast<int64_t>(b.size())) {
    return std::to_string(w) + "x" + std::to_string(rows) + " at " + std::to_string(bpp) +
           " bits needs " + std::to_string(stride * rows) + " bytes of pixels after its " +
           std::to_string(header) + "-byte headers, the file has " + std::to_string(b.size()) +
           " bytes (truncated?)";
  }
  return {};
}

void check_header(std::span<const uint8_t> b, const std::string& what) {
  if (is_pnm(b)) {
    const std::string problem = pnm_problem(b);
    if (!problem.empty()) throw ImageError(what + ": unreadable PGM/PPM header: " + problem);
  }
  if (is_bmp(b)) {
    const std::string problem = bmp_problem(b);
    if (!problem.empty()) throw ImageError(what + ": unreadable BMP: " + problem);
  }
  if (!is_jpeg(b)) return;
  const std::string problem = jpeg_huffman_problem(b);
  if (!problem.empty()) throw ImageError(what + ": corrupt JPEG: " + problem);
}

}  // namespace

MnistImage mnist_from_gray(const uint8_t* pixels, int w, int h, const std::string& what) {
  if (w < 1 || h < 1) throw ImageError(what + ": empty image");
  // Ink is what differs from the background, brightest = 255 (white on black, as MNIST).
  const int bg = border_median(pixels, w, h);
  const bool invert = bg > 127;
  std::vector<int> ink(static_cast<size_t>(w) * h);
  int peak = 0;
  for (size_t i = 0; i < ink.size(); ++i) {
    const int v = invert ? bg - pixels[i] : pixels[i] - bg;
    ink[i] = std::max(v, 0);
    peak = std::max(peak, ink[i]);
  }
  if (peak < 32) throw ImageError(what + ": no digit found (the image is nearly uniform)");
  // Bounding box of clear ink (a quarter of the peak), so faint noise does not widen it.
  int x0 = w, y0 = h, x1 = -1, y1 = -1;
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      if (ink[static_cast<size_t>(y) * w + x] * 4 >= peak) {
        x0 = std::min(x0, x), x1 = std::max(x1, x);
        y0 = std::min(y0, y), y1 = std::max(y1, y);
      }
  const int cw = x1 - x0 + 1, ch = y1 - y0 + 1;
  std::vector<uint8_t> crop(static_cast<size_t>(cw) * ch);
  for (int y = 0; y < ch; ++y)
    for (int x = 0; x < cw; ++x)
      crop[static_cast<size_t>(y) * cw + x] = static_cast<uint8_t>(
          std::min(255, ink[static_cast<size_t>(y + y0) * w + x + x0] * 255 / peak));

  // Longest side to 20 pixels, aspect kept, anti-aliased.
  const double scale = 20.0 / std::max(cw, ch);
  const int rw = std::max(1, static_cast<int>(std::lround(cw * scale)));
  const int rh = std::max(1, static_cast<int>(std::lround(ch * scale)));
  std::vector<uint8_t> small(static_cast<size_t>(rw) * rh);
  if (!stbir_resize_uint8(crop.data(), cw, ch, 0, small.data(), rw, rh, 0, 1)) {
    throw ImageError(what + ": resizing failed");
  }

  // Centre of mass to the centre of the 28x28 field, as MNIST was made.
  double mass = 0, mx = 0, my = 0;
  for (int y = 0; y < rh; ++y)
    for (int x = 0; x < rw; ++x) {
      const double v = small[static_cast<size_t>(y) * rw + x];
      mass += v, mx += v * x, my += v * y;
    }
  const double cx = mass > 0 ? mx / mass : (rw - 1) / 2.0;
  const double cy = mass > 0 ? my / mass : (rh - 1) / 2.0;
  const int ox = std::clamp(static_cast<int>(std::lround(13.5 - cx)), 0, 28 - rw);
  const int oy = std::clamp(static_cast<int>(std::lround(13.5 - cy)), 0, 28 - rh);
  MnistImage out{};
  for (int y = 0; y < rh; ++y)
    for (int x = 0; x < rw; ++x) out[static_cast<size_t>((y + oy) * 28 + x + ox)] = small[static_cast<size_t>(y) * rw + x];
  return out;
}

MnistImage load_digit_image(const std::filesystem::path& path) {
  const std::string what = path.string();
  {
    // JPEG Huffman tables and PGM/PPM and BMP headers are checked before stb sees them
    // (check_header).
    std::ifstream in(path, std::ios::binary);
    std::array<char, 2> magic{};
    const std::span<const uint8_t> first(reinterpret_cast<const uint8_t*>(magic.data()), 2);
    if (in.read(magic.data(), 2) && (is_jpeg(first) || is_pnm(first) || is_bmp(first))) {
      in.seekg(0);
      const std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), {});
      check_header(bytes, what);
    }
  }
  int w = 0, h = 0, channels = 0;
  if (!stbi_info(what.c_str(), &w, &h, &channels)) {
    const char* why = stbi_failure_reason();
    throw ImageError(what + ": cannot decode image (" + (why ? why : "unknown format") +
                     "; PNG, JPEG, PGM/PPM or BMP expected)");
  }
  if (w > kMaxSide || h > kMaxSide) {
    throw ImageError(what + ": image is " + std::to_string(w) + "x" + std::to_string(h) +
                     ", larger than " + std::to_string(kMaxSide) + " pixels a side");
  }
  std::unique_ptr<uint8_t, void (*)(void*)> pixels(stbi_load(what.c_str(), &w, &h, &channels, 1),
                                                  stbi_image_free);
  if (!pixels) {
    const char* why = stbi_failure_reason();
    throw ImageError(what + ": cannot decode image (" + (why ? why : "unknown error") + ")");
  }
  return mnist_from_gray(pixels.get(), w, h, what);
}

MnistImage load_digit_image(std::span<const uint8_t> encoded, const std::string& what,
                            int max_side) {
  if (encoded.empty()) throw ImageError(what + ": empty (no image data)");
  if (!known_signature(encoded) || encoded.size() > static_cast<size_t>(INT32_MAX)) {
    throw ImageError(what + ": not a PNG, JPEG, PGM/PPM or BMP image");
  }
  check_header(encoded, what);
  const auto size = static_cast<int>(encoded.size());
  int w = 0, h = 0, channels = 0;
  if (!stbi_info_from_memory(encoded.data(), size, &w, &h, &channels)) {
    const char* why = stbi_failure_reason();
    throw ImageError(what + ": cannot decode image (" + (why ? why : "unknown format") + ")");
  }
  if (w < 1 || h < 1 || w > max_side || h > max_side) {
    throw ImageError(what + ": image is " + std::to_string(w) + "x" + std::to_string(h) +
                     ", outside 1.." + std::to_string(max_side) + " pixels a side");
  }
  std::unique_ptr<uint8_t, void (*)(void*)> pixels(
      stbi_load_from_memory(encoded.data(), size, &w, &h, &channels, 1), stbi_image_free);
  if (!pixels) {
    const char* why = stbi_failure_reason();
    throw ImageError(what + ": cannot decode image (" + (why ? why : "unknown error") + ")");
  }
  return mnist_from_gray(pixels.get(), w, h, what);
}

}  // namespace mg
