// The CPU backend's fast elementwise ops (float): dropout with sixteen Philox blocks drawn at
// once, and Adam in one vectorized pass. Both give the reference's result (engine/cpu_ops.hpp)
// bit for bit: the same operations in the same order, and no fused multiply-adds (CMakeLists.txt
// compiles this file with -ffp-contract=off). tests/test_cpu_fast.cpp checks both.
#pragma once

#include <cstdint>

#include "engine/cpu_ops.hpp"

namespace mg::cpu::fast {

// y = dropout(x) with cpu::dropout_forward's mask and scale, bit for bit. y may alias x.
void dropout(const float* x, float* y, int64_t count, const DropoutKey& k);

// cpu::adam_update's formula over [0, count): decay = lr * weight_decay where kernel_mask[i] is 1.
void adam_update(float* p, const float* g, float* m, float* v, int64_t count, float alpha,
                 float beta1, float beta2, float eps, float decay, const uint8_t* kernel_mask);

}  // namespace mg::cpu::fast
