#include "host/charts.hpp"

#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>

namespace mg {
namespace {

constexpr const char* kFont =
    "system-ui, -apple-system, 'Segoe UI', 'DejaVu Sans', Helvetica, Arial, sans-serif";

// Coordinates with at most two decimals and no trailing zeros: small files, exact enough.
std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", v);
  std::string s = buf;
  while (!s.empty() && s.back() == '0') s.pop_back();
  if (!s.empty() && s.back() == '.') s.pop_back();
  if (s == "-0") s = "0";
  return s;
}

// Characters (not bytes) of UTF-8 text, for the rough text-width estimates layout needs.
double text_width(std::string_view s, double font_size) {
  int64_t chars = 0;
  for (const char c : s) chars += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return 0.6 * font_size * static_cast<double>(chars);
}

class Svg {
 public:
  Svg(double width, double height, std::string_view title) {
    out_ += "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
    out_ += "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 " + num(width) + " " +
            num(height) + "\" width=\"" + num(width) + "\" height=\"" + num(height) +
            "\" font-family=\"" + kFont + "\" role=\"img\" aria-label=\"" + xml_escape(title) +
            "\">\n";
    out_ += "<title>" + xml_escape(title) + "</title>\n";
    rect(0, 0, width, height, "#ffffff");
    text(width / 2, 28, title, 18, "middle", palette::kInk, "font-weight=\"600\"");
  }

  void text(double x, double y, std::string_view s, double size, const char* anchor = "start",
            const char* color = palette::kInk, std::string_view extra = {}) {
    out_ += "<text x=\"" + num(x) + "\" y=\"" + num(y) + "\" font-size=\"" + num(size) +
            "\" text-anchor=\"" + anchor + "\" fill=\"" + color + "\"";
    if (!extra.empty()) out_ += " " + std::string(extra);
    out_ += ">" + xml_escape(s) + "</text>\n";
  }
  void vertical_text(double x, double y, std::string_view s, double size) {
    text(x, y, s, size, "middle", palette::kInk,
         "transform=\"rotate(-90 " + num(x) + " " + num(y) + ")\"");
  }
  void line(double x1, double y1, double x2, double y2, const char* color, double width = 1) {
    out_ += "<line x1=\"" + num(x1) + "\" y1=\"" + num(y1) + "\" x2=\"" + num(x2) + "\" y2=\"" +
            num(y2) + "\" stroke=\"" + color + "\" stroke-width=\"" + num(width) + "\"/>\n";
  }
  // A rect with an optional hover tooltip (SVG <title>).
  void rect(double x, double y, double w, double h, std::string_view fill,
            std::string_view tooltip = {}, std::string_view extra = {}) {
    out_ += "<rect x=\"" + num(x) + "\" y=\"" + num(y) + "\" width=\"" + num(w) + "\" height=\"" +
            num(h) + "\" fill=\"" + std::string(fill) + "\"";
    if (!extra.empty()) out_ += " " + std::string(extra);
    if (tooltip.empty()) {
      out_ += "/>\n";
    } else {
      out_ += "><title>" + xml_escape(tooltip) + "</title></rect>\n";
    }
  }
  void raw(std::string_view s) { out_ += s; }
  std::string finish() {
    out_ += "</svg>\n";
    return std::move(out_);
  }

 private:
  std::string out_;
};

// Axis ticks at 1, 2 or 5 times a power of ten, covering [lo, hi].
struct Ticks {
  double lo = 0, hi = 1, step = 1;
  int decimals = 0;
  std::vector<double> values;
};

Ticks nice_ticks(double lo, double hi, int target = 5) {
  Ticks t;
  if (!(hi > lo)) hi = lo + 1;
  const double raw = (hi - lo) / target;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double f = raw / mag;
  t.step = (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
  t.lo = std::floor(lo / t.step + 1e-9) * t.step;
  t.hi = std::ceil(hi / t.step - 1e-9) * t.step;
  t.decimals = std::max(0, static_cast<int>(-std::floor(std::log10(t.step) + 1e-9)));
  const auto n = static_cast<int>(std::llround((t.hi - t.lo) / t.step));
  for (int i = 0; i <= n; ++i) t.values.push_back(t.lo + i * t.step);
  return t;
}

std::string tick_label(double v, int decimals) {
  if (decimals == 0 && std::abs(v) >= 1000) return format_thousands(std::llround(v));
  return format_fixed(v, decimals);
}

// Legend entries left to right, centred on cx; entries that would pass max_width start a new row
// (22 px lower). Returns the number of rows. A dashed series shows a dashed swatch.
struct LegendEntry {
  std::string label, color;
  bool dashed = false, bar = false;
};
constexpr double kLegendRow = 22;
double legend_entry_width(const LegendEntry& e) { return 26 + 8 + text_width(e.label, 13) + 28; }
std::vector<std::vector<LegendEntry>> legend_rows(const std::vector<LegendEntry>& entries,
                                                  double max_width) {
  std::vector<std::vector<LegendEntry>> rows(1);
  double used = 0;
  for (const auto& e : entries) {
    const double w = legend_entry_width(e);
    if (!rows.back().empty() && used + w - 28 > max_width) rows.emplace_back(), used = 0;
    rows.back().push_back(e);
    used += w;
  }
  return rows;
}
int legend(Svg& svg, double cx, double y, const std::vector<LegendEntry>& entries,
           double max_width = INFINITY) {
  constexpr double kSwatch = 26, kGap = 8, kSpacing = 28, kSize = 13;
  const auto rows = legend_rows(entries, max_width);
  for (const auto& row : rows) {
    double total = 0;
    for (const auto& e : row) total += legend_entry_width(e);
    total -= kSpacing;
    double x = cx - total / 2;
    for (const auto& e : row) {
      if (e.bar) {
        svg.rect(x + 6, y - 10, 14, 14, e.color);
      } else {
        svg.raw("<line x1=\"" + num(x) + "\" y1=\"" + num(y - 3) + "\" x2=\"" + num(x + kSwatch) +
                "\" y2=\"" + num(y - 3) + "\" stroke=\"" + e.color + "\" stroke-width=\"2.5\"" +
                (e.dashed ? " stroke-dasharray=\"6 4\"" : "") + "/>\n");
      }
      svg.text(x + kSwatch + kGap, y + 2, e.label, kSize, "start", palette::kInk);
      x += legend_entry_width(e);
    }
    y += kLegendRow;
  }
  return static_cast<int>(rows.size());
}

// matplotlib's "Blues" (ColorBrewer, 9 classes), interpolated linearly; t in [0, 1].
std::string blues(double t) {
  static constexpr int kStops[9][3] = {{247, 251, 255}, {222, 235, 247}, {198, 219, 239},
                                       {158, 202, 225}, {107, 174, 214}, {66, 146, 198},
                                       {33, 113, 181},  {8, 81, 156},    {8, 48, 107}};
  t = std::clamp(std::isfinite(t) ? t : 0.0, 0.0, 1.0) * 8;
  const int i = std::min(7, static_cast<int>(t));
  const double f = t - i;
  char buf[8];
  int rgb[3];
  for (int c = 0; c < 3; ++c) {
    rgb[c] = static_cast<int>(std::lround(kStops[i][c] + f * (kStops[i + 1][c] - kStops[i][c])));
  }
  std::snprintf(buf, sizeof buf, "#%02x%02x%02x", rgb[0], rgb[1], rgb[2]);
  return buf;
}

// A diverging map for signed values, t in [-1, 1]: red below zero, white at zero, blue above
// (ColorBrewer's RdBu ends).
std::string red_blue(double t) {
  t = std::clamp(std::isfinite(t) ? t : 0.0, -1.0, 1.0);
  const int end[3] = {t < 0 ? 178 : 33, t < 0 ? 24 : 102, t < 0 ? 43 : 172};
  const double f = std::abs(t);
  char buf[8];
  int rgb[3];
  for (int c = 0; c < 3; ++c) rgb[c] = static_cast<int>(std::lround(255 + f * (end[c] - 255)));
  std::snprintf(buf, sizeof buf, "#%02x%02x%02x", rgb[0], rgb[1], rgb[2]);
  return buf;
}

void put_be32(std::string& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out += static_cast<char>((v >> shift) & 0xFF);
}

void put_chunk(std::string& out, const char* type, std::string_view data) {
  put_be32(out, static_cast<uint32_t>(data.size()));
  const size_t start = out.size();
  out += type;
  out += data;
  const auto* bytes = reinterpret_cast<const Bytef*>(out.data() + start);
  put_be32(out, static_cast<uint32_t>(crc32(0L, bytes, static_cast<uInt>(out.size() - start))));
}

}  // namespace

std::string encode_png_gray(std::span<const uint8_t> pixels, int width, int height) {
  if (width <= 0 || height <= 0 ||
      pixels.size() != static_cast<size_t>(width) * static_cast<size_t>(height)) {
    throw std::invalid_argument("encode_png_gray: " + std::to_string(pixels.size()) +
                                " pixels for a " + std::to_string(width) + "x" +
                                std::to_string(height) + " image");
  }
  // Each row is prefixed by its filter type, 0 (none): digits are tiny, filtering buys nothing.
  std::string raw;
  raw.reserve(static_cast<size_t>(height) * (static_cast<size_t>(width) + 1));
  for (int r = 0; r < height; ++r) {
    raw += '\0';
    raw.append(reinterpret_cast<const char*>(pixels.data()) + static_cast<size_t>(r) * width,
               static_cast<size_t>(width));
  }
  uLongf packed_size = compressBound(static_cast<uLong>(raw.size()));
  std::string packed(packed_size, '\0');
  if (compress2(reinterpret_cast<Bytef*>(packed.data()), &packed_size,
                reinterpret_cast<const Bytef*>(raw.data()), static_cast<uLong>(raw.size()),
                Z_BEST_COMPRESSION) != Z_OK) {
    throw std::runtime_error("encode_png_gray: zlib compress2 failed");
  }
  packed.resize(packed_size);

  std::string png("\x89PNG\r\n\x1a\n", 8);
  std::string ihdr;
  put_be32(ihdr, static_cast<uint32_t>(width));
  put_be32(ihdr, static_cast<uint32_t>(height));
  ihdr +=
      std::string("\x08\x00\x00\x00\x00", 5);  // 8-bit, grayscale, deflate, no filter, no interlace
  put_chunk(png, "IHDR", ihdr);
  put_chunk(png, "IDAT", packed);
  put_chunk(png, "IEND", {});
  return png;
}

std::string base64_encode(std::string_view bytes) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const uint32_t v = static_cast<uint32_t>(static_cast<unsigned char>(bytes[i])) << 16 |
                       static_cast<uint32_t>(static_cast<unsigned char>(bytes[i + 1])) << 8 |
                       static_cast<unsigned char>(bytes[i + 2]);
    for (int shift = 18; shift >= 0; shift -= 6) out += kAlphabet[(v >> shift) & 63];
  }
  const size_t rest = bytes.size() - i;
  if (rest > 0) {
    uint32_t v = static_cast<uint32_t>(static_cast<unsigned char>(bytes[i])) << 16;
    if (rest == 2) v |= static_cast<uint32_t>(static_cast<unsigned char>(bytes[i + 1])) << 8;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += rest == 2 ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::string xml_escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string format_thousands(int64_t value) {
  const uint64_t magnitude =
      value < 0 ? uint64_t{0} - static_cast<uint64_t>(value) : static_cast<uint64_t>(value);
  const std::string digits = std::to_string(magnitude);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return value < 0 ? "-" + out : out;
}

std::string format_fixed(double value, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, value);
  return buf;
}

std::string svg_grouped_bars(std::string_view title, const std::vector<std::string>& categories,
                             const std::vector<BarSeries>& series, std::string_view x_label,
                             std::string_view y_label, const BarOptions& options) {
  const double plot_w = std::max(480.0, 88.0 * static_cast<double>(categories.size()));
  const double left = 80, top = 80, plot_h = 300, width = left + plot_w + 30;
  const double height = top + plot_h + 70;
  Svg svg(width, height, title);

  double max_v = 0;
  std::vector<LegendEntry> entries;
  for (const auto& s : series) {
    double total = 0;
    for (const double v : s.values) {
      if (std::isfinite(v)) max_v = std::max(max_v, v), total += v;
    }
    entries.push_back(
        {options.totals ? s.name + " (" + format_thousands(std::llround(total)) + ")" : s.name,
         s.color, false, true});
  }
  legend(svg, left + plot_w / 2, 54, entries);
  const Ticks ticks = nice_ticks(options.y_floor.value_or(0), max_v > 0 ? max_v : 1);
  auto y_of = [&](double v) {
    return top + plot_h - plot_h * (v - ticks.lo) / (ticks.hi - ticks.lo);
  };
  for (const double t : ticks.values) {
    svg.line(left, y_of(t), left + plot_w, y_of(t), palette::kGrid);
    svg.text(left - 8, y_of(t) + 4, tick_label(t, ticks.decimals), 12, "end", palette::kMuted);
  }
  const double group_w = plot_w / std::max<double>(1, static_cast<double>(categories.size()));
  const double bar_w = group_w * 0.8 / std::max<double>(1, static_cast<double>(series.size()));
  for (size_t c = 0; c < categories.size(); ++c) {
    const double gx = left + group_w * static_cast<double>(c);
    for (size_t s = 0; s < series.size(); ++s) {
      const double v = c < series[s].values.size() ? series[s].values[c] : 0;
      if (!std::isfinite(v)) continue;
      const double x = gx + group_w * 0.1 + bar_w * static_cast<double>(s);
      const double base = std::max(0.0, ticks.lo), top_v = std::max(v, ticks.lo);
      svg.rect(x, y_of(top_v), bar_w - 1, y_of(base) - y_of(top_v), series[s].color,
               series[s].name + ", " + categories[c] + ": " +
                   (options.decimals == 0 ? format_thousands(std::llround(v))
                                          : format_fixed(v, options.decimals)));
    }
    svg.text(gx + group_w / 2, top + plot_h + 20, categories[c], 13, "middle", palette::kInk);
  }
  svg.line(left, top + plot_h, left + plot_w, top + plot_h, palette::kMuted);
  svg.line(left, top, left, top + plot_h, palette::kMuted);
  svg.text(left + plot_w / 2, top + plot_h + 52, x_label, 14, "middle");
  svg.vertical_text(22, top + plot_h / 2, y_label, 14);
  return svg.finish();
}

std::string svg_line_panels(std::string_view title, const std::vector<double>& x,
                            const std::vector<LinePanel>& panels, std::string_view x_label) {
  constexpr double kPanelW = 560, kPlotW = 450, kPlotH = 300, kLeft = 84;
  const double width = kPanelW * static_cast<double>(std::max<size_t>(1, panels.size())) + 20;
  std::vector<LegendEntry> entries;
  if (!panels.empty()) {
    for (const auto& s : panels[0].series) entries.push_back({s.name, s.color, s.dashed, false});
  }
  // A long legend (many series) wraps into rows and pushes the plots down.
  const double legend_w = width - 40;
  const double kTop =
      100 + kLegendRow * static_cast<double>(legend_rows(entries, legend_w).size() - 1);
  const double height = kTop + kPlotH + 70;
  Svg svg(width, height, title);
  if (!entries.empty()) legend(svg, width / 2, 56, entries, legend_w);
  double x_lo = 1, x_hi = 1;
  if (!x.empty()) {
    x_lo = *std::min_element(x.begin(), x.end());
    x_hi = *std::max_element(x.begin(), x.end());
  }
  if (x_hi - x_lo < 1) x_hi = x_lo + 1;  // one epoch: still a readable axis
  Ticks x_ticks = nice_ticks(x_lo, x_hi, 10);
  if (x_ticks.step < 1) x_ticks = nice_ticks(x_lo, x_hi, static_cast<int>(x_hi - x_lo));
  const bool markers = x.size() <= 40;

  for (size_t p = 0; p < panels.size(); ++p) {
    const LinePanel& panel = panels[p];
    const double left = kPanelW * static_cast<double>(p) + kLeft;
    double lo = INFINITY, hi = -INFINITY;
    for (const auto& s : panel.series) {
      for (const double v : s.y) {
        if (std::isfinite(v)) lo = std::min(lo, v), hi = std::max(hi, v);
      }
    }
    if (!std::isfinite(lo)) lo = 0, hi = 1;
    const double pad = hi > lo ? 0.06 * (hi - lo) : std::max(0.1 * std::abs(hi), 0.01);
    lo -= pad, hi += pad;
    if (panel.y_floor) lo = std::max(lo, *panel.y_floor);
    if (panel.y_ceiling) hi = std::min(hi, *panel.y_ceiling);
    Ticks ticks = nice_ticks(lo, hi);
    if (panel.y_floor) ticks.lo = std::max(ticks.lo, *panel.y_floor);
    if (panel.y_ceiling) ticks.hi = std::min(ticks.hi, *panel.y_ceiling);
    auto y_of = [&](double v) {
      return kTop + kPlotH - kPlotH * (v - ticks.lo) / (ticks.hi - ticks.lo);
    };
    auto x_of = [&](double v) {
      return left + kPlotW * (v - x_ticks.lo) / (x_ticks.hi - x_ticks.lo);
    };

    svg.text(left + kPlotW / 2, kTop - 14, panel.title, 15, "middle", palette::kInk,
             "font-weight=\"600\"");
    for (const double t : ticks.values) {
      if (t < ticks.lo - 1e-12 || t > ticks.hi + 1e-12) continue;
      svg.line(left, y_of(t), left + kPlotW, y_of(t), palette::kGrid);
      svg.text(left - 8, y_of(t) + 4, tick_label(t, ticks.decimals), 12, "end", palette::kMuted);
    }
    for (const double t : x_ticks.values) {
      svg.line(x_of(t), kTop + kPlotH, x_of(t), kTop + kPlotH + 5, palette::kMuted);
      svg.text(x_of(t), kTop + kPlotH + 20, tick_label(t, x_ticks.decimals), 12, "middle",
               palette::kMuted);
    }
    svg.line(left, kTop + kPlotH, left + kPlotW, kTop + kPlotH, palette::kMuted);
    svg.line(left, kTop, left, kTop + kPlotH, palette::kMuted);
    svg.text(left + kPlotW / 2, kTop + kPlotH + 48, x_label, 14, "middle");
    svg.vertical_text(left - 58, kTop + kPlotH / 2, panel.y_label, 14);

    for (const auto& s : panel.series) {
      std::string points;
      for (size_t i = 0; i < s.y.size() && i < x.size(); ++i) {
        if (!std::isfinite(s.y[i])) continue;
        points += num(x_of(x[i])) + "," + num(y_of(s.y[i])) + " ";
      }
      if (!points.empty()) points.pop_back();
      svg.raw("<polyline points=\"" + points + "\" fill=\"none\" stroke=\"" + s.color +
              "\" stroke-width=\"2.5\" stroke-linejoin=\"round\"" +
              (s.dashed ? " stroke-dasharray=\"7 4\"" : "") + "/>\n");
      if (!markers) continue;
      for (size_t i = 0; i < s.y.size() && i < x.size(); ++i) {
        if (!std::isfinite(s.y[i])) continue;
        svg.raw("<circle cx=\"" + num(x_of(x[i])) + "\" cy=\"" + num(y_of(s.y[i])) +
                "\" r=\"3.5\" fill=\"#ffffff\" stroke=\"" + s.color +
                "\" stroke-width=\"2\"><title>" +
                xml_escape(s.name + ", " + std::string(x_label) + " " + tick_label(x[i], 0) + ": " +
                           format_fixed(s.y[i], 4)) +
                "</title></circle>\n");
      }
    }
  }
  return svg.finish();
}

std::string svg_heatmap(const HeatmapSpec& spec) {
  const auto n = static_cast<double>(spec.labels.size());
  const double cell = std::clamp(500.0 / std::max(1.0, n), 16.0, 50.0);
  double label_w = 0;
  for (const auto& l : spec.labels) label_w = std::max(label_w, text_width(l, 12));
  const bool rotate = label_w > cell - 6;  // long class names: slanted column labels
  const double left = 60 + label_w + 10, top = 56, plot = cell * n;
  const double bottom = rotate ? label_w * 0.72 + 60 : 64;
  const double width = left + plot + 110, height = top + plot + bottom;
  Svg svg(width, height, spec.title);

  double max_v = 0;
  for (const auto& row : spec.values) {
    for (const double v : row) {
      if (std::isfinite(v)) max_v = std::max(max_v, spec.diverging ? std::abs(v) : v);
    }
  }
  const double scale = max_v > 0 ? max_v : 1;
  auto colour = [&](double t) { return spec.diverging ? red_blue(t) : blues(t); };
  const double font = std::min(13.0, cell * 0.27);
  for (size_t r = 0; r < spec.values.size() && r < spec.labels.size(); ++r) {
    for (size_t c = 0; c < spec.values[r].size() && c < spec.labels.size(); ++c) {
      const double v = spec.values[r][c];
      const double x = left + cell * static_cast<double>(c),
                   y = top + cell * static_cast<double>(r);
      const std::string value_text = spec.decimals == 0 ? format_thousands(std::llround(v))
                                     : v == 0           ? std::string("0")
                                                        : format_fixed(v, spec.decimals);
      svg.rect(x, y, cell, cell, colour(v / scale),
               spec.y_label + " " + spec.labels[r] + ", " + spec.x_label + " " + spec.labels[c] +
                   ": " + value_text);
      if (cell >= 24) {
        svg.text(x + cell / 2, y + cell / 2 + font * 0.36, value_text, font, "middle",
                 std::abs(v / scale) > 0.5 ? "#ffffff" : palette::kInk);
      }
    }
  }
  svg.rect(left, top, plot, plot, "none", {}, "stroke=\"#bbbbbb\"");
  for (size_t i = 0; i < spec.labels.size(); ++i) {
    const double mid = cell * (static_cast<double>(i) + 0.5);
    svg.text(left - 8, top + mid + 4, spec.labels[i], 12, "end");
    if (rotate) {
      const double x = left + mid + 4, y = top + plot + 10;
      svg.text(x, y, spec.labels[i], 12, "end", palette::kInk,
               "transform=\"rotate(-45 " + num(x) + " " + num(y) + ")\"");
    } else {
      svg.text(left + mid, top + plot + 18, spec.labels[i], 12, "middle");
    }
  }
  svg.text(left + plot / 2, height - 18, spec.x_label, 14, "middle");
  svg.vertical_text(24, top + plot / 2, spec.y_label, 14);

  // Colour bar: a stack of thin bands (no gradient ids, so several heatmaps can share a page).
  const double bar_x = left + plot + 24, bands = 64, band_h = plot / bands;
  const double bar_lo = spec.diverging ? -scale : 0;
  for (int b = 0; b < bands; ++b) {
    const double t = 1.0 - (b + 0.5) / bands;
    svg.rect(bar_x, top + band_h * b, 16, band_h + 0.5, colour(spec.diverging ? 2 * t - 1 : t));
  }
  svg.rect(bar_x, top, 16, plot, "none", {}, "stroke=\"#bbbbbb\"");
  const Ticks ticks = nice_ticks(bar_lo, scale, spec.diverging ? 6 : 4);
  for (const double t : ticks.values) {
    if (t > scale * (1 + 1e-9) || t < bar_lo - scale * 1e-9) continue;
    const double y = top + plot - plot * (t - bar_lo) / (scale - bar_lo);
    svg.line(bar_x + 16, y, bar_x + 20, y, palette::kMuted);
    svg.text(bar_x + 24, y + 4, tick_label(t, ticks.decimals), 11, "start", palette::kMuted);
  }
  return svg.finish();
}

std::string svg_digit_grid(std::string_view title, const std::vector<DigitTile>& tiles, int rows,
                           int cols, int columns, int scale, std::string_view empty_text) {
  constexpr double kCaption = 13;
  const double tile_w = cols * scale, tile_h = rows * scale;
  double caption_w = 0;
  bool two_lines = false;
  for (const auto& t : tiles) {
    caption_w = std::max({caption_w, text_width(t.caption, kCaption), text_width(t.detail, 12)});
    two_lines = two_lines || !t.detail.empty();
  }
  const double col_w = std::max(tile_w, caption_w) + 18;
  const double row_h = tile_h + (two_lines ? 40 : 24) + 10;
  columns = std::max(1, columns);
  const int n_rows = tiles.empty() ? 1 : (static_cast<int>(tiles.size()) + columns - 1) / columns;
  const int n_cols = tiles.empty() ? 1 : std::min<int>(columns, static_cast<int>(tiles.size()));
  const double width = std::max(420.0, col_w * n_cols + 40);
  const double height = tiles.empty() ? 110 : 56 + row_h * n_rows + 10;
  Svg svg(width, height, title);
  if (tiles.empty()) {
    svg.text(width / 2, 76, empty_text, 14, "middle", palette::kMuted);
    return svg.finish();
  }
  const double x0 = (width - col_w * n_cols) / 2;
  for (size_t i = 0; i < tiles.size(); ++i) {
    const DigitTile& t = tiles[i];
    const double cx = x0 + col_w * (static_cast<double>(i % columns) + 0.5);
    const double y = 50 + row_h * static_cast<double>(i / columns);
    const std::string png = encode_png_gray(t.pixels, cols, rows);
    svg.raw("<image x=\"" + num(cx - tile_w / 2) + "\" y=\"" + num(y) + "\" width=\"" +
            num(tile_w) + "\" height=\"" + num(tile_h) +
            "\" style=\"image-rendering:pixelated\" preserveAspectRatio=\"none\" "
            "href=\"data:image/png;base64," +
            base64_encode(png) + "\"/>\n");
    svg.text(cx, y + tile_h + 17, t.caption, kCaption, "middle", t.caption_color.c_str(),
             "font-weight=\"600\"");
    if (!t.detail.empty()) svg.text(cx, y + tile_h + 33, t.detail, 12, "middle", palette::kMuted);
  }
  return svg.finish();
}

std::string inline_svg(const std::string& svg) {
  const size_t start = svg.find("<svg");
  return start == std::string::npos ? svg : svg.substr(start);
}

std::string figure(const std::string& svg, const std::string& file, const std::string& caption) {
  return "<figure>" + inline_svg(svg) + "<figcaption>" + caption + " (<a href=\"" + file + "\">" +
         file + "</a>)</figcaption></figure>\n";
}

}  // namespace mg
