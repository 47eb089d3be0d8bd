// The learning-rate schedules and early stopping, epoch by epoch, against Keras' callbacks'
// rules worked out by hand; their state's JSON round trip.
#include "host/training_controls.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <numbers>
#include <stdexcept>
#include <vector>

namespace mg {
namespace {

TEST(TrainingControls, ConstantKeepsTheRate) {
  TrainingControls c({}, 2e-3);
  for (int64_t e = 0; e < 5; ++e) {
    EXPECT_EQ(c.lr_for(e), 2e-3);
    const auto v = c.end_epoch(e, 1.0 + static_cast<double>(e));  // ever worse: no effect
    EXPECT_FALSE(v.lr_reduced);
    EXPECT_FALSE(v.stop);
  }
}

TEST(TrainingControls, CosineFallsFromTheRateTowardsZero) {
  ControlOptions o;
  o.schedule = LrSchedule::kCosine;
  o.cosine_epochs = 4;
  const TrainingControls c(o, 1e-3);
  EXPECT_EQ(c.lr_for(0), 1e-3);
  EXPECT_NEAR(c.lr_for(1), 1e-3 * (1 + std::cos(std::numbers::pi / 4)) / 2, 1e-18);
  EXPECT_NEAR(c.lr_for(2), 0.5e-3, 1e-18);
  EXPECT_GT(c.lr_for(3), 0);
  EXPECT_LT(c.lr_for(3), c.lr_for(2));
  ControlOptions none = o;
  none.cosine_epochs = 0;
  EXPECT_THROW(TrainingControls(none, 1e-3), std::invalid_argument);
}

// ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=2, min_delta=1e-4): an improvement
// is a loss below best - 1e-4; after 2 epochs without one the rate halves and the wait restarts.
TEST(TrainingControls, PlateauFollowsKerasReduceLROnPlateau) {
  ControlOptions o;
  o.schedule = LrSchedule::kPlateau;
  o.plateau_factor = 0.5;
  o.plateau_patience = 2;
  TrainingControls c(o, 1e-3);
  const std::vector<double> losses = {1.0, 0.9, 0.89995, 0.95, 0.8, 0.81, 0.82, 0.83, 0.84};
  // 0.89995 is within min_delta of 0.9: no improvement. Epoch 3 is the second epoch without one.
  const std::vector<bool> reduced = {false, false, false, true, false, false, true, false, true};
  const std::vector<double> lr_before = {1e-3, 1e-3, 1e-3, 1e-3, 5e-4, 5e-4, 5e-4, 2.5e-4, 2.5e-4};
  for (size_t e = 0; e < losses.size(); ++e) {
    EXPECT_EQ(c.lr_for(static_cast<int64_t>(e)), lr_before[e]) << "epoch " << e;
    EXPECT_EQ(c.end_epoch(static_cast<int64_t>(e), losses[e]).lr_reduced, reduced[e])
        << "epoch " << e;
  }
}

// EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True): the wait counts epochs
// since the best; training stops when it reaches the patience; the best epoch is kept.
TEST(TrainingControls, EarlyStoppingFollowsKerasEarlyStopping) {
  ControlOptions o;
  o.early_stopping_patience = 2;
  TrainingControls c(o, 1e-3);
  EXPECT_TRUE(c.end_epoch(0, 0.5).improved);
  EXPECT_TRUE(c.end_epoch(1, 0.4).improved);
  auto v = c.end_epoch(2, 0.4);  // equal is no improvement (min_delta 0)
  EXPECT_FALSE(v.improved);
  EXPECT_FALSE(v.stop);
  v = c.end_epoch(3, 0.45);
  EXPECT_TRUE(v.stop);
  EXPECT_EQ(c.state.stopped_epoch, 3);
  EXPECT_EQ(c.state.stop_best_epoch, 1);
  EXPECT_EQ(c.state.stop_best, 0.4);
}

TEST(TrainingControls, StateRoundTripsThroughJsonExactly) {
  ControlOptions o;
  o.schedule = LrSchedule::kPlateau;
  o.plateau_factor = 0.3;
  o.plateau_patience = 1;
  o.early_stopping_patience = 3;
  TrainingControls c(o, 1.7e-3);
  for (int64_t e = 0; e < 4; ++e) c.end_epoch(e, 1.0 / 3.0 + 0.1 * static_cast<double>(e % 2));
  const TrainingControls back = TrainingControls::from_json(c.to_json());
  EXPECT_EQ(back.to_json(), c.to_json());
  EXPECT_EQ(back.state.lr, c.state.lr);
  EXPECT_EQ(back.state.plateau_best, c.state.plateau_best);
  EXPECT_EQ(back.state.stop_best, c.state.stop_best);
  EXPECT_EQ(back.state.stop_wait, c.state.stop_wait);
  EXPECT_EQ(back.options.plateau_factor, 0.3);
  EXPECT_EQ(back.options.early_stopping_patience, 3);
  // The same epochs after the round trip as without it.
  TrainingControls a = c, b = back;
  for (int64_t e = 4; e < 8; ++e) {
    const double loss = 0.5 + 0.01 * static_cast<double>(e);
    EXPECT_EQ(a.lr_for(e), b.lr_for(e));
    EXPECT_EQ(a.end_epoch(e, loss).stop, b.end_epoch(e, loss).stop);
  }
}

TEST(TrainingControls, BadSettingsAndBadJsonAreRefused) {
  EXPECT_THROW(parse_lr_schedule("step"), std::invalid_argument);
  ControlOptions o;
  o.plateau_factor = 1.0;
  EXPECT_THROW(TrainingControls(o, 1e-3), std::invalid_argument);
  EXPECT_THROW(TrainingControls({}, 0), std::invalid_argument);
  EXPECT_THROW(TrainingControls::from_json("{"), std::invalid_argument);
  EXPECT_THROW(TrainingControls::from_json("{}"), std::invalid_argument);
  std::string j = TrainingControls({}, 1e-3).to_json();
  const std::string bad_lr = std::string(j).replace(j.find("\"lr\":"), 5, "\"lr\":-");
  EXPECT_THROW(TrainingControls::from_json(bad_lr), std::invalid_argument);
}

}  // namespace
}  // namespace mg
