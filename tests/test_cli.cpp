// The mnist_gpu program on bad input: one clear line on stderr naming the problem, a non-zero
// exit, no crash. Runs the real binary.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace mg {
namespace {

namespace fs = std::filesystem;

struct CliResult {
  int exit_code;
  std::string out, err;
};

std::string slurp(const fs::path& p) {
  std::ifstream f(p);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

class Cli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("mg_cli_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  CliResult run(const std::string& args) {
    const std::string cmd = std::string(MNIST_GPU_BINARY) + " " + args + " >" +
                            (dir_ / "out").string() + " 2>" + (dir_ / "err").string() + " </dev/null";
    const int status = std::system(cmd.c_str());
    return {WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), slurp(dir_ / "out"),
            slurp(dir_ / "err")};
  }

  // A data folder with three valid one-image files and the given train-images bytes.
  fs::path data_with_train_images(const std::string& bytes, bool gz = false) {
    const fs::path d = dir_ / "data";
    fs::create_directories(d);
    const std::string labels("\x00\x00\x08\x01\x00\x00\x00\x01\x07", 9);
    std::string images("\x00\x00\x08\x03\x00\x00\x00\x01\x00\x00\x00\x1c\x00\x00\x00\x1c", 16);
    images.append(784, '\x10');
    std::ofstream(d / "train-labels-idx1-ubyte", std::ios::binary) << labels;
    std::ofstream(d / "t10k-labels-idx1-ubyte", std::ios::binary) << labels;
    std::ofstream(d / "t10k-images-idx3-ubyte", std::ios::binary) << images;
    const std::string name = gz ? "train-images-idx3-ubyte.gz" : "train-images-idx3-ubyte";
    std::ofstream(d / name, std::ios::binary) << bytes;
    return d;
  }

  static void expect_one_line_error(const CliResult& r, const std::string& needle) {
    EXPECT_NE(r.exit_code, 0);
    EXPECT_LT(r.exit_code, 128) << "crashed";
    EXPECT_NE(r.err.find(needle), std::string::npos) << "stderr: " << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << "stderr: " << r.err;
  }

  fs::path dir_;
};

// Not finding the data is the one error that takes several lines: every place looked in, and how
// to get the files.
TEST_F(Cli, MissingDataFolderSaysWhereItLookedAndHowToGetIt) {
  const CliResult r = run("train --device cpu --no-download --data " + (dir_ / "nowhere").string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err.rfind("mnist_gpu: error: MNIST not found", 0), 0u) << r.err;
  EXPECT_NE(r.err.find((dir_ / "nowhere").string()), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("get_mnist.sh"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir_ / "nowhere"));
}

// A folder given with --data or $MNIST_GPU_DATA that lacks a file is refused as it is, download
// allowed or not: at most three lines naming the file, nothing fetched or printed about fetching,
// the folder left as it was (the mirror is unreachable in case anything tried).
TEST_F(Cli, IncompleteDataFolderIsRefusedAndLeftAsItWas) {
  const fs::path d = data_with_train_images(
      std::string("\x00\x00\x08\x03\x00\x00\x00\x01\x00\x00\x00\x1c\x00\x00\x00\x1c", 16) +
      std::string(784, '\x20'));
  fs::remove(d / "t10k-labels-idx1-ubyte");
  auto listing = [&] {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(d)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  };
  const std::vector<std::string> before = listing();
  ASSERT_EQ(before.size(), 3u);
  const std::string env = "env MNIST_GPU_MIRROR=http://127.0.0.1:9/ ";
  for (const std::string& command :
       {env + MNIST_GPU_BINARY + " train --device cpu --data " + d.string(),
        env + "MNIST_GPU_DATA=" + d.string() + " " + MNIST_GPU_BINARY + " train --device cpu"}) {
    SCOPED_TRACE(command);
    const std::string cmd =
        command + " >" + (dir_ / "out").string() + " 2>" + (dir_ / "err").string() + " </dev/null";
    const int status = std::system(cmd.c_str());
    const std::string err = slurp(dir_ / "err");
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 1) << err;
    EXPECT_LE(std::count(err.begin(), err.end(), '\n'), 3) << err;
    EXPECT_NE(err.find("lacks t10k-labels-idx1-ubyte"), std::string::npos) << err;
    EXPECT_EQ(err.find("downloading"), std::string::npos) << err;
    EXPECT_EQ(err.find("http"), std::string::npos) << err;
    EXPECT_EQ(listing(), before);
  }
}

TEST_F(Cli, WrongMagicNamesTheFile) {
  const fs::path d = data_with_train_images(std::string("\x00\x00\x08\x01\x00\x00\x00\x00", 8));
  const CliResult r = run("train --device cpu --no-download --data " + d.string());
  expect_one_line_error(r, "train-images-idx3-ubyte");
}

TEST_F(Cli, CorruptGzipNamesTheFile) {
  const fs::path d = data_with_train_images(std::string("\x1f\x8b\x08\x00garbage-not-deflate", 23), true);
  const CliResult r = run("train --device cpu --no-download --data " + d.string());
  expect_one_line_error(r, "train-images-idx3-ubyte.gz");
}

TEST_F(Cli, BadModelSpecNamesTheToken) {
  const CliResult r = run("train --device cpu --model conv32,drop1.5 --data " + dir_.string());
  expect_one_line_error(r, "drop1.5");
}

TEST_F(Cli, OutputFolderThatCannotBeCreatedIsNamedBeforeAnyWork) {
  const fs::path data = fs::path(MNIST_GPU_SOURCE_DIR) / "data" / "mnist";
  if (!fs::exists(data / "train-images-idx3-ubyte") && !fs::exists(data / "train-images-idx3-ubyte.gz")) {
    GTEST_SKIP() << "no MNIST in " << data << " (run tools/get_mnist.sh)";
  }
  std::ofstream(dir_ / "a-file") << "not a folder";
  const fs::path out = dir_ / "a-file" / "run";
  const CliResult r = run("train --device cpu --no-download --data " + data.string() + " --out " + out.string());
  expect_one_line_error(r, out.string());
  EXPECT_NE(r.err.find("cannot create"), std::string::npos) << r.err;
  EXPECT_EQ(r.out.find("Epoch"), std::string::npos) << "trained before checking the output folder";
}

TEST_F(Cli, UnknownPrecisionIsRejectedWithTheChoices) {
  std::ofstream(dir_ / "checkpoint.safetensors") << "not read: the option is refused first";
  for (const std::string& command :
       std::vector<std::string>{"train", "eval " + (dir_ / "checkpoint.safetensors").string()}) {
    const CliResult r = run(command + " --precision bf16");
    expect_one_line_error(r, "--precision: bf16 not in {fp32,tf32}");
    EXPECT_EQ(r.exit_code, 2) << command;
  }
  EXPECT_NE(run("train --help").out.find("--precision"), std::string::npos);
}

TEST_F(Cli, UnknownOptionAndBadValuesAreRejected) {
  EXPECT_NE(run("train --no-such-option").exit_code, 0);
  EXPECT_NE(run("train --epochs 0").exit_code, 0);
  EXPECT_NE(run("train --device tpu").exit_code, 0);
  EXPECT_NE(run("").exit_code, 0);
  const CliResult help = run("train --help");
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.out.find("--epochs"), std::string::npos);
}

}  // namespace
}  // namespace mg
