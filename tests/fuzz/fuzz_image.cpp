// The picture path of predict and serve: stb_image's decoders (PNG, JPEG, PGM/PPM, BMP), then our
// preprocessing into a 28x28 MNIST image (host/digit_image.hpp), with predict's size limit.
#include <span>

#include "host/digit_image.hpp"
#include "tests/fuzz/fuzz_target.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const mg::MnistImage img = mg::load_digit_image(std::span<const uint8_t>(data, size), "fuzz");
    int ink = 0;
    for (const uint8_t v : img) ink += v > 0;
    MG_FUZZ_CHECK(ink > 0);  // an accepted picture has a digit in it
  } catch (const mg::ImageError&) {
  }
  return 0;
}
