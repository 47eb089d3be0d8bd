#include <gtest/gtest.h>

#include "engine/adam.hpp"
#include "engine/cpu_backend.hpp"
#include "engine/cpu_ops.hpp"

namespace mg {
namespace {

// Two steps worked out by hand from the formula in engine/adam.hpp (Keras defaults).
// Step 1: alpha = 1e-3 * sqrt(1 - 0.999) / (1 - 0.9) = 3.16227766e-4; m = 0.1 g; v = 0.001 g^2, so
// m / sqrt(v) = sign(g) * sqrt(10) and each weight moves by about lr against its gradient (a zero
// gradient moves nothing). Step 2: alpha = 1e-3 * sqrt(1 - 0.999^2) / (1 - 0.9^2) = 2.35316725e-4.
constexpr double kStep1[] = {0.9990000063245154, -1.9990000316217766, 0.5};
constexpr double kStep2[] = {0.998067831960989, -1.9994942165129777, 0.5007441344704072};
constexpr double kG1[] = {0.5, -0.1, 0.0};
constexpr double kG2[] = {0.25, 0.3, -1.0};

TEST(Adam, AlphaIsTheBiasCorrectedStepSize) {
  const AdamConfig c;
  EXPECT_NEAR(adam_alpha(c, 0), 3.1622776601683816e-4, 1e-18);
  EXPECT_NEAR(adam_alpha(c, 1), 2.3531672532745276e-4, 1e-18);
  EXPECT_NEAR(adam_alpha(c, 100000), 1e-3, 1e-12);  // the correction fades
}

template <class T>
void two_steps(double tol) {
  CpuBackend<T> be;
  T p[] = {1.0, -2.0, 0.5}, m[3] = {}, v[3] = {};
  int64_t counters[kCounterCount] = {0, 0};
  const AdamConfig c;
  for (int step = 0; step < 2; ++step) {
    T g[3];
    for (int i = 0; i < 3; ++i) g[i] = static_cast<T>(step == 0 ? kG1[i] : kG2[i]);
    const double wd = 0;
    const uint8_t mask[] = {1, 1, 1};
    be.adam(p, g, m, v, 3, c, &c.lr, &wd, mask, counters);
    be.end_step(counters, 1);
    for (int i = 0; i < 3; ++i) {
      EXPECT_NEAR(p[i], (step == 0 ? kStep1 : kStep2)[i], tol) << "step " << step << " element " << i;
    }
  }
  EXPECT_NEAR(m[0], 0.07, tol);
  EXPECT_NEAR(v[2], 0.001, tol);
}

TEST(Adam, TwoStepsByHandDouble) { two_steps<double>(1e-12); }
// float32 carries about 7 digits: 1e-7 on values near 1.
TEST(Adam, TwoStepsByHandFloat) { two_steps<float>(2e-7); }

// AdamW (torch.optim.AdamW, Keras' AdamW): p = p - lr * wd * p, then the Adam step. The Adam step
// does not depend on p, so by hand: p1 = p0 (1 - lr wd) - (p0 - kStep1) and
// p2 = p1 (1 - lr wd) - (kStep1 - kStep2). Element 2 is a bias (mask 0): plain Adam, kStep.
// The learning rate of step 2 is doubled to show the decay uses the rate of its own step.
template <class T>
void two_adamw_steps(double tol) {
  CpuBackend<T> be;
  const double p0[] = {1.0, -2.0, 0.5};
  T p[] = {1.0, -2.0, 0.5}, m[3] = {}, v[3] = {};
  int64_t counters[kCounterCount] = {0, 0};
  const AdamConfig c;
  const double wd = 0.25;
  const uint8_t mask[] = {1, 1, 0};
  double want[3];
  for (int i = 0; i < 3; ++i) {
    const double d1 = mask[i] ? c.lr * wd : 0.0;
    want[i] = p0[i] * (1 - d1) - (p0[i] - kStep1[i]);
  }
  for (int step = 0; step < 2; ++step) {
    T g[3];
    for (int i = 0; i < 3; ++i) g[i] = static_cast<T>(step == 0 ? kG1[i] : kG2[i]);
    const double lr = step == 0 ? c.lr : 2 * c.lr;
    if (step == 1) {
      // Adam's own step scales with lr: twice kStep1 - kStep2 at the doubled rate.
      for (int i = 0; i < 3; ++i) {
        const double d2 = mask[i] ? lr * wd : 0.0;
        want[i] = want[i] * (1 - d2) - 2 * (kStep1[i] - kStep2[i]);
      }
    }
    be.adam(p, g, m, v, 3, c, &lr, &wd, mask, counters);
    be.end_step(counters, 1);
    for (int i = 0; i < 3; ++i) EXPECT_NEAR(p[i], want[i], tol) << "step " << step << " element " << i;
  }
  // The decay moved the kernel weights by about lr * wd * |p| = 5e-4 on element 1: far above tol.
  EXPECT_GT(std::abs(static_cast<double>(p[1]) - kStep2[1]), 100 * tol);
  EXPECT_NEAR(p[2], 2 * kStep2[2] - kStep1[2], tol) << "the bias never decays";
}

TEST(Adam, AdamWTwoStepsByHandDouble) { two_adamw_steps<double>(1e-12); }
TEST(Adam, AdamWTwoStepsByHandFloat) { two_adamw_steps<float>(4e-7); }

// weight decay 0 is Adam exactly (bit for bit), whatever the mask says.
TEST(Adam, ZeroWeightDecayIsAdamBitForBit) {
  CpuBackend<float> be;
  float p[] = {1.0f, -2.0f, 0.5f}, m[3] = {}, v[3] = {}, q[] = {1.0f, -2.0f, 0.5f}, mq[3] = {},
        vq[3] = {};
  int64_t counters[kCounterCount] = {0, 0};
  const AdamConfig c;
  const double zero = 0;
  const uint8_t all[] = {1, 1, 1}, none[] = {0, 0, 0};
  const float g[] = {0.5f, -0.1f, 0.0f};
  be.adam(p, g, m, v, 3, c, &c.lr, &zero, all, counters);
  be.adam(q, g, mq, vq, 3, c, &c.lr, &zero, none, counters);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(p[i], q[i]) << i;
}

}  // namespace
}  // namespace mg
