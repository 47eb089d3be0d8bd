// Adam with Keras' defaults and Keras' bias correction:
//   t = step + 1
//   m = beta1 * m + (1 - beta1) * g
//   v = beta2 * v + (1 - beta2) * g^2
//   p = p - alpha_t * m / (sqrt(v) + epsilon),  alpha_t = lr * sqrt(1 - beta2^t) / (1 - beta1^t)
// (epsilon is added to sqrt(v) unscaled, as tf.keras and Keras 3 do.)
//
// Decoupled weight decay (AdamW, as torch.optim.AdamW and Keras' AdamW), on kernel weights only
// (ParamRole::kKernel; never biases), before the Adam step of the same update:
//   p = p - decay * p,  decay = lr * weight_decay  (lr undecayed by the bias correction; the
//   product in double, rounded once)
// weight_decay = 0 leaves p exactly as plain Adam does.
#pragma once

#include <cmath>
#include <cstdint>

namespace mg {

struct AdamConfig {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double epsilon = 1e-7;
  double weight_decay = 0;  // AdamW's lambda; the starting value (it lives in backend memory)
};

// The bias-corrected step size for update number t = step + 1 (double, then rounded once).
inline double adam_alpha(const AdamConfig& c, int64_t step) {
  const double t = static_cast<double>(step + 1);
  return c.lr * std::sqrt(1.0 - std::pow(c.beta2, t)) / (1.0 - std::pow(c.beta1, t));
}

}  // namespace mg
