// The notebook's train/validation/test split, reproduced index for index: sklearn's
// train_test_split on top of numpy's legacy RandomState shuffle. Matching it exactly is what lets
// our accuracies be compared with the notebook's (and with tools/torch_peer.py) on the very same
// 10,500 test images, rather than on a split that is merely the same size.
#pragma once

#include <cstdint>
#include <vector>

namespace mg {

// numpy.random.RandomState(seed).permutation(n). RandomState seeds MT19937 with init_genrand(seed),
// which is exactly std::mt19937(seed); the shuffle is numpy's legacy Fisher-Yates (_shuffle_raw):
// for i = n-1 down to 1, j = random_interval(i) by masked rejection sampling, swap(a[i], a[j]).
// Throws std::invalid_argument for n < 0.
std::vector<int64_t> numpy_permutation(int64_t n, uint32_t seed);

// sklearn.model_selection.train_test_split(range(n), test_size=test_size, random_state=seed,
// shuffle=True) with a float test_size: n_test = ceil(test_size * n) in double arithmetic,
// n_train = n - n_test, test = perm[:n_test], train = perm[n_test:]. Throws std::invalid_argument
// where sklearn raises ValueError (test_size outside (0, 1), or an empty train set).
struct TrainTestIndices {
  std::vector<int64_t> train, test;
};
TrainTestIndices train_test_split_indices(int64_t n, double test_size, uint32_t seed);

// The notebook's protocol: X_train, X_temp = split(X, 0.3, seed); X_val, X_test = split(X_temp,
// 0.5, seed). Indices point into the combined dataset 0..n-1 (MNIST's 60,000 training images
// first, then the 10,000 test images); for n = 70,000 the sizes are 49,000 / 10,500 / 10,500.
// Throws std::invalid_argument when n does not fit int32 or is too small to split.
struct DataSplit {
  std::vector<int32_t> train, val, test;
};
DataSplit seed_split(int64_t n, uint32_t seed = 42);

}  // namespace mg
