// IDX images and labels, raw and gzip (told by the 1f 8b magic), from memory (host/idx.hpp).
// An accepted file's arrays must match its header.
#include <span>

#include "host/idx.hpp"
#include "tests/fuzz/fuzz_target.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> bytes(data, size);
  try {
    const mg::ImageSet s = mg::read_idx_images(bytes, "fuzz.idx");
    MG_FUZZ_CHECK(s.count >= 1 && s.rows >= 1 && s.cols >= 1);
    MG_FUZZ_CHECK(s.pixels.size() == static_cast<size_t>(s.count * s.rows * s.cols));
  } catch (const mg::DataError&) {
  }
  try {
    const mg::LabelSet s = mg::read_idx_labels(bytes, "fuzz.idx");
    MG_FUZZ_CHECK(s.labels.size() == static_cast<size_t>(s.count));
    for (const uint8_t l : s.labels) MG_FUZZ_CHECK(l <= 9);
  } catch (const mg::DataError&) {
  }
  return 0;
}
