// The HTTP side of serve: each input is the raw bytes a client sends on one connection, parsed by
// cpp-httplib's own request parser and answered by serve's routes (host/web_server.hpp's
// WebServer::answer: the Host check, the body limits, the picture decoder, the model). The model
// is a small random one (dense8 on the CPU). Debian's cpp-httplib is a shared library built
// without coverage instrumentation, so libFuzzer is guided by our handlers' code; httplib's parser
// still runs on every input, under ASan only where it calls back into instrumented code.
// Every answer must be an HTTP response.
#include <memory>
#include <string>
#include <string_view>

#include "engine/engine.hpp"
#include "engine/graph.hpp"
#include "host/predictor.hpp"
#include "host/web_server.hpp"
#include "tests/fuzz/fuzz_target.hpp"

namespace {

mg::WebServer& server() {
  static mg::WebServer* s = [] {
    mg::HttpOptions options;
    options.max_body = 64 << 10;  // the corpus's pictures are small; keeps each input fast
    options.max_side = 512;
    auto* server = new mg::WebServer(options);
    mg::EngineOptions eo;
    eo.batch_size = 64;
    mg::ServedModel model;
    model.predictor = std::make_shared<mg::Predictor>(
        mg::make_cpu_engine(mg::Graph::build(mg::ModelSpec::parse("dense8")), eo), 64);
    model.card = {{"spec", "dense8"}};
    for (int i = 0; i < 10; ++i) model.class_names.push_back(std::to_string(i));
    server->set_model(std::move(model));
    return server;
  }();
  return *s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string response =
      server().answer(std::string_view(reinterpret_cast<const char*>(data), size));
  // httplib answers nothing when it cannot read a request line at all (the client hung up).
  MG_FUZZ_CHECK(response.empty() || response.starts_with("HTTP/1.1 "));
  return 0;
}
