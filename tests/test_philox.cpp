#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "kernels/philox.cuh"

namespace mg {
namespace {

// Known-answer vectors of Random123's kat_vectors (philox4x32, 10 rounds): counter, key, output.
TEST(Philox, KnownAnswerVectors) {
  struct Kat {
    Philox4 ctr;
    uint32_t k0, k1;
    Philox4 out;
  };
  const Kat kats[] = {
      {{{0, 0, 0, 0}}, 0, 0, {{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}}},
      {{{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}}, 0xffffffff, 0xffffffff,
       {{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}}},
      {{{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}}, 0xa4093822, 0x299f31d0,
       {{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}}},
  };
  for (const Kat& k : kats) {
    const Philox4 got = philox4x32_10(k.ctr, k.k0, k.k1);
    for (int i = 0; i < 4; ++i) EXPECT_EQ(got.v[i], k.out.v[i]) << "word " << i;
  }
}

TEST(Philox, DrawIsKeyedByEveryField) {
  const uint32_t base = philox_draw(42, RngStream::kDropout, 3, 7, 1001);
  EXPECT_EQ(base, philox_draw(42, RngStream::kDropout, 3, 7, 1001));
  EXPECT_NE(base, philox_draw(43, RngStream::kDropout, 3, 7, 1001));
  EXPECT_NE(base, philox_draw(42, RngStream::kInit, 3, 7, 1001));
  EXPECT_NE(base, philox_draw(42, RngStream::kDropout, 4, 7, 1001));
  EXPECT_NE(base, philox_draw(42, RngStream::kDropout, 3, 8, 1001));
  EXPECT_NE(base, philox_draw(42, RngStream::kDropout, 3, 7, 1002));
  // Elements 4k..4k+3 share one Philox block and take its four words.
  const Philox4 block = philox4x32_10({{250, 0, 7, (1u << 16) | 3u}}, 42, 0);
  for (uint64_t lane = 0; lane < 4; ++lane)
    EXPECT_EQ(philox_draw(42, RngStream::kDropout, 3, 7, 1000 + lane), block.v[lane]);
}

TEST(Philox, DropoutTakesSixteenBitsAnElementEightToABlock) {
  // Element 128 g + 16 l + j takes lane l of block 16 g + j: bits 16 (l % 2) .. of word l / 2.
  for (const uint64_t block : {uint64_t{0}, uint64_t{125}, uint64_t{16 * 1000 + 15}}) {
    const Philox4 r = philox4x32_10(
        {{static_cast<uint32_t>(block), 0, 7, (1u << 16) | 3u}}, 42, 0);
    for (int l = 0; l < 8; ++l) {
      const uint64_t i = block / 16 * 128 + static_cast<uint64_t>(l) * 16 + block % 16;
      EXPECT_EQ(dropout_index(block, l), i);
      EXPECT_EQ(dropout_block_of(i), block);
      EXPECT_EQ(dropout_lane_of(i), l);
      const uint32_t bits = (r.v[l / 2] >> (16 * (l % 2))) & 0xFFFFu;
      EXPECT_EQ(dropout_bits(r, l), bits) << l;
      // Kept exactly when the bits reach the threshold: a threshold on each side of them.
      const float below = static_cast<float>(bits) / 65536.0f;
      const float above = static_cast<float>(bits + 1) / 65536.0f;
      EXPECT_TRUE(dropout_keep(42, 3, 7, i, below)) << i;
      EXPECT_FALSE(dropout_keep(42, 3, 7, i, above)) << i;
    }
  }
  // Every element of a group has a block and lane of its own.
  std::vector<int> seen(128, 0);
  for (uint64_t i = 0; i < 128; ++i) ++seen[dropout_block_of(i) * 8 + dropout_lane_of(i)];
  EXPECT_EQ(std::count(seen.begin(), seen.end(), 1), 128);
  // The threshold is ceil(rate * 65536), exact for every float rate.
  EXPECT_EQ(dropout_threshold(0.0f), 0u);
  EXPECT_EQ(dropout_threshold(0.25f), 16384u);
  EXPECT_EQ(dropout_threshold(0.5f), 32768u);
  EXPECT_EQ(dropout_threshold(0.3f), 19661u);  // 0.3f * 65536 = 19660.8...
  EXPECT_EQ(dropout_threshold(0.99999f), 65536u);  // keeps nothing, as u / 65536 >= 0.99999
}

TEST(Philox, UniformAndDropoutRate) {
  EXPECT_EQ(uniform_from_bits(0), 0.0f);
  EXPECT_LT(uniform_from_bits(0xffffffffu), 1.0f);
  for (const float rate : {0.0f, 0.25f, 0.5f, 0.9f}) {
    const int n = 200000;
    int kept = 0;
    for (int i = 0; i < n; ++i) kept += dropout_keep(7, 1, 0, static_cast<uint64_t>(i), rate);
    // Binomial standard deviation is at most sqrt(n)/2 ~ 224; 6 sigma is about 0.007 of n.
    EXPECT_NEAR(static_cast<double>(kept) / n, 1.0 - rate, 0.007) << "rate " << rate;
  }
}

}  // namespace
}  // namespace mg
