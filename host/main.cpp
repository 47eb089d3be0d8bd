// mnist_gpu: trains the Keras notebook's CNN on MNIST with hand-written kernels.
#include <CLI/CLI.hpp>
#include <iostream>
#include <map>

#include "host/idx.hpp"
#include "host/train.hpp"

int main(int argc, char** argv) {
  CLI::App app{"mnist_gpu: a from-scratch CUDA/CPU engine that trains a CNN on MNIST"};
  app.require_subcommand(1);

  mg::TrainOptions opt;
  std::string data_dir;
  CLI::App* train = app.add_subcommand("train", "train the model on MNIST's 70/15/15 split");
  train->add_option("--data", data_dir,
                    "folder with the four MNIST IDX files, raw or .gz (default: $MNIST_GPU_DATA, "
                    "else ./data/mnist; tools/get_mnist.sh fetches them)");
  train->add_option("--epochs", opt.epochs, "epochs to train")->capture_default_str()->check(CLI::Range(1, 100000));
  train->add_option("--batch-size", opt.batch_size, "batch size")->capture_default_str()->check(CLI::Range(1, 65536));
  train->add_option("--lr", opt.lr, "Adam learning rate")->capture_default_str()->check(CLI::PositiveNumber);
  train->add_option("--seed", opt.seed, "seed of weights, dropout and shuffling")->capture_default_str();
  train->add_option("--model", opt.model,
                    "layers, e.g. conv32,pool,conv64,pool,drop0.25,flatten,dense128,drop0.5 "
                    "(the classifier dense10+softmax is appended)")
      ->capture_default_str();
  const std::map<std::string, mg::Device> devices{
      {"auto", mg::Device::kAuto}, {"cpu", mg::Device::kCpu}, {"cuda", mg::Device::kCuda}};
  train->add_option("--device", opt.device, "auto, cuda or cpu")
      ->transform(CLI::CheckedTransformer(devices, CLI::ignore_case))
      ->default_str("auto");

  CLI11_PARSE(app, argc, argv);
  try {
    if (*train) {
      opt.data_dir = data_dir;
      mg::run_train(opt, std::cout);
    }
  } catch (const std::exception& e) {
    std::cout.flush();
    std::cerr << "mnist_gpu: error: " << e.what() << '\n';
    return 1;
  }
  return 0;
}
