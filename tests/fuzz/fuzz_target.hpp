// The entry point every target in tests/fuzz/ defines: libFuzzer's, so the same file builds into
// a fuzzer (tools/fuzz.sh, -fsanitize=fuzzer) and into a replay program for ctest (replay_main.cpp).
// A target catches only the error a reader documents for bad input; anything else (another
// exception, a crash, a sanitizer report, a failed MG_FUZZ_CHECK) is a finding.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

// A property the target asserts about an input that was accepted.
#define MG_FUZZ_CHECK(cond)                                                          \
  do {                                                                               \
    if (!(cond)) {                                                                   \
      std::fprintf(stderr, "%s:%d: fuzz check failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                  \
    }                                                                                \
  } while (0)
