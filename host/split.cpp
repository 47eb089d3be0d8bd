#include "host/split.hpp"

#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <utility>

namespace mg {
namespace {

// numpy's random_interval (numpy/random/src/distributions/distributions.c): rejection sampling
// under the smallest all-ones mask covering max. The draw width matters for reproducing the
// stream: 32-bit draws up to 0xffffffff, 64-bit ones above, high word first as mt19937_next64
// (checked: RandomState(s).randint(0, 2**64, dtype=uint64) == first draw << 32 | second draw).
uint64_t random_interval(std::mt19937& gen, uint64_t max) {
  if (max == 0) return 0;
  uint64_t mask = max;
  mask |= mask >> 1;
  mask |= mask >> 2;
  mask |= mask >> 4;
  mask |= mask >> 8;
  mask |= mask >> 16;
  mask |= mask >> 32;
  uint64_t value;
  if (max <= 0xffffffffULL) {
    do {
      value = static_cast<uint64_t>(gen()) & mask;
    } while (value > max);
  } else {
    do {
      const uint64_t hi = static_cast<uint64_t>(gen());
      const uint64_t lo = static_cast<uint64_t>(gen());
      value = ((hi << 32) | lo) & mask;
    } while (value > max);
  }
  return value;
}

}  // namespace

std::vector<int64_t> numpy_permutation(int64_t n, uint32_t seed) {
  if (n < 0) throw std::invalid_argument("numpy_permutation: negative n " + std::to_string(n));
  std::vector<int64_t> perm(static_cast<size_t>(n));
  std::iota(perm.begin(), perm.end(), int64_t{0});
  std::mt19937 gen(seed);
  for (int64_t i = n - 1; i >= 1; --i) {
    const uint64_t j = random_interval(gen, static_cast<uint64_t>(i));
    std::swap(perm[static_cast<size_t>(i)], perm[static_cast<size_t>(j)]);
  }
  return perm;
}

TrainTestIndices train_test_split_indices(int64_t n, double test_size, uint32_t seed) {
  // sklearn's _validate_shuffle_split, float test_size and train_size=None branch.
  if (!(test_size > 0.0 && test_size < 1.0)) {
    throw std::invalid_argument("train_test_split: test_size=" + std::to_string(test_size) +
                                " should be in the (0, 1) range");
  }
  if (n < 0) throw std::invalid_argument("train_test_split: negative n " + std::to_string(n));
  // ceil of the double product, not of an exact rational: 0.3 * n can land a hair above an
  // integer, and sklearn then takes one more test sample; we must do the same.
  const double n_test_real = std::ceil(test_size * static_cast<double>(n));
  const auto n_test = static_cast<int64_t>(n_test_real);
  const int64_t n_train = n - n_test;
  if (n_train <= 0) {
    throw std::invalid_argument("train_test_split: with n=" + std::to_string(n) +
                                " and test_size=" + std::to_string(test_size) +
                                " the train set would be empty");
  }
  const std::vector<int64_t> perm = numpy_permutation(n, seed);
  TrainTestIndices out;
  out.test.assign(perm.begin(), perm.begin() + n_test);
  out.train.assign(perm.begin() + n_test, perm.begin() + n_test + n_train);
  return out;
}

DataSplit seed_split(int64_t n, uint32_t seed) {
  if (n > std::numeric_limits<int32_t>::max()) {
    throw std::invalid_argument("seed_split: n=" + std::to_string(n) + " does not fit int32");
  }
  const TrainTestIndices first = train_test_split_indices(n, 0.3, seed);
  // The second split permutes positions within X_temp, so map them back through first.test.
  const TrainTestIndices second =
      train_test_split_indices(static_cast<int64_t>(first.test.size()), 0.5, seed);
  auto gather = [](const std::vector<int64_t>& positions, const std::vector<int64_t>* base) {
    std::vector<int32_t> out;
    out.reserve(positions.size());
    for (int64_t p : positions) {
      const int64_t v = base ? (*base)[static_cast<size_t>(p)] : p;
      out.push_back(static_cast<int32_t>(v));
    }
    return out;
  };
  DataSplit split;
  split.train = gather(first.train, nullptr);
  split.val = gather(second.train, &first.test);
  split.test = gather(second.test, &first.test);
  return split;
}

}  // namespace mg
