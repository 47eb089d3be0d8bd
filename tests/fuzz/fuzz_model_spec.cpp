// The model spec parser (engine/model_spec.hpp) and the graph it builds on MNIST's 1x28x28 input
// (engine/graph.hpp). An accepted spec must print in a canonical form that parses back to itself.
#include <string_view>

#include "engine/graph.hpp"
#include "engine/model_spec.hpp"
#include "tests/fuzz/fuzz_target.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  mg::ModelSpec spec;
  try {
    spec = mg::ModelSpec::parse(text);
  } catch (const mg::SpecError&) {
    return 0;
  }
  const std::string canonical = spec.to_string();
  MG_FUZZ_CHECK(mg::ModelSpec::parse(canonical).to_string() == canonical);
  try {
    const mg::Graph g = mg::Graph::build(spec);
    MG_FUZZ_CHECK(g.param_count() > 0);
    MG_FUZZ_CHECK(g.classifier().out.c == 10);
  } catch (const mg::SpecError&) {
  }
  return 0;
}
