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
      spec.layers.push_back({LayerKind::kConv2d, parse_units(token, token.substr(4)), 0.0f});
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
      spec.layers.push_back({LayerKind::kDense, parse_units(token, token.substr(5)), 0.0f});
    } else {
      fail(token, "unknown layer (use conv<F>, pool, drop<R>, flatten, dense<U>)");
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
      case LayerKind::kConv2d: out << "conv" << l.units; break;
      case LayerKind::kMaxPool: out << "pool"; break;
      case LayerKind::kDropout: out << "drop" << l.rate; break;
      case LayerKind::kFlatten: out << "flatten"; break;
      case LayerKind::kDense: out << "dense" << l.units; break;
    }
  }
  return out.str();
}

}  // namespace mg
