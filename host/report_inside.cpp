#include "host/report_inside.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "host/charts.hpp"

namespace mg {

namespace {

// Maps values to 0..255 by their own range (all equal: mid-grey, or black when all zero).
std::vector<uint8_t> to_gray(std::span<const float> v) {
  std::vector<uint8_t> out(v.size(), 0);
  if (v.empty()) return out;
  const auto [lo, hi] = std::minmax_element(v.begin(), v.end());
  const double a = *lo, b = *hi;
  for (size_t i = 0; i < v.size(); ++i) {
    out[i] = b > a ? static_cast<uint8_t>(std::lround(255.0 * (v[i] - a) / (b - a)))
                   : static_cast<uint8_t>(a == 0 ? 0 : 128);
  }
  return out;
}

// |v| scaled so the largest is 255.
std::vector<uint8_t> magnitude_gray(std::span<const float> v) {
  float top = 0;
  for (const float x : v) top = std::max(top, std::abs(x));
  std::vector<uint8_t> out(v.size(), 0);
  if (top > 0) {
    for (size_t i = 0; i < v.size(); ++i) {
      out[i] = static_cast<uint8_t>(std::lround(255.0 * std::abs(v[i]) / top));
    }
  }
  return out;
}

std::string class_name(const std::vector<std::string>& names, int c) {
  return c >= 0 && c < static_cast<int>(names.size()) ? names[static_cast<size_t>(c)]
                                                      : std::to_string(c);
}

int scale_for(int side) { return std::max(2, 84 / std::max(1, side)); }

std::vector<uint8_t> pack(const std::vector<InsideDigit>& digits, int64_t size) {
  if (digits.empty()) throw std::invalid_argument("inside_pictures: no digits");
  std::vector<uint8_t> images;
  for (const InsideDigit& d : digits) {
    if (static_cast<int64_t>(d.pixels.size()) != size) {
      throw std::invalid_argument("inside_pictures: a digit does not have the model's input size");
    }
    images.insert(images.end(), d.pixels.begin(), d.pixels.end());
  }
  return images;
}

InsideSvg draw_saliency(const Graph& g, const std::vector<InsideDigit>& digits,
                        std::span<const float> saliency, const std::vector<int>& predicted,
                        const std::vector<std::string>& names, const std::string& name,
                        const std::string& title) {
  const Shape in = g.input();
  const int64_t size = in.size(), plane = in.h * in.w;
  std::vector<std::vector<uint8_t>> pixels;
  std::vector<DigitTile> tiles;
  pixels.reserve(digits.size() * 2);
  for (size_t i = 0; i < digits.size(); ++i) {
    const InsideDigit& d = digits[i];
    // The digit's first channel, then |saliency| summed over channels.
    pixels.emplace_back(d.pixels.begin(), d.pixels.begin() + plane);
    std::vector<float> s(static_cast<size_t>(plane), 0.0f);
    for (int64_t c = 0; c < in.c; ++c) {
      for (int64_t j = 0; j < plane; ++j) {
        s[static_cast<size_t>(j)] += std::abs(saliency[i * size + c * plane + j]);
      }
    }
    pixels.push_back(magnitude_gray(s));
    const int p = predicted[i];
    const bool wrong = d.label >= 0 && d.label != p;
    tiles.push_back({pixels[pixels.size() - 2], d.caption, "predicted " + class_name(names, p),
                     wrong ? palette::kError : palette::kInk});
    tiles.push_back({pixels.back(), "saliency", "|d logit / d pixel|", palette::kMuted});
  }
  // Short title inside the SVG (a narrow grid would clip a long one); the long one is the caption.
  // Ten tiles a row keep each digit beside its map.
  std::string svg =
      svg_digit_grid("Saliency", tiles, static_cast<int>(in.h), static_cast<int>(in.w), 10,
                     scale_for(static_cast<int>(in.h)), "no digits");
  return {name, title, std::move(svg)};
}

}  // namespace

InsidePictures inside_pictures(Engine& engine, const std::vector<InsideDigit>& digits,
                               const std::vector<std::string>& names,
                               const std::string& saliency_name) {
  const Graph& g = engine.graph();
  const std::vector<uint8_t> images = pack(digits, g.input().size());
  const std::vector<std::vector<float>> acts = engine.activations(images);
  InsidePictures out;
  const auto& layers = g.layers();

  // The first conv layer's kernels, [out, in, 3, 3]: input channel 0 of each, one tile per filter.
  const auto first = std::find_if(layers.begin(), layers.end(),
                                  [](const Layer& l) { return l.kind == LayerKind::kConv2d; });
  if (first != layers.end()) {
    const std::vector<float> params = engine.parameters();
    const int64_t per = first->in.c * 9;
    std::vector<std::vector<uint8_t>> pixels;
    std::vector<DigitTile> tiles;
    pixels.reserve(static_cast<size_t>(first->out.c));
    for (int64_t f = 0; f < first->out.c; ++f) {
      const std::span<const float> w(params.data() + first->weight_offset + f * per, 9);
      // Symmetric around mid-grey: 0 stays grey, the sign shows as dark or light.
      float top = 0;
      for (const float x : w) top = std::max(top, std::abs(x));
      std::vector<uint8_t> px(9, 128);
      for (int k = 0; k < 9; ++k) {
        if (top > 0)
          px[static_cast<size_t>(k)] =
              static_cast<uint8_t>(std::lround(127.5 + 127.5 * w[static_cast<size_t>(k)] / top));
      }
      pixels.push_back(std::move(px));
      tiles.push_back({pixels.back(), "filter " + std::to_string(f), "", palette::kInk});
    }
    const std::string title =
        "First conv layer's 3x3 filters (grey 0, light positive, dark negative)";
    out.files.push_back(
        {"filters.svg", title, svg_digit_grid("Conv filters", tiles, 3, 3, 8, 16, "no filters")});
  }

  // Feature maps: a row per digit, a column per channel.
  for (size_t i = 0; i < layers.size(); ++i) {
    const Layer& l = layers[i];
    if (l.kind != LayerKind::kConv2d && l.kind != LayerKind::kMaxPool) continue;
    const bool conv = l.kind == LayerKind::kConv2d;
    const int64_t plane = l.out.h * l.out.w, size = l.out.size();
    const int64_t channels = std::min<int64_t>(l.out.c, 16);
    std::vector<std::vector<uint8_t>> pixels;
    std::vector<DigitTile> tiles;
    pixels.reserve(digits.size() * static_cast<size_t>(channels));
    for (size_t d = 0; d < digits.size(); ++d) {
      for (int64_t c = 0; c < channels; ++c) {
        pixels.push_back(to_gray({acts[i].data() + static_cast<int64_t>(d) * size + c * plane,
                                  static_cast<size_t>(plane)}));
        tiles.push_back({pixels.back(), c == 0 ? digits[d].caption : "", "ch " + std::to_string(c),
                         palette::kInk});
      }
    }
    const std::string kind = conv ? "conv" : "pool";
    const std::string title = "Layer " + std::to_string(i) + " (" +
                              (conv ? "Conv2D + ReLU" : "MaxPooling2D") +
                              ") feature maps: a row per digit, " + std::to_string(channels) +
                              " of " + std::to_string(l.out.c) + " channels";
    out.files.push_back(
        {"feature_maps_" + std::to_string(i) + "_" + kind + ".svg", title,
         svg_digit_grid("Layer " + std::to_string(i) + " " + kind, tiles, static_cast<int>(l.out.h),
                        static_cast<int>(l.out.w), static_cast<int>(channels),
                        scale_for(static_cast<int>(l.out.h)), "no digits")});
  }

  const std::vector<float> saliency = engine.saliency(images, &out.predicted);
  out.files.push_back(
      draw_saliency(g, digits, saliency, out.predicted, names, saliency_name,
                    "Saliency: |d(predicted class's logit) / d(pixel)| beside each digit"));
  return out;
}

InsideSvg saliency_picture(Engine& engine, const std::vector<InsideDigit>& digits,
                           const std::vector<std::string>& names, const std::string& name,
                           const std::string& title) {
  const Graph& g = engine.graph();
  if (digits.empty()) {
    return {name, title,
            svg_digit_grid("Saliency", {}, static_cast<int>(g.input().h),
                           static_cast<int>(g.input().w), 8, 3, "no digits")};
  }
  const std::vector<uint8_t> images = pack(digits, g.input().size());
  std::vector<int> predicted;
  const std::vector<float> saliency = engine.saliency(images, &predicted);
  return draw_saliency(g, digits, saliency, predicted, names, name, title);
}

std::vector<InsideSvg> report_inside_pictures(Engine& engine, const RunReport& r) {
  const int classes = engine.graph().classes();
  const auto k = static_cast<size_t>(classes);
  const auto size = static_cast<size_t>(r.rows) * static_cast<size_t>(r.cols);
  if (r.test_probs.size() != r.test.size() * k) {
    throw std::invalid_argument("report_inside_pictures: test_probs does not match the test split");
  }
  std::vector<std::string> names = r.class_names;
  if (static_cast<int>(names.size()) != classes) {
    names.clear();
    for (int c = 0; c < classes; ++c) names.push_back(std::to_string(c));
  }
  auto digit = [&](int32_t index, std::string caption) {
    const int label = r.labels[index];
    return InsideDigit{
        {r.images + static_cast<size_t>(index) * size, size}, std::move(caption), label};
  };
  // The first test digit of each class, in class order.
  std::vector<int32_t> first(k, -1);
  for (const int32_t i : r.test) {
    const int label = r.labels[i];
    if (label < classes && first[static_cast<size_t>(label)] < 0)
      first[static_cast<size_t>(label)] = i;
  }
  std::vector<InsideDigit> digits;
  for (int c = 0; c < classes; ++c) {
    if (first[static_cast<size_t>(c)] >= 0)
      digits.push_back(
          digit(first[static_cast<size_t>(c)], "true " + names[static_cast<size_t>(c)]));
  }
  std::vector<InsideSvg> files;
  if (!digits.empty()) {
    InsidePictures pics = inside_pictures(engine, digits, names);
    files = std::move(pics.files);
  }
  // The misclassified, most confident first (as misclassified.svg orders them).
  struct Wrong {
    int32_t index;
    float p;
  };
  std::vector<Wrong> wrong;
  for (size_t i = 0; i < r.test.size(); ++i) {
    const float* row = r.test_probs.data() + i * k;
    const auto predicted = static_cast<size_t>(std::max_element(row, row + k) - row);
    if (static_cast<int>(predicted) != r.labels[r.test[i]])
      wrong.push_back({r.test[i], row[predicted]});
  }
  std::stable_sort(wrong.begin(), wrong.end(),
                   [](const Wrong& a, const Wrong& b) { return a.p > b.p; });
  if (wrong.size() > 16) wrong.resize(16);
  std::vector<InsideDigit> wrong_digits;
  for (const Wrong& w : wrong)
    wrong_digits.push_back(digit(w.index, "true " + names[r.labels[w.index]]));
  files.push_back(
      saliency_picture(engine, wrong_digits, names, "saliency_misclassified.svg",
                       "Saliency of the misclassified test digits, most confident first: "
                       "the pixels that pushed the network to its wrong answer"));
  for (InsideSvg& f : files) f.name = "inside_" + f.name;
  return files;
}

}  // namespace mg
