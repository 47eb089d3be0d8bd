#include "engine/model_spec.hpp"

#include <charconv>
#include <cmath>
#include <sstream>

namespace mg {
namespace {

constexpr int kMaxUnits = 1 << 16;

[[noreturn]] void fail(std::string_view token, const std::string& why) {
  throw SpecError("model spec: '" + std::string(token) + "': " + why);
}

int parse_units(std::string_view token, std::string_view digits) {
  int value = 0;
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (ec != std::errc() || end != digits.data() + digits.size()) {
    fail(token, "expected a whole number after '" +
                    std::string(token.substr(0, token.size() - digits.size())) + "'");
  }
  if (value < 1 || value > kMaxUnits) {
    fail(token, "needs between 1 and " + std::to_string(kMaxUnits) + " units");
  }
  return value;
}

float parse_rate(std::string_view token, std::string_view digits) {
  // std::from_chars for floating point is not in libstdc++ 12 for every target; strtod is fine.
  const std::string s(digits);
  char* end = nullptr;
  const double value = std::strtod(s.c_str(), &end);
  if (s.empty() || end != s.c_str() + s.size() || !std::isfinite(value)) {
    fail(token, "expected a dropout rate such as drop0.25");
  }
  if (value < 0.0 || value >= 1.0) fail(token, "dropout rate must be in [0, 1)");
  return static_cast<float>(value);
}

// conv<F>[k<K>][v][n]: the digits of F, then the optional suffixes in that order.
LayerSpec parse_conv(std::string_view token) {
  std::string_view rest = token.substr(4);
  size_t digits = 0;
  while (digits < rest.size() && rest[digits] >= '0' && rest[digits] <= '9') ++digits;
  if (digits == 0) fail(token, "expected a whole number after 'conv'");
  LayerSpec l{LayerKind::kConv2d, parse_units(token, rest.substr(0, digits)), 0.0f};
  rest.remove_prefix(digits);
  if (!rest.empty() && rest.front() == 'k') {
    rest.remove_prefix(1);
    size_t kd = 0;
    while (kd < rest.size() && rest[kd] >= '0' && rest[kd] <= '9') ++kd;
    int k = 0;
    const auto [end, ec] = std::from_chars(rest.data(), rest.data() + kd, k);
    if (kd == 0 || ec != std::errc() || end != rest.data() + kd) {
      fail(token, "expected a kernel size after 'k', such as conv32k5");
    }
    if (k < 1 || k > 7 || k % 2 == 0) fail(token, "kernel size must be odd, 1 to 7 (1, 3, 5, 7)");
    l.kernel = k;
    rest.remove_prefix(kd);
  }
  if (!rest.empty() && rest.front() == 'v') {
    l.valid = true;
    rest.remove_prefix(1);
  }
  if (!rest.empty() && rest.front() == 'n') {
    l.relu = false;
    rest.remove_prefix(1);
  }
  if (!rest.empty()) {
    fail(token, "expected conv<F>[k<K>][v][n] (suffixes in this order, e.g. conv32k5vn)");
  }
  return l;
}

bool starts_with(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

ModelSpec ModelSpec::parse(std::string_view text) {
  ModelSpec spec;
  bool flat = false;
  size_t pos = 0;
  if (trim(text).empty()) throw SpecError("model spec: empty (try '" + std::string(kSeedModelSpec) + "')");
  while (pos <= text.size()) {
    const size_t comma = std::min(text.find(',', pos), text.size());
    const std::string_view token = trim(text.substr(pos, comma - pos));
    pos = comma + 1;
    if (token.empty()) throw SpecError("model spec: empty layer between commas");
    if (starts_with(token, "conv")) {
      if (flat) fail(token, "a convolution cannot follow flatten or dense");
      spec.layers.push_back(parse_conv(token));
    } else if (token == "pool") {
      if (flat) fail(token, "pooling cannot follow flatten or dense");
      spec.layers.push_back({LayerKind::kMaxPool, 0, 0.0f});
    } else if (starts_with(token, "drop")) {
      spec.layers.push_back({LayerKind::kDropout, 0, parse_rate(token, token.substr(4))});
    } else if (token == "flatten") {
      if (flat) fail(token, "the model is already flat");
      flat = true;
      spec.layers.push_back({LayerKind::kFlatten, 0, 0.0f});
    } else if (starts_with(token, "dense")) {
      if (!flat) {
        flat = true;
        spec.layers.push_back({LayerKind::kFlatten, 0, 0.0f});
      }
      std::string_view digits = token.substr(5);
      LayerSpec l{LayerKind::kDense, 0, 0.0f};
      if (!digits.empty() && digits.back() == 'n') {
        l.relu = false;
        digits.remove_suffix(1);
      }
      l.units = parse_units(token, digits);
      spec.layers.push_back(l);
    } else if (token == "relu") {
      spec.layers.push_back({LayerKind::kRelu, 0, 0.0f});
    } else if (token == "bn") {
      spec.layers.push_back({LayerKind::kBatchNorm, 0, 0.0f});
    } else {
      fail(token,
           "unknown layer (use conv<F>[k<K>][v][n], pool, drop<R>, flatten, dense<U>[n], relu, "
           "bn)");
    }
  }
  if (!flat) spec.layers.push_back({LayerKind::kFlatten, 0, 0.0f});
  return spec;
}

ModelSpec ModelSpec::seed() { return parse(kSeedModelSpec); }

std::string ModelSpec::to_string() const {
  std::ostringstream out;
  for (size_t i = 0; i < layers.size(); ++i) {
    if (i) out << ',';
    const LayerSpec& l = layers[i];
    switch (l.kind) {
      case LayerKind::kConv2d:
        out << "conv" << l.units;
        if (l.kernel != 3) out << 'k' << l.kernel;
        if (l.valid) out << 'v';
        if (!l.relu) out << 'n';
        break;
      case LayerKind::kMaxPool: out << "pool"; break;
      case LayerKind::kDropout: out << "drop" << l.rate; break;
      case LayerKind::kFlatten: out << "flatten"; break;
      case LayerKind::kDense: out << "dense" << l.units << (l.relu ? "" : "n"); break;
      case LayerKind::kRelu: out << "relu"; break;
      case LayerKind::kBatchNorm: out << "bn"; break;
    }
  }
  return out.str();
}

}  // namespace mg
