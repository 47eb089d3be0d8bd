// Sixteen-lane float and int vectors for the CPU backend's fast kernels (engine/cpu_fast_*.cpp),
// written with GCC's vector extensions (clang understands them too) rather than intrinsics: the
// same source compiles for AVX-512 (one zmm register per vector), AVX2 (two ymm) and baseline
// x86-64 or other architectures (four 128-bit registers).
//
// A kernel entry point marked MG_CPU_KERNEL is compiled once per instruction set level and picks
// the best one the running CPU has, at load time (GCC's target_clones, an ifunc): AVX-512 on the
// machines we build and test on, and still correct anywhere. The helpers below are always inlined
// into those entry points, so they take the entry point's instruction set. Results can differ in
// the last bits between levels (AVX2 and AVX-512 fuse multiply-adds, baseline x86-64 does not),
// never between runs or thread counts on one machine.
#pragma once

#include <cstdint>
#include <cstring>

// GCC notes that a 64-byte vector passed or returned by value has a different ABI with and without
// AVX-512. These helpers are always inlined and never cross a library boundary, so the note does
// not apply; it is silenced for the files that include this header (the fast kernels only).
#if defined(__clang__)
#pragma clang diagnostic ignored "-Wpsabi"
#elif defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

namespace mg::simd {

inline constexpr int kLanes = 16;
using F16 = float __attribute__((vector_size(64)));
using I16 = int32_t __attribute__((vector_size(64)));
using U16 = uint32_t __attribute__((vector_size(64)));

#define MG_SIMD_INLINE [[gnu::always_inline]] inline

#if defined(__x86_64__) && !defined(MG_NO_TARGET_CLONES)
#define MG_CPU_KERNEL \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define MG_CPU_KERNEL
#endif

// The helpers return nothing by value: clang refuses to return a 64-byte vector from a function
// compiled for AVX2 without AVX-512 (the ABI differs), even one that is always inlined.
MG_SIMD_INLINE void load(F16& v, const float* p) { std::memcpy(&v, p, sizeof v); }
MG_SIMD_INLINE void store(float* p, const F16& v) { std::memcpy(p, &v, sizeof v); }
MG_SIMD_INLINE void store_i(int32_t* p, const I16& v) { std::memcpy(p, &v, sizeof v); }

// v = mask ? a : v per lane; mask lanes are all ones or all zeros (a vector comparison's result).
MG_SIMD_INLINE void select_into(F16& v, const I16& mask, const F16& a) {
  I16 ai, vi;
  std::memcpy(&ai, &a, sizeof a);
  std::memcpy(&vi, &v, sizeof v);
  vi = (ai & mask) | (vi & ~mask);
  std::memcpy(&v, &vi, sizeof v);
}
MG_SIMD_INLINE void select_into_i(I16& v, const I16& mask, const I16& a) {
  v = (a & mask) | (v & ~mask);
}

// v = max(v, 0) as the CPU reference's std::max(v, 0) computes it (a NaN stays NaN).
MG_SIMD_INLINE void relu(F16& v) { select_into(v, v < F16{}, F16{}); }

}  // namespace mg::simd
