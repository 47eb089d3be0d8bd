#include <gtest/gtest.h>

#include "engine/graph.hpp"
#include "engine/model_spec.hpp"

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
      {"relu", "relu"},          {"conv4,,pool", "empty"},      {"", "empty"},
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
