#include <gtest/gtest.h>

#include "engine/graph.hpp"
#include "engine/model_spec.hpp"
#include "host/report.hpp"

namespace mg {
namespace {

TEST(ModelSpec, SeedModelHasTheNotebooksShapesAndParameterCount) {
  const Graph g = Graph::build(ModelSpec::seed());
  EXPECT_EQ(g.param_count(), 421642);
  const auto& l = g.layers();
  ASSERT_EQ(l.size(), 9u);
  EXPECT_EQ(l[0].name, "conv2d");
  EXPECT_EQ(l[0].out, (Shape{32, 28, 28}));
  EXPECT_EQ(l[1].out, (Shape{32, 14, 14}));
  EXPECT_EQ(l[2].name, "conv2d_1");
  EXPECT_EQ(l[2].out, (Shape{64, 14, 14}));
  EXPECT_EQ(l[3].out, (Shape{64, 7, 7}));
  EXPECT_EQ(l[4].kind, LayerKind::kDropout);
  EXPECT_FLOAT_EQ(l[4].rate, 0.25f);
  EXPECT_EQ(l[5].out, (Shape{3136, 1, 1}));
  EXPECT_EQ(l[6].out, (Shape{128, 1, 1}));
  EXPECT_TRUE(l[6].relu);
  EXPECT_FLOAT_EQ(l[7].rate, 0.5f);
  EXPECT_EQ(l[8].name, "dense_1");
  EXPECT_EQ(l[8].out, (Shape{10, 1, 1}));
  EXPECT_FALSE(l[8].relu);
  // Parameters are packed weight then bias, layer after layer.
  EXPECT_EQ(l[0].weight_offset, 0);
  EXPECT_EQ(l[0].bias_offset, 288);
  EXPECT_EQ(l[2].weight_offset, 320);
  EXPECT_EQ(l[8].bias_offset + l[8].bias_size, 421642);
}

TEST(ModelSpec, RoundTripsAndAddsFlatten) {
  const ModelSpec s = ModelSpec::parse("conv8, pool ,drop0.1,dense16");
  EXPECT_EQ(s.to_string(), "conv8,pool,drop0.1,flatten,dense16");
  EXPECT_EQ(ModelSpec::parse(s.to_string()).to_string(), s.to_string());
  EXPECT_EQ(ModelSpec::parse("conv4").to_string(), "conv4,flatten");
  EXPECT_EQ(ModelSpec::seed().to_string(), std::string(kSeedModelSpec));
}

TEST(ModelSpec, RejectsBadSpecsWithTheToken) {
  const char* bad[][2] = {
      {"conv0", "conv0"},        {"conv32,drop1.5", "drop1.5"}, {"drop-0.1", "drop-0.1"},
      {"conv", "conv"},          {"convx", "convx"},            {"dense128,conv4", "conv4"},
      {"relux", "relux"},        {"conv4,,pool", "empty"},      {"", "empty"},
      {"dense99999999", "dense"}, {"flatten,flatten", "flatten"}, {"drop1", "drop1"},
  };
  for (const auto& [spec, needle] : bad) {
    try {
      ModelSpec::parse(spec);
      ADD_FAILURE() << "accepted '" << spec << "'";
    } catch (const SpecError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  }
}

TEST(ModelSpec, KernelSizePaddingAndActivationSuffixes) {
  const ModelSpec s = ModelSpec::parse("conv32k5,conv64k3v,conv8k7vn,conv4n,conv2k1,relu,dense16n,dense8");
  const auto& l = s.layers;
  ASSERT_EQ(l.size(), 9u);
  EXPECT_EQ(l[0].kernel, 5);
  EXPECT_FALSE(l[0].valid);
  EXPECT_TRUE(l[0].relu);
  EXPECT_EQ(l[1].kernel, 3);
  EXPECT_TRUE(l[1].valid);
  EXPECT_EQ(l[2].kernel, 7);
  EXPECT_TRUE(l[2].valid);
  EXPECT_FALSE(l[2].relu);
  EXPECT_FALSE(l[3].relu);
  EXPECT_EQ(l[3].kernel, 3);
  EXPECT_EQ(l[4].kernel, 1);
  EXPECT_EQ(l[5].kind, LayerKind::kRelu);
  EXPECT_EQ(l[7].units, 16);
  EXPECT_FALSE(l[7].relu);
  EXPECT_TRUE(l[8].relu);
  // k3 is the default and is not written back; every other suffix is.
  EXPECT_EQ(s.to_string(), "conv32k5,conv64v,conv8k7vn,conv4n,conv2k1,relu,flatten,dense16n,dense8");
  EXPECT_EQ(ModelSpec::parse("conv32k3").to_string(), "conv32,flatten");
  EXPECT_EQ(ModelSpec::parse(s.to_string()).to_string(), s.to_string());
}

TEST(ModelSpec, RejectsBadKernelSuffixes) {
  const char* bad[][2] = {
      {"conv32k4", "odd"},     {"conv32k9", "odd"},   {"conv32k0", "odd"},
      {"conv32k", "kernel"},   {"conv32nv", "order"}, {"conv32vk5", "order"},
      {"conv32x", "order"},    {"conv32k5vv", "order"}, {"convk5", "whole number"},
      {"dense8nn", "dense8nn"}, {"densen", "densen"},
  };
  for (const auto& [spec, needle] : bad) {
    try {
      ModelSpec::parse(spec);
      ADD_FAILURE() << "accepted '" << spec << "'";
    } catch (const SpecError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(spec), std::string::npos) << e.what();
    }
  }
}

// Keras: Conv2D(32, 5, padding='valid') on 28x28x1 gives (None, 24, 24, 32) and 5*5*32 + 32 = 832
// parameters; 'same' keeps 28x28; ReLU is its own row with no parameters.
TEST(ModelSpec, KernelShapesAndSummaryFollowKeras) {
  const Graph g = Graph::build(ModelSpec::parse("conv32k5v,pool,conv64k5n,relu,conv16k1v,conv8k7"));
  const auto& l = g.layers();
  EXPECT_EQ(l[0].out, (Shape{32, 24, 24}));
  EXPECT_EQ(l[0].weight_size + l[0].bias_size, 832);
  EXPECT_EQ(l[0].pad, 0);
  EXPECT_EQ(l[2].out, (Shape{64, 12, 12}));
  EXPECT_EQ(l[2].pad, 2);
  EXPECT_FALSE(l[2].relu);
  EXPECT_EQ(l[2].weight_size, 64 * 32 * 25);
  EXPECT_EQ(l[3].name, "re_lu");
  EXPECT_EQ(l[3].out, (Shape{64, 12, 12}));
  EXPECT_FALSE(l[3].has_params());
  EXPECT_EQ(l[4].out, (Shape{16, 12, 12}));
  EXPECT_EQ(l[4].weight_size, 16 * 64);
  EXPECT_EQ(l[5].out, (Shape{8, 12, 12}));
  EXPECT_EQ(l[5].weight_size, 8 * 16 * 49);
  const std::vector<SummaryRow> rows = model_summary_rows(g);
  EXPECT_EQ(rows[0].layer, "conv2d (Conv2D)");
  EXPECT_EQ(rows[0].output_shape, (std::vector<int64_t>{24, 24, 32}));
  EXPECT_EQ(rows[0].params, 832);
  EXPECT_EQ(rows[3].layer, "re_lu (ReLU)");
  EXPECT_EQ(rows[3].output_shape, (std::vector<int64_t>{12, 12, 64}));
  EXPECT_EQ(rows[3].params, 0);
  EXPECT_NE(model_summary(g).find("re_lu (ReLU)"), std::string::npos);
  const int64_t total = 832 + (64 * 32 * 25 + 64) + (16 * 64 + 16) + (8 * 16 * 49 + 8) +
                        (8 * 12 * 12 * 10 + 10);
  EXPECT_EQ(g.param_count(), total);
}

// Keras, by hand: BatchNormalization of C channels holds gamma, beta, moving_mean and
// moving_var, 4 C parameters of which the 2 C moving statistics are non-trainable.
//   conv2d 3*3*1*32 + 32 = 320; batch_normalization 4*32 = 128 (64 non-trainable);
//   conv2d_1 5*5*32*64 + 64 = 51,264; batch_normalization_1 4*64 = 256 (128);
//   dense 3136*128 + 128 = 401,536; dense_1 128*10 + 10 = 1,290.
TEST(ModelSpec, BatchNormalizationSummaryFollowsKeras) {
  const Graph g = Graph::build(ModelSpec::parse(
      "conv32n,bn,relu,pool,conv64k5n,bn,relu,pool,drop0.25,flatten,dense128,drop0.5"));
  const auto& l = g.layers();
  ASSERT_EQ(l[1].kind, LayerKind::kBatchNorm);
  EXPECT_EQ(l[1].name, "batch_normalization");
  EXPECT_EQ(l[5].name, "batch_normalization_1");
  EXPECT_EQ(l[1].out, (Shape{32, 28, 28}));
  EXPECT_EQ(l[1].param_count(), 128);
  EXPECT_EQ(l[1].trainable_count(), 64);
  EXPECT_FALSE(l[1].has_kernel());
  EXPECT_TRUE(l[0].has_kernel());
  EXPECT_EQ(l[5].param_count(), 256);
  const int64_t trainable = 320 + 64 + 51264 + 128 + 401536 + 1290;
  EXPECT_EQ(g.trainable_count(), trainable);
  EXPECT_EQ(g.param_count(), trainable + 64 + 128);
  // The moving statistics form the tail of the flat buffer, after every trainable value.
  EXPECT_EQ(l[1].stats_offset, trainable);
  EXPECT_EQ(l[5].stats_offset, trainable + 64);
  EXPECT_EQ(l[1].stats_size, 64);
  const std::vector<SummaryRow> rows = model_summary_rows(g);
  EXPECT_EQ(rows[1].layer, "batch_normalization (BatchNormalization)");
  EXPECT_EQ(rows[1].output_shape, (std::vector<int64_t>{28, 28, 32}));
  EXPECT_EQ(rows[1].params, 128);
  EXPECT_EQ(rows[5].params, 256);
  const std::string text = model_summary(g);
  EXPECT_NE(text.find("Total params: 454,794\n"), std::string::npos) << text;
  EXPECT_NE(text.find("Trainable params: 454,602\n"), std::string::npos) << text;
  EXPECT_NE(text.find("Non-trainable params: 192\n"), std::string::npos) << text;
  EXPECT_EQ(ModelSpec::parse(g.spec().to_string()).to_string(), g.spec().to_string());
}

// After a dense layer, BN normalizes per unit: dense 784*64 + 64 = 50,240, BN 4*64 = 256.
TEST(ModelSpec, BatchNormalizationAfterDenseIsPerUnit) {
  const Graph g = Graph::build(ModelSpec::parse("dense64n,bn,relu"));
  const auto& l = g.layers();
  ASSERT_EQ(l[2].kind, LayerKind::kBatchNorm);
  EXPECT_EQ(l[2].out, (Shape{64, 1, 1}));
  EXPECT_EQ(l[2].param_count(), 256);
  EXPECT_EQ(g.param_count(), 50240 + 256 + 650);
  EXPECT_EQ(g.param_count() - g.trainable_count(), 128);
  EXPECT_EQ(model_summary_rows(g)[2].output_shape, (std::vector<int64_t>{64}));
  EXPECT_THROW(ModelSpec::parse("conv8,bn2"), SpecError);
}

TEST(ModelSpec, AValidKernelLargerThanTheMapIsRejectedWhenBuilt) {
  try {
    Graph::build(ModelSpec::parse("pool,pool,pool,conv4k5v"));  // 28 -> 14 -> 7 -> 3, then 5x5
    ADD_FAILURE() << "built a 5x5 'valid' conv on a 3x3 map";
  } catch (const SpecError& e) {
    EXPECT_NE(std::string(e.what()).find("3x3"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("conv2d"), std::string::npos) << e.what();
  }
  EXPECT_NO_THROW(Graph::build(ModelSpec::parse("pool,pool,pool,conv4k3v")));  // 3 -> 1
  EXPECT_NO_THROW(Graph::build(ModelSpec::parse("pool,pool,pool,conv4k7")));   // 'same' pads
}

TEST(ModelSpec, PoolingAOneByOneMapIsRejectedWhenBuilt) {
  const ModelSpec s = ModelSpec::parse("pool,pool,pool,pool,pool");
  try {
    Graph::build(s);
    ADD_FAILURE() << "pooled a 1x1 map";
  } catch (const SpecError& e) {
    EXPECT_NE(std::string(e.what()).find("1x1"), std::string::npos) << e.what();
  }
  EXPECT_NO_THROW(Graph::build(ModelSpec::parse("pool,pool,pool,pool")));  // 28 -> 14 -> 7 -> 3 -> 1
}

}  // namespace
}  // namespace mg
