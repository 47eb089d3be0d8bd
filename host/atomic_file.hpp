// Files that are either wholly there or not at all: written to a temporary file beside the target,
// synced, then renamed over it (and the directory synced). A crash or an error mid-write leaves any
// previous version intact and no partial file under the target's name.
#pragma once

#include <cstddef>
#include <filesystem>
#include <stdexcept>
#include <string_view>

namespace mg {

class FileError : public std::runtime_error {
  using std::runtime_error::runtime_error;
};

class AtomicFile {
 public:
  // Creates the temporary file; throws FileError "<target>: cannot write (...)" when it cannot.
  explicit AtomicFile(std::filesystem::path target);
  ~AtomicFile();  // removes the temporary file unless commit() succeeded
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t size);  // throws FileError naming the target
  void write(std::string_view text) { write(text.data(), text.size()); }
  void commit();  // fsync, rename over the target, fsync the directory
  const std::filesystem::path& target() const { return target_; }
  const std::filesystem::path& temp_path() const { return temp_; }

 private:
  [[noreturn]] void fail(const std::string& what, int err);
  std::filesystem::path target_, temp_;
  int fd_ = -1;
  bool committed_ = false;
};

void write_file_atomic(const std::filesystem::path& target, std::string_view content);

}  // namespace mg
