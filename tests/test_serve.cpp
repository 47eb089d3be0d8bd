// serve's parts in process: pictures decoded from memory, the batching predictor, the training
// monitor, and the HTTP server on loopback with good and bad requests, hostile clients and a
// load test (8 clients, thousands of requests, every answer checked, p50/p99 printed).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <poll.h>
#include <stb_image_write.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>
#include <numeric>
#include <thread>

#include "engine/init.hpp"
#include "host/charts.hpp"
#include "host/digit_image.hpp"
#include "host/predictor.hpp"
#include "host/training_monitor.hpp"
#include "host/web_server.hpp"

namespace mg {
namespace {

using nlohmann::json;
using Ms = std::chrono::milliseconds;

// A ring (a "0") or a bar (a "1") of ink, white on black, on a canvas of any size.
std::vector<uint8_t> draw_digit(int w, int h, int kind, int shift = 0) {
  std::vector<uint8_t> p(static_cast<size_t>(w) * h, 0);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      const double dx = (x - w / 2.0 - shift) / w, dy = (y - h / 2.0) / h;
      bool ink = false;
      if (kind == 0) ink = std::abs(std::hypot(dx * 1.4, dy) - 0.3) < 0.06;
      if (kind == 1) ink = std::abs(dx + 0.15 * dy) < 0.05 && std::abs(dy) < 0.35;
      if (kind == 2) ink = (std::abs(dy + 0.3) < 0.05 && std::abs(dx) < 0.25) ||
                           (std::abs(dx - 0.25 + (dy + 0.3) * 0.5) < 0.05 && dy > -0.3 && dy < 0.35);
      if (ink) p[static_cast<size_t>(y) * w + x] = 255;
    }
  return p;
}

std::string png_of(int w, int h, int kind, int shift = 0) {
  return encode_png_gray(draw_digit(w, h, kind, shift), w, h);
}

std::span<const uint8_t> bytes_of(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// A PNG signature and an IHDR claiming width x height, and nothing else worth decoding.
std::string png_header_claiming(uint32_t width, uint32_t height) {
  std::string ihdr = "IHDR";
  for (const uint32_t v : {width, height}) {
    for (int s = 24; s >= 0; s -= 8) ihdr += static_cast<char>((v >> s) & 0xff);
  }
  ihdr += std::string("\x08\x00\x00\x00\x00", 5);  // 8-bit gray
  uint32_t crc = 0xffffffffu;
  for (const unsigned char c : ihdr) {
    crc ^= c;
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1u)));
  }
  crc ^= 0xffffffffu;
  std::string out = "\x89PNG\r\n\x1a\n";
  out += std::string("\x00\x00\x00\x0d", 4) + ihdr;
  for (int s = 24; s >= 0; s -= 8) out += static_cast<char>((crc >> s) & 0xff);
  out += std::string(64, '\0');
  return out;
}

// --- pictures from memory ---------------------------------------------------------------------

TEST(DigitImageMemory, MatchesTheFilePipeline) {
  const auto pixels = draw_digit(120, 150, 0);
  const std::string png = encode_png_gray(pixels, 120, 150);
  EXPECT_EQ(load_digit_image(bytes_of(png), "upload"), mnist_from_gray(pixels.data(), 120, 150, "m"));
  // PGM and JPEG too (JPEG is lossy: the same digit, not the same bytes).
  const std::string pgm = "P5\n120 150\n255\n" + std::string(pixels.begin(), pixels.end());
  EXPECT_EQ(load_digit_image(bytes_of(pgm), "upload"), mnist_from_gray(pixels.data(), 120, 150, "m"));
  std::string jpeg;
  stbi_write_jpg_to_func([](void* ctx, void* data, int size) {
    static_cast<std::string*>(ctx)->append(static_cast<const char*>(data), static_cast<size_t>(size));
  }, &jpeg, 120, 150, 1, pixels.data(), 95);
  const MnistImage a = load_digit_image(bytes_of(jpeg), "upload");
  const MnistImage b = mnist_from_gray(pixels.data(), 120, 150, "m");
  int far = 0;
  for (size_t i = 0; i < a.size(); ++i) far += std::abs(a[i] - b[i]) > 48;
  EXPECT_LT(far, 20);
}

TEST(DigitImageMemory, RefusesEmptyUnknownAndHugeImagesByTheirHeader) {
  auto message = [](const std::string& body, int max_side = 4096) {
    try {
      load_digit_image(bytes_of(body), "upload", max_side);
    } catch (const ImageError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_EQ(message(""), "upload: empty (no image data)");
  EXPECT_EQ(message("hello, world"), "upload: not a PNG, JPEG, PGM/PPM or BMP image");
  EXPECT_EQ(message("GIF89a......"), "upload: not a PNG, JPEG, PGM/PPM or BMP image");
  // 20000 x 20000 would be 400 MB decoded (stb refuses beyond 2^30 pixels by itself): refused
  // from the 100-byte header, before decoding.
  EXPECT_NE(message(png_header_claiming(20000, 20000)).find("20000x20000, outside 1..4096"),
            std::string::npos)
      << message(png_header_claiming(20000, 20000));
  EXPECT_NE(message(png_header_claiming(100000, 100000)).find("cannot decode"), std::string::npos);
  EXPECT_NE(message("P5\n5000 4000\n255\n" + std::string(100, 'x')).find("5000x4000"),
            std::string::npos);
  EXPECT_NE(message(png_of(300, 200, 1), 256).find("300x200, outside 1..256"), std::string::npos);
  EXPECT_NE(message(png_of(300, 200, 1).substr(0, 100)).find("cannot decode"), std::string::npos);
  const std::string blank = encode_png_gray(std::vector<uint8_t>(64 * 64, 0), 64, 64);
  EXPECT_NE(message(blank).find("no digit found"), std::string::npos);
}

// --- the predictor ----------------------------------------------------------------------------

const char* kSpec = "conv4,pool,dense16";

std::unique_ptr<Engine> random_engine(int64_t batch = 64, uint64_t seed = 7) {
  EngineOptions eo;
  eo.batch_size = batch;
  eo.seed = seed;
  return make_cpu_engine(Graph::build(ModelSpec::parse(kSpec)), eo);
}

// The probabilities one engine gives for each image on its own: the reference answers.
std::vector<std::vector<float>> reference(const std::vector<MnistImage>& images) {
  auto engine = random_engine();
  std::vector<std::vector<float>> out;
  for (const MnistImage& img : images) {
    const uint8_t label = 0;
    engine->set_dataset({img.data(), &label, 1, Shape{1, 28, 28}});
    std::vector<float> probs;
    const int32_t index = 0;
    engine->evaluate(std::span<const int32_t>(&index, 1), &probs);
    out.push_back(probs);
  }
  return out;
}

std::vector<MnistImage> sample_images() {
  std::vector<MnistImage> images;
  for (int kind = 0; kind < 3; ++kind)
    for (int shift = -6; shift <= 6; shift += 6) {
      const auto px = draw_digit(90, 110, kind, shift);
      images.push_back(mnist_from_gray(px.data(), 90, 110, "sample"));
    }
  return images;
}

void expect_same_probabilities(const std::vector<float>& got, const std::vector<float>& want) {
  ASSERT_EQ(got.size(), want.size());
  // One image through a batch of many or of one: the same float ops per element, up to the
  // GEMM's blocking; 1e-6 is far below any real difference.
  for (size_t c = 0; c < got.size(); ++c) EXPECT_NEAR(got[c], want[c], 1e-6) << "class " << c;
}

TEST(Predictor, ConcurrentCallersGetTheirOwnAnswers) {
  const auto images = sample_images();
  const auto want = reference(images);
  Predictor predictor(random_engine(), 64);
  EXPECT_EQ(predictor.classes(), 10);
  std::vector<std::thread> callers;
  std::atomic<int> checked{0};
  for (int t = 0; t < 8; ++t) {
    callers.emplace_back([&, t] {
      for (int r = 0; r < 25; ++r) {
        const size_t k = static_cast<size_t>(t * 7 + r) % images.size();
        expect_same_probabilities(predictor.predict(images[k], Ms(20000)).probabilities, want[k]);
        ++checked;
      }
    });
  }
  for (auto& c : callers) c.join();
  EXPECT_EQ(checked.load(), 200);
  const PredictorStats st = predictor.stats();
  EXPECT_EQ(st.images, 200);
  EXPECT_LE(st.batches, 200);
  EXPECT_GE(st.largest_batch, 1);
}

TEST(Predictor, RefusesModelsOfOtherInputs) {
  EngineOptions eo;
  auto engine = make_cpu_engine(Graph::build(ModelSpec::parse("dense8"), Shape{1, 8, 8}), eo);
  EXPECT_THROW(Predictor(std::move(engine)), std::invalid_argument);
}

// --- the training monitor ---------------------------------------------------------------------

TEST(TrainingMonitor, FollowsARun) {
  TrainingMonitor m;
  EXPECT_EQ(m.snapshot()["status"], "starting");
  TrainStart start;
  start.run_dir = "/tmp/run";
  start.spec = "dense8";
  start.device = "cpu (test)";
  start.batch_size = 10;
  start.train_count = 95;
  start.steps_per_epoch = 10;
  start.epochs = 2;
  m.on_start(start);
  int running_calls = 0;
  const std::function<Metrics()> running = [&] {
    ++running_calls;
    return Metrics{0.5, 0.75, 30};
  };
  for (int s = 1; s <= 3; ++s) m.on_step(0, s, 10, running);
  json j = m.snapshot();
  EXPECT_EQ(j["status"], "training");
  EXPECT_EQ(j["epoch"], 1);
  EXPECT_EQ(j["step"], 3);
  EXPECT_EQ(j["steps"], 10);
  EXPECT_EQ(j["device"], "cpu (test)");
  EXPECT_EQ(running_calls, 1);  // rate-limited: once a second at most
  EXPECT_DOUBLE_EQ(j["running"]["accuracy"].get<double>(), 0.75);
  EXPECT_GE(j["images_per_second"].get<double>(), 0.0);
  m.on_step(0, 10, 10, running);  // the epoch's last step always reads them
  EXPECT_EQ(running_calls, 2);
  m.on_epoch({0, 0.9, 0.6, 0.8, 0.65, 1.5});
  j = m.snapshot();
  EXPECT_EQ(j["epoch"], 2);
  EXPECT_EQ(j["step"], 0);
  ASSERT_EQ(j["history"].size(), 1u);
  EXPECT_EQ(j["history"][0]["epoch"], 1);
  EXPECT_DOUBLE_EQ(j["history"][0]["val_accuracy"].get<double>(), 0.65);
  EXPECT_FALSE(j.contains("report"));
  m.on_epoch({1, 0.5, 0.8, 0.4, 0.85, 1.4});
  EXPECT_EQ(m.snapshot()["status"], "testing");
  EXPECT_FALSE(m.finished());
  m.on_finish("/tmp/run/report.html", Metrics{0.3, 0.9, 100});
  j = m.snapshot();
  EXPECT_EQ(j["status"], "done");
  EXPECT_TRUE(m.finished());
  EXPECT_EQ(j["report"], "/run/report.html");
  EXPECT_DOUBLE_EQ(j["test"]["accuracy"].get<double>(), 0.9);
  EXPECT_EQ(m.run_dir(), std::filesystem::path("/tmp/run"));
}

// --- the HTTP server --------------------------------------------------------------------------

ServedModel served_model(std::vector<std::string> names = {}) {
  ServedModel m;
  m.predictor = std::make_shared<Predictor>(random_engine(), 64);
  if (names.empty()) {
    for (int c = 0; c < 10; ++c) names.push_back(std::to_string(c));
  }
  m.class_names = names;
  m.card = {{"spec", kSpec}, {"dataset", "mnist"}, {"classes", names}, {"param_count", 1}};
  return m;
}

HttpOptions test_options() {
  HttpOptions o;
  o.port = 0;
  o.io_timeout = Ms(1000);
  o.keep_alive_seconds = 2;
  return o;
}

class ServerTest : public ::testing::Test {
 protected:
  void start(HttpOptions o = test_options(), std::vector<std::string> names = {}) {
    server_ = std::make_unique<WebServer>(o);
    server_->set_model(served_model(std::move(names)));
    port_ = server_->start();
    ASSERT_GT(port_, 0);
  }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(30, 0);
    c.set_tcp_nodelay(true);
    return c;
  }
  httplib::Result post(const std::string& body, const std::string& type = "image/png") const {
    return client().Post("/api/predict", body, type);
  }
  static json body(const httplib::Result& r) { return json::parse(r->body); }
  void expect_error(const httplib::Result& r, int status, const std::string& part) const {
    ASSERT_TRUE(r) << "no answer";
    EXPECT_EQ(r->status, status) << r->body;
    EXPECT_EQ(r->get_header_value("Content-Type"), "application/json");
    const json j = json::parse(r->body, nullptr, false);
    ASSERT_TRUE(j.is_object()) << r->body;
    EXPECT_NE(j.value("error", "").find(part), std::string::npos) << r->body;
  }
  void expect_alive() const {
    const auto r = post(png_of(80, 80, 1));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200) << r->body;
  }
  // A raw exchange on a fresh connection: what the server answers to `bytes` (until it closes).
  std::string raw(const std::string& bytes, Ms wait = Ms(5000)) const {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port_));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    timeval tv{static_cast<time_t>(wait.count() / 1000), static_cast<suseconds_t>(wait.count() % 1000 * 1000)};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (!bytes.empty()) {
      EXPECT_EQ(::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL),
                static_cast<ssize_t>(bytes.size()));
    }
    std::string got;
    char buf[4096];
    for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) got.append(buf, static_cast<size_t>(n));
    ::close(fd);
    return got;
  }
  std::unique_ptr<WebServer> server_;
  int port_ = 0;
};

TEST_F(ServerTest, AnswersAGoodPicture) {
  start();
  const std::string png = png_of(100, 130, 0);
  const MnistImage seen = load_digit_image(bytes_of(png), "x");
  const auto want = reference({seen})[0];
  const auto r = post(png);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(r->get_header_value("Content-Type"), "application/json");
  const json j = body(r);
  const auto probs = j["probabilities"].get<std::vector<float>>();
  expect_same_probabilities(probs, want);
  const int best = static_cast<int>(std::max_element(want.begin(), want.end()) - want.begin());
  EXPECT_EQ(j["digit"], best);
  EXPECT_EQ(j["label"], std::to_string(best));
  EXPECT_EQ(j["classes"].size(), 10u);
  EXPECT_NEAR(std::accumulate(probs.begin(), probs.end(), 0.0), 1.0, 1e-5);
  // The 28x28 the network saw: exactly predict's preprocessing of the same bytes.
  const auto input = j["input"].get<std::vector<int>>();
  EXPECT_TRUE(std::equal(input.begin(), input.end(), seen.begin(), seen.end()));
  // The saliency of the predicted class: 28x28 values in [0, 1], the largest 1, and the engine's
  // own Engine::saliency of that input, scaled as explain does.
  ASSERT_TRUE(j.contains("saliency"));
  const auto sal = j["saliency"].get<std::vector<float>>();
  ASSERT_EQ(sal.size(), 28u * 28u);
  EXPECT_TRUE(std::all_of(sal.begin(), sal.end(), [](float v) { return v >= 0 && v <= 1; }));
  EXPECT_FLOAT_EQ(*std::max_element(sal.begin(), sal.end()), 1.0f);
  std::vector<int> predicted;
  const std::vector<float> want_sal =
      normalized_saliency(random_engine()->saliency({seen.data(), seen.size()}, &predicted));
  EXPECT_EQ(predicted.at(0), best);
  for (size_t i = 0; i < sal.size(); ++i) EXPECT_NEAR(sal[i], want_sal[i], 1e-5) << "pixel " << i;
  // application/octet-stream and PGM are read the same way.
  const auto px = draw_digit(100, 130, 0);
  const auto r2 = post("P5\n100 130\n255\n" + std::string(px.begin(), px.end()), "application/octet-stream");
  ASSERT_TRUE(r2);
  EXPECT_EQ(r2->status, 200);
  EXPECT_EQ(body(r2)["input"], j["input"]);
}

// WebServer::answer (tests/fuzz/fuzz_http.cpp) goes through the same parser and routes as a
// socket: the same status lines and bodies, the limits included.
TEST_F(ServerTest, AnswerInMemoryMatchesTheSocket) {
  start();
  auto status_and_body = [](const std::string& response) {
    const size_t end = response.find("\r\n");
    const size_t body = response.find("\r\n\r\n");
    return std::pair{response.substr(0, end),
                     body == std::string::npos ? "" : response.substr(body + 4)};
  };
  const std::string png = png_of(60, 60, 2);
  for (const std::string& request : std::vector<std::string>{
           std::string("GET /api/model HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
        std::string("GET /api/model HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n"),
        std::string("GET /nothing HTTP/1.1\r\nConnection: close\r\n\r\n"),
        "POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n"
        "Content-Length: 2\r\nConnection: close\r\n\r\nhi",
        "POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
        "Content-Length: 99999999\r\nConnection: close\r\n\r\n"}) {
    const auto [socket_status, socket_body] = status_and_body(raw(request));
    const auto [memory_status, memory_body] = status_and_body(server_->answer(request));
    EXPECT_EQ(memory_status, socket_status) << request;
    EXPECT_EQ(memory_body, socket_body) << request;
  }
  const std::string post = "POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                           "image/png\r\nContent-Length: " +
                           std::to_string(png.size()) + "\r\n\r\n" + png;
  const auto [status, answer] = status_and_body(server_->answer(post));
  EXPECT_EQ(status, "HTTP/1.1 200 OK");
  EXPECT_EQ(json::parse(answer)["input"].size(), 784u);
}

TEST_F(ServerTest, NamesFashionClasses) {
  std::vector<std::string> names = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                    "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
  start(test_options(), names);
  const auto r = post(png_of(60, 60, 1));
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200);
  const json j = body(r);
  EXPECT_EQ(j["label"], names[j["digit"].get<size_t>()]);
  EXPECT_EQ(j["classes"], names);
  EXPECT_EQ(body(client().Get("/api/model"))["classes"], names);
}

TEST_F(ServerTest, ServesThePageAndTheModel) {
  start();
  auto page = client().Get("/");
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200);
  EXPECT_NE(page->body.find("<canvas id=\"pad\""), std::string::npos);
  EXPECT_NE(page->get_header_value("Content-Security-Policy").find("script-src 'self'"), std::string::npos);
  EXPECT_EQ(page->get_header_value("X-Content-Type-Options"), "nosniff");
  EXPECT_EQ(page->get_header_value_count("Cache-Control"), 1u);
  // No external resource: everything the page loads comes from this server.
  EXPECT_EQ(page->body.find("http://"), std::string::npos);
  EXPECT_EQ(page->body.find("https://"), std::string::npos);
  for (const char* path : {"/app.js", "/style.css", "/favicon.svg"}) {
    const auto r = client().Get(path);
    ASSERT_TRUE(r) << path;
    EXPECT_EQ(r->status, 200) << path;
    EXPECT_GT(r->body.size(), 100u) << path;
  }
  EXPECT_EQ(client().Get("/app.js")->get_header_value("Content-Type"), "text/javascript; charset=utf-8");
  const json health = body(client().Get("/healthz"));
  EXPECT_EQ(health["status"], "ok");
  EXPECT_EQ(health["mode"], "serve");
  EXPECT_EQ(health["model"], true);
  const json model = body(client().Get("/api/model"));
  EXPECT_EQ(model["spec"], kSpec);
  EXPECT_NE(model["device"].get<std::string>().find("cpu"), std::string::npos);
  expect_error(client().Get("/api/train"), 404, "not watching a training run");
  expect_error(client().Get("/run/report.html"), 404, "no report");
}

TEST_F(ServerTest, BadRequestsGetA4xxAndTheServerGoesOn) {
  start();
  expect_error(post(""), 400, "empty");
  expect_error(post("definitely not a picture"), 400, "not a PNG, JPEG");
  expect_error(post(png_of(80, 80, 1).substr(0, 60)), 400, "cannot decode");
  expect_error(post(encode_png_gray(std::vector<uint8_t>(50 * 50, 200), 50, 50)), 400, "no digit found");
  expect_error(post(png_header_claiming(20000, 20000)), 400, "20000x20000, outside 1..4096");
  expect_error(post(png_header_claiming(100000, 100000)), 400, "cannot decode");
  expect_error(post(png_of(80, 80, 1), "text/plain"), 415, "Content-Type");
  expect_error(post(png_of(80, 80, 1), "application/x-www-form-urlencoded"), 415, "Content-Type");
  expect_error(client().Get("/api/predict"), 405, "POST");
  expect_error(client().Get("/no/such/page"), 404, "not found");
  expect_error(client().Get("/run/../../etc/passwd"), 404, "not found");
  expect_error(client().Get("/run/checkpoint.safetensors"), 404, "not found");
  expect_error(client().Get("/%2e%2e/%2e%2e/etc/passwd"), 404, "not found");
  // Over the 4 MiB limit: 413, whether the length is declared or the body is chunked.
  expect_error(post(std::string(4u * 1024 * 1024 + 1, 'x')), 413, "too large");
  {
    httplib::Client c = client();
    const std::string chunk(512 * 1024, 'x');
    auto r = c.Post("/api/predict", [&](size_t offset, httplib::DataSink& sink) {
      if (offset < 6u * 1024 * 1024) return sink.write(chunk.data(), chunk.size());
      sink.done();
      return true;
    }, "image/png");
    if (r) {
      EXPECT_EQ(r->status, 413) << r->body;  // or the server hung up mid-body: both refuse it
    }
  }
  // A page elsewhere that rebinds its name to 127.0.0.1 is refused by the Host check.
  {
    httplib::Headers h = {{"Host", "attacker.example:80"}};
    expect_error(client().Get("/api/model", h), 421, "localhost");
  }
  {
    // Ranges are ignored: the whole answer, once, however many parts are asked for.
    std::string ranges = "bytes=0-";
    for (int k = 0; k < 500; ++k) ranges += ",0-";
    httplib::Headers h = {{"Range", ranges}};
    const auto r = client().Get("/", h);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->body, client().Get("/")->body);
    expect_error(client().Get("/nothing", h), 404, "not found");
  }
  // Not HTTP at all, a header line too long, a bad method: answered and closed.
  EXPECT_NE(raw("GARBAGE\r\n\r\n").find("HTTP/1.1 400"), std::string::npos);
  EXPECT_NE(raw("GET /" + std::string(20000, 'a') + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").find("HTTP/1.1 414"), std::string::npos);
  EXPECT_NE(raw("BREW /coffee HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").find("HTTP/1.1 400"), std::string::npos);
  const std::string liar = "POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\nContent-Length: 999999999999\r\n\r\nabc";
  EXPECT_NE(raw(liar).find("HTTP/1.1 413"), std::string::npos);
  expect_alive();
}

TEST_F(ServerTest, SlowAndSilentClientsAreCutOff) {
  HttpOptions o = test_options();
  o.io_timeout = Ms(300);
  o.body_deadline = Ms(1500);
  o.threads = 3;
  start(o);
  // Clients that connect and say nothing, or stop mid-body, hold workers only until the read
  // timeout.
  const auto t0 = std::chrono::steady_clock::now();
  double silent_seconds = 0;
  std::thread a([&] {
    EXPECT_EQ(raw(""), "");
    silent_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  });
  std::thread b([&] {
    // A body that never comes: the read times out and the request is answered 400.
    const std::string got = raw("POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\nab");
    EXPECT_TRUE(got.empty() || got.rfind("HTTP/1.1 400", 0) == 0) << got;
  });
  // One that trickles its body, a byte at a time within the read timeout: cut off by the body
  // deadline, answered 408.
  std::thread c([&] {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port_));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    const std::string head = "POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\nContent-Length: 1000\r\n\r\n";
    ::send(fd, head.data(), head.size(), MSG_NOSIGNAL);
    std::string got;
    for (int k = 0; k < 40; ++k) {
      std::this_thread::sleep_for(Ms(100));
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 0) > 0 || ::send(fd, "x", 1, MSG_NOSIGNAL) != 1) break;  // answered
    }
    char buf[2048];
    for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) got.append(buf, static_cast<size_t>(n));
    ::close(fd);
    EXPECT_NE(got.find("HTTP/1.1 408"), std::string::npos) << got;
  });
  a.join();
  b.join();
  c.join();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(silent_seconds, 2.5) << "a silent connection was held for " << silent_seconds << " s";
  EXPECT_LT(seconds, 4.0) << "the slow clients were held for " << seconds << " s";
  expect_alive();
}

TEST_F(ServerTest, WaitsForTheModelOfATrainingRun) {
  server_ = std::make_unique<WebServer>(test_options());
  auto monitor = std::make_shared<TrainingMonitor>();
  server_->set_training(monitor);
  port_ = server_->start();
  const json h = body(client().Get("/healthz"));
  EXPECT_EQ(h["mode"], "train");
  EXPECT_EQ(h["model"], false);
  EXPECT_EQ(h["training"], "starting");
  expect_error(client().Get("/api/model"), 503, "training is still running");
  expect_error(post(png_of(80, 80, 1)), 503, "training is still running");
  EXPECT_EQ(body(client().Get("/api/train"))["status"], "starting");
  server_->set_model(served_model());
  expect_alive();
}

TEST_F(ServerTest, StopsAndReleasesThePort) {
  start();
  expect_alive();
  server_->stop();
  server_->stop();  // idempotent
  httplib::Client c("127.0.0.1", port_);
  c.set_connection_timeout(1, 0);
  EXPECT_FALSE(c.Get("/healthz"));
  // The port is free again: a new server can listen on it.
  HttpOptions o = test_options();
  o.port = port_;
  WebServer again(o);
  EXPECT_EQ(again.start(), port_);
  again.stop();
}

TEST(WebServer, RefusesAPortInUse) {
  WebServer a(test_options());
  const int port = a.start();
  HttpOptions o = test_options();
  o.port = port;
  WebServer b(o);
  try {
    b.start();
    FAIL() << "listened twice on port " << port;
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot listen on 127.0.0.1:" + std::to_string(port)),
              std::string::npos)
        << e.what();
  }
}

TEST(WebServer, KnowsLoopback) {
  for (const char* h : {"127.0.0.1", "127.3.2.1", "localhost", "::1"}) EXPECT_TRUE(is_loopback_host(h)) << h;
  for (const char* h : {"0.0.0.0", "192.168.1.2", "::", "example.com", "128.0.0.1"}) EXPECT_FALSE(is_loopback_host(h)) << h;
}

// 8 clients on keep-alive connections, 400 requests each, every answer checked against the
// engine's own; bounded in time. Prints p50/p99 (docs/serve.md records them).
TEST_F(ServerTest, LoadEightClientsThousandsOfRequests) {
  start();
  std::vector<std::string> bodies;
  std::vector<MnistImage> seen;
  for (int kind = 0; kind < 3; ++kind)
    for (int shift = -8; shift <= 8; shift += 8) {
      bodies.push_back(png_of(140, 140, kind, shift));
      seen.push_back(load_digit_image(bytes_of(bodies.back()), "x"));
    }
  const auto want = reference(seen);
  constexpr int kClients = 8, kRequests = 400;
  std::vector<std::vector<double>> latency(kClients);
  std::atomic<int> ok{0}, wrong{0}, failed{0};
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(240);
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> clients;
  for (int t = 0; t < kClients; ++t) {
    clients.emplace_back([&, t] {
      httplib::Client c("127.0.0.1", port_);
      c.set_keep_alive(true);
      c.set_tcp_nodelay(true);  // as browsers do: no Nagle delay between headers and body
      c.set_read_timeout(30, 0);
      for (int r = 0; r < kRequests && std::chrono::steady_clock::now() < deadline; ++r) {
        const size_t k = static_cast<size_t>(t + r) % bodies.size();
        const auto s = std::chrono::steady_clock::now();
        const auto res = c.Post("/api/predict", bodies[k], "image/png");
        latency[static_cast<size_t>(t)].push_back(
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - s).count());
        if (!res || res->status != 200) {
          ++failed;
          continue;
        }
        const json j = json::parse(res->body);
        const auto p = j["probabilities"].get<std::vector<float>>();
        bool same = p.size() == want[k].size();
        for (size_t i = 0; same && i < p.size(); ++i) same = std::abs(p[i] - want[k][i]) <= 1e-6f;
        (same && j["input"].get<std::vector<int>>() == std::vector<int>(seen[k].begin(), seen[k].end()))
            ? ++ok
            : ++wrong;
      }
    });
  }
  for (auto& c : clients) c.join();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::vector<double> all;
  for (const auto& l : latency) all.insert(all.end(), l.begin(), l.end());
  std::sort(all.begin(), all.end());
  ASSERT_FALSE(all.empty());
  const auto pct = [&](double q) { return all[static_cast<size_t>(q * static_cast<double>(all.size() - 1))]; };
  const json served = body(client().Get("/api/model"))["served"];
  std::printf("load: %d clients x %d requests: %d right, %d wrong, %d failed in %.1f s (%.0f req/s); "
              "latency p50 %.2f ms, p99 %.2f ms, max %.2f ms; %lld batches, largest %lld\n",
              kClients, kRequests, ok.load(), wrong.load(), failed.load(), seconds,
              static_cast<double>(all.size()) / seconds, pct(0.5), pct(0.99), all.back(),
              static_cast<long long>(served["batches"].get<int64_t>()),
              static_cast<long long>(served["largest_batch"].get<int64_t>()));
  EXPECT_EQ(ok.load(), kClients * kRequests) << "some requests did not finish before the deadline";
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(failed.load(), 0);
}

}  // namespace
}  // namespace mg
