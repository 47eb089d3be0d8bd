// The HTTP side of serve and train --serve (cpp-httplib): the embedded page, the JSON API and the
// run's report files, behind the limits a local server needs to survive a hostile page or client:
// a bounded worker pool, per-read/write timeouts, a body limit, a Host check against DNS
// rebinding while bound to loopback, and errors answered as JSON with a 4xx. See docs/serve.md.
#pragma once

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <semaphore>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "host/predictor.hpp"
#include "host/training_monitor.hpp"

namespace httplib {
class Server;
}

namespace mg {

struct HttpOptions {
  std::string host = "127.0.0.1";
  int port = 8080;              // 0: any free port (start() returns it)
  int threads = 8;              // HTTP workers
  size_t max_pending = 64;      // accepted connections waiting for a worker; then accept() waits
  size_t max_body = 4u << 20;   // bytes; a larger request gets 413
  int max_side = 4096;          // pixels; a larger picture is refused from its header
  int decode_slots = 2;         // pictures decoded at once (bounds the decoders' memory)
  std::chrono::milliseconds io_timeout{5000};        // each socket read or write
  int keep_alive_seconds = 5;                        // an idle connection is closed after it
  std::chrono::milliseconds predict_timeout{10000};  // queue + inference
  std::chrono::milliseconds body_deadline{30000};    // the whole body of a prediction request
};

// True for 127.0.0.0/8, ::1 and localhost.
bool is_loopback_host(const std::string& host);

// What /api/model says about the model being served, and the names of its classes.
struct ServedModel {
  std::shared_ptr<Predictor> predictor;
  nlohmann::json card;  // spec, dataset, param_count, test_accuracy, ...
  std::vector<std::string> class_names;
  std::optional<std::filesystem::path> report_dir;  // a folder holding report.html, if any
};

class WebServer {
 public:
  explicit WebServer(HttpOptions options);
  ~WebServer();
  WebServer(const WebServer&) = delete;
  WebServer& operator=(const WebServer&) = delete;

  // The model may come later (train --serve: when training is done); until then /api/model and
  // /api/predict answer 503.
  void set_model(ServedModel model);
  void set_training(std::shared_ptr<TrainingMonitor> monitor);

  // Binds (throws std::runtime_error "cannot listen on HOST:PORT (...)") and serves on a thread of
  // its own. Returns the port.
  int start();
  void stop();  // waits for the workers; idempotent
  std::string url() const;

  // One HTTP request, given as the bytes a client would send, answered as a connection would be
  // (httplib's parser, these routes and limits; the connection closes after it), without a
  // socket: the response's bytes. For tests and tests/fuzz/fuzz_http.cpp.
  std::string answer(std::string_view request);

 private:
  void routes();
  std::shared_ptr<const ServedModel> model() const;

  HttpOptions options_;
  std::unique_ptr<httplib::Server> server_;
  std::thread listener_;
  int port_ = 0;
  mutable std::mutex mutex_;
  std::shared_ptr<const ServedModel> model_;
  std::shared_ptr<TrainingMonitor> training_;
  std::counting_semaphore<64> decode_slots_;
};

}  // namespace mg
