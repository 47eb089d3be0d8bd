#include "host/web_server.hpp"

#include <arpa/inet.h>
#include <sys/socket.h>
#include <httplib.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <fstream>
#include <functional>
#include <sstream>

#include "host/report.hpp"
#include "host/web_assets.hpp"

namespace mg {
namespace {

using nlohmann::json;

// httplib listens with a backlog of 5 (compiled into Debian's library): a burst of clients
// overflows it and the dropped SYNs come back a second later. listen() again on the bound socket
// raises it (Linux updates the backlog of a listening socket).
class Listener final : public httplib::Server {
 public:
  void widen_backlog(int backlog) { ::listen(svr_sock_, backlog); }
  // httplib's own request handling (parser, routes, limits) over a stream in memory.
  void answer(httplib::Stream& stream) {
    bool closed = false;
    process_request(stream, true, closed, [](httplib::Request&) {});
  }
};

// A connection in memory: reads come from the request's bytes, writes go to `written`.
class MemoryStream final : public httplib::Stream {
 public:
  explicit MemoryStream(std::string_view in) : in_(in) {}
  bool is_readable() const override { return true; }
  bool is_writable() const override { return true; }
  ssize_t read(char* ptr, size_t size) override {
    const size_t n = std::min(size, in_.size() - pos_);
    std::copy_n(in_.data() + pos_, n, ptr);
    pos_ += n;
    return static_cast<ssize_t>(n);
  }
  ssize_t write(const char* ptr, size_t size) override {
    written.append(ptr, size);
    return static_cast<ssize_t>(size);
  }
  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    ip = "127.0.0.1";
    port = 40000;
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    ip = "127.0.0.1";
    port = 8080;
  }
  socket_t socket() const override { return INVALID_SOCKET; }

  std::string written;

 private:
  std::string_view in_;
  size_t pos_ = 0;
};

// httplib's pool with a bounded queue: when max_pending connections already wait for a worker,
// enqueue() blocks the accept loop, so further clients wait in the kernel's listen backlog
// instead of piling up here (the stock pool's queue has no bound).
class BoundedTaskQueue final : public httplib::TaskQueue {
 public:
  BoundedTaskQueue(size_t threads, size_t max_pending) : max_pending_(max_pending) {
    for (size_t i = 0; i < threads; ++i) workers_.emplace_back([this] { work(); });
  }
  void enqueue(std::function<void()> fn) override {
    std::unique_lock lock(mutex_);
    room_.wait(lock, [&] { return jobs_.size() < max_pending_ || shutdown_; });
    jobs_.push_back(std::move(fn));
    ready_.notify_one();
  }
  void shutdown() override {
    {
      std::lock_guard lock(mutex_);
      shutdown_ = true;
    }
    ready_.notify_all();
    room_.notify_all();
    for (auto& t : workers_) t.join();
  }

 private:
  void work() {
    for (;;) {
      std::function<void()> fn;
      {
        std::unique_lock lock(mutex_);
        ready_.wait(lock, [&] { return !jobs_.empty() || shutdown_; });
        if (jobs_.empty()) return;  // shut down, nothing left
        fn = std::move(jobs_.front());
        jobs_.pop_front();
        room_.notify_one();
      }
      fn();
    }
  }
  const size_t max_pending_;
  std::mutex mutex_;
  std::condition_variable ready_, room_;
  std::deque<std::function<void()>> jobs_;
  std::vector<std::thread> workers_;
  bool shutdown_ = false;
};

void send_json(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(body.dump(), "application/json");
}

void send_error(httplib::Response& res, int status, const std::string& message) {
  send_json(res, status, {{"error", message}});
}

std::string reason(int status) {
  switch (status) {
    case 400: return "bad request";
    case 403: return "forbidden";
    case 404: return "not found";
    case 405: return "method not allowed";
    case 408: return "request timeout";
    case 413: return "request body too large";
    case 414: return "request URI too long";
    case 415: return "unsupported media type";
    case 421: return "misdirected request";
    case 500: return "internal server error";
    case 503: return "service unavailable";
    default: return "HTTP " + std::to_string(status);
  }
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

// "localhost:8080" -> "localhost", "[::1]:8080" -> "::1".
std::string host_name(const std::string& header) {
  if (!header.empty() && header.front() == '[') {
    const size_t end = header.find(']');
    return end == std::string::npos ? header : header.substr(1, end - 1);
  }
  return lower(header.substr(0, header.find(':')));
}

const EmbeddedFile* find_embedded(std::string_view name) {
  for (const EmbeddedFile& f : embedded_files()) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

std::string content_type(std::string_view name) {
  auto ends = [&](std::string_view ext) {
    return name.size() >= ext.size() && name.substr(name.size() - ext.size()) == ext;
  };
  if (ends(".html")) return "text/html; charset=utf-8";
  if (ends(".js")) return "text/javascript; charset=utf-8";
  if (ends(".css")) return "text/css; charset=utf-8";
  if (ends(".svg")) return "image/svg+xml";
  if (ends(".json")) return "application/json";
  if (ends(".csv")) return "text/csv; charset=utf-8";
  return "text/plain; charset=utf-8";
}

// The page's own policy: its script and styles only, images it makes itself, no framing.
constexpr const char* kPagePolicy =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

bool allowed_content_type(const std::string& header) {
  const std::string type = lower(header.substr(0, header.find(';')));
  return type.rfind("image/", 0) == 0 || type == "application/octet-stream";
}

}  // namespace

bool is_loopback_host(const std::string& host) {
  if (host == "localhost" || host == "::1" || host == "[::1]") return true;
  in_addr addr{};
  if (inet_pton(AF_INET, host.c_str(), &addr) == 1) return (ntohl(addr.s_addr) >> 24) == 127;
  return false;
}

WebServer::WebServer(HttpOptions options)
    : options_(std::move(options)),
      server_(std::make_unique<Listener>()),
      decode_slots_(std::clamp(options_.decode_slots, 1, 64)) {
  routes();
}

WebServer::~WebServer() { stop(); }

void WebServer::set_model(ServedModel model) {
  auto shared = std::make_shared<const ServedModel>(std::move(model));
  std::lock_guard lock(mutex_);
  model_ = std::move(shared);
}

void WebServer::set_training(std::shared_ptr<TrainingMonitor> monitor) {
  std::lock_guard lock(mutex_);
  training_ = std::move(monitor);
}

std::shared_ptr<const ServedModel> WebServer::model() const {
  std::lock_guard lock(mutex_);
  return model_;
}

int WebServer::start() {
  const std::string where = options_.host + ":" + std::to_string(options_.port);
  errno = 0;
  const bool bound = options_.port == 0
                         ? (port_ = server_->bind_to_any_port(options_.host)) > 0
                         : server_->bind_to_port(options_.host, options_.port);
  if (!bound) {
    const int err = errno;
    throw std::runtime_error("cannot listen on " + where + " (" +
                             (err ? std::strerror(err) : "address not usable") + ")");
  }
  if (options_.port != 0) port_ = options_.port;
  static_cast<Listener&>(*server_).widen_backlog(128);
  listener_ = std::thread([this] { server_->listen_after_bind(); });
  // httplib's stop() does nothing until the listening loop runs (is_running): wait for it, so a
  // stop() right after start() cannot leave the loop blocked in accept().
  while (!server_->is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return port_;
}

void WebServer::stop() {
  if (!listener_.joinable()) return;
  server_->stop();
  listener_.join();
}

std::string WebServer::answer(std::string_view request) {
  MemoryStream stream(request);
  static_cast<Listener&>(*server_).answer(stream);
  return std::move(stream.written);
}

std::string WebServer::url() const {
  const bool v6 = options_.host.find(':') != std::string::npos;
  return "http://" + (v6 ? "[" + options_.host + "]" : options_.host) + ":" +
         std::to_string(port_) + "/";
}

void WebServer::routes() {
  httplib::Server& s = *server_;
  const size_t threads = static_cast<size_t>(std::clamp(options_.threads, 1, 256));
  const size_t pending = std::max<size_t>(1, options_.max_pending);
  s.new_task_queue = [threads, pending] { return new BoundedTaskQueue(threads, pending); };
  // SO_REUSEADDR only: httplib's default adds SO_REUSEPORT, with which a second server (ours or
  // another program's) binds the same port silently and takes half the connections.
  s.set_socket_options([](socket_t sock) {
    const int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  // Headers and body go out as separate writes: without TCP_NODELAY, Nagle's algorithm and the
  // client's delayed ACK add about 40 ms to every answer.
  s.set_tcp_nodelay(true);
  s.set_payload_max_length(options_.max_body);
  s.set_read_timeout(options_.io_timeout);
  s.set_write_timeout(options_.io_timeout);
  s.set_keep_alive_timeout(options_.keep_alive_seconds);
  s.set_keep_alive_max_count(100);
  s.set_default_headers({{"X-Content-Type-Options", "nosniff"},
                         {"Referrer-Policy", "no-referrer"},
                         {"X-Frame-Options", "DENY"}});
  s.set_post_routing_handler([](const httplib::Request&, httplib::Response& res) {
    if (!res.has_header("Cache-Control")) res.set_header("Cache-Control", "no-store");
  });

  // While bound to loopback, only requests addressed to a loopback name are answered: a web
  // page elsewhere that rebinds its own name to 127.0.0.1 (DNS rebinding) is refused.
  const bool loopback = is_loopback_host(options_.host);
  s.set_pre_routing_handler([loopback](const httplib::Request& req, httplib::Response& res) {
    if (loopback && req.has_header("Host") &&
        !is_loopback_host(host_name(req.get_header_value("Host")))) {
      send_error(res, 421, "this server answers only requests to localhost / 127.0.0.1");
      return httplib::Server::HandlerResponse::Handled;
    }
    // Range is ignored (RFC 9110 allows it): the answers are small, and httplib would otherwise
    // cut any answer, errors included, into as many parts as the header lists (an amplifier).
    // The Request object is httplib's own non-const local, handed to handlers as const.
    if (!req.ranges.empty()) const_cast<httplib::Request&>(req).ranges.clear();
    return httplib::Server::HandlerResponse::Unhandled;
  });
  // A client that asks first (Expect: 100-continue, as curl does for large bodies) is refused
  // before it sends a body over the limit.
  s.set_expect_100_continue_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (req.get_header_value<uint64_t>("Content-Length", 0) > options_.max_body) {
      res.set_header("Connection", "close");
      send_error(res, 413, reason(413));
      return 413;
    }
    return 100;
  });
  s.set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (res.body.empty()) send_error(res, res.status, reason(res.status));
  });
  s.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "internal error";
    try {
      if (ep) std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    send_error(res, 500, what);
  });

  auto asset = [](const std::string& name, bool page) {
    return [name, page](const httplib::Request&, httplib::Response& res) {
      const EmbeddedFile* f = find_embedded(name);
      if (!f) return send_error(res, 404, reason(404));
      res.set_content(reinterpret_cast<const char*>(f->data), f->size, content_type(name));
      res.set_header("Cache-Control", "no-cache");
      if (page) res.set_header("Content-Security-Policy", kPagePolicy);
    };
  };
  s.Get("/", asset("index.html", true));
  s.Get("/index.html", asset("index.html", true));
  s.Get("/app.js", asset("app.js", false));
  s.Get("/style.css", asset("style.css", false));
  s.Get("/favicon.svg", asset("favicon.svg", false));

  s.Get("/healthz", [this](const httplib::Request&, httplib::Response& res) {
    std::shared_ptr<TrainingMonitor> training;
    {
      std::lock_guard lock(mutex_);
      training = training_;
    }
    send_json(res, 200,
              {{"status", "ok"},
               {"mode", training ? "train" : "serve"},
               {"model", model() != nullptr},
               {"training", training ? training->snapshot()["status"] : json(nullptr)}});
  });

  s.Get("/api/model", [this](const httplib::Request&, httplib::Response& res) {
    const auto m = model();
    if (!m) return send_error(res, 503, "no model yet: training is still running");
    json card = m->card;
    card["device"] = m->predictor->device_name();
    const PredictorStats st = m->predictor->stats();
    card["served"] = {{"images", st.images}, {"batches", st.batches},
                      {"largest_batch", st.largest_batch}};
    if (m->report_dir) card["report"] = "/run/report.html";
    send_json(res, 200, card);
  });

  s.Get("/api/predict", [](const httplib::Request&, httplib::Response& res) {
    res.set_header("Allow", "POST");
    send_error(res, 405, "POST the picture's bytes to /api/predict (Content-Type: image/png, ...)");
  });
  s.Post("/api/predict", [this](const httplib::Request& req, httplib::Response& res,
                                const httplib::ContentReader& read) {
    const auto t0 = std::chrono::steady_clock::now();
    // A declared Content-Length over the limit is refused (after draining a moderate excess, so
    // that the client reads the answer); a chunked body is counted as it comes and refused the
    // moment it passes the limit; a body still arriving after body_deadline is cut off (a client
    // that trickles bytes keeps a worker no longer than that).
    std::string content;
    const auto declared = req.get_header_value<uint64_t>("Content-Length", 0);
    bool too_large = declared > options_.max_body, too_slow = false;
    bool complete = false;
    if (!too_large || declared <= 4 * static_cast<uint64_t>(options_.max_body)) {
      complete = read([&](const char* data, size_t size) {
        if (std::chrono::steady_clock::now() - t0 > options_.body_deadline) {
          too_slow = true;
          return false;
        }
        if (content.size() + size > options_.max_body) {
          too_large = true;
          return false;
        }
        content.append(data, size);
        return true;
      });
    }
    if (too_large || too_slow || !complete) {
      res.set_header("Connection", "close");
      if (too_large) {
        return send_error(res, 413, reason(413) + " (the limit is " +
                                        std::to_string(options_.max_body) + " bytes)");
      }
      if (too_slow) return send_error(res, 408, "the request body came too slowly");
      return send_error(res, 400, "the request body was cut off");
    }
    const auto m = model();
    if (!m) return send_error(res, 503, "no model yet: training is still running");
    if (!allowed_content_type(req.get_header_value("Content-Type"))) {
      return send_error(res, 415,
                        "send the picture's bytes with Content-Type image/png, image/jpeg, "
                        "image/x-portable-graymap or application/octet-stream (got '" +
                            req.get_header_value("Content-Type") + "')");
    }
    if (content.empty()) return send_error(res, 400, "the request body is empty: no image");
    MnistImage image;
    {
      if (!decode_slots_.try_acquire_for(options_.predict_timeout)) {
        return send_error(res, 503, "too many pictures being decoded; try again");
      }
      struct Release {
        std::counting_semaphore<64>& s;
        ~Release() { s.release(); }
      } release{decode_slots_};
      try {
        const auto* bytes = reinterpret_cast<const uint8_t*>(content.data());
        image = load_digit_image({bytes, content.size()}, "image", options_.max_side);
      } catch (const ImageError& e) {
        return send_error(res, 400, e.what());
      }
    }
    Prediction answer;
    try {
      answer = m->predictor->predict(image, options_.predict_timeout);
    } catch (const PredictorBusy& e) {
      res.set_header("Retry-After", "1");
      return send_error(res, 503, e.what());
    }
    const std::vector<float>& probs = answer.probabilities;
    const auto best = static_cast<int>(std::max_element(probs.begin(), probs.end()) - probs.begin());
    json body;
    body["digit"] = best;
    body["label"] = m->class_names.at(static_cast<size_t>(best));
    body["probabilities"] = probs;
    body["classes"] = m->class_names;
    body["input"] = std::vector<int>(image.begin(), image.end());
    body["saliency"] = answer.saliency;
    body["milliseconds"] =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    send_json(res, 200, body);
  });

  s.Get("/api/train", [this](const httplib::Request&, httplib::Response& res) {
    std::shared_ptr<TrainingMonitor> training;
    {
      std::lock_guard lock(mutex_);
      training = training_;
    }
    if (!training) return send_error(res, 404, "this server is not watching a training run");
    send_json(res, 200, training->snapshot());
  });

  // The run's report, by name from a fixed list (and its inside_*.svg pictures): nothing else on
  // disk is reachable.
  s.Get(R"(/run/([a-z0-9_.]+))", [this](const httplib::Request& req, httplib::Response& res) {
    const std::string name = req.matches[1];
    const auto& files = report_files();
    const bool inside = name.starts_with("inside_") && name.ends_with(".svg");
    if (!inside && std::find(files.begin(), files.end(), name) == files.end()) {
      return send_error(res, 404, reason(404));
    }
    std::optional<std::filesystem::path> dir;
    std::shared_ptr<TrainingMonitor> training;
    {
      std::lock_guard lock(mutex_);
      training = training_;
      if (model_) dir = model_->report_dir;
    }
    if (!dir && training && training->finished()) dir = training->run_dir();
    if (!dir) return send_error(res, 404, "no report yet");
    std::ifstream in(*dir / name, std::ios::binary);
    if (!in) return send_error(res, 404, name + " is not there");
    std::ostringstream content;
    content << in.rdbuf();
    res.set_content(content.str(), content_type(name));
    res.set_header("Content-Security-Policy", "frame-ancestors 'none'");
  });
}

}  // namespace mg
