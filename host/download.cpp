#include "host/download.hpp"

#include "host/atomic_file.hpp"

#include <curl/curl.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

namespace mg {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr long kConnectTimeoutS = 5;
constexpr long kTotalTimeoutS = 300;
// A transfer slower than this for that long is given up: a dead link fails in seconds.
constexpr long kLowSpeedBytesPerS = 1024;
constexpr long kLowSpeedTimeS = 15;
// Far above any file we fetch (MNIST's largest .gz is 9.9 MB); stops a server that never ends.
constexpr curl_off_t kMaxBytes = curl_off_t{1} << 30;

std::string normalized_sha256(std::string_view hex) {
  std::string out(hex);
  const bool ok = out.size() == 64 && std::all_of(out.begin(), out.end(), [](char c) {
                    return std::isxdigit(static_cast<unsigned char>(c)) != 0;
                  });
  if (!ok) {
    throw std::invalid_argument("expected SHA-256 as 64 hex digits, got '" + out + "'");
  }
  std::transform(out.begin(), out.end(), out.begin(), [](char c) {
    return static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  });
  return out;
}

// ---- progress --------------------------------------------------------------------------------

std::string human_bytes(double bytes) {
  std::array<char, 32> buf{};
  if (bytes >= 1e6) {
    std::snprintf(buf.data(), buf.size(), "%.1f MB", bytes / 1e6);
  } else if (bytes >= 1e3) {
    std::snprintf(buf.data(), buf.size(), "%.1f kB", bytes / 1e3);
  } else {
    std::snprintf(buf.data(), buf.size(), "%.0f B", bytes);
  }
  return buf.data();
}

// A one-line bar redrawn in place on a terminal: name, bar, percent, bytes, rate.
class ProgressBar {
 public:
  explicit ProgressBar(std::string label) : label_(std::move(label)), start_(Clock::now()) {}

  void update(curl_off_t now_bytes, curl_off_t total_bytes, bool final = false) {
    const auto t = Clock::now();
    if (!final && t - last_draw_ < std::chrono::milliseconds(100)) return;
    last_draw_ = t;
    const double seconds = std::chrono::duration<double>(t - start_).count();
    const double rate = seconds > 0 ? static_cast<double>(now_bytes) / seconds : 0.0;
    constexpr int kWidth = 24;
    std::string line = "\r" + label_ + " [";
    if (total_bytes > 0) {
      const double frac =
          std::min(1.0, static_cast<double>(now_bytes) / static_cast<double>(total_bytes));
      const int filled = static_cast<int>(frac * kWidth);
      line += std::string(static_cast<size_t>(filled), '=') +
              std::string(static_cast<size_t>(kWidth - filled), ' ');
      std::array<char, 16> pct{};
      std::snprintf(pct.data(), pct.size(), "] %3d%% ", static_cast<int>(frac * 100));
      line += pct.data();
      line += human_bytes(static_cast<double>(now_bytes)) + " / " +
              human_bytes(static_cast<double>(total_bytes));
    } else {
      line += std::string(kWidth, '?') + "] " + human_bytes(static_cast<double>(now_bytes));
    }
    line += "  " + human_bytes(rate) + "/s   ";
    if (final) line += "\n";
    std::fputs(line.c_str(), stderr);
    std::fflush(stderr);
  }

 private:
  std::string label_;
  Clock::time_point start_;
  Clock::time_point last_draw_{};
};

// ---- the transfer ----------------------------------------------------------------------------

[[noreturn]] void fail(const std::string& url, const std::string& problem) {
  throw DownloadError(url + ": " + problem);
}

struct Transfer {
  AtomicFile* file = nullptr;
  Sha256 sha;
  curl_off_t bytes = 0;
  std::string write_error;
  std::unique_ptr<ProgressBar> bar;
};

size_t on_write(char* data, size_t size, size_t nmemb, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const size_t n = size * nmemb;
  try {
    t->file->write(data, n);
    t->sha.update(data, n);
  } catch (const std::exception& e) {  // never let an exception cross libcurl's C frames
    t->write_error = e.what();
    return 0;  // makes curl stop with CURLE_WRITE_ERROR
  }
  t->bytes += static_cast<curl_off_t>(n);
  return n;
}

int on_progress(void* user, curl_off_t dltotal, curl_off_t dlnow, curl_off_t, curl_off_t) {
  auto* t = static_cast<Transfer*>(user);
  // libcurl calls before the headers arrive too; draw once there is something to show.
  if (t->bar && (dlnow > 0 || dltotal > 0)) t->bar->update(dlnow, dltotal);
  return 0;
}

void init_curl_once() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
      throw std::runtime_error("libcurl: curl_global_init failed");
    }
  });
}

std::string file_name_of(const std::string& url) {
  const size_t slash = url.find_last_of('/');
  return slash == std::string::npos ? url : url.substr(slash + 1);
}

}  // namespace

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
  if (ctx_ == nullptr || EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr) != 1) {
    EVP_MD_CTX_free(ctx_);
    throw std::runtime_error("OpenSSL: cannot initialise SHA-256");
  }
}

Sha256::~Sha256() { EVP_MD_CTX_free(ctx_); }

void Sha256::update(const void* data, size_t n) {
  if (EVP_DigestUpdate(ctx_, data, n) != 1)
    throw std::runtime_error("OpenSSL: SHA-256 update failed");
}

std::string Sha256::hex() {
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(ctx_, digest.data(), &len) != 1) {
    throw std::runtime_error("OpenSSL: SHA-256 final failed");
  }
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    out += kDigits[digest[i] >> 4];
    out += kDigits[digest[i] & 15];
  }
  return out;
}

std::string sha256_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw DataError(path.string() + ": cannot open: " + std::strerror(errno));
  Sha256 sha;
  std::vector<char> buf(size_t{1} << 16);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    const std::streamsize got = in.gcount();
    if (got > 0) sha.update(buf.data(), static_cast<size_t>(got));
  }
  if (in.bad()) throw DataError(path.string() + ": read error");
  return sha.hex();
}

void download_verified(const std::string& url, const fs::path& dest, std::string_view sha256_hex,
                       bool show_progress) {
  const std::string expected = normalized_sha256(sha256_hex);
  init_curl_once();

  const fs::path dir = dest.parent_path().empty() ? fs::path(".") : dest.parent_path();
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) fail(url, "cannot create the directory " + dir.string() + ": " + ec.message());
  // Written beside dest and renamed into place only once its SHA-256 is verified.
  std::optional<AtomicFile> temp;
  try {
    temp.emplace(dest);
  } catch (const FileError& e) {
    fail(url, e.what());
  }

  const bool tty = show_progress && ::isatty(STDERR_FILENO) == 1;
  Transfer transfer;
  transfer.file = &*temp;
  if (tty) transfer.bar = std::make_unique<ProgressBar>(file_name_of(url));
  if (show_progress && !tty) std::fprintf(stderr, "downloading %s\n", url.c_str());

  std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(curl_easy_init(), curl_easy_cleanup);
  if (!curl) fail(url, "libcurl: curl_easy_init failed");
  std::array<char, CURL_ERROR_SIZE> error_buf{};
  CURL* h = curl.get();
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, error_buf.data());
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_FAILONERROR, 1L);
  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(h, CURLOPT_MAXREDIRS, 5L);
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, kConnectTimeoutS);
  curl_easy_setopt(h, CURLOPT_TIMEOUT, kTotalTimeoutS);
  curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, kLowSpeedBytesPerS);
  curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, kLowSpeedTimeS);
  curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, kMaxBytes);
  curl_easy_setopt(h, CURLOPT_USERAGENT, "mnist_gpu");
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &transfer);
  curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
  curl_easy_setopt(h, CURLOPT_XFERINFODATA, &transfer);
  curl_easy_setopt(h, CURLOPT_NOPROGRESS, tty ? 0L : 1L);

  const auto start = Clock::now();
  const CURLcode rc = curl_easy_perform(h);
  if (transfer.bar) {
    curl_off_t total = -1;
    curl_easy_getinfo(h, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &total);
    transfer.bar->update(transfer.bytes, total, /*final=*/true);
  }
  if (rc != CURLE_OK) {
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    if (rc == CURLE_HTTP_RETURNED_ERROR) fail(url, "HTTP error " + std::to_string(status));
    if (rc == CURLE_WRITE_ERROR && !transfer.write_error.empty()) fail(url, transfer.write_error);
    std::string detail = error_buf[0] != '\0' ? error_buf.data() : curl_easy_strerror(rc);
    while (!detail.empty() && (detail.back() == '\n' || detail.back() == '\r')) detail.pop_back();
    if (rc == CURLE_PARTIAL_FILE) {
      fail(url, "truncated transfer after " + std::to_string(transfer.bytes) + " bytes (" + detail +
                    ")");
    }
    fail(url, detail);
  }
  // Belt and braces: libcurl reports a short body as CURLE_PARTIAL_FILE, but check the length
  // the server declared ourselves too.
  curl_off_t declared = -1;
  curl_easy_getinfo(h, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &declared);
  if (declared >= 0 && declared != transfer.bytes) {
    fail(url, "truncated transfer: " + std::to_string(transfer.bytes) + " of " +
                  std::to_string(declared) + " bytes");
  }
  const std::string actual = transfer.sha.hex();
  if (actual != expected) {
    fail(url, "SHA-256 mismatch: got " + actual + ", expected " + expected + " (" +
                  std::to_string(transfer.bytes) + " bytes received)");
  }
  try {
    temp->commit();
  } catch (const FileError& e) {
    fail(url, e.what());
  }

  if (show_progress && !tty) {
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    std::fprintf(stderr, "  %s in %.1f s, SHA-256 verified: %s\n",
                 human_bytes(static_cast<double>(transfer.bytes)).c_str(), seconds,
                 dest.string().c_str());
  }
}

void download_files(const fs::path& dir, const std::vector<std::string>& mirrors,
                    const std::vector<RemoteFile>& files, bool show_progress) {
  if (mirrors.empty()) throw std::invalid_argument("download_files: no mirrors given");
  // A folder made for a download that then failed is removed again (only if still empty).
  std::error_code exists_ec;
  const bool existed = fs::exists(dir, exists_ec);
  struct RemoveIfEmpty {
    const fs::path& dir;
    bool keep;
    ~RemoveIfEmpty() {
      std::error_code ec;
      if (!keep && fs::is_empty(dir, ec) && !ec) fs::remove(dir, ec);
    }
  } cleanup{dir, existed};
  std::vector<bool> given_up(mirrors.size(), false);
  for (const RemoteFile& file : files) {
    const fs::path dest = dir / file.name;
    const fs::path stem = dest.extension() == ".gz" ? dest.parent_path() / dest.stem() : dest;
    std::error_code ec;
    if (fs::exists(dest, ec) || fs::exists(stem, ec)) continue;

    std::string failures;
    bool done = false;
    for (size_t m = 0; m < mirrors.size() && !done; ++m) {
      if (given_up[m]) continue;
      try {
        download_verified(mirrors[m] + file.name, dest, file.sha256, show_progress);
        done = true;
      } catch (const DownloadError& e) {
        given_up[m] = true;
        if (show_progress) std::fprintf(stderr, "%s\n", e.what());
        failures += std::string(failures.empty() ? "" : "; ") + e.what();
      }
    }
    if (!done) {
      if (failures.empty()) failures = "every mirror already failed on an earlier file";
      throw DownloadError("cannot download " + file.name + ": " + failures);
    }
  }
}

std::vector<std::string> mnist_mirrors() {
  const char* override_url = std::getenv("MNIST_GPU_MIRROR");
  if (override_url != nullptr && *override_url != '\0') {
    std::string base = override_url;
    if (base.back() != '/') base += '/';
    return {base};
  }
  return {"https://ossci-datasets.s3.amazonaws.com/mnist/",
          "https://storage.googleapis.com/cvdf-datasets/mnist/"};
}

const std::vector<RemoteFile>& mnist_remote_files() {
  static const std::vector<RemoteFile> files = {
      {"train-images-idx3-ubyte.gz",
       "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"},
      {"train-labels-idx1-ubyte.gz",
       "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"},
      {"t10k-images-idx3-ubyte.gz",
       "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"},
      {"t10k-labels-idx1-ubyte.gz",
       "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"},
  };
  return files;
}

void download_mnist(const fs::path& dir, bool show_progress) {
  download_files(dir, mnist_mirrors(), mnist_remote_files(), show_progress);
}

}  // namespace mg
