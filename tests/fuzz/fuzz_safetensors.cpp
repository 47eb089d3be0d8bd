// A checkpoint from memory (host/checkpoint.hpp): the header length, the header's JSON, every
// metadata field, the model spec it names, and each tensor's dtype, shape and data offsets. An
// accepted file must give buffers of the model's size and a spec that parses back to itself.
#include <span>

#include "engine/graph.hpp"
#include "host/checkpoint.hpp"
#include "tests/fuzz/fuzz_target.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const mg::Checkpoint ck =
        mg::load_checkpoint(std::span<const uint8_t>(data, size), "fuzz.safetensors");
    const mg::Graph g =
        mg::Graph::build(mg::ModelSpec::parse(ck.meta.spec), ck.meta.input, ck.meta.classes);
    const auto n = static_cast<size_t>(g.param_count());
    MG_FUZZ_CHECK(ck.state.params.size() == n);
    MG_FUZZ_CHECK(!ck.has_optimizer_state ||
                  (ck.state.adam_m.size() == n && ck.state.adam_v.size() == n));
    MG_FUZZ_CHECK(ck.restore_params.empty() || ck.restore_params.size() == n);
  } catch (const mg::CheckpointError&) {
  }
  return 0;
}
