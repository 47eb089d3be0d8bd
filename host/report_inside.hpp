// Pictures of the network's inside, drawn from the engine's own forward and backward passes: the
// first conv layer's filters, the feature maps of every conv and pool layer, and saliency maps
// (d(predicted class's logit)/d(pixel)). Used by the run report and by `mnist_gpu explain`.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "engine/engine.hpp"
#include "host/report.hpp"

namespace mg {

struct InsideDigit {
  std::span<const uint8_t> pixels;  // graph().input().size() bytes, 0 = background
  std::string caption;              // e.g. "true 7"
  int label = -1;                   // the true class when known (< 0: unknown)
};

struct InsideSvg {
  std::string name;   // file name, e.g. "feature_maps_1_conv.svg"
  std::string title;  // a sentence for the figure's caption (the SVG has a short one)
  std::string svg;
};

struct InsidePictures {
  std::vector<InsideSvg> files;  // filters, one feature-map grid per conv or pool layer, saliency
  std::vector<int> predicted;    // per digit
};

// Runs engine.activations() and engine.saliency() on the digits (1 to a few dozen) and draws:
// filters.svg (the first conv layer's 3x3 kernels; none without a conv layer), one
// feature_maps_<layer>_<kind>.svg per conv or pool layer (a row per digit, a column per channel,
// each map scaled to its own range), and <saliency_name> (each digit beside |saliency|).
// class_names may be empty. Throws std::invalid_argument for a digit of the wrong size or no
// digits.
InsidePictures inside_pictures(Engine& engine, const std::vector<InsideDigit>& digits,
                               const std::vector<std::string>& class_names,
                               const std::string& saliency_name = "saliency.svg");

// Only the saliency grid, for e.g. the misclassified digits (empty digits: a note instead).
InsideSvg saliency_picture(Engine& engine, const std::vector<InsideDigit>& digits,
                           const std::vector<std::string>& class_names, const std::string& name,
                           const std::string& title);

// The run report's "Inside the network" pictures, from the engine that holds the run's final
// weights: the filters, the feature maps and saliency of the first test digit of each class, and
// the saliency of the most confidently misclassified test digits (up to 16). File names start
// with "inside_". report.test_probs must be filled.
std::vector<InsideSvg> report_inside_pictures(Engine& engine, const RunReport& report);

}  // namespace mg
