// The model a user writes: a comma-separated list of layers, e.g. the seed model
//   conv32,pool,conv64,pool,drop0.25,flatten,dense128,drop0.5
// conv<F>   Conv2D(F, 3x3, padding 'same', stride 1) + ReLU
// pool      MaxPool2D(2x2, stride 2; an odd edge row/column is dropped, as Keras' 'valid')
// drop<R>   Dropout(R), 0 <= R < 1 (inverted: scaled by 1/(1-R) in training, identity in eval)
// flatten   Flatten in NCHW order (added before the first dense layer when not written)
// dense<U>  Dense(U) + ReLU
// The classifier, Dense(classes) + softmax, always ends the model and is not written.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace mg {

class SpecError : public std::runtime_error {
  using std::runtime_error::runtime_error;
};

enum class LayerKind { kConv2d, kMaxPool, kDropout, kFlatten, kDense };

struct LayerSpec {
  LayerKind kind;
  int units = 0;      // conv filters or dense width
  float rate = 0.0f;  // dropout rate
};

struct ModelSpec {
  std::vector<LayerSpec> layers;  // without the classifier

  static ModelSpec parse(std::string_view text);  // throws SpecError naming the bad token
  static ModelSpec seed();                        // the notebook's model
  std::string to_string() const;                  // canonical form, parse(to_string()) == *this
};

inline constexpr std::string_view kSeedModelSpec =
    "conv32,pool,conv64,pool,drop0.25,flatten,dense128,drop0.5";

}  // namespace mg
