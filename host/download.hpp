// Verified HTTP(S) downloads with libcurl: a file is written to a temporary name beside its
// destination and renamed into place only after its SHA-256 matches, so a partial or corrupt
// download is never seen under the real name, and a good file already there is never replaced
// by a bad one. See docs/data.md.
#pragma once

#include <cstddef>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "host/idx.hpp"

struct evp_md_ctx_st;  // OpenSSL's EVP_MD_CTX

namespace mg {

// A download that failed (connection, HTTP status, truncated body, checksum mismatch, I/O).
// what() is one line naming the URL and the problem.
class DownloadError : public DataError {
 public:
  using DataError::DataError;
};

// Incremental SHA-256 (OpenSSL EVP); throws std::runtime_error if OpenSSL fails.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(const void* data, size_t n);
  std::string hex();  // lower-case hex of all the bytes given; call once

 private:
  evp_md_ctx_st* ctx_;
};

// Lower-case hex SHA-256 of a file's bytes (OpenSSL EVP). Throws DataError if it cannot be read.
std::string sha256_file(const std::filesystem::path& path);

// Fetches url into dest (its directory is created if missing) and checks the body's SHA-256
// against sha256_hex (64 hex digits, either case; anything else is std::invalid_argument).
// Fails fast: 5 s to connect, a transfer that stalls below 1 KB/s for 15 s, 300 s in all.
// show_progress: a progress bar on stderr when stderr is a terminal, else one line per file;
// false prints nothing. Throws DownloadError; dest then holds what it held before.
void download_verified(const std::string& url, const std::filesystem::path& dest,
                       std::string_view sha256_hex, bool show_progress = true);

// One file of a data set on a mirror: its name under the mirror's base URL, and its SHA-256.
struct RemoteFile {
  std::string name;
  std::string sha256;
};

// Downloads each of files into dir from the first base URL (ending in '/') that delivers it
// verified. A mirror that fails once is given up for the remaining files, so a machine with no
// route to it loses one connect timeout, not one per file. Files already in dir (name, or name
// without its .gz suffix) are kept as they are. DownloadError lists every URL tried.
void download_files(const std::filesystem::path& dir, const std::vector<std::string>& mirrors,
                    const std::vector<RemoteFile>& files, bool show_progress = true);

// The public MNIST mirrors, or only $MNIST_GPU_MIRROR when that is set (tests serve their own).
std::vector<std::string> mnist_mirrors();
// The four MNIST .gz files with their SHA-256 (docs/data.md, tools/get_mnist.sh).
const std::vector<RemoteFile>& mnist_remote_files();

// download_files(dir, mnist_mirrors(), mnist_remote_files(), show_progress).
void download_mnist(const std::filesystem::path& dir, bool show_progress = true);

}  // namespace mg
