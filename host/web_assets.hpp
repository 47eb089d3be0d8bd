// The web page of serve and train --serve (host/web/), compiled into the program by
// cmake/embed_files.cmake: it works offline and needs no files beside the binary.
#pragma once

#include <cstddef>
#include <span>
#include <string_view>

namespace mg {

struct EmbeddedFile {
  std::string_view name;  // "index.html", "app.js", ...
  const unsigned char* data;
  size_t size;
};

std::span<const EmbeddedFile> embedded_files();

}  // namespace mg
