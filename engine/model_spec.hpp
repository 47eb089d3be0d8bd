// The model a user writes: a comma-separated list of layers, e.g. the seed model
//   conv32,pool,conv64,pool,drop0.25,flatten,dense128,drop0.5
// conv<F>   Conv2D(F, 3x3, padding 'same', stride 1) + ReLU
//   with optional suffixes, in this order: conv<F>[k<K>][v][n]
//   k<K>     a K x K kernel, K odd, 1 <= K <= 7 (conv32k5); without it 3x3
//   v        padding 'valid' (no padding: the map shrinks by K-1) instead of 'same'
//   n        no activation (the ReLU is left out: conv32n,relu or conv32n before a later layer)
// pool      MaxPool2D(2x2, stride 2; an odd edge row/column is dropped, as Keras' 'valid')
// drop<R>   Dropout(R), 0 <= R < 1 (inverted: scaled by 1/(1-R) in training, identity in eval)
// flatten   Flatten in NCHW order (added before the first dense layer when not written)
// dense<U>  Dense(U) + ReLU; dense<U>n without the activation
// relu      ReLU as a layer of its own (Keras' ReLU layer)
// bn        BatchNormalization over channels (after a conv: per channel over N, H, W; after a
//           dense: per unit), Keras' defaults: momentum 0.99, epsilon 1e-3
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

enum class LayerKind { kConv2d, kMaxPool, kDropout, kFlatten, kDense, kRelu, kBatchNorm };

struct LayerSpec {
  LayerKind kind;
  int units = 0;      // conv filters or dense width
  float rate = 0.0f;  // dropout rate
  int kernel = 3;     // conv: K of the K x K kernel (odd, 1..7)
  bool valid = false;  // conv: padding 'valid' (none) instead of 'same' ((K-1)/2 each side)
  bool relu = true;    // conv, dense: ReLU after the layer (false for the 'n' suffix)
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
