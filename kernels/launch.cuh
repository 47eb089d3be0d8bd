// How a kernel maps threads to elements, written once and free of CUDA so CPU tests can run it.
//
// Every elementwise kernel is a grid-stride loop: thread t of a grid of T threads handles elements
// t, t + T, t + 2T, ... A grid smaller than the element count (the launch cap below, or a test that
// shrinks it on purpose) is then still correct, and the element a thread handles never depends on
// anything but its index, so results do not depend on the launch configuration.
#pragma once

#include <algorithm>
#include <cstdint>

#include "kernels/philox.cuh"  // MG_HOST_DEVICE

namespace mg::kern {

// Threads per block for the elementwise kernels.
inline constexpr int kBlock = 256;

// Calls f(i) for i = first, first + stride, ... below count. In a kernel, first is the global
// thread index and stride the number of threads in the grid (both int64_t: count may exceed 2^31).
template <class F>
MG_HOST_DEVICE void for_each_strided(int64_t first, int64_t stride, int64_t count, F&& f) {
  for (int64_t i = first; i < count; i += stride) f(i);
}

// Blocks for count elements at `block` threads each: enough for one element per thread, at least
// one, at most max_blocks (the grid-stride loop covers the rest).
inline int blocks_for(int64_t count, int block, int max_blocks) {
  const int64_t want = (count + block - 1) / block;
  return static_cast<int>(std::clamp<int64_t>(want, 1, std::max(max_blocks, 1)));
}

}  // namespace mg::kern
