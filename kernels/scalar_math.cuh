// exp, log and sqrt for the element functions, one spelling on the host and on the device. On the
// host they are the C library's (what the CPU reference calls through std::); on the device CUDA's
// (expf and logf within 2 ulp, sqrtf correctly rounded), hence the tolerances in the tests.
#pragma once

#include <cmath>

#include "kernels/philox.cuh"  // MG_HOST_DEVICE

namespace mg::kern {

MG_HOST_DEVICE float exp_of(float x) { return expf(x); }
MG_HOST_DEVICE double exp_of(double x) { return exp(x); }
MG_HOST_DEVICE float log_of(float x) { return logf(x); }
MG_HOST_DEVICE double log_of(double x) { return log(x); }
MG_HOST_DEVICE float sqrt_of(float x) { return sqrtf(x); }
MG_HOST_DEVICE double sqrt_of(double x) { return sqrt(x); }

}  // namespace mg::kern
