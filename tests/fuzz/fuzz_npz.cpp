// Keras' mnist.npz from memory: the zip (libzip) and each member's .npy header and data
// (host/datasets.hpp). An accepted file's arrays must be consistent.
#include <span>

#include "host/datasets.hpp"
#include "tests/fuzz/fuzz_target.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const mg::LabeledImages d = mg::read_mnist_npz(std::span<const uint8_t>(data, size), "fuzz.npz");
    MG_FUZZ_CHECK(d.train_count >= 1 && d.count > d.train_count);
    MG_FUZZ_CHECK(d.images.size() == static_cast<size_t>(d.count) * 28 * 28);
    MG_FUZZ_CHECK(d.labels.size() == static_cast<size_t>(d.count));
  } catch (const mg::DataError&) {
  }
  return 0;
}
