// stb_image and stb_image_resize compiled into the fuzzers themselves: Debian's libstb is a shared
// library without coverage, so without these the fuzzer could not see which decoder paths an input
// reaches. The program proper links libstb; these definitions take its place in the fuzzers only.
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_RESIZE_IMPLEMENTATION
#include <stb_image.h>
#include <stb_image_resize.h>
