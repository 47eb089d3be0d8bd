// mnist_gpu serve: the model in a browser (draw a digit, see what the network sees and thinks) and
// as a JSON API; and train --serve: the same server watching a training run live. See
// docs/serve.md.
#pragma once

#include <filesystem>
#include <iosfwd>

#include "engine/engine.hpp"
#include "host/train.hpp"
#include "host/web_server.hpp"

namespace mg {

struct ServeOptions {
  std::filesystem::path checkpoint;
  Device device = Device::kAuto;
  HttpOptions http;
};

// Loads the checkpoint into a Predictor (one engine for all clients) with what /api/model says:
// spec, dataset, classes, parameters, and the test accuracy from metrics.json beside the
// checkpoint when it describes it, else measured on the test split when the data is on this
// machine (nothing is downloaded), else null with the reason.
ServedModel load_served_model(const std::filesystem::path& checkpoint, Device device,
                              std::ostream& out);

// Serves until SIGINT or SIGTERM, then stops cleanly (the port is released, the call returns).
void run_serve(const ServeOptions& options, std::ostream& out);

// Trains as run_train does, with the live view on `http`; when training is done the page also
// classifies drawings with the trained model, and the server stays up until SIGINT or SIGTERM
// (then returns 0). A signal during training stops the run as run_train describes, then the
// server: it returns 128 + the signal.
int run_train_serving(TrainOptions options, const HttpOptions& http, std::ostream& out);

}  // namespace mg
