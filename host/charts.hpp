// Hand-written SVG charts for the run report: grouped bars, line panels, heatmaps and digit grids.
// Each function returns one complete, standalone SVG document (XML declaration, viewBox, explicit
// width/height) that also works inlined into HTML: no ids, no external references, digits as PNG
// data URIs drawn with image-rendering: pixelated. Knows nothing about training runs; report.cpp
// assembles the charts from a RunReport.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace mg {

// One palette for every chart and the HTML page (matplotlib's tab10, which Keras users know).
namespace palette {
inline constexpr const char* kTrain = "#1f77b4";  // blue
inline constexpr const char* kVal = "#ff7f0e";    // orange
inline constexpr const char* kTest = "#2ca02c";   // green
inline constexpr const char* kError = "#d62728";  // red: wrong predictions
inline constexpr const char* kInk = "#222222";    // titles and labels
inline constexpr const char* kMuted = "#666666";  // axes, tick labels
inline constexpr const char* kGrid = "#e6e6e6";   // grid lines
}  // namespace palette

// --- encoding helpers ----------------------------------------------------------------------------

// A complete 8-bit grayscale PNG file (signature, IHDR, one zlib IDAT, IEND) of width x height
// pixels, row-major. Throws std::invalid_argument when pixels.size() != width * height.
std::string encode_png_gray(std::span<const uint8_t> pixels, int width, int height);
std::string base64_encode(std::string_view bytes);
// Escapes & < > " ' for XML/HTML text and attribute values.
std::string xml_escape(std::string_view text);
// An SVG document without its XML declaration, for inlining into an HTML page.
std::string inline_svg(const std::string& svg);
// <figure> with the inlined SVG and a caption linking its file (report.html, compare.html).
std::string figure(const std::string& svg, const std::string& file, const std::string& caption);
// 421642 -> "421,642" (Keras' thousands separator).
std::string format_thousands(int64_t value);
// printf("%.*f") in the C locale.
std::string format_fixed(double value, int decimals);

// --- charts --------------------------------------------------------------------------------------

struct BarSeries {
  std::string name, color;
  std::vector<double> values;  // one per category
};
struct BarOptions {
  int decimals = 0;               // of the values in tooltips; 0 prints counts with separators
  bool totals = true;             // the legend shows each series' total
  std::optional<double> y_floor;  // the axis starts here (e.g. near 1 for close scores), not at 0
};
// Vertical bars, one group per category, one bar per series; a legend of the series.
std::string svg_grouped_bars(std::string_view title, const std::vector<std::string>& categories,
                             const std::vector<BarSeries>& series, std::string_view x_label,
                             std::string_view y_label, const BarOptions& options = {});

struct LineSeries {
  std::string name, color;
  std::vector<double> y;  // one per x; non-finite values are left out
  bool dashed = false;
};
struct LinePanel {
  std::string title, y_label;
  std::vector<LineSeries> series;
  std::optional<double> y_floor, y_ceiling;  // hard limits for the axis (accuracy: 0 and 1)
};
// Panels side by side sharing x values and one legend (taken from the first panel's series); a
// legend wider than the chart wraps into rows. A series shorter than x stops early.
std::string svg_line_panels(std::string_view title, const std::vector<double>& x,
                            const std::vector<LinePanel>& panels, std::string_view x_label);

struct HeatmapSpec {
  std::string title, x_label, y_label;
  std::vector<std::string> labels;          // rows and columns alike
  std::vector<std::vector<double>> values;  // [row][column]
  int decimals = 0;                         // cell text: 0 prints counts with separators
  bool diverging = false;  // signed values: red below zero, white at 0, blue above (RdBu)
};
// A square matrix in matplotlib's "Blues" (or red-white-blue when diverging) with each value
// written in its cell and a colour bar.
std::string svg_heatmap(const HeatmapSpec& spec);

struct DigitTile {
  std::span<const uint8_t> pixels;  // rows * cols, 0 = background
  std::string caption;              // first line under the digit
  std::string detail;               // optional second line
  std::string caption_color = palette::kInk;
};
// Digits in a grid of `columns`, drawn white on black as matplotlib's cmap="gray" shows them,
// each scaled by `scale` with its caption below. An empty tile list draws `empty_text`.
std::string svg_digit_grid(std::string_view title, const std::vector<DigitTile>& tiles, int rows,
                           int cols, int columns, int scale, std::string_view empty_text);

}  // namespace mg
