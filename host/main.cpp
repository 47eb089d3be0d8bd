// mnist_gpu: trains the Keras notebook's CNN on MNIST with hand-written kernels.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <csignal>
#include <iostream>
#include <map>

#include "engine/model_spec.hpp"
#include "host/compare.hpp"
#include "host/eval.hpp"
#include "host/explain.hpp"
#include "host/export.hpp"
#include "host/predict.hpp"
#include "host/serve.hpp"
#include "host/summary.hpp"
#include "host/train.hpp"

namespace {

const std::map<std::string, mg::Device> kDevices{
    {"auto", mg::Device::kAuto}, {"cpu", mg::Device::kCpu}, {"cuda", mg::Device::kCuda}};

// The value is kept as text and mapped after parsing, so a bad one reads "tpu not in {auto,cpu,cuda}".
void add_device(CLI::App* cmd, std::string& device, const char* fallback) {
  device = fallback;
  cmd->add_option("--device", device, "auto (a usable GPU, else the CPU), cuda or cpu")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}, CLI::ignore_case))
      ->capture_default_str();
}

// TF32 is opt-in: float32 is what the CPU computes and what the GPU tests hold the GPU to.
void add_precision(CLI::App* cmd, std::string& precision) {
  precision = "fp32";
  cmd->add_option("--precision", precision,
                  "the GEMMs' arithmetic: fp32, or tf32 (CUDA: TF32 tensor cores, 10-bit mantissa "
                  "products; no effect on the CPU)")
      ->check(CLI::IsMember({"fp32", "tf32"}))
      ->capture_default_str();
}

mg::Device to_device(std::string name) {
  std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
  return kDevices.at(name);  // IsMember has already checked it
}

void add_data(CLI::App* cmd, mg::DataOptions& data, std::string& dir, const char* dataset_help) {
  cmd->add_option("--data", dir,
                  "folder with the dataset: IDX files (raw or .gz), Keras' mnist.npz, or "
                  "torchvision's MNIST/raw/; used as it is, never downloaded into (default: "
                  "$MNIST_GPU_DATA, likewise; else search ./data/<dataset>, the Keras cache; "
                  "MNIST is downloaded into ./data/mnist when found nowhere)");
  cmd->add_option("--dataset", data.dataset, dataset_help)
      ->check(CLI::IsMember({"mnist", "fashion-mnist"}));
  cmd->add_flag("!--no-download", data.allow_download, "never download missing files");
  cmd->add_flag("--strict-data", data.strict,
                "refuse a set with the sizes of MNIST or Fashion-MNIST but not their SHA-256 "
                "(by default a warning)");
}

}  // namespace

int main(int argc, char** argv) {
  // A write past the file-size limit (RLIMIT_FSIZE) then fails with EFBIG and is reported like a
  // full disk, naming the file, instead of the process being killed by SIGXFSZ mid-save.
  std::signal(SIGXFSZ, SIG_IGN);
  CLI::App app{"mnist_gpu: a from-scratch CUDA/CPU engine that trains a CNN on MNIST"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "mnist_gpu 0.1.0");

  mg::TrainOptions train_opt;
  std::string train_data, model;
  int64_t batch = 128;
  double lr = 1e-3;
  uint64_t seed = 42;
  std::string out, resume, export_split;
  CLI::App* train = app.add_subcommand("train", "train the model on the notebook's 70/15/15 split");
  add_data(train, train_opt.data, train_data, "mnist or fashion-mnist");
  train->add_option("--epochs", train_opt.epochs, "epochs to train (in all, with --resume)")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  auto* batch_opt = train->add_option("--batch-size", batch, "batch size")->capture_default_str()->check(CLI::Range(1, 65536));
  auto* lr_opt = train->add_option("--lr", lr, "Adam's learning rate")->capture_default_str()->check(CLI::PositiveNumber);
  double weight_decay = 0, l2 = 0;
  auto* wd_opt = train->add_option("--weight-decay", weight_decay,
                                   "decoupled weight decay (AdamW, as torch.optim.AdamW): each step "
                                   "w -= lr * W * w on conv and dense kernels, never biases")
                     ->capture_default_str();
  auto* l2_opt = train->add_option("--l2", l2,
                                   "L2 penalty (Keras' kernel_regularizer l2): adds L * sum(w^2) of "
                                   "every conv and dense kernel to the loss (history.csv: l2_loss)")
                     ->capture_default_str();
  auto* seed_opt = train->add_option("--seed", seed, "seed of weights, dropout masks, shuffles and augmentation")->capture_default_str();
  auto* model_opt = train->add_option("--model", model,
                                      "layers, e.g. conv32,pool,conv64,pool,drop0.25,flatten,dense128,drop0.5 "
                                      "(the classifier dense10 + softmax is appended)")
                        ->default_str(std::string(mg::kSeedModelSpec));
  std::string lr_schedule = "constant";
  double lr_factor = 0.1;
  int64_t lr_patience = 10;
  auto* schedule_opt = train->add_option("--lr-schedule", lr_schedule,
                                         "constant, cosine (to 0 over --epochs) or plateau (Keras' ReduceLROnPlateau on val_loss)")
                           ->capture_default_str()
                           ->check(CLI::IsMember({"constant", "cosine", "plateau"}));
  auto* factor_opt = train->add_option("--lr-factor", lr_factor, "plateau: the factor the rate is multiplied by")
                         ->capture_default_str()
                         ->check(CLI::Range(1e-9, 0.999999));
  auto* patience_opt = train->add_option("--lr-patience", lr_patience,
                                         "plateau: epochs without a val_loss improvement before the rate drops")
                           ->capture_default_str()
                           ->check(CLI::Range(int64_t{0}, int64_t{100000}));
  int64_t early_stopping = 0;
  auto* stopping_opt = train->add_option("--early-stopping", early_stopping,
                                         "stop after this many epochs without a val_loss improvement and "
                                         "keep the best epoch's weights (Keras' EarlyStopping, restore_best_weights); 0: off")
                           ->capture_default_str()
                           ->check(CLI::Range(int64_t{0}, int64_t{100000}));
  std::string train_device, eval_device, predict_device, train_precision, eval_precision;
  add_device(train, train_device, "auto");
  add_precision(train, train_precision);
  train->add_option("--out", out, "the run folder to create (default runs/<timestamp>/; never overwritten)");
  train->add_flag("--augment", train_opt.augment, "random shifts (up to 2 px) and rotations (up to 10 degrees)");
  train->add_option("--resume", resume, "a checkpoint.safetensors to continue from (its settings are kept)")
      ->check(CLI::ExistingFile);
  train->add_option("--export-split", export_split,
                    "write the split as JSON {train, val, test}: indices into the 70,000 images (train files first)");
  train->add_flag("!--no-cuda-graph", train_opt.cuda_graph, "CUDA: launch each step's kernels instead of replaying a CUDA graph");
  std::string train_serve_port;
  mg::HttpOptions train_http;
  auto* train_serve = train->add_option("--serve", train_serve_port,
                                        "watch the run live in a browser at http://127.0.0.1:PORT/ "
                                        "(default 8080; 0 picks a free port); the server stays up "
                                        "after training until Ctrl-C")
                          ->expected(0, 1);
  train->add_option("--serve-host", train_http.host,
                    "address the live view listens on (default 127.0.0.1, this machine only)");

  mg::ServeOptions serve_opt;
  std::string serve_ckpt, serve_device;
  CLI::App* serve = app.add_subcommand("serve", "a web page to draw digits for the model, and a JSON API");
  serve->add_option("checkpoint", serve_ckpt, "checkpoint.safetensors")->required()->check(CLI::ExistingFile);
  serve->add_option("--host", serve_opt.http.host,
                    "address to listen on; anything but loopback exposes the server to the network")
      ->capture_default_str();
  serve->add_option("--port", serve_opt.http.port, "port (0: any free port)")
      ->capture_default_str()
      ->check(CLI::Range(0, 65535));
  add_device(serve, serve_device, "auto");
  serve->add_option("--threads", serve_opt.http.threads, "HTTP worker threads")
      ->capture_default_str()
      ->check(CLI::Range(1, 256));

  mg::ExportOptions export_opt;
  std::string export_ckpt, export_onnx;
  CLI::App* exporter = app.add_subcommand("export", "write the model in a format other runtimes load (ONNX)");
  exporter->add_option("checkpoint", export_ckpt, "checkpoint.safetensors")->required()->check(CLI::ExistingFile);
  exporter->add_option("--onnx", export_onnx, "the ONNX file to write (opset 17, input [N,1,28,28] in [0,1], output the probabilities)")
      ->required();
  exporter->add_flag("--force", export_opt.force, "replace an existing file");

  mg::EvalOptions eval_opt;
  std::string eval_data, eval_ckpt, eval_out;
  CLI::App* eval = app.add_subcommand("eval", "test metrics, confusion matrix and the report of a checkpoint");
  eval->add_option("checkpoint", eval_ckpt, "checkpoint.safetensors")->required()->check(CLI::ExistingFile);
  add_data(eval, eval_opt.data, eval_data, "mnist or fashion-mnist (default: the checkpoint's)");
  eval->get_option("--dataset")->default_str("");
  add_device(eval, eval_device, "auto");
  add_precision(eval, eval_precision);
  eval->add_option("--out", eval_out, "the report folder to create (default runs/eval-<timestamp>/)");

  mg::PredictOptions predict_opt;
  std::string predict_ckpt;
  std::vector<std::string> images;
  CLI::App* predict = app.add_subcommand("predict", "classify digit images (PNG, JPEG, PGM, any size)");
  predict->add_option("checkpoint", predict_ckpt, "checkpoint.safetensors")->required()->check(CLI::ExistingFile);
  predict->add_option("images", images, "image files")->required();
  add_device(predict, predict_device, "cpu");
  predict->add_flag("--json", predict_opt.json, "print JSON");

  std::string summary_model{mg::kSeedModelSpec};
  CLI::App* summary = app.add_subcommand("summary", "print the model summary (Keras' model.summary())");
  summary->add_option("--model", summary_model, "layers, as for train")->capture_default_str();

  mg::ExplainOptions explain_opt;
  std::string explain_ckpt, explain_device, explain_out;
  std::vector<std::string> explain_images;
  CLI::App* explain = app.add_subcommand(
      "explain", "draw a checkpoint's filters, feature maps and saliency for digit images");
  explain->add_option("checkpoint", explain_ckpt, "checkpoint.safetensors")
      ->required()
      ->check(CLI::ExistingFile);
  explain->add_option("images", explain_images, "image files (PNG, JPEG, PGM, any size)")
      ->required();
  explain->add_option(
      "--out", explain_out,
      "the folder to create (default runs/explain-<timestamp>/; never overwritten)");
  add_device(explain, explain_device, "cpu");

  mg::CompareOptions compare_opt;
  std::vector<std::string> compare_runs;
  std::string compare_out;
  CLI::App* compare = app.add_subcommand(
      "compare", "compare run folders: curves, table, per-class F1, confusion difference");
  compare->add_option("runs", compare_runs, "run folders written by train (2 or more)")->required();
  compare->add_option(
      "--out", compare_out,
      "the report folder to create (default runs/compare-<timestamp>/; never overwritten)");
  compare->add_flag("--diff-first-two", compare_opt.diff_first_two,
                    "confusion difference of the first two runs given (default: the best two)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "mnist_gpu: error: " << e.what() << " (see mnist_gpu --help)\n";
    return 2;
  }

  try {
    if (*train) {
      train_opt.device = to_device(train_device);
      train_opt.precision = *mg::parse_precision(train_precision);  // IsMember has checked it
      if (!train_data.empty()) train_opt.data.dir = train_data;
      if (*batch_opt) train_opt.batch_size = batch;
      if (*lr_opt) train_opt.lr = lr;
      if (*wd_opt) train_opt.weight_decay = weight_decay;
      if (*l2_opt) train_opt.l2 = l2;
      if (*seed_opt) train_opt.seed = seed;
      if (*model_opt) train_opt.model = model;
      if (*schedule_opt) train_opt.lr_schedule = lr_schedule;
      if (*factor_opt) train_opt.lr_factor = lr_factor;
      if (*patience_opt) train_opt.lr_patience = lr_patience;
      if (*stopping_opt) train_opt.early_stopping = early_stopping;
      if (!out.empty()) train_opt.out = out;
      if (!resume.empty()) train_opt.resume = resume;
      if (!export_split.empty()) train_opt.export_split = export_split;
      train_opt.program = argv[0];
      if (*train_serve) {
        train_http.port = 8080;
        if (!train_serve_port.empty()) {
          size_t used = 0;
          int port = -1;
          try {
            port = std::stoi(train_serve_port, &used);
          } catch (const std::exception&) {
          }
          if (used != train_serve_port.size() || port < 0 || port > 65535) {
            std::cerr << "mnist_gpu: error: --serve: '" << train_serve_port
                      << "' is not a port (0..65535) (see mnist_gpu train --help)\n";
            return 2;
          }
          train_http.port = port;
        }
        return mg::run_train_serving(train_opt, train_http, std::cout);
      }
      // Interrupted by SIGINT or SIGTERM: 128 + the signal, as a shell reports a signal's end.
      const int signal = mg::run_train(train_opt, std::cout);
      return signal == 0 ? 0 : 128 + signal;
    } else if (*eval) {
      eval_opt.device = to_device(eval_device);
      eval_opt.precision = *mg::parse_precision(eval_precision);
      eval_opt.checkpoint = eval_ckpt;
      if (!eval->get_option("--dataset")->count()) eval_opt.data.dataset.clear();
      if (!eval_data.empty()) eval_opt.data.dir = eval_data;
      if (!eval_out.empty()) eval_opt.out = eval_out;
      mg::run_eval(eval_opt, std::cout);
    } else if (*predict) {
      predict_opt.device = to_device(predict_device);
      predict_opt.checkpoint = predict_ckpt;
      predict_opt.images.assign(images.begin(), images.end());
      mg::run_predict(predict_opt, std::cout);
    } else if (*explain) {
      explain_opt.device = to_device(explain_device);
      explain_opt.checkpoint = explain_ckpt;
      explain_opt.images.assign(explain_images.begin(), explain_images.end());
      if (!explain_out.empty()) explain_opt.out = explain_out;
      mg::run_explain(explain_opt, std::cout);
    } else if (*serve) {
      serve_opt.device = to_device(serve_device);
      serve_opt.checkpoint = serve_ckpt;
      mg::run_serve(serve_opt, std::cout);
    } else if (*exporter) {
      export_opt.checkpoint = export_ckpt;
      export_opt.onnx = export_onnx;
      mg::run_export(export_opt, std::cout);
    } else if (*compare) {
      compare_opt.runs.assign(compare_runs.begin(), compare_runs.end());
      if (!compare_out.empty()) compare_opt.out = compare_out;
      mg::run_compare(compare_opt, std::cout);
    } else if (*summary) {
      mg::run_summary(summary_model, std::cout);
    }
  } catch (const std::exception& e) {
    std::cout.flush();
    std::cerr << "mnist_gpu: error: " << e.what() << '\n';
    return 1;
  }
  return 0;
}
