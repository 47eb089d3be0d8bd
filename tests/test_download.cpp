// Downloads against a loopback HTTP server (tests/http_fixture.py, Debian's /usr/bin/python3):
// a good file is installed and verified; a corrupt, truncated or missing one is an error that
// names the URL, leaves nothing at the destination (no temporary file either) and never replaces
// a good file already there. No test touches the network beyond 127.0.0.1.
#include <fcntl.h>
#include <gtest/gtest.h>

#include "test_util.hpp"
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "host/datasets.hpp"
#include "host/download.hpp"

extern char** environ;

namespace mg {
namespace {

namespace fs = std::filesystem;
using Bytes = std::vector<uint8_t>;

constexpr const char* kPython = "/usr/bin/python3";

Bytes random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  Bytes out(n);
  for (auto& b : out) b = static_cast<uint8_t>(rng());
  return out;
}

void write_file(const fs::path& path, const Bytes& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

Bytes read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::vector<std::string> entries(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  return out;
}

fs::path make_temp_dir(const std::string& tag) {
  std::string pattern = (fs::temp_directory_path() / ("mg_" + tag + "_XXXXXX")).string();
  if (::mkdtemp(pattern.data()) == nullptr) return {};
  return pattern;
}

using test::EnvGuard;

class Download : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::access(kPython, X_OK) != 0) GTEST_SKIP() << kPython << " not found: no HTTP fixture";
    serve_ = make_temp_dir("serve");
    dest_dir_ = make_temp_dir("dest");
    ASSERT_FALSE(serve_.empty());
    ASSERT_FALSE(dest_dir_.empty());
    // A proxy from the environment must not see our loopback requests.
    env_.set("no_proxy", "127.0.0.1,localhost");
    env_.set("NO_PROXY", "127.0.0.1,localhost");
    start_server();
  }

  void TearDown() override {
    env_.restore();
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      int status = 0;
      ::waitpid(pid_, &status, 0);
    }
    std::error_code ec;
    if (!serve_.empty()) fs::remove_all(serve_, ec);
    if (!dest_dir_.empty()) fs::remove_all(dest_dir_, ec);
  }

  void start_server() {
    const std::string script = std::string(MNIST_GPU_SOURCE_DIR) + "/tests/http_fixture.py";
    std::array<int, 2> fds{};
    ASSERT_EQ(::pipe(fds.data()), 0);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&actions, fds[0]);
    std::string python = kPython, root = serve_.string(), lifetime = "120";
    std::vector<char*> argv = {python.data(), const_cast<char*>(script.c_str()), root.data(),
                               lifetime.data(), nullptr};
    const int rc = ::posix_spawn(&pid_, kPython, &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    ::close(fds[1]);
    ASSERT_EQ(rc, 0) << "cannot start " << kPython << " " << script;

    // The fixture prints "PORT <n>" once it listens; allow 10 s for a slow machine.
    std::string line;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (line.find('\n') == std::string::npos && std::chrono::steady_clock::now() < deadline) {
      pollfd p{fds[0], POLLIN, 0};
      if (::poll(&p, 1, 200) <= 0) continue;
      char buf[64];
      const ssize_t n = ::read(fds[0], buf, sizeof buf);
      if (n <= 0) break;
      line.append(buf, static_cast<size_t>(n));
    }
    ::close(fds[0]);
    ASSERT_EQ(line.rfind("PORT ", 0), 0u) << "the HTTP fixture did not start: '" << line << "'";
    port_ = std::stoi(line.substr(5));
    ASSERT_GT(port_, 0);
  }

  std::string base() const { return "http://127.0.0.1:" + std::to_string(port_) + "/"; }

  // Serves `bytes` as `name` and returns their SHA-256.
  std::string serve(const std::string& name, const Bytes& bytes) {
    write_file(serve_ / name, bytes);
    return sha256_file(serve_ / name);
  }

  EnvGuard env_;
  fs::path serve_, dest_dir_;
  pid_t pid_ = -1;
  int port_ = 0;
};

// The test vectors of FIPS 180-2, so the hash the other tests trust is itself checked.
TEST(DownloadSha256, KnownVectors) {
  const fs::path dir = make_temp_dir("sha");
  ASSERT_FALSE(dir.empty());
  write_file(dir / "empty", {});
  write_file(dir / "abc", {'a', 'b', 'c'});
  EXPECT_EQ(sha256_file(dir / "empty"),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_file(dir / "abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_THROW(sha256_file(dir / "absent"), DataError);
  fs::remove_all(dir);
}

TEST(DownloadSha256, MnistTableMatchesTheDocs) {
  // The same four values as docs/data.md and tools/get_mnist.sh.
  const auto& files = mnist_remote_files();
  ASSERT_EQ(files.size(), 4u);
  EXPECT_EQ(files[0].name, "train-images-idx3-ubyte.gz");
  EXPECT_EQ(files[0].sha256, "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609");
  EXPECT_EQ(files[3].name, "t10k-labels-idx1-ubyte.gz");
  EXPECT_EQ(files[3].sha256, "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6");
}

TEST_F(Download, GoodFileIsInstalledAndVerified) {
  const Bytes body = random_bytes(300'000, 1);
  const std::string sha = serve("good.bin", body);
  const fs::path dest = dest_dir_ / "sub" / "good.bin";  // the directory is created
  download_verified(base() + "good.bin", dest, sha, /*show_progress=*/false);
  EXPECT_EQ(read_file(dest), body);
  EXPECT_EQ(entries(dest.parent_path()), std::vector<std::string>{"good.bin"});  // no temp left
}

TEST_F(Download, ChecksumIsCaseInsensitiveAndValidated) {
  const Bytes body = random_bytes(1000, 2);
  std::string sha = serve("f.bin", body);
  for (auto& c : sha) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  download_verified(base() + "f.bin", dest_dir_ / "f.bin", sha, false);
  EXPECT_EQ(read_file(dest_dir_ / "f.bin"), body);
  EXPECT_THROW(download_verified(base() + "f.bin", dest_dir_ / "g.bin", "abc", false),
               std::invalid_argument);
  EXPECT_FALSE(fs::exists(dest_dir_ / "g.bin"));
}

TEST_F(Download, CorruptFileIsRejected) {
  serve("data.gz", random_bytes(50'000, 3));
  const std::string wrong = sha256_file(serve_ / "data.gz");
  write_file(serve_ / "data.gz", random_bytes(50'000, 4));  // the server now has other bytes
  const std::string url = base() + "data.gz";
  try {
    download_verified(url, dest_dir_ / "data.gz", wrong, false);
    FAIL() << "a checksum mismatch must throw";
  } catch (const DownloadError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(url), std::string::npos) << what;
    EXPECT_NE(what.find("SHA-256 mismatch"), std::string::npos) << what;
    EXPECT_NE(what.find(wrong), std::string::npos) << what;
    EXPECT_EQ(what.find('\n'), std::string::npos) << "one line: " << what;
  }
  EXPECT_TRUE(entries(dest_dir_).empty()) << "nothing at dest, no temporary file";
}

TEST_F(Download, TruncatedTransferIsRejected) {
  const std::string sha = serve("big.bin", random_bytes(200'000, 5));
  const std::string url = base() + "truncate/big.bin";
  try {
    download_verified(url, dest_dir_ / "big.bin", sha, false);
    FAIL() << "a truncated transfer must throw";
  } catch (const DownloadError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(url), std::string::npos) << what;
    EXPECT_NE(what.find("truncated"), std::string::npos) << what;
    EXPECT_EQ(what.find('\n'), std::string::npos) << "one line: " << what;
  }
  EXPECT_TRUE(entries(dest_dir_).empty());
}

TEST_F(Download, NotFoundNamesTheUrl) {
  const std::string url = base() + "missing.gz";
  try {
    download_verified(url, dest_dir_ / "missing.gz", std::string(64, '0'), false);
    FAIL() << "a 404 must throw";
  } catch (const DownloadError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(url), std::string::npos) << what;
    EXPECT_NE(what.find("404"), std::string::npos) << what;
  }
  EXPECT_TRUE(entries(dest_dir_).empty());
}

TEST_F(Download, ConnectionRefusedFailsFast) {
  // A port nobody listens on: bind an ephemeral one, then close it.
  const int s = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(s, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  socklen_t len = sizeof addr;
  ASSERT_EQ(::getsockname(s, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  ::close(s);
  const std::string url = "http://127.0.0.1:" + std::to_string(ntohs(addr.sin_port)) + "/x.gz";
  const auto start = std::chrono::steady_clock::now();
  EXPECT_THROW(download_verified(url, dest_dir_ / "x.gz", std::string(64, '0'), false),
               DownloadError);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(6));
  EXPECT_TRUE(entries(dest_dir_).empty());
}

TEST_F(Download, FailedDownloadKeepsTheExistingFile) {
  const Bytes good = random_bytes(10'000, 6);
  const fs::path dest = dest_dir_ / "keep.gz";
  write_file(dest, good);
  const std::string sha = serve("keep.gz", random_bytes(10'000, 7));
  const std::string good_sha = sha256_file(dest);
  // Wrong bytes, a truncated transfer and a 404, each against the file already in place.
  EXPECT_THROW(download_verified(base() + "keep.gz", dest, good_sha, false), DownloadError);
  EXPECT_THROW(download_verified(base() + "truncate/keep.gz", dest, sha, false), DownloadError);
  EXPECT_THROW(download_verified(base() + "nothing.gz", dest, sha, false), DownloadError);
  EXPECT_EQ(read_file(dest), good);
  EXPECT_EQ(entries(dest_dir_), std::vector<std::string>{"keep.gz"});
}

TEST_F(Download, PlainProgressLinesWhenNotATerminal) {
  const std::string sha = serve("p.bin", random_bytes(5000, 8));
  const std::string url = base() + "p.bin";
  ::testing::internal::CaptureStderr();  // stderr becomes a file: not a terminal
  download_verified(url, dest_dir_ / "p.bin", sha, /*show_progress=*/true);
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("downloading " + url), std::string::npos) << err;
  EXPECT_NE(err.find("SHA-256 verified"), std::string::npos) << err;
  EXPECT_EQ(err.find('\r'), std::string::npos) << "no bar redraws in a log: " << err;
}

TEST_F(Download, FilesFallBackToTheNextMirror) {
  ASSERT_TRUE(fs::create_directory(serve_ / "m2"));
  std::vector<RemoteFile> files;
  std::vector<Bytes> bodies;
  for (int i = 0; i < 2; ++i) {
    bodies.push_back(random_bytes(3000, 10 + static_cast<uint32_t>(i)));
    const std::string name = "f" + std::to_string(i) + ".gz";
    files.push_back({name, serve(name, bodies.back())});
  }
  // The first mirror answers 404 for everything; the second (the root) has both files.
  download_files(dest_dir_, {base() + "m2/", base()}, files, false);
  EXPECT_EQ(read_file(dest_dir_ / "f0.gz"), bodies[0]);
  EXPECT_EQ(read_file(dest_dir_ / "f1.gz"), bodies[1]);
}

TEST_F(Download, FilesAlreadyPresentAreKept) {
  // The raw file (what tools/get_mnist.sh installs) stands in for its .gz, which the server
  // lacks: a fetch would fail.
  write_file(dest_dir_ / "a", {1, 2, 3});
  write_file(dest_dir_ / "b.gz", {4, 5});
  download_files(dest_dir_, {base()},
                 {{"a.gz", std::string(64, '1')}, {"b.gz", std::string(64, '2')}}, false);
  EXPECT_EQ(read_file(dest_dir_ / "a"), (Bytes{1, 2, 3}));
  EXPECT_EQ(read_file(dest_dir_ / "b.gz"), (Bytes{4, 5}));
  EXPECT_FALSE(fs::exists(dest_dir_ / "a.gz"));
}

TEST_F(Download, AllMirrorsFailingListsEveryUrl) {
  try {
    download_files(dest_dir_, {base() + "one/", base() + "two/"}, {{"x.gz", std::string(64, '3')}},
                   false);
    FAIL() << "must throw";
  } catch (const DownloadError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(base() + "one/x.gz"), std::string::npos) << what;
    EXPECT_NE(what.find(base() + "two/x.gz"), std::string::npos) << what;
  }
  EXPECT_TRUE(entries(dest_dir_).empty());
}

TEST_F(Download, MnistFromTheMirrorOverrideIsVerified) {
  // The real checksums cannot match synthetic bytes: the first file fails, nothing is kept.
  serve("train-images-idx3-ubyte.gz", random_bytes(1000, 20));
  env_.set("MNIST_GPU_MIRROR", base());
  ASSERT_EQ(mnist_mirrors(), std::vector<std::string>{base()});
  try {
    download_mnist(dest_dir_, false);
    FAIL() << "must throw";
  } catch (const DownloadError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(base() + "train-images-idx3-ubyte.gz"), std::string::npos) << what;
    EXPECT_NE(what.find("SHA-256 mismatch"), std::string::npos) << what;
  }
  EXPECT_TRUE(entries(dest_dir_).empty());
}

TEST_F(Download, LoadDatasetDownloadsWhenNothingIsFound) {
  // Nothing anywhere, the download allowed but failing (the fixture has no MNIST): the error
  // lists the places looked in and the failed URL, and the destination, the default location
  // ./data/mnist, gains no files.
  const fs::path home = dest_dir_ / "home", cwd = dest_dir_ / "cwd", target = cwd / "data" / "mnist";
  fs::create_directories(home);
  fs::create_directories(cwd);
  env_.set("HOME", home.string());
  env_.set("KERAS_HOME", std::nullopt);
  env_.set("MNIST_GPU_DATA", std::nullopt);
  env_.set("MNIST_GPU_MIRROR", base());
  env_.chdir(cwd);
  ::testing::internal::CaptureStderr();
  try {
    load_dataset(DatasetKind::kMnist, {});
    ::testing::internal::GetCapturedStderr();
    FAIL() << "must throw";
  } catch (const DownloadError& e) {
    const std::string err = ::testing::internal::GetCapturedStderr();
    const std::string what = e.what();
    EXPECT_NE(what.find("not found"), std::string::npos) << what;
    EXPECT_NE(what.find("./data/mnist"), std::string::npos) << what;
    EXPECT_NE(what.find("The download failed"), std::string::npos) << what;
    EXPECT_NE(what.find(base() + "train-images-idx3-ubyte.gz"), std::string::npos) << what;
    EXPECT_NE(err.find("downloading it into ./data/mnist"), std::string::npos) << err;
  }
  EXPECT_FALSE(fs::exists(target)) << "the folder made for the failed download is left behind";
}

}  // namespace
}  // namespace mg
