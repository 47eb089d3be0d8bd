// A photo or scan of one digit, made to look like an MNIST image: grayscale, white on black,
// the ink's bounding box fitted into 20x20 (aspect kept), centred by its centre of mass in 28x28.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <span>
#include <stdexcept>
#include <string>

namespace mg {

class ImageError : public std::runtime_error {
  using std::runtime_error::runtime_error;
};

using MnistImage = std::array<uint8_t, 28 * 28>;

// PNG, JPEG, PGM/PPM, BMP... of any size up to 16384 x 16384 (stb_image). Throws ImageError
// "<path>: <problem>" when it cannot be read or decoded, or holds no ink.
MnistImage load_digit_image(const std::filesystem::path& path);

// The same from an encoded picture in memory (an upload, say): PNG, JPEG, binary PGM/PPM or BMP,
// told by their signatures (other formats are refused unread). The header's width and height are
// checked against max_side before a pixel is decoded, so a small file claiming a huge image is
// refused before anything is allocated for it. Throws ImageError "<what>: <problem>".
MnistImage load_digit_image(std::span<const uint8_t> encoded, const std::string& what,
                            int max_side = 16384);

// The same from 8-bit grayscale pixels in memory (row-major). Dark-on-light input is inverted.
MnistImage mnist_from_gray(const uint8_t* pixels, int width, int height, const std::string& what);

}  // namespace mg
