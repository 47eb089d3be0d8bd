// The CUDA backend against the CPU backend: every op on fresh random inputs (several shapes, batch
// 1 and odd sizes, outputs poisoned with NaN before the run), whole training steps, the epoch
// shuffle, graph capture against eager launches, and cuda_usable()'s messages. Compiled by g++
// against the CUDA runtime headers, only in CUDA builds. Without a usable GPU every test that needs
// one skips, naming the reason cuda_usable() gives ("no CUDA GPU: ...").
//
// Tolerances, with their reasons:
// - Exact (bit for bit against CpuBackend<float>) where the kernel performs the reference's very
//   roundings: im2col, col2im, pooling values and argmax, dropout masks and scaling, the gather.
// - Per element |gpu - ref| <= 1e-5 * max|ref| + 1e-4 * |ref| against CpuBackend<double> on the
//   same inputs, for the float32 GEMMs and reductions (conv, dense, softmax cross-entropy):
//   float32's 6e-8 unit roundoff over sums of up to ~10^4 terms stays one to two orders below it,
//   while a wrong index or a missing term lands far above.
// - Adam: against CpuBackend<float>, 1e-6 of the element plus 1e-7 of the tensor's largest; nvcc
//   fuses a*b + c into an FMA (another rounding).
// - Whole networks and training runs, where a float rounding can flip a ReLU or a pooling choice
//   near a tie: norm-wise bounds, stated at each test. Each is set well above what the CPU's own
//   float engine shows against its double engine on the same runs (measured 2026-11-25: gradients
//   3.7e-7, one step 6.7e-6 and fifty steps 4.7e-5 of the distance travelled, losses 5e-6), so a
//   GPU within them rounds like float32 and a wrong kernel does not pass.
// - The augmented gather: exact, since kernels/augment.cuh rounds every operation explicitly.
// - TF32 (--precision tf32): TF32 keeps 10 of float32's 23 mantissa bits. cuBLAS does not say
//   whether it rounds or truncates an operand to TF32, so take the worse: each operand is off by
//   less than 2^-10 of itself, a product by less than 2^-9 + 2^-20 of its magnitude, and adding k
//   products in float32 (any order, split-K or not, even rounding toward zero) costs at most
//   k * 2^-23 of the sum of magnitudes. So per element
//     |gpu - exact| <= (2^-9 + 2^-20 + k * 2^-23) * sum_i |a_i| |b_i|,
//   a bound that holds for any input, with the sum of magnitudes computed by the double reference
//   on |A| and |B| (float32 alone: (k + 1) * 2^-23 of it). For large k that worst case grows past
//   the typical size of a sum of random signs, so each GEMM is also held norm-wise: the rounding
//   errors are at most 2^-9 per product and partly cancel, so ||gpu - ref|| stays near 2^-10
//   (1e-3) of ||ref||; 1e-2 is the bound, ten times that, yet a hundred times below a wrong
//   index. Whole networks chain up to four GEMMs on a gradient's path (dense2, dense1, conv2 dx,
//   conv1 dW): 2e-2 norm-wise. The simulator computes TF32 in float32, where all of these hold
//   with room to spare; the first GPU run calibrates them.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <iostream>
#include <limits>
#include <numeric>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "engine/basic_engine.hpp"
#include "engine/cpu_backend.hpp"
#include "engine/cpu_ops.hpp"
#include "engine/cuda_backend.cuh"
#include "engine/cuda_engine.hpp"
#include "engine/engine.hpp"
#include "engine/init.hpp"
#include "engine/network.hpp"
#include "kernels/conv.cuh"
#include "kernels/cuda_check.cuh"
#include "kernels/gemm.cuh"
#include "kernels/variants.hpp"
#include "test_util.hpp"

namespace mg {
namespace {

using Floats = std::vector<float>;
using Doubles = std::vector<double>;
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// --- helpers -------------------------------------------------------------------------------------

using test::random_floats;

Floats tied_floats(int64_t n, uint64_t seed) {  // small integers: pooling windows with ties
  std::mt19937_64 rng(seed);
  Floats f(static_cast<size_t>(n));
  for (auto& v : f) v = static_cast<float>(rng() % 3) - 1.0f;
  return f;
}

Doubles widen(const Floats& f) { return Doubles(f.begin(), f.end()); }

template <class U>
DeviceBuffer<U> device_copy(CudaBackend& be, const std::vector<U>& host) {
  auto d = be.alloc<U>(static_cast<int64_t>(host.size()));
  be.upload(d.data(), host.data(), static_cast<int64_t>(host.size()));
  return d;
}

DeviceBuffer<float> poisoned(CudaBackend& be, int64_t count) {
  return device_copy(be, Floats(static_cast<size_t>(count), kNaN));
}

template <class U>
std::vector<U> host_copy(CudaBackend& be, const U* device, int64_t count) {
  std::vector<U> h(static_cast<size_t>(count));
  be.download(h.data(), device, count);
  return h;
}

// |gpu - ref| <= 1e-5 * max|ref| + 1e-4 * |ref| per element, and every element finite.
void expect_close(const std::string& what, const Floats& gpu, const Doubles& ref) {
  ASSERT_EQ(gpu.size(), ref.size()) << what;
  double max_ref = 0;
  for (const double r : ref) max_ref = std::max(max_ref, std::abs(r));
  int bad = 0;
  for (size_t i = 0; i < gpu.size(); ++i) {
    const double g = gpu[i], r = ref[i];
    if (!std::isfinite(g) || std::abs(g - r) > 1e-5 * max_ref + 1e-4 * std::abs(r)) {
      if (++bad <= 5) ADD_FAILURE() << what << "[" << i << "]: gpu " << g << " vs reference " << r;
    }
  }
  EXPECT_EQ(bad, 0) << what << ": " << bad << " of " << gpu.size() << " elements out of tolerance";
}

// ||gpu - ref|| <= rtol * ||ref|| (2-norms), and every element finite.
void expect_close_normwise(const std::string& what, const float* gpu, const double* ref,
                           int64_t count, double rtol) {
  double diff = 0, norm = 0;
  for (int64_t i = 0; i < count; ++i) {
    ASSERT_TRUE(std::isfinite(gpu[i])) << what << "[" << i << "]";
    diff += (gpu[i] - ref[i]) * (gpu[i] - ref[i]);
    norm += ref[i] * ref[i];
  }
  EXPECT_LE(std::sqrt(diff), rtol * std::sqrt(norm)) << what << " (" << count << " elements)";
}

// The worst-case error of a TF32 GEMM of inner dimension k, relative to the sum of magnitudes of
// its products (see the top of this file); and float32's.
double tf32_factor(int64_t k) {
  return std::ldexp(1.0, -9) + std::ldexp(1.0, -20) + static_cast<double>(k) * std::ldexp(1.0, -23);
}
double fp32_factor(int64_t k) { return static_cast<double>(k + 1) * std::ldexp(1.0, -23); }

// |gpu - ref| <= factor * magnitude per element, and every element finite.
void expect_within_bound(const std::string& what, const Floats& gpu, const Doubles& ref,
                         const Doubles& magnitude, double factor) {
  ASSERT_EQ(gpu.size(), ref.size()) << what;
  ASSERT_EQ(magnitude.size(), ref.size()) << what;
  int bad = 0;
  for (size_t i = 0; i < gpu.size(); ++i) {
    const double g = gpu[i], r = ref[i], bound = factor * magnitude[i];
    if (!std::isfinite(g) || std::abs(g - r) > bound) {
      if (++bad <= 5) {
        ADD_FAILURE() << what << "[" << i << "]: gpu " << g << " vs reference " << r << ", |diff| "
                      << std::abs(g - r) << " > bound " << bound;
      }
    }
  }
  EXPECT_EQ(bad, 0) << what << ": " << bad << " of " << gpu.size() << " elements outside the bound";
}

Doubles magnitudes(const Floats& f) {
  Doubles d(f.size());
  for (size_t i = 0; i < f.size(); ++i) d[i] = std::abs(static_cast<double>(f[i]));
  return d;
}

Layer conv_layer(int64_t c_in, int64_t h, int64_t w, int64_t c_out, bool relu, int kernel = 3,
                 int pad = 1) {
  Layer l;
  l.kind = LayerKind::kConv2d;
  l.index = 1;
  l.in = {c_in, h, w};
  l.out = {c_out, h + 2 * pad - kernel + 1, w + 2 * pad - kernel + 1};
  l.relu = relu;
  l.kernel = kernel;
  l.pad = pad;
  l.weight_size = c_out * c_in * kernel * kernel;
  l.bias_size = c_out;
  return l;
}

Layer pool_layer(int64_t c, int64_t h, int64_t w) {
  Layer l;
  l.kind = LayerKind::kMaxPool;
  l.index = 2;
  l.in = {c, h, w};
  l.out = {c, h / 2, w / 2};
  return l;
}

Layer dropout_layer(int64_t c, int64_t h, int64_t w, float rate, int index) {
  Layer l;
  l.kind = LayerKind::kDropout;
  l.index = index;
  l.in = l.out = {c, h, w};
  l.rate = rate;
  return l;
}

Layer dense_layer(int64_t in, int64_t out, bool relu) {
  Layer l;
  l.kind = LayerKind::kDense;
  l.index = 6;
  l.in = {in, 1, 1};
  l.out = {out, 1, 1};
  l.relu = relu;
  l.weight_size = out * in;
  l.bias_size = out;
  return l;
}

// --- fixtures ------------------------------------------------------------------------------------

// Skips, naming the reason, when this process cannot use a GPU.
class Cuda : public ::testing::Test {
 protected:
  void SetUp() override {
    static const std::string why = [] {
      std::string w;
      return cuda_usable(&w) ? std::string() : w;
    }();
    if (!why.empty()) GTEST_SKIP() << why;
  }
};

// 0 stands for the launchers' default cap.
int grid_cap(int param) { return param == 0 ? 65536 : param; }

// Op tests run twice: with the launchers' normal grids, and with every grid capped at 3 blocks, so
// each grid-stride loop runs many rounds (the results must not change).
class CudaOp : public Cuda, public ::testing::WithParamInterface<int> {
 protected:
  void SetUp() override {
    Cuda::SetUp();
    if (IsSkipped()) return;
    saved_ = cuda::max_grid_blocks();
    cuda::set_max_grid_blocks(grid_cap(GetParam()));
  }
  void TearDown() override {
    if (saved_ > 0) cuda::set_max_grid_blocks(saved_);
  }

 private:
  int saved_ = 0;
};

INSTANTIATE_TEST_SUITE_P(Grids, CudaOp, ::testing::Values(0, 3),
                         [](const ::testing::TestParamInfo<int>& param_info) {
                           return param_info.param == 3 ? std::string("ThreeBlocks")
                                                        : std::string("FullGrid");
                         });

// The ops with numbered variants (kernels/variants.hpp) run their op tests once per variant, every
// op of the set at that variant (or at its highest, for ops with fewer), with both grids: the
// same tests, the same tolerances.
inline constexpr int kKernelVariantCount = [] {
  int most = 0;
  for (const kern::VariantOpInfo& info : kern::kVariantOps) most = std::max(most, info.count);
  return most;
}();

class CudaVariantOp : public Cuda, public ::testing::WithParamInterface<std::tuple<int, int>> {
 protected:
  void SetUp() override {
    Cuda::SetUp();
    if (IsSkipped()) return;
    saved_ = cuda::max_grid_blocks();
    cuda::set_max_grid_blocks(grid_cap(std::get<0>(GetParam())));
    variants_.emplace(kern::KernelVariants::each_at_most(std::get<1>(GetParam())));
    // With the small grids, conv_gemm variant 1 also runs every batch one image per chunk.
    saved_chunk_bytes_ = kern::conv_chunk_bytes();
    if (std::get<0>(GetParam()) == 3) kern::set_conv_chunk_bytes(1);
  }
  void TearDown() override {
    variants_.reset();
    if (saved_ > 0) cuda::set_max_grid_blocks(saved_);
    if (saved_chunk_bytes_ > 0) kern::set_conv_chunk_bytes(saved_chunk_bytes_);
  }

  // True when none of the test's ops has the parameter's variant: the run would repeat the one
  // below it.
  bool no_such_variant(std::initializer_list<kern::VariantOp> ops) const {
    const int v = std::get<1>(GetParam());
    for (const kern::VariantOp op : ops)
      if (v < kern::kVariantOps[static_cast<size_t>(op)].count) return false;
    return true;
  }

 private:
  int saved_ = 0;
  int64_t saved_chunk_bytes_ = 0;
  std::optional<kern::ScopedKernelVariants> variants_;
};

INSTANTIATE_TEST_SUITE_P(
    GridsAndVariants, CudaVariantOp,
    ::testing::Combine(::testing::Values(0, 3), ::testing::Range(0, kKernelVariantCount)),
    [](const ::testing::TestParamInfo<std::tuple<int, int>>& param_info) {
      return std::string(std::get<0>(param_info.param) == 3 ? "ThreeBlocks" : "FullGrid") +
             "_v" + std::to_string(std::get<1>(param_info.param));
    });

// --- ops -----------------------------------------------------------------------------------------

struct ConvCase {
  int64_t n, c_in, h, w, c_out;
  int kernel = 3, pad = 1;  // the seed model's 3x3 'same' unless given
};
const ConvCase kConvCases[] = {
    {1, 1, 5, 5, 1},     {2, 3, 4, 7, 5},   {3, 2, 6, 3, 4},
    {1, 32, 14, 14, 64}, {5, 1, 28, 28, 8}, {2, 4, 1, 1, 3},
    // K = 1, 5, 7 and 3, 'same' and 'valid'
    {2, 3, 7, 6, 4, 1, 0},  {2, 2, 8, 7, 3, 5, 2}, {2, 2, 9, 8, 3, 5, 0},
    {1, 3, 6, 9, 2, 7, 3},  {2, 2, 10, 9, 3, 7, 0}, {2, 3, 6, 5, 4, 3, 0},
    {2, 8, 12, 12, 16, 5, 0},
};

TEST_P(CudaVariantOp, ConvForwardAndBackwardMatchTheCpu) {
  uint64_t seed = 100;
  for (const ConvCase& c : kConvCases) {
    for (const bool relu : {true, false}) {
      SCOPED_TRACE("n=" + std::to_string(c.n) + " c_in=" + std::to_string(c.c_in) +
                   " h=" + std::to_string(c.h) + " w=" + std::to_string(c.w) +
                   " c_out=" + std::to_string(c.c_out) + " k=" + std::to_string(c.kernel) +
                   " pad=" + std::to_string(c.pad) + " relu=" + std::to_string(relu));
      const Layer l = conv_layer(c.c_in, c.h, c.w, c.c_out, relu, c.kernel, c.pad);
      const int64_t taps = int64_t{c.kernel} * c.kernel, ohw = l.out.h * l.out.w;
      const int64_t nx = c.n * c.c_in * c.h * c.w, ny = c.n * c.c_out * ohw;
      const int64_t nw = c.c_out * c.c_in * taps, ncol = c.c_in * taps * c.n * ohw;
      const Floats x = random_floats(nx, ++seed), w = random_floats(nw, ++seed, -0.5, 0.5);
      const Floats b = random_floats(c.c_out, ++seed), dy = random_floats(ny, ++seed);

      CudaBackend be;
      auto gx = device_copy(be, x), gw = device_copy(be, w), gb = device_copy(be, b),
           gdy = device_copy(be, dy);
      auto gy = poisoned(be, ny), gcol = poisoned(be, ncol), gtmp = poisoned(be, ny);
      be.conv_forward(l, c.n, gx.data(), gw.data(), gb.data(), gy.data(),
                      {gcol.data(), gtmp.data()});
      const Floats y = host_copy(be, gy.data(), ny);

      CpuBackend<double> ref;
      const Doubles xd = widen(x), wd = widen(w), bd = widen(b), dyd = widen(dy);
      Doubles yd(static_cast<size_t>(ny)), cold(static_cast<size_t>(ncol)),
          tmpd(static_cast<size_t>(ny));
      ref.conv_forward(l, c.n, xd.data(), wd.data(), bd.data(), yd.data(),
                       {cold.data(), tmpd.data()});
      expect_close("conv y", y, yd);

      // The column matrix the forward leaves for the backward is im2col(x), copied exactly
      // (unless the layer ran in chunks, conv_gemm variant 1: the backward unfolds x again).
      if (kern::conv_keeps_col(kern::ConvDims{c.n, c.c_in, c.h, c.w, c.c_out, c.kernel, c.pad})) {
        Floats col_ref(static_cast<size_t>(ncol));
        cpu::im2col(x.data(), cpu::ConvDims{c.n, c.c_in, c.h, c.w, c.c_out, c.kernel, c.pad},
                    col_ref.data());
        EXPECT_EQ(host_copy(be, gcol.data(), ncol), col_ref);
      }

      // Backward from the GPU's own y on both sides, so the ReLU masks are the same.
      const Doubles y_same = widen(y);
      auto gdx = poisoned(be, nx), gdw = poisoned(be, nw), gdb = poisoned(be, c.c_out);
      be.conv_backward(l, c.n, gx.data(), gw.data(), gy.data(), gdy.data(), gdx.data(), gdw.data(),
                       gdb.data(), {gcol.data(), gtmp.data()});
      Doubles dxd(static_cast<size_t>(nx)), dwd(static_cast<size_t>(nw)),
          dbd(static_cast<size_t>(c.c_out));
      ref.conv_backward(l, c.n, xd.data(), wd.data(), y_same.data(), dyd.data(), dxd.data(),
                        dwd.data(), dbd.data(), {cold.data(), tmpd.data()});
      expect_close("conv dx", host_copy(be, gdx.data(), nx), dxd);
      const Floats dw = host_copy(be, gdw.data(), nw), db = host_copy(be, gdb.data(), c.c_out);
      expect_close("conv dw", dw, dwd);
      expect_close("conv db", db, dbd);
      EXPECT_EQ(host_copy(be, gdy.data(), ny), dy) << "conv_backward must leave dy unchanged";

      // The first layer's form (no dx): the same dw and db, bit for bit.
      be.conv_forward(l, c.n, gx.data(), gw.data(), gb.data(), gy.data(),
                      {gcol.data(), gtmp.data()});
      auto gdw2 = poisoned(be, nw), gdb2 = poisoned(be, c.c_out);
      be.conv_backward(l, c.n, gx.data(), gw.data(), gy.data(), gdy.data(), nullptr, gdw2.data(),
                       gdb2.data(), {gcol.data(), gtmp.data()});
      EXPECT_EQ(host_copy(be, gdw2.data(), nw), dw);
      EXPECT_EQ(host_copy(be, gdb2.data(), c.c_out), db);
    }
  }
}

// --- the conv and the pool after it as one op (conv_pool variant 1) ------------------------------

// The fused forward and backward of one conv + pool pair (CudaBackend::conv_pool_forward and
// _backward, called as Network calls them in training) at batch n, in buffers sized for max_n
// (poisoned; a partial batch when n < max_n must leave the rest alone), checked three ways:
// - against the GPU's own unfused ops on the same inputs (conv_forward, then the CPU's float pool
//   of the GPU's y; pool_backward, then conv_backward): pooled, argmax, dw and dx bit for bit,
//   since the fused kernels compute the same values and the GEMMs are the same calls (under
//   conv_gemm 2 the unfused side runs conv_gemm 1, the chunks the fused forward takes there); db
//   to the op tests' tolerance (the same double sums, in another order);
// - against the double CPU reference (conv, pool; backward from the GPU's argmax and y): pooled
//   values to the op tests' tolerance (a maximum moves no more than its inputs), argmax exactly
//   wherever the reference window's two largest values are further apart than that tolerance
//   (everywhere with `ties`: integer inputs make every value exact, so ties are real and the
//   first maximum must win), the gradients to the op tests' tolerance;
// - the column matrix left for the backward is im2col(x) when the forward keeps it whole.
void check_conv_pool(const ConvCase& c, bool relu, bool ties, uint64_t seed, int64_t max_n) {
  SCOPED_TRACE("n=" + std::to_string(c.n) + " of " + std::to_string(max_n) +
               " c_in=" + std::to_string(c.c_in) + " " + std::to_string(c.h) + "x" +
               std::to_string(c.w) + " c_out=" + std::to_string(c.c_out) +
               " k=" + std::to_string(c.kernel) + " pad=" + std::to_string(c.pad) +
               " relu=" + std::to_string(relu) + " ties=" + std::to_string(ties));
  const Layer conv = conv_layer(c.c_in, c.h, c.w, c.c_out, relu, c.kernel, c.pad);
  const Layer pool = pool_layer(c.c_out, conv.out.h, conv.out.w);
  const kern::ConvDims d{c.n, c.c_in, c.h, c.w, c.c_out, c.kernel, c.pad};
  ASSERT_TRUE(kern::conv_pool_fits(d));
  const int64_t n = c.n, in = conv.in.size(), out = conv.out.size(), pout = pool.out.size();
  const int64_t nw = conv.weight_size, ncol = d.k() * max_n * d.ohw();
  const Floats x = ties ? tied_floats(n * in, seed) : random_floats(n * in, seed);
  const Floats w = ties ? tied_floats(nw, seed + 1) : random_floats(nw, seed + 1, -0.5, 0.5);
  const Floats b = ties ? tied_floats(c.c_out, seed + 2) : random_floats(c.c_out, seed + 2);
  const Floats dpooled = random_floats(n * pout, seed + 3);

  CudaBackend be;
  auto gx = device_copy(be, x), gw = device_copy(be, w), gb = device_copy(be, b);
  auto gdp = device_copy(be, dpooled);
  auto gpooled = poisoned(be, max_n * pout), gcol = poisoned(be, ncol),
       gtmp = poisoned(be, max_n * out), gdx = poisoned(be, max_n * in), gdw = poisoned(be, nw),
       gdb = poisoned(be, c.c_out);
  auto garg = device_copy(be, std::vector<int32_t>(static_cast<size_t>(max_n * pout), -7));
  const ConvScratch<float> scratch{gcol.data(), gtmp.data()};
  be.conv_pool_forward(conv, pool, n, gx.data(), gw.data(), gb.data(), gpooled.data(), garg.data(),
                       scratch);
  const Floats pooled_all = host_copy(be, gpooled.data(), max_n * pout);
  const std::vector<int32_t> arg_all = host_copy(be, garg.data(), max_n * pout);
  const Floats pooled(pooled_all.begin(), pooled_all.begin() + n * pout);
  const std::vector<int32_t> arg(arg_all.begin(), arg_all.begin() + n * pout);
  for (int64_t i = n * pout; i < max_n * pout; ++i) {
    ASSERT_TRUE(std::isnan(pooled_all[static_cast<size_t>(i)])) << "pooled past the batch, " << i;
    ASSERT_EQ(arg_all[static_cast<size_t>(i)], -7) << "argmax past the batch, " << i;
  }
  if (kern::conv_pool_keeps_col(d)) {
    Floats col_ref(static_cast<size_t>(d.k() * d.cols()));
    cpu::im2col(x.data(), cpu::ConvDims{n, c.c_in, c.h, c.w, c.c_out, c.kernel, c.pad},
                col_ref.data());
    EXPECT_EQ(host_copy(be, gcol.data(), d.k() * d.cols()), col_ref);
  }
  be.conv_pool_backward(conv, pool, n, gx.data(), gw.data(), gpooled.data(), gdp.data(),
                        garg.data(), gdx.data(), gdw.data(), gdb.data(), scratch);
  const Floats dx_all = host_copy(be, gdx.data(), max_n * in);
  const Floats dx(dx_all.begin(), dx_all.begin() + n * in);
  for (int64_t i = n * in; i < max_n * in; ++i)
    ASSERT_TRUE(std::isnan(dx_all[static_cast<size_t>(i)])) << "dx past the batch, " << i;
  const Floats dw = host_copy(be, gdw.data(), nw), db = host_copy(be, gdb.data(), c.c_out);
  EXPECT_EQ(host_copy(be, gdp.data(), n * pout), dpooled) << "dpooled must be left unchanged";
  // The first layer's form (no dx): the same dw and db, bit for bit.
  be.conv_pool_forward(conv, pool, n, gx.data(), gw.data(), gb.data(), gpooled.data(), garg.data(),
                       scratch);
  auto gdw2 = poisoned(be, nw), gdb2 = poisoned(be, c.c_out);
  be.conv_pool_backward(conv, pool, n, gx.data(), gw.data(), gpooled.data(), gdp.data(),
                        garg.data(), nullptr, gdw2.data(), gdb2.data(), scratch);
  EXPECT_EQ(host_copy(be, gdw2.data(), nw), dw);
  EXPECT_EQ(host_copy(be, gdb2.data(), c.c_out), db);

  // The GPU's unfused ops, under the same set (conv_gemm 2's implicit forward replaced by 1).
  Floats y;
  {
    kern::KernelVariants set = kern::kernel_variants();
    set[kern::VariantOp::kConvGemm] = std::min(set[kern::VariantOp::kConvGemm], 1);
    const kern::ScopedKernelVariants unfused(set);
    auto gy = poisoned(be, n * out), gcol_u = poisoned(be, ncol), gdy = poisoned(be, n * out);
    auto gdx_u = poisoned(be, n * in), gdw_u = poisoned(be, nw), gdb_u = poisoned(be, c.c_out);
    be.conv_forward(conv, n, gx.data(), gw.data(), gb.data(), gy.data(),
                    {gcol_u.data(), gtmp.data()});
    y = host_copy(be, gy.data(), n * out);
    CpuBackend<float> cpu_pool;
    Floats pooled_u(pooled.size());
    std::vector<int32_t> arg_u(arg.size());
    cpu_pool.pool_forward(pool, n, y.data(), pooled_u.data(), arg_u.data());
    EXPECT_EQ(pooled, pooled_u) << "the fused epilogue must pool the unfused conv's output exactly";
    EXPECT_EQ(arg, arg_u);
    be.pool_backward(pool, n, gdp.data(), garg.data(), gdy.data());
    be.conv_backward(conv, n, gx.data(), gw.data(), gy.data(), gdy.data(), gdx_u.data(),
                     gdw_u.data(), gdb_u.data(), {gcol_u.data(), gtmp.data()});
    EXPECT_EQ(host_copy(be, gdx_u.data(), n * in), dx) << "dx: the same dz, the same GEMM";
    EXPECT_EQ(host_copy(be, gdw_u.data(), nw), dw) << "dw: the same dz, the same GEMM";
    expect_close("conv_pool db (unfused)", db, widen(host_copy(be, gdb_u.data(), c.c_out)));
  }

  // The double reference.
  CpuBackend<double> ref;
  const Doubles xd = widen(x), wd = widen(w), bd = widen(b), dpd = widen(dpooled);
  Doubles yd(static_cast<size_t>(n * out)), cold(static_cast<size_t>(d.k() * d.cols())),
      tmpd(yd.size()), pd(static_cast<size_t>(n * pout));
  std::vector<int32_t> argd(pd.size());
  ref.conv_forward(conv, n, xd.data(), wd.data(), bd.data(), yd.data(), {cold.data(), tmpd.data()});
  ref.pool_forward(pool, n, yd.data(), pd.data(), argd.data());
  expect_close("conv_pool pooled", pooled, pd);
  double max_y = 0;
  for (const double v : yd) max_y = std::max(max_y, std::abs(v));
  int64_t compared = 0, differ = 0;
  for (int64_t o = 0; o < n * pout; ++o) {
    // The window's values in the reference: compared only where the winner is clear.
    const int64_t plane = o / pout, r = o - plane * pout;
    const int64_t oy = r / pool.out.w, ox = r - oy * pool.out.w;
    const double* yp = yd.data() + plane * out;
    double top = -1e300, second = -1e300;
    for (int k = 0; k < 4; ++k) {
      const double v = yp[(2 * oy + k / 2) * conv.out.w + 2 * ox + k % 2];
      if (v > top) {
        second = top;
        top = v;
      } else if (v > second) {
        second = v;
      }
    }
    const double tol = 1e-5 * max_y + 1e-4 * std::abs(top);
    if (!ties && top - second <= 2 * tol) continue;
    ++compared;
    if (arg[static_cast<size_t>(o)] != argd[static_cast<size_t>(o)] && ++differ <= 5)
      ADD_FAILURE() << "argmax[" << o << "]: gpu " << arg[static_cast<size_t>(o)]
                    << " vs reference " << argd[static_cast<size_t>(o)];
  }
  EXPECT_EQ(differ, 0);
  if (ties) {
    EXPECT_EQ(compared, n * pout);
  } else if (n * pout >= 64) {  // a ReLU zeroes all four of about one window in 16
    EXPECT_GT(compared, n * pout / 2) << "windows whose argmax was compared";
  }

  const Doubles y_same = widen(y);
  Doubles dyd(yd.size()), dxd(static_cast<size_t>(n * in)), dwd(static_cast<size_t>(nw)),
      dbd(static_cast<size_t>(c.c_out));
  ref.pool_backward(pool, n, dpd.data(), arg.data(), dyd.data());
  ref.conv_backward(conv, n, xd.data(), wd.data(), y_same.data(), dyd.data(), dxd.data(),
                    dwd.data(), dbd.data(), {cold.data(), tmpd.data()});
  expect_close("conv_pool dx", dx, dxd);
  expect_close("conv_pool dw", dw, dwd);
  expect_close("conv_pool db", db, dbd);
}

// The odd shapes: odd maps (an odd last row and column no window covers), 'valid' and 'same'
// with K = 1, 3, 5, 7, a map whose pool has one window, one input channel; ReLU on and off,
// random and tied (integer) inputs; every other case a partial batch (buffers for one more image).
const ConvCase kConvPoolCases[] = {
    {1, 1, 4, 4, 1},          {2, 3, 6, 7, 5},       {3, 2, 5, 5, 4, 3, 0}, {2, 2, 9, 8, 3, 5, 0},
    {2, 3, 7, 6, 4, 1, 0},    {2, 3, 7, 6, 4, 7, 3}, {1, 4, 2, 2, 3},       {3, 4, 3, 3, 2},
    {2, 8, 12, 12, 16, 5, 0}, {5, 1, 28, 28, 8},
};

TEST_P(CudaVariantOp, ConvPoolForwardAndBackwardMatchTheCpu) {
  uint64_t seed = 150;
  int index = 0;
  for (const ConvCase& c : kConvPoolCases) {
    const int64_t max_n = c.n + (index++ % 2);
    for (const bool relu : {true, false})
      for (const bool ties : {false, true}) check_conv_pool(c, relu, ties, seed += 4, max_n);
  }
}

TEST_P(CudaOp, ReluLayerMatchesTheCpuExactly) {
  Layer l;
  l.kind = LayerKind::kRelu;
  l.relu = true;
  l.in = l.out = {3, 5, 7};
  const int64_t n = 4, count = n * l.in.size();
  Floats x = random_floats(count, 300);
  x[0] = 0.0f;
  x[1] = -0.0f;
  const Floats dy = random_floats(count, 301);
  CudaBackend be;
  auto gx = device_copy(be, x), gdy = device_copy(be, dy);
  auto gy = poisoned(be, count), gdx = poisoned(be, count);
  be.relu_forward(l, n, gx.data(), gy.data());
  be.relu_backward(l, n, gy.data(), gdy.data(), gdx.data());
  CpuBackend<float> ref;
  Floats y(static_cast<size_t>(count)), dx(static_cast<size_t>(count));
  ref.relu_forward(l, n, x.data(), y.data());
  ref.relu_backward(l, n, y.data(), dy.data(), dx.data());
  EXPECT_EQ(host_copy(be, gy.data(), count), y);
  EXPECT_EQ(host_copy(be, gdx.data(), count), dx);
  int open = 0;
  for (const float v : y) open += v > 0.0f;
  EXPECT_GT(open, 0);
  EXPECT_LT(open, count);
}

Layer batchnorm_layer(int64_t c, int64_t h, int64_t w) {
  Layer l;
  l.kind = LayerKind::kBatchNorm;
  l.in = l.out = {c, h, w};
  l.weight_size = l.bias_size = c;
  l.stats_size = 2 * c;
  return l;
}

// Forward (training and inference) and backward against CpuBackend<double> on the same float
// inputs: the per-channel sums are in double on both sides, so only float32 element roundings
// differ (expect_close's bound). After a conv (h x w maps, up to the seed model's 32 channels),
// after a dense layer (1 x 1), batches of 1, 2 and odd sizes; a dense batch of one sample gives
// beta exactly and no NaN. Run twice, the GPU's results are the same bit for bit.
TEST_P(CudaOp, BatchNormMatchesTheCpu) {
  struct Case {
    int64_t n, c, h, w;
  };
  uint64_t seed = 400;
  for (const Case& c : {Case{2, 3, 3, 4}, Case{3, 5, 1, 1}, Case{1, 4, 1, 1}, Case{1, 4, 3, 3},
                        Case{5, 32, 14, 14}, Case{7, 33, 1, 1}}) {
    for (const bool training : {true, false}) {
      SCOPED_TRACE("n=" + std::to_string(c.n) + " c=" + std::to_string(c.c) + " h=" +
                   std::to_string(c.h) + " training=" + std::to_string(training));
      const Layer l = batchnorm_layer(c.c, c.h, c.w);
      const int64_t count = c.n * l.in.size();
      const Floats x = random_floats(count, ++seed, -1.0, 3.0);
      const Floats dy = random_floats(count, ++seed);
      const Floats gamma = random_floats(c.c, ++seed, 0.5, 1.5), beta = random_floats(c.c, ++seed);
      Floats stats = random_floats(c.c, ++seed);
      const Floats var = random_floats(c.c, ++seed, 0.5, 2.0);
      stats.insert(stats.end(), var.begin(), var.end());
      CudaBackend be;
      auto gx = device_copy(be, x), gdy = device_copy(be, dy), gg = device_copy(be, gamma),
           gb = device_copy(be, beta);
      std::vector<Floats> runs;
      for (int run = 0; run < 2; ++run) {
        auto gstats = device_copy(be, stats);
        auto gy = poisoned(be, count), gdx = poisoned(be, count), gsaved = poisoned(be, 2 * c.c),
             gdg = poisoned(be, c.c), gdb = poisoned(be, c.c);
        const BatchNormScratch<float> saved{gsaved.data(), gsaved.data() + c.c};
        be.batchnorm_forward(l, c.n, gx.data(), gg.data(), gb.data(), gstats.data(), gy.data(),
                             saved, training);
        be.batchnorm_backward(l, c.n, gx.data(), gg.data(), gdy.data(), saved, training,
                              gdx.data(), gdg.data(), gdb.data());
        Floats all = host_copy(be, gy.data(), count);
        for (const auto& [ptr, size] : {std::pair{gdx.data(), count}, std::pair{gdg.data(), c.c},
                                        std::pair{gdb.data(), c.c},
                                        std::pair{gstats.data(), 2 * c.c},
                                        std::pair{gsaved.data(), 2 * c.c}}) {
          const Floats part = host_copy(be, static_cast<const float*>(ptr), size);
          all.insert(all.end(), part.begin(), part.end());
        }
        runs.push_back(std::move(all));
      }
      EXPECT_EQ(runs[0], runs[1]) << "the reductions must be deterministic";

      CpuBackend<double> ref;
      Doubles xd = widen(x), dyd = widen(dy), gd = widen(gamma), bd = widen(beta),
              sd = widen(stats), y(static_cast<size_t>(count)), dx(static_cast<size_t>(count)),
              dg(static_cast<size_t>(c.c)), db(static_cast<size_t>(c.c)),
              sv(static_cast<size_t>(2 * c.c));
      const BatchNormScratch<double> rs{sv.data(), sv.data() + c.c};
      ref.batchnorm_forward(l, c.n, xd.data(), gd.data(), bd.data(), sd.data(), y.data(), rs,
                            training);
      ref.batchnorm_backward(l, c.n, xd.data(), gd.data(), dyd.data(), rs, training, dx.data(),
                             dg.data(), db.data());
      const Floats& got = runs[0];
      auto part = [&](int64_t offset, int64_t size) {
        return Floats(got.begin() + offset, got.begin() + offset + size);
      };
      expect_close("y", part(0, count), y);
      expect_close("dx", part(count, count), dx);
      expect_close("dgamma", part(2 * count, c.c), dg);
      expect_close("dbeta", part(2 * count + c.c, c.c), db);
      expect_close("moving statistics", part(2 * count + 2 * c.c, 2 * c.c), sd);
      expect_close("saved statistics", part(2 * count + 4 * c.c, 2 * c.c), sv);
      if (c.n * c.h * c.w == 1 && training) {
        EXPECT_EQ(part(0, count), beta) << "one value per channel: Keras gives beta";
        for (const float v : got) ASSERT_TRUE(std::isfinite(v));
      }
    }
  }
}

TEST_P(CudaVariantOp, MaxPoolMatchesTheCpuExactly) {
  if (no_such_variant({kern::VariantOp::kPoolForward, kern::VariantOp::kPoolBackward}))
    GTEST_SKIP() << "no such variant of these ops";
  struct Case {
    int64_t n, c, h, w;
  };
  uint64_t seed = 200;
  for (const Case& c : {Case{1, 1, 2, 2}, Case{2, 3, 5, 7}, Case{4, 32, 28, 28}, Case{1, 2, 3, 3},
                        Case{3, 5, 9, 4}}) {
    for (const bool ties : {true, false}) {
      SCOPED_TRACE("h=" + std::to_string(c.h) + " w=" + std::to_string(c.w) +
                   " ties=" + std::to_string(ties));
      const Layer l = pool_layer(c.c, c.h, c.w);
      const int64_t nx = c.n * l.in.size(), ny = c.n * l.out.size();
      const Floats x = ties ? tied_floats(nx, ++seed) : random_floats(nx, ++seed);
      const Floats dy = random_floats(ny, ++seed);
      CudaBackend be;
      auto gx = device_copy(be, x), gdy = device_copy(be, dy);
      auto gy = poisoned(be, ny), gdx = poisoned(be, nx);
      auto garg = device_copy(be, std::vector<int32_t>(static_cast<size_t>(ny), -7));
      be.pool_forward(l, c.n, gx.data(), gy.data(), garg.data());
      be.pool_backward(l, c.n, gdy.data(), garg.data(), gdx.data());

      CpuBackend<float> ref;
      Floats y(static_cast<size_t>(ny)), dx(static_cast<size_t>(nx));
      std::vector<int32_t> arg(static_cast<size_t>(ny));
      ref.pool_forward(l, c.n, x.data(), y.data(), arg.data());
      ref.pool_backward(l, c.n, dy.data(), arg.data(), dx.data());
      EXPECT_EQ(host_copy(be, gy.data(), ny), y);
      EXPECT_EQ(host_copy(be, garg.data(), ny), arg);
      EXPECT_EQ(host_copy(be, gdx.data(), nx), dx);
    }
  }
}

TEST_P(CudaOp, DropoutMasksMatchTheCpuExactly) {
  struct Case {
    int64_t n, c, h, w;
    float rate;
  };
  uint64_t seed = 300;
  for (const Case& c : {Case{1, 1, 1, 1, 0.5f}, Case{3, 2, 5, 7, 0.25f}, Case{7, 3, 3, 3, 0.5f},
                        Case{128, 64, 7, 7, 0.25f}, Case{5, 13, 1, 1, 0.9f}}) {
    SCOPED_TRACE("count=" + std::to_string(c.n * c.c * c.h * c.w) +
                 " rate=" + std::to_string(c.rate));
    const Layer l = dropout_layer(c.c, c.h, c.w, c.rate, 4);
    const int64_t count = c.n * l.in.size();
    const Floats x = random_floats(count, ++seed), dy = random_floats(count, ++seed);
    int64_t counters[kCounterCount] = {7, 0};
    CudaBackend be;
    auto gcounters = device_copy(be, std::vector<int64_t>(counters, counters + kCounterCount));
    auto gx = device_copy(be, x), gdy = device_copy(be, dy);
    auto gy = poisoned(be, count), gdx = poisoned(be, count);
    be.dropout_forward(l, c.n, gx.data(), gy.data(), 42, gcounters.data());
    be.dropout_backward(l, c.n, gdy.data(), gdx.data(), 42, gcounters.data());
    CpuBackend<float> ref;
    Floats y(static_cast<size_t>(count)), dx(static_cast<size_t>(count));
    ref.dropout_forward(l, c.n, x.data(), y.data(), 42, counters);
    ref.dropout_backward(l, c.n, dy.data(), dx.data(), 42, counters);
    EXPECT_EQ(host_copy(be, gy.data(), count), y);
    EXPECT_EQ(host_copy(be, gdx.data(), count), dx);
    // In place (y aliases x), and a new step draws a new mask.
    be.dropout_forward(l, c.n, gx.data(), gx.data(), 42, gcounters.data());
    EXPECT_EQ(host_copy(be, gx.data(), count), y);
    if (count >= 1000) {
      counters[kStepCounter] = 8;
      be.upload(gcounters.data(), counters, kCounterCount);
      auto gx2 = device_copy(be, x);
      be.dropout_forward(l, c.n, gx2.data(), gy.data(), 42, gcounters.data());
      EXPECT_NE(host_copy(be, gy.data(), count), y);
    }
  }
}

// Variant 1 (bias_relu, dense_grad_prepare): the bias and ReLU as the forward GEMM's cuBLASLt
// epilogue, the bias gradient as the dW GEMM's; the same tolerances (db is a float sum of n terms
// in cuBLASLt's order instead of the rows' order).
TEST_P(CudaVariantOp, DenseForwardAndBackwardMatchTheCpu) {
  if (no_such_variant({kern::VariantOp::kBiasRelu, kern::VariantOp::kDenseGradPrepare}))
    GTEST_SKIP() << "no such variant of these ops";
  struct Case {
    int64_t n, in, out;
  };
  uint64_t seed = 400;
  for (const Case& c :
       {Case{1, 1, 1}, Case{1, 3136, 128}, Case{7, 13, 5}, Case{128, 128, 10}, Case{33, 100, 17}}) {
    for (const bool relu : {true, false}) {
      SCOPED_TRACE("n=" + std::to_string(c.n) + " in=" + std::to_string(c.in) +
                   " out=" + std::to_string(c.out) + " relu=" + std::to_string(relu));
      const Layer l = dense_layer(c.in, c.out, relu);
      const int64_t nx = c.n * c.in, ny = c.n * c.out, nw = c.in * c.out;
      const Floats x = random_floats(nx, ++seed), w = random_floats(nw, ++seed, -0.1, 0.1);
      const Floats b = random_floats(c.out, ++seed), dy = random_floats(ny, ++seed);
      CudaBackend be;
      auto gx = device_copy(be, x), gw = device_copy(be, w), gb = device_copy(be, b);
      auto gy = poisoned(be, ny);
      be.dense_forward(l, c.n, gx.data(), gw.data(), gb.data(), gy.data());
      const Floats y = host_copy(be, gy.data(), ny);
      CpuBackend<double> ref;
      const Doubles xd = widen(x), wd = widen(w), bd = widen(b);
      Doubles yd(static_cast<size_t>(ny));
      ref.dense_forward(l, c.n, xd.data(), wd.data(), bd.data(), yd.data());
      expect_close("dense y", y, yd);

      // Backward from the GPU's y on both sides (the same ReLU mask); dy is consumed by both.
      const Doubles y_same = widen(y);
      Doubles dyd = widen(dy), dxd(static_cast<size_t>(nx)), dwd(static_cast<size_t>(nw)),
              dbd(static_cast<size_t>(c.out));
      ref.dense_backward(l, c.n, xd.data(), wd.data(), y_same.data(), dyd.data(), dxd.data(),
                         dwd.data(), dbd.data());
      for (const bool want_dx : {true, false}) {
        auto gdy = device_copy(be, dy);
        auto gdx = poisoned(be, nx), gdw = poisoned(be, nw), gdb = poisoned(be, c.out);
        be.dense_backward(l, c.n, gx.data(), gw.data(), gy.data(), gdy.data(),
                          want_dx ? gdx.data() : nullptr, gdw.data(), gdb.data());
        if (want_dx) expect_close("dense dx", host_copy(be, gdx.data(), nx), dxd);
        expect_close("dense dw", host_copy(be, gdw.data(), nw), dwd);
        expect_close("dense db", host_copy(be, gdb.data(), c.out), dbd);
      }
    }
  }
}

TEST_P(CudaOp, SoftmaxCrossEntropyMatchesTheCpu) {
  struct Case {
    int64_t n, classes;
    double scale;  // logits uniform in [-scale, scale]; 1e4 checks the stability
  };
  uint64_t seed = 500;
  for (const Case& c :
       {Case{1, 10, 3}, Case{7, 3, 3}, Case{128, 10, 3}, Case{333, 10, 3}, Case{64, 10, 1e4}}) {
    SCOPED_TRACE("n=" + std::to_string(c.n) + " classes=" + std::to_string(c.classes) +
                 " scale=" + std::to_string(c.scale));
    const Floats z = random_floats(c.n * c.classes, ++seed, -c.scale, c.scale);
    std::vector<int32_t> labels(static_cast<size_t>(c.n));
    std::mt19937 rng(static_cast<unsigned>(++seed));
    for (auto& y : labels) y = static_cast<int32_t>(rng() % static_cast<unsigned>(c.classes));
    CudaBackend be;
    auto gz = device_copy(be, z);
    auto glabels = device_copy(be, labels);
    auto gdz = poisoned(be, c.n * c.classes), gprobs = poisoned(be, c.n * c.classes);
    auto gsums = be.alloc<double>(kMetricCount);
    be.softmax_xent(c.n, c.classes, gz.data(), glabels.data(), gdz.data(), gsums.data());
    be.softmax_xent(c.n, c.classes, gz.data(), glabels.data(), nullptr, gsums.data());  // eval form
    be.softmax(c.n, c.classes, gz.data(), gprobs.data());

    CpuBackend<double> ref;
    const Doubles zd = widen(z);
    Doubles dzd(zd.size()), probsd(zd.size()), sums(kMetricCount, 0.0);
    ref.softmax_xent(c.n, c.classes, zd.data(), labels.data(), dzd.data(), sums.data());
    ref.softmax(c.n, c.classes, zd.data(), probsd.data());
    expect_close("dlogits", host_copy(be, gdz.data(), c.n * c.classes), dzd);
    expect_close("probs", host_copy(be, gprobs.data(), c.n * c.classes), probsd);
    const std::vector<double> got = host_copy(be, gsums.data(), kMetricCount);
    // Twice the reference's sums: both calls add. Loss: float32 per row (relative 1e-6 of the row's
    // magnitude, up to 1e4 here), summed in double.
    EXPECT_NEAR(got[kLossSum], 2 * sums[kLossSum],
                1e-5 * (2 * sums[kLossSum] + c.scale * static_cast<double>(c.n)));
    EXPECT_EQ(got[kCorrectSum], 2 * sums[kCorrectSum]);
    EXPECT_EQ(got[kSampleSum], 2.0 * static_cast<double>(c.n));
  }
}

// With weight decay (AdamW) on a mask of kernel weights: the mask's zeros (biases) must not decay.
TEST_P(CudaVariantOp, AdamMatchesTheCpu) {
  if (no_such_variant({kern::VariantOp::kAdam})) GTEST_SKIP() << "no such variant of these ops";
  const AdamConfig config;
  for (const int64_t count : {int64_t{1}, int64_t{1001}, int64_t{421642}}) {
    for (const int64_t first_step : {int64_t{0}, int64_t{5}})
    for (const double weight_decay : {0.0, 0.05}) {
      SCOPED_TRACE("count=" + std::to_string(count) + " step=" + std::to_string(first_step) +
                   " weight_decay=" + std::to_string(weight_decay));
      Floats p = random_floats(count, 600), m(static_cast<size_t>(count), 0.0f), v = m;
      std::vector<uint8_t> mask(static_cast<size_t>(count));
      for (size_t i = 0; i < mask.size(); ++i) mask[i] = static_cast<uint8_t>(i % 7 != 3);
      CudaBackend be;
      auto gp = device_copy(be, p), gm = device_copy(be, m), gv = device_copy(be, v);
      auto gmask = device_copy(be, mask);
      auto gcounters = be.alloc<int64_t>(kCounterCount);
      CpuBackend<float> ref;
      for (int64_t step = first_step; step < first_step + 3; ++step) {
        const Floats g = random_floats(count, 601 + static_cast<uint64_t>(step), -0.01, 0.01);
        auto gg = device_copy(be, g);
        const int64_t counters[kCounterCount] = {step, 0};
        be.upload(gcounters.data(), counters, kCounterCount);
        // A learning rate of its own each step, read from device memory (as a schedule sets it).
        const double lr = config.lr * static_cast<double>(1 + step % 3);
        auto glr = be.alloc<double>(1);
        be.upload(glr.data(), &lr, 1);
        // The decay rate too, from device memory, changing between steps.
        const double wd = weight_decay * static_cast<double>(1 + step % 2);
        auto gwd = be.alloc<double>(1);
        be.upload(gwd.data(), &wd, 1);
        be.adam(gp.data(), gg.data(), gm.data(), gv.data(), count, config, glr.data(), gwd.data(),
                gmask.data(), gcounters.data());
        ref.adam(p.data(), g.data(), m.data(), v.data(), count, config, &lr, &wd, mask.data(),
                 counters);
      }
      const Floats p_gpu = host_copy(be, gp.data(), count), m_gpu = host_copy(be, gm.data(), count),
                   v_gpu = host_copy(be, gv.data(), count);
      // 1e-6 of the element plus 1e-7 of the tensor's largest: an FMA rounds m, v and the update
      // differently, by about 1e-7 relative; a wrong formula moves p by ~lr = 1e-3.
      auto max_abs = [](const Floats& f) {
        double top = 0;
        for (const float e : f) top = std::max(top, double(std::abs(e)));
        return top;
      };
      const double pmax = max_abs(p), mmax = max_abs(m), vmax = max_abs(v);
      auto near = [](double got, double want, double top) {
        return std::abs(got - want) <= 1e-6 * std::abs(want) + 1e-7 * top;
      };
      int bad = 0;
      for (size_t i = 0; i < p.size(); ++i) {
        const bool ok =
            near(p_gpu[i], p[i], pmax) && near(m_gpu[i], m[i], mmax) && near(v_gpu[i], v[i], vmax);
        if (!ok && ++bad <= 5) {
          ADD_FAILURE() << "[" << i << "] p " << p_gpu[i] << " vs " << p[i] << ", m " << m_gpu[i]
                        << " vs " << m[i] << ", v " << v_gpu[i] << " vs " << v[i];
        }
      }
      EXPECT_EQ(bad, 0);
    }
  }
}

// Adam's variant 1 computes the step's alpha and decay once, by one thread, from the same device
// values and with the same roundings as variant 0's per-block thread 0: the update must be the
// same bit for bit, with the rate, the decay and the step counter changing between calls.
TEST_P(CudaOp, AdamVariant1EqualsVariant0BitForBit) {
  const AdamConfig config;
  constexpr int64_t count = 100003;
  for (const bool decayed : {false, true}) {
    SCOPED_TRACE(decayed ? "AdamW" : "Adam");
    std::vector<uint8_t> mask(static_cast<size_t>(count));
    for (size_t i = 0; i < mask.size(); ++i) mask[i] = static_cast<uint8_t>(i % 5 != 1);
    std::vector<Floats> results;
    for (const int variant : {0, 1}) {
      kern::KernelVariants set;
      set[kern::VariantOp::kAdam] = variant;
      const kern::ScopedKernelVariants scoped(set);
      CudaBackend be;
      auto gp = device_copy(be, random_floats(count, 610)),
           gm = device_copy(be, random_floats(count, 611, -0.01, 0.01)),
           gv = device_copy(be, random_floats(count, 612, 0.0, 1e-4));
      auto gmask = device_copy(be, mask);
      auto gcounters = be.alloc<int64_t>(kCounterCount);
      auto glr = be.alloc<double>(1), gwd = be.alloc<double>(1);
      for (int64_t step = 0; step < 4; ++step) {
        auto gg = device_copy(be, random_floats(count, 620 + static_cast<uint64_t>(step)));
        const int64_t counters[kCounterCount] = {step * 7, 0};
        be.upload(gcounters.data(), counters, kCounterCount);
        const double lr = 1e-3 / static_cast<double>(1 + step),
                     wd = 0.01 * static_cast<double>(step);
        be.upload(glr.data(), &lr, 1);
        be.upload(gwd.data(), &wd, 1);
        be.adam(gp.data(), gg.data(), gm.data(), gv.data(), count, config, glr.data(),
                decayed ? gwd.data() : nullptr, decayed ? gmask.data() : nullptr, gcounters.data());
      }
      Floats all = host_copy(be, gp.data(), count);
      const Floats m = host_copy(be, gm.data(), count), v = host_copy(be, gv.data(), count);
      all.insert(all.end(), m.begin(), m.end());
      all.insert(all.end(), v.begin(), v.end());
      results.push_back(std::move(all));
    }
    EXPECT_EQ(results[1], results[0]);
  }
}

// The L2 kernel penalty: the gradient term exactly as the CPU's (one float multiply-add per
// element, 1 ulp for an FMA), the penalty summed in double in another order (1e-12 relative), and
// nothing outside the mask. Summed into the metric twice, to show it adds.
TEST_P(CudaOp, L2PenaltyMatchesTheCpu) {
  for (const int64_t count : {int64_t{1}, int64_t{1001}, int64_t{421642}}) {
    SCOPED_TRACE("count=" + std::to_string(count));
    const Floats p = random_floats(count, 610), g0 = random_floats(count, 611, -0.01, 0.01);
    std::vector<uint8_t> mask(static_cast<size_t>(count));
    for (size_t i = 0; i < mask.size(); ++i) mask[i] = static_cast<uint8_t>(i % 5 != 1);
    const double l2 = 1e-3;
    const int64_t n = 37;
    CudaBackend be;
    auto gp = device_copy(be, p), gg = device_copy(be, g0);
    auto gmask = device_copy(be, mask);
    auto gsums = be.alloc<double>(kMetricCount);
    be.l2_penalty(gp.data(), gg.data(), gmask.data(), count, l2, n, gsums.data());
    be.l2_penalty(gp.data(), nullptr, gmask.data(), count, l2, n, gsums.data());
    CpuBackend<float> ref;
    Floats g = g0;
    std::vector<double> sums(kMetricCount, 0.0);
    ref.l2_penalty(p.data(), g.data(), mask.data(), count, l2, n, sums.data());
    const Floats g_gpu = host_copy(be, gg.data(), count);
    int bad = 0;
    for (size_t i = 0; i < g.size(); ++i) {
      if (mask[i] == 0 && g_gpu[i] != g0[i] && ++bad <= 5) ADD_FAILURE() << "[" << i << "] unmasked";
      const double scale = std::abs(g0[i]) + 2 * l2 * std::abs(p[i]);  // an FMA: 1 ulp of that
      if (std::abs(g_gpu[i] - g[i]) > 1.2e-7 * scale && ++bad <= 5) {
        ADD_FAILURE() << "[" << i << "] " << g_gpu[i] << " vs " << g[i];
      }
    }
    EXPECT_EQ(bad, 0);
    const std::vector<double> got = host_copy(be, gsums.data(), kMetricCount);
    EXPECT_GT(sums[kL2Sum], 0.0);
    EXPECT_NEAR(got[kL2Sum], 2 * sums[kL2Sum], 1e-12 * sums[kL2Sum]);
    EXPECT_EQ(got[kLossSum], 0.0) << "only the L2 sum moves";
  }
}

TEST_P(CudaOp, GatherAndCountersMatchTheCpuExactly) {
  const int64_t samples = 50, size = 28 * 28;
  std::mt19937_64 rng(700);
  std::vector<uint8_t> images(static_cast<size_t>(samples * size)),
      labels(static_cast<size_t>(samples));
  for (auto& b : images) b = static_cast<uint8_t>(rng() % 256);
  for (auto& b : labels) b = static_cast<uint8_t>(rng() % 10);
  std::vector<int32_t> order(static_cast<size_t>(samples));
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), rng);
  for (const int64_t n : {int64_t{1}, int64_t{20}}) {
    int64_t counters[kCounterCount] = {3, 13};
    CudaBackend be;
    auto gimages = device_copy(be, images), glabels = device_copy(be, labels);
    auto gorder = device_copy(be, order);
    auto gcounters = device_copy(be, std::vector<int64_t>(counters, counters + kCounterCount));
    auto gx = poisoned(be, n * size);
    auto gy = device_copy(be, std::vector<int32_t>(static_cast<size_t>(n), -1));
    be.gather(gimages.data(), glabels.data(), size, gorder.data(), gcounters.data(), n, gx.data(),
              gy.data());
    CpuBackend<float> ref;
    Floats x(static_cast<size_t>(n * size));
    std::vector<int32_t> y(static_cast<size_t>(n));
    ref.gather(images.data(), labels.data(), size, order.data(), counters, n, x.data(), y.data());
    EXPECT_EQ(host_copy(be, gx.data(), n * size), x);
    EXPECT_EQ(host_copy(be, gy.data(), n), y);

    be.end_step(gcounters.data(), n);
    ref.end_step(counters, n);
    be.advance_cursor(gcounters.data(), 5);
    ref.advance_cursor(counters, 5);
    EXPECT_EQ(host_copy(be, gcounters.data(), kCounterCount),
              std::vector<int64_t>(counters, counters + kCounterCount));
  }
}

// The augmented gather performs the CPU's very roundings (kernels/augment.cuh), so it must match
// bit for bit: odd image sizes, a partial batch, a cursor into the order, rotations of a quarter
// turn and more (the reduction of the angle), and the seed model's batch of 128.
TEST_P(CudaOp, GatherAugmentedMatchesTheCpuBitForBit) {
  struct Case {
    int rows, cols;
    int64_t samples, n, step, cursor;
    AugmentConfig augment;
  };
  const AugmentConfig keras{true, 2.0f, 10.0f};
  uint64_t seed = 750;
  for (const Case& c : {Case{28, 28, 60, 1, 0, 0, keras}, Case{28, 28, 60, 50, 9, 7, keras},
                        Case{9, 7, 20, 13, 3, 2, AugmentConfig{true, 1.5f, 30.0f}},
                        Case{5, 6, 10, 10, 1, 0, AugmentConfig{true, 0.5f, 180.0f}},
                        Case{28, 28, 300, 128, 468, 172, keras}}) {
    SCOPED_TRACE(std::to_string(c.rows) + "x" + std::to_string(c.cols) + " n=" +
                 std::to_string(c.n) + " rotation=" + std::to_string(c.augment.max_rotation_deg));
    const int64_t size = int64_t{c.rows} * c.cols;
    std::mt19937_64 rng(++seed);
    std::vector<uint8_t> images(static_cast<size_t>(c.samples * size)),
        labels(static_cast<size_t>(c.samples));
    for (auto& b : images) b = static_cast<uint8_t>(rng() % 256);
    for (auto& b : labels) b = static_cast<uint8_t>(rng() % 10);
    std::vector<int32_t> order(static_cast<size_t>(c.samples));
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), rng);
    const int64_t counters[kCounterCount] = {c.step, c.cursor};
    const Shape shape{1, c.rows, c.cols};

    CudaBackend be;
    auto gimages = device_copy(be, images), glabels = device_copy(be, labels);
    auto gorder = device_copy(be, order);
    auto gcounters = device_copy(be, std::vector<int64_t>(counters, counters + kCounterCount));
    auto gx = poisoned(be, c.n * size);
    auto gy = device_copy(be, std::vector<int32_t>(static_cast<size_t>(c.n), -1));
    be.gather_augmented(gimages.data(), glabels.data(), shape, gorder.data(), gcounters.data(), c.n,
                        c.augment, 42, gx.data(), gy.data());
    CpuBackend<float> ref;
    Floats x(static_cast<size_t>(c.n * size)), plain(x.size());
    std::vector<int32_t> y(static_cast<size_t>(c.n)), y_plain(y.size());
    ref.gather_augmented(images.data(), labels.data(), shape, order.data(), counters, c.n,
                         c.augment, 42, x.data(), y.data());
    const Floats got = host_copy(be, gx.data(), c.n * size);
    EXPECT_EQ(got, x);
    EXPECT_EQ(host_copy(be, gy.data(), c.n), y);
    ref.gather(images.data(), labels.data(), size, order.data(), counters, c.n, plain.data(),
               y_plain.data());
    EXPECT_NE(got, plain) << "the images were not transformed";
  }
}

TEST_P(CudaOp, EpochShuffleIsEpochOrder) {
  CudaBackend be;
  for (const int64_t n : {int64_t{1}, int64_t{2}, int64_t{1000}, int64_t{59500}}) {
    std::vector<int32_t> indices(static_cast<size_t>(n));
    std::iota(indices.begin(), indices.end(), 17);
    std::shuffle(indices.begin(), indices.end(), std::mt19937(static_cast<unsigned>(n)));
    auto gindices = device_copy(be, indices);
    auto gorder = device_copy(be, std::vector<int32_t>(static_cast<size_t>(n), -1));
    for (const int64_t epoch : {int64_t{0}, int64_t{1}, int64_t{19}}) {
      be.shuffle(gorder.data(), gindices.data(), n, 42, epoch);
      EXPECT_EQ(host_copy(be, gorder.data(), n), epoch_order(indices, 42, epoch))
          << "n=" << n << " epoch=" << epoch;
    }
  }
}

// --- the seed model's shapes, float32 and TF32 ---------------------------------------------------

// The seed model's two convolutions at batch 128, forward and backward (dx included, though the
// network needs none for the first layer), against the double CPU reference from the same inputs.
// float32: the op tests' per-element tolerance. TF32: the per-element bound of each GEMM (y:
// k = 9 c_in products plus the bias; dx: c_out products, then col2im's sums of up to 9; dW:
// n h w products) and 1e-2 norm-wise; db is a plain sum, the same in both precisions.
void check_seed_conv(const ConvCase& c, Precision precision, uint64_t seed) {
  SCOPED_TRACE(std::string(precision_name(precision)) + " n=" + std::to_string(c.n) +
               " c_in=" + std::to_string(c.c_in) + " " + std::to_string(c.h) + "x" +
               std::to_string(c.w) + " c_out=" + std::to_string(c.c_out));
  const Layer l = conv_layer(c.c_in, c.h, c.w, c.c_out, /*relu=*/true);
  const int64_t nx = c.n * c.c_in * c.h * c.w, ny = c.n * c.c_out * c.h * c.w;
  const int64_t nw = c.c_out * c.c_in * 9, ncol = c.c_in * 9 * c.n * c.h * c.w;
  const Floats x = random_floats(nx, seed, 0.0, 1.0), w = random_floats(nw, seed + 1, -0.3, 0.3);
  const Floats b = random_floats(c.c_out, seed + 2, -0.1, 0.1), dy = random_floats(ny, seed + 3);

  CudaBackend be(false, precision);
  auto gx = device_copy(be, x), gw = device_copy(be, w), gb = device_copy(be, b),
       gdy = device_copy(be, dy);
  auto gy = poisoned(be, ny), gcol = poisoned(be, ncol), gtmp = poisoned(be, ny);
  auto gdx = poisoned(be, nx), gdw = poisoned(be, nw), gdb = poisoned(be, c.c_out);
  be.conv_forward(l, c.n, gx.data(), gw.data(), gb.data(), gy.data(), {gcol.data(), gtmp.data()});
  const Floats y = host_copy(be, gy.data(), ny);
  // The column matrix is im2col(x), exactly (before the backward overwrites it with d(col)),
  // unless the layer ran in chunks (conv_gemm variant 1).
  if (kern::conv_keeps_col(kern::ConvDims{c.n, c.c_in, c.h, c.w, c.c_out})) {
    Floats col_ref(static_cast<size_t>(ncol));
    cpu::im2col(x.data(), cpu::ConvDims{c.n, c.c_in, c.h, c.w, c.c_out, 3, 1}, col_ref.data());
    EXPECT_EQ(host_copy(be, gcol.data(), ncol), col_ref);
  }
  be.conv_backward(l, c.n, gx.data(), gw.data(), gy.data(), gdy.data(), gdx.data(), gdw.data(),
                   gdb.data(), {gcol.data(), gtmp.data()});
  const Floats dx = host_copy(be, gdx.data(), nx), dw = host_copy(be, gdw.data(), nw),
               db = host_copy(be, gdb.data(), c.c_out);

  CpuBackend<double> ref;
  Doubles col(static_cast<size_t>(ncol)), tmp(static_cast<size_t>(ny)), yd(tmp.size());
  Doubles dxd(static_cast<size_t>(nx)), dwd(static_cast<size_t>(nw)),
      dbd(static_cast<size_t>(c.c_out));
  const Doubles xd = widen(x), wd = widen(w), bd = widen(b), dyd = widen(dy), y_same = widen(y);
  ref.conv_forward(l, c.n, xd.data(), wd.data(), bd.data(), yd.data(), {col.data(), tmp.data()});
  // Backward from the GPU's own y on both sides, so the ReLU masks are the same.
  ref.conv_backward(l, c.n, xd.data(), wd.data(), y_same.data(), dyd.data(), dxd.data(), dwd.data(),
                    dbd.data(), {col.data(), tmp.data()});
  if (precision == Precision::kFp32) {
    expect_close("conv y", y, yd);
    expect_close("conv dx", dx, dxd);
    expect_close("conv dw", dw, dwd);
    expect_close("conv db", db, dbd);
    return;
  }
  // The sums of magnitudes: the same convolution on |x|, |w| and |dy|, without ReLU or bias.
  Layer plain = l;
  plain.relu = false;
  const Doubles ax = magnitudes(x), aw = magnitudes(w), ady = magnitudes(dy);
  const Doubles zero_bias(static_cast<size_t>(c.c_out), 0.0);
  Doubles my(tmp.size()), mdx(dxd.size()), mdw(dwd.size()), mdb(dbd.size());
  ref.conv_forward(plain, c.n, ax.data(), aw.data(), zero_bias.data(), my.data(),
                   {col.data(), tmp.data()});
  ref.conv_backward(plain, c.n, ax.data(), aw.data(), my.data(), ady.data(), mdx.data(), mdw.data(),
                    mdb.data(), {col.data(), tmp.data()});
  const int64_t hw = c.h * c.w;
  for (int64_t i = 0; i < ny; ++i)
    my[static_cast<size_t>(i)] += std::abs(bd[static_cast<size_t>((i / hw) % c.c_out)]);
  expect_within_bound("tf32 conv y", y, yd, my, tf32_factor(9 * c.c_in + 2));
  expect_within_bound("tf32 conv dx", dx, dxd, mdx, tf32_factor(c.c_out + 9));
  expect_within_bound("tf32 conv dw", dw, dwd, mdw, tf32_factor(c.n * hw));
  expect_close_normwise("tf32 conv y", y.data(), yd.data(), ny, 1e-2);
  expect_close_normwise("tf32 conv dx", dx.data(), dxd.data(), nx, 1e-2);
  expect_close_normwise("tf32 conv dw", dw.data(), dwd.data(), nw, 1e-2);
  expect_close("tf32 conv db", db, dbd);
}

const ConvCase kSeedConvs[] = {{128, 1, 28, 28, 32}, {128, 32, 14, 14, 64}};

// Every variant of the conv kernels (im2col, col2im, the epilogue, conv_grad_prepare, conv_gemm:
// conv2d_1's 29 MB column matrix in four chunks of 32 images).
TEST_F(Cuda, ConvAtTheSeedModelsShapesMatchesTheCpu) {
  for (int v = 0; v < kKernelVariantCount; ++v) {
    SCOPED_TRACE("kernel variant " + std::to_string(v));
    const kern::ScopedKernelVariants variants(kern::KernelVariants::each_at_most(v));
    uint64_t seed = 1000;
    for (const ConvCase& c : kSeedConvs) check_seed_conv(c, Precision::kFp32, seed += 10);
  }
}

// conv_gemm variant 1 with uneven chunks: a budget of three images' column matrices splits the
// batch of 128 into 42 chunks of 3 and one of 2.
TEST_F(Cuda, ConvInUnevenChunksAtTheSeedModelsShapesMatchesTheCpu) {
  kern::KernelVariants set;
  set[kern::VariantOp::kConvGemm] = 1;
  const kern::ScopedKernelVariants variants(set);
  const int64_t saved = kern::conv_chunk_bytes();
  uint64_t seed = 1050;
  for (const ConvCase& c : kSeedConvs) {
    const kern::ConvDims d{c.n, c.c_in, c.h, c.w, c.c_out};
    const int64_t per_image = d.k() * d.ohw() * int64_t{sizeof(float)};
    kern::set_conv_chunk_bytes(3 * per_image);
    EXPECT_EQ(kern::conv_chunks(d, 3 * per_image).count, 43);
    EXPECT_FALSE(kern::conv_keeps_col(d));
    check_seed_conv(c, Precision::kFp32, seed += 10);
  }
  kern::set_conv_chunk_bytes(saved);
}

// Max-pool at the seed model's two pools, batch 128, every variant: values, argmax and the
// gradient exactly, with ties (small integers) and without.
TEST_F(Cuda, MaxPoolAtTheSeedModelsShapesMatchesTheCpuExactly) {
  struct Case {
    int64_t c, h, w;
  };
  constexpr int64_t n = 128;
  for (int v = 0; v < kKernelVariantCount; ++v) {
    const kern::ScopedKernelVariants variants(kern::KernelVariants::each_at_most(v));
    uint64_t seed = 1200;
    for (const Case& c : {Case{32, 28, 28}, Case{64, 14, 14}}) {
      for (const bool ties : {true, false}) {
        SCOPED_TRACE("kernel variant " + std::to_string(v) + " c=" + std::to_string(c.c) +
                     " h=" + std::to_string(c.h) + " ties=" + std::to_string(ties));
        const Layer l = pool_layer(c.c, c.h, c.w);
        const int64_t nx = n * l.in.size(), ny = n * l.out.size();
        const Floats x = ties ? tied_floats(nx, ++seed) : random_floats(nx, ++seed);
        const Floats dy = random_floats(ny, ++seed);
        CudaBackend be;
        auto gx = device_copy(be, x), gdy = device_copy(be, dy);
        auto gy = poisoned(be, ny), gdx = poisoned(be, nx);
        auto garg = device_copy(be, std::vector<int32_t>(static_cast<size_t>(ny), -7));
        be.pool_forward(l, n, gx.data(), gy.data(), garg.data());
        be.pool_backward(l, n, gdy.data(), garg.data(), gdx.data());
        CpuBackend<float> ref;
        Floats y(static_cast<size_t>(ny)), dx(static_cast<size_t>(nx));
        std::vector<int32_t> arg(static_cast<size_t>(ny));
        ref.pool_forward(l, n, x.data(), y.data(), arg.data());
        ref.pool_backward(l, n, dy.data(), arg.data(), dx.data());
        EXPECT_EQ(host_copy(be, gy.data(), ny), y);
        EXPECT_EQ(host_copy(be, garg.data(), ny), arg);
        EXPECT_EQ(host_copy(be, gdx.data(), nx), dx);
      }
    }
  }
}

// The fused conv + pool at the seed model's two pairs, batch 128, under every variant set (the
// GEMMs in chunks under conv_gemm 1 and 2), and a partial last batch (77 images in buffers for
// 128) under conv_pool's own set; then that set again with every grid capped at 3 blocks.
TEST_F(Cuda, ConvPoolAtTheSeedModelsShapesMatchesTheCpu) {
  for (int v = 0; v < kKernelVariantCount; ++v) {
    SCOPED_TRACE("kernel variant " + std::to_string(v));
    const kern::ScopedKernelVariants variants(kern::KernelVariants::each_at_most(v));
    uint64_t seed = 1300;
    for (const ConvCase& c : kSeedConvs) check_conv_pool(c, true, false, seed += 10, c.n);
  }
  kern::KernelVariants set;
  set[kern::VariantOp::kConvPool] = 1;
  const kern::ScopedKernelVariants variants(set);
  uint64_t seed = 1350;
  for (ConvCase c : kSeedConvs) {
    c.n = 77;
    check_conv_pool(c, true, false, seed += 10, 128);
  }
  struct GridCap {  // every grid at 3 blocks for the scope
    int saved = cuda::max_grid_blocks();
    GridCap() { cuda::set_max_grid_blocks(3); }
    ~GridCap() { cuda::set_max_grid_blocks(saved); }
  } cap;
  for (const ConvCase& c : kSeedConvs) check_conv_pool(c, true, false, seed += 10, c.n);
}

TEST_F(Cuda, Tf32ConvAtTheSeedModelsShapesStaysWithinTheTf32Bound) {
  uint64_t seed = 1100;
  for (const ConvCase& c : kSeedConvs) check_seed_conv(c, Precision::kTf32, seed += 10);
}

// The math mode each precision sets, and one GEMM per transpose and inner dimension (from 7 to
// the dense layer's 3136) within its precision's bound, element by element and norm-wise. How
// many TF32 results differ from float32's is reported, not asserted: on a GPU nearly all do; the
// simulator computes TF32 in float32.
TEST_F(Cuda, Tf32GemmStaysWithinTheTf32BoundAndFp32WithinFp32s) {
  CudaBackend fp32(false, Precision::kFp32), tf32(false, Precision::kTf32);
  EXPECT_EQ(fp32.precision(), Precision::kFp32);
  EXPECT_EQ(tf32.precision(), Precision::kTf32);
  cublasMath_t mode{};
  CUBLAS_CHECK(cublasGetMathMode(fp32.cublas(), &mode));
  EXPECT_EQ(mode, CUBLAS_DEFAULT_MATH);
  CUBLAS_CHECK(cublasGetMathMode(tf32.cublas(), &mode));
  EXPECT_EQ(mode, CUBLAS_TF32_TENSOR_OP_MATH);
  const int64_t m = 37, n = 45;
  int64_t differ = 0, total = 0;
  uint64_t seed = 1200;
  for (const int64_t k : {int64_t{7}, int64_t{64}, int64_t{300}, int64_t{3136}}) {
    for (const bool ta : {false, true}) {
      for (const bool tb : {false, true}) {
        SCOPED_TRACE("k=" + std::to_string(k) + " ta=" + std::to_string(ta) +
                     " tb=" + std::to_string(tb));
        const int64_t lda = ta ? m : k, ldb = tb ? k : n;
        const Floats a = random_floats(m * k, ++seed), b = random_floats(k * n, ++seed);
        Doubles ref(static_cast<size_t>(m * n)), mag(ref.size());
        const Doubles ad = widen(a), bd = widen(b), aa = magnitudes(a), ab = magnitudes(b);
        cpu::gemm(ta, tb, m, n, k, 1.0, ad.data(), lda, bd.data(), ldb, 0.0, ref.data(), n);
        cpu::gemm(ta, tb, m, n, k, 1.0, aa.data(), lda, ab.data(), ldb, 0.0, mag.data(), n);
        Floats results[2];
        for (CudaBackend* be : {&fp32, &tf32}) {
          auto ga = device_copy(*be, a), gb = device_copy(*be, b);
          auto gc = poisoned(*be, m * n);
          kern::gemm_row_major(be->cublas(), be->stream(), ta, tb, m, n, k, 1.0f, ga.data(), lda,
                               gb.data(), ldb, 0.0f, gc.data(), n);
          results[be == &tf32] = host_copy(*be, gc.data(), m * n);
        }
        expect_within_bound("fp32 gemm", results[0], ref, mag, fp32_factor(k));
        expect_within_bound("tf32 gemm", results[1], ref, mag, tf32_factor(k));
        expect_close_normwise("tf32 gemm", results[1].data(), ref.data(), m * n, 1e-2);
        for (size_t i = 0; i < ref.size(); ++i) differ += results[0][i] != results[1][i];
        total += m * n;
      }
    }
  }
  RecordProperty("tf32_results_differing_from_fp32",
                 std::to_string(differ) + " of " + std::to_string(total));
  std::cout << "[ TF32     ] " << differ << " of " << total
            << " GEMM results differ from float32's (a GPU: nearly all; the simulator: none)\n";
}

// --- plumbing ------------------------------------------------------------------------------------

// No cold work inside a capture: the first step of each batch size runs eagerly, the second is
// captured (and launched), later ones replay the graph. An allocation retires the graphs but not
// the warm-up: the next call captures again at once.
TEST_F(Cuda, TheFirstStepOfABatchSizeRunsEagerlyTheSecondIsCaptured) {
  CudaBackend be(/*use_graphs=*/true);
  if (!be.uses_graphs()) GTEST_SKIP() << "graph capture is off here (MNIST_GPU_SYNC_DEBUG=1)";
  auto counters = be.alloc<int64_t>(kCounterCount);
  int calls = 0;
  auto step = [&] {
    ++calls;
    be.end_step(counters.data(), 8);
  };
  auto steps_done = [&] { return host_copy(be, counters.data(), kCounterCount)[kStepCounter]; };
  be.run_step(8, step);
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(be.captured_graphs(), 0u) << "the first step of a batch size must run eagerly";
  EXPECT_EQ(be.warmed_up_batches(), 1u);
  EXPECT_EQ(steps_done(), 1);
  be.run_step(8, step);
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(be.captured_graphs(), 1u);
  EXPECT_EQ(steps_done(), 2) << "the captured graph is launched at once";
  be.run_step(8, step);
  EXPECT_EQ(calls, 2) << "a replay does not call the step function";
  EXPECT_EQ(steps_done(), 3);
  be.run_step(5, step);
  EXPECT_EQ(calls, 3);
  EXPECT_EQ(be.captured_graphs(), 1u) << "a new batch size warms up eagerly first";
  EXPECT_EQ(steps_done(), 4);
  auto more = be.alloc<float>(16);
  be.run_step(8, step);
  EXPECT_EQ(calls, 4) << "after an allocation the step is captured again, without a warm-up";
  EXPECT_EQ(be.captured_graphs(), 1u);
  EXPECT_EQ(be.warmed_up_batches(), 2u);
  EXPECT_EQ(steps_done(), 5);
}

TEST_F(Cuda, DeviceBuffersAreZeroFilledAndMovable) {
  CudaBackend be;
  auto a = be.alloc<float>(1000);
  EXPECT_EQ(a.size(), 1000);
  EXPECT_EQ(host_copy(be, a.data(), 1000), Floats(1000, 0.0f));
  const float* p = a.data();
  DeviceBuffer<float> b = std::move(a);
  EXPECT_EQ(b.data(), p);
  EXPECT_EQ(a.data(), nullptr);
  EXPECT_EQ(a.size(), 0);
  auto empty = be.alloc<int32_t>(0);
  EXPECT_EQ(empty.data(), nullptr);
  EXPECT_THROW(be.alloc<float>(-1), std::invalid_argument);
}

TEST_F(Cuda, DeviceNameNamesTheGpuAndItsArchitecture) {
  CudaBackend be;
  const std::string name = be.device_name();
  EXPECT_EQ(name.rfind("cuda:0 ", 0), 0u) << name;
  EXPECT_NE(name.find("(sm_"), std::string::npos) << name;
}

TEST_F(Cuda, GemmRowMajorMatchesTheCpuForEveryTransposeAndRejectsAForeignStream) {
  CudaBackend be;
  const int64_t m = 5, n = 7, k = 3;
  for (const bool ta : {false, true}) {
    for (const bool tb : {false, true}) {
      const int64_t lda = ta ? m : k, ldb = tb ? k : n;
      const Floats a = random_floats(m * k, 800), b = random_floats(k * n, 801),
                   c0 = random_floats(m * n, 802);
      auto ga = device_copy(be, a), gb = device_copy(be, b), gc = device_copy(be, c0);
      kern::gemm_row_major(be.cublas(), be.stream(), ta, tb, m, n, k, 1.5f, ga.data(), lda,
                           gb.data(), ldb, 0.5f, gc.data(), n);
      Doubles ad = widen(a), bd = widen(b), cd = widen(c0);
      cpu::gemm(ta, tb, m, n, k, 1.5, ad.data(), lda, bd.data(), ldb, 0.5, cd.data(), n);
      expect_close(std::string("gemm ta=") + (ta ? "T" : "N") + " tb=" + (tb ? "T" : "N"),
                   host_copy(be, gc.data(), m * n), cd);
    }
  }
  auto g = be.alloc<float>(1);
  EXPECT_THROW(kern::gemm_row_major(be.cublas(), nullptr, false, false, 1, 1, 1, 1.0f, g.data(), 1,
                                    g.data(), 1, 0.0f, g.data(), 1),
               std::logic_error);
}

// --- whole networks and training -----------------------------------------------------------------

// A labelled 28x28 set every CNN can learn: the label is the quadrant holding a bright square.
struct QuadrantData {
  std::vector<uint8_t> images, labels;
  explicit QuadrantData(int64_t n)
      : images(static_cast<size_t>(n) * 784), labels(static_cast<size_t>(n)) {
    std::mt19937 rng(5);
    for (int64_t i = 0; i < n; ++i) {
      const int q = static_cast<int>(rng() % 4);
      labels[static_cast<size_t>(i)] = static_cast<uint8_t>(q);
      uint8_t* img = images.data() + i * 784;
      for (int p = 0; p < 784; ++p)
        img[p] = (rng() % 4 == 0) ? static_cast<uint8_t>(rng() % 80) : 0;
      const int oy = (q / 2) * 14 + static_cast<int>(rng() % 6),
                ox = (q % 2) * 14 + static_cast<int>(rng() % 6);
      for (int y = 0; y < 7; ++y)
        for (int x = 0; x < 7; ++x)
          img[(oy + y) * 28 + ox + x] = static_cast<uint8_t>(200 + rng() % 56);
    }
  }
  Dataset dataset() const {
    return {images.data(), labels.data(), static_cast<int64_t>(labels.size()), Shape{1, 28, 28}};
  }
};

std::vector<int32_t> iota_indices(int32_t first, int32_t count) {
  std::vector<int32_t> v(static_cast<size_t>(count));
  std::iota(v.begin(), v.end(), first);
  return v;
}

CudaBackend& backend_of(Engine& e) {
  return dynamic_cast<BasicEngine<CudaBackend>&>(e).network().backend();
}

// Forward, loss and backward of the seed model at batch n on the GPU against the double CPU
// network from the same parameters and batch, dropout on: logits, every gradient tensor and the
// loss within rtol norm-wise. The GPU network is planned for max_batch (n when 0), so n below it
// is an epoch's partial last batch. Every conv + pool pair must run fused exactly when the
// variant set says so (conv_pool = 1).
void expect_network_step_close(int64_t n, Precision precision, double rtol,
                               std::string_view spec = kSeedModelSpec, int64_t max_batch = 0) {
  SCOPED_TRACE("batch " + std::to_string(n) + ", " + precision_name(precision) + ", " +
               std::string(spec));
  const Graph g = Graph::build(ModelSpec::parse(spec));
  const int64_t p = g.param_count();
  Floats params(static_cast<size_t>(p));
  glorot_uniform_init<float>(g, 42, params);
  for (const Layer& l : g.layers())
    for (int64_t i = 0; i < l.bias_size; ++i)
      params[static_cast<size_t>(l.bias_offset + i)] =
          0.05f * static_cast<float>(std::cos(double(i)));
  const Floats x = random_floats(n * 784, 900 + static_cast<uint64_t>(n), 0.0, 1.0);
  std::vector<int32_t> labels(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    labels[static_cast<size_t>(i)] = static_cast<int32_t>((3 * i + 1) % 10);
  const int64_t counters[kCounterCount] = {5, 0};

  CudaBackend be(false, precision);
  Network<CudaBackend> net(be, g, std::max(n, max_batch), 42);
  const bool fuse = kern::kernel_variants()[kern::VariantOp::kConvPool] == 1;
  int fused = 0;
  for (size_t i = 0; i + 1 < g.layers().size(); ++i) {
    const bool pair =
        g.layers()[i].kind == LayerKind::kConv2d && g.layers()[i + 1].kind == LayerKind::kMaxPool;
    EXPECT_EQ(net.fused_with_pool(i), fuse && pair) << g.layers()[i].name;
    fused += net.fused_with_pool(i);
  }
  if (fuse) {
    EXPECT_GT(fused, 0) << "the spec has no conv + pool pair";
  }
  be.upload(net.params(), params.data(), p);
  be.upload(net.input(), x.data(), n * 784);
  be.upload(net.labels(), labels.data(), n);
  be.upload(net.counters(), counters, kCounterCount);
  net.forward(n, true);
  net.loss(n);
  net.backward(n);
  const Floats logits = host_copy(be, net.logits(), n * 10), grads = host_copy(be, net.grads(), p);
  const Floats after = host_copy(be, net.params(), p);  // the moving statistics were updated

  CpuBackend<double> cb;
  Network<CpuBackend<double>> ref(cb, g, n, 42);
  std::copy(params.begin(), params.end(), ref.params());
  std::copy(x.begin(), x.end(), ref.input());
  std::copy(labels.begin(), labels.end(), ref.labels());
  std::copy(counters, counters + kCounterCount, ref.counters());
  ref.forward(n, true);
  ref.loss(n);
  ref.backward(n);
  expect_close_normwise("logits", logits.data(), ref.logits(), n * 10, rtol);
  auto norm2 = [](const auto* v, int64_t count) {
    double s = 0;
    for (int64_t i = 0; i < count; ++i) s += double(v[i]) * double(v[i]);
    return std::sqrt(s);
  };
  for (const Layer& l : g.layers()) {
    if (!l.has_params()) continue;
    expect_close_normwise(l.name + " weight grad", grads.data() + l.weight_offset,
                          ref.grads() + l.weight_offset, l.weight_size, rtol);
    const size_t next = static_cast<size_t>(l.index) + 1;
    if (next < g.layers().size() && g.layers()[next].kind == LayerKind::kBatchNorm) {
      // A bias right before batch normalization cancels in its mean: its gradient is 0 exactly
      // (the reference shows it to double rounding), and in float it is the rounding residue of a
      // sum of terms the size of the weight gradient's, so it is bounded relative to that.
      const double w = norm2(ref.grads() + l.weight_offset, l.weight_size);
      EXPECT_LE(norm2(ref.grads() + l.bias_offset, l.bias_size), 1e-12 * w) << l.name;
      EXPECT_LE(norm2(grads.data() + l.bias_offset, l.bias_size), 1e-3 * w) << l.name;
    } else {
      expect_close_normwise(l.name + " bias grad", grads.data() + l.bias_offset,
                            ref.grads() + l.bias_offset, l.bias_size, rtol);
    }
    if (l.stats_size > 0) {
      expect_close_normwise(l.name + " moving statistics", after.data() + l.stats_offset,
                            ref.params() + l.stats_offset, l.stats_size, rtol);
    }
  }
  const std::vector<double> sums = host_copy(be, net.metric_sums(), kMetricCount);
  EXPECT_NEAR(sums[kLossSum], ref.metric_sums()[kLossSum], rtol * ref.metric_sums()[kLossSum]);
  EXPECT_EQ(sums[kSampleSum], static_cast<double>(n));
}

// Norm-wise within 1e-5 per tensor (the CPU's float network: 3.7e-7; a rounding that flips one
// ReLU or pooling choice near a tie moves one term of a sum of thousands; a wrong index or a
// missing term: far above).
TEST_F(Cuda, NetworkStepGradientsMatchTheCpu) {
  for (const int64_t n : {int64_t{1}, int64_t{3}})
    expect_network_step_close(n, Precision::kFp32, 1e-5);
}

// Kernel sizes 5, 7 and 1, 'valid' and 'same', activation-free layers and the ReLU layer.
TEST_F(Cuda, NetworkStepWithKernelSizesAndTheReluLayerMatchesTheCpu) {
  expect_network_step_close(
      3, Precision::kFp32, 1e-5,
      "conv8k5vn,relu,pool,conv16k7,pool,conv8k1n,drop0.25,dense32n,relu,drop0.5");
}

// Batch normalization after convs and after a dense layer (conv-BN-ReLU blocks), the moving
// statistics included; batch 1 puts a dense BN on a single sample (variance 0).
TEST_F(Cuda, NetworkStepWithBatchNormalizationMatchesTheCpu) {
  for (const int64_t n : {int64_t{1}, int64_t{3}}) {
    expect_network_step_close(
        n, Precision::kFp32, 1e-5,
        "conv8n,bn,relu,pool,conv16k5n,bn,relu,pool,drop0.25,dense32n,bn,relu,drop0.5");
  }
}

// The seed model's batch: 128 images through every kernel at its production shape.
TEST_F(Cuda, NetworkStepAtBatch128MatchesTheCpu) {
  expect_network_step_close(128, Precision::kFp32, 1e-5);
}

// The same with every op at variant 1 (kernels/variants.hpp), the set bench_kernels times as
// cuda/train_step/v1/128.
TEST_F(Cuda, NetworkStepAtBatch128WithEveryVariant1MatchesTheCpu) {
  const kern::ScopedKernelVariants variants(kern::KernelVariants::all(1));
  expect_network_step_close(128, Precision::kFp32, 1e-5);
  expect_network_step_close(
      3, Precision::kFp32, 1e-5,
      "conv8k5vn,relu,pool,conv16k7,pool,conv8k1n,drop0.25,dense32n,relu,drop0.5");
}

// Every op at its highest variant (conv_gemm 2: the implicit-GEMM forward, the backward in
// chunks).
TEST_F(Cuda, NetworkStepAtBatch128WithTheHighestVariantsMatchesTheCpu) {
  const kern::ScopedKernelVariants variants(
      kern::KernelVariants::each_at_most(kKernelVariantCount - 1));
  expect_network_step_close(128, Precision::kFp32, 1e-5);
  expect_network_step_close(
      3, Precision::kFp32, 1e-5,
      "conv8k5vn,relu,pool,conv16k7,pool,conv8k1n,drop0.25,dense32n,relu,drop0.5");
}

// conv_pool at 1 alone (the seed model's two conv + pool pairs fused, every other op at v0): at
// batch 128, at 1, at a partial last batch (100 of 128), and the odd model ('valid' 5x5 then a
// ReLU layer before its pool, which stays apart; 7x7 'same' on a 14x14 map fused).
TEST_F(Cuda, NetworkStepWithConvPoolFusedMatchesTheCpu) {
  kern::KernelVariants set;
  set[kern::VariantOp::kConvPool] = 1;
  const kern::ScopedKernelVariants variants(set);
  expect_network_step_close(128, Precision::kFp32, 1e-5);
  expect_network_step_close(1, Precision::kFp32, 1e-5);
  expect_network_step_close(100, Precision::kFp32, 1e-5, kSeedModelSpec, 128);
  expect_network_step_close(
      3, Precision::kFp32, 1e-5,
      "conv8k5vn,relu,pool,conv16k7,pool,conv8k1n,drop0.25,dense32n,relu,drop0.5");
}

// TF32: up to four GEMMs on a gradient's path, each within 1e-2 norm-wise: 2e-2 (top of file).
TEST_F(Cuda, Tf32NetworkStepAtBatch128StaysCloseToTheCpu) {
  expect_network_step_close(128, Precision::kTf32, 2e-2);
}

// ||a - b|| for two parameter vectors.
double distance(const Floats& a, const Floats& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
  return std::sqrt(s);
}

double norm(const Floats& a) { return distance(a, Floats(a.size(), 0.0f)); }

// One Adam step moves most parameters by about lr whatever their gradient's size, so the two
// engines must agree to 0.1% of the step's length (CPU float vs double: 6.7e-6; a parameter whose
// gradient is ~0 may turn the other way on a rounding: 2 lr out of a step of ~lr * sqrt(4e5)).
TEST_F(Cuda, OneTrainingStepMatchesTheCpuEngine) {
  const Graph g = Graph::build(ModelSpec::seed());
  const QuadrantData data(64);
  EngineOptions opt;
  opt.batch_size = 32;
  opt.seed = 7;
  auto gpu = make_cuda_engine(g, opt);
  auto cpu = make_cpu_engine(g, opt);
  const Floats p0 = cpu->parameters();
  EXPECT_EQ(gpu->parameters(), p0) << "the same seed gives the same initial weights";
  gpu->set_dataset(data.dataset());
  cpu->set_dataset(data.dataset());
  const auto idx = iota_indices(0, 32);
  const Metrics mg = gpu->train_epoch(idx, 0), mc = cpu->train_epoch(idx, 0);
  EXPECT_EQ(gpu->step(), 1);
  EXPECT_NEAR(mg.loss, mc.loss, 1e-5 * mc.loss);
  EXPECT_EQ(mg.count, mc.count);
  const Floats pg = gpu->parameters(), pc = cpu->parameters();
  EXPECT_LE(distance(pg, pc), 1e-3 * distance(pc, p0));
}

// The same with AdamW and the L2 penalty: the reported loss includes the penalty on both.
TEST_F(Cuda, OneAdamWAndL2TrainingStepMatchesTheCpuEngine) {
  const Graph g = Graph::build(ModelSpec::seed());
  const QuadrantData data(64);
  EngineOptions opt;
  opt.batch_size = 32;
  opt.seed = 7;
  opt.adam.weight_decay = 0.5;  // large, so the decay is a visible part of the step
  opt.l2 = 1e-3;
  auto gpu = make_cuda_engine(g, opt);
  auto cpu = make_cpu_engine(g, opt);
  const Floats p0 = cpu->parameters();
  gpu->set_dataset(data.dataset());
  cpu->set_dataset(data.dataset());
  const auto idx = iota_indices(0, 32);
  const Metrics mg = gpu->train_epoch(idx, 0), mc = cpu->train_epoch(idx, 0);
  EXPECT_GT(mc.l2_loss, 0.0);
  EXPECT_NEAR(mg.l2_loss, mc.l2_loss, 1e-9 * mc.l2_loss);
  EXPECT_NEAR(mg.loss, mc.loss, 1e-5 * mc.loss);
  const Floats pg = gpu->parameters(), pc = cpu->parameters();
  EXPECT_LE(distance(pg, pc), 1e-3 * distance(pc, p0));
  const Metrics vg = gpu->evaluate(idx, nullptr), vc = cpu->evaluate(idx, nullptr);
  EXPECT_NEAR(vg.l2_loss, vc.l2_loss, 1e-6 * vc.l2_loss);
  EXPECT_NEAR(vg.loss, vc.loss, 1e-5 * vc.loss);
}

// activations() and saliency() on the GPU against the CPU engine, with the same weights after a
// few training steps; neither changes the training state.
TEST_F(Cuda, ActivationsAndSaliencyMatchTheCpuEngine) {
  const Graph g = Graph::build(ModelSpec::parse("conv4,pool,conv8,pool,drop0.3,dense16"));
  const QuadrantData data(64);
  EngineOptions opt;
  opt.batch_size = 16;
  opt.seed = 5;
  auto gpu = make_cuda_engine(g, opt);
  auto cpu = make_cpu_engine(g, opt);
  gpu->set_dataset(data.dataset());
  cpu->set_dataset(data.dataset());
  gpu->train_epoch(iota_indices(0, 64), 0);
  cpu->set_parameters(gpu->parameters());
  const TrainingState before = gpu->state();
  const int64_t count = 20, size = g.input().size();  // two batches, the last partial
  const std::span<const uint8_t> images(data.dataset().images, static_cast<size_t>(count * size));
  const auto ag = gpu->activations(images), ac = cpu->activations(images);
  ASSERT_EQ(ag.size(), ac.size());
  for (size_t i = 0; i < ag.size(); ++i) {
    ASSERT_EQ(ag[i].size(), ac[i].size());
    EXPECT_LE(distance(ag[i], ac[i]), 1e-4 * (1 + norm(ac[i]))) << "layer " << i;
  }
  std::vector<int> pg, pc;
  const Floats sg = gpu->saliency(images, &pg), sc = cpu->saliency(images, &pc);
  EXPECT_EQ(pg, pc);
  ASSERT_EQ(sg.size(), sc.size());
  EXPECT_GT(norm(sc), 0);
  EXPECT_LE(distance(sg, sc), 1e-4 * norm(sc));
  const TrainingState after = gpu->state();
  EXPECT_EQ(after.params, before.params);
  EXPECT_EQ(after.adam_m, before.adam_m);
  EXPECT_EQ(after.step, before.step);
}

// Fifty steps (an epoch of 1600 samples in batches of 32) from the same seed and data: the runs
// may drift apart by roundings that flip a ReLU or a pooling choice, but stay within 1% of the
// distance they travelled and their losses within 1e-4 (CPU float vs double: 4.7e-5 and 5e-6).
TEST_F(Cuda, FiftyTrainingStepsStayCloseToTheCpuEngine) {
  const Graph g = Graph::build(ModelSpec::seed());
  const QuadrantData data(2000);
  EngineOptions opt;
  opt.batch_size = 32;
  opt.seed = 11;
  auto gpu = make_cuda_engine(g, opt);
  auto cpu = make_cpu_engine(g, opt);
  const Floats p0 = cpu->parameters();
  gpu->set_dataset(data.dataset());
  cpu->set_dataset(data.dataset());
  const auto train = iota_indices(0, 1600), test_idx = iota_indices(1600, 400);
  const Metrics mg = gpu->train_epoch(train, 0), mc = cpu->train_epoch(train, 0);
  EXPECT_EQ(gpu->step(), 50);
  EXPECT_NEAR(mg.loss, mc.loss, 1e-4 * mc.loss);
  EXPECT_NEAR(mg.accuracy, mc.accuracy, 3.0 / 1600);
  const Floats pg = gpu->parameters(), pc = cpu->parameters();
  EXPECT_LE(distance(pg, pc), 0.01 * distance(pc, p0));
  const Metrics eg = gpu->evaluate(test_idx, nullptr), ec = cpu->evaluate(test_idx, nullptr);
  EXPECT_NEAR(eg.loss, ec.loss, 1e-2 * ec.loss + 1e-4);
  EXPECT_GT(eg.accuracy, 0.9) << "the task is easy: 50 steps learn it";
}

// The seed protocol's batch of 128 through the whole engine (gather, step, Adam), as
// OneTrainingStepMatchesTheCpuEngine with its tolerances.
TEST_F(Cuda, OneTrainingStepAtBatch128MatchesTheCpuEngine) {
  const Graph g = Graph::build(ModelSpec::seed());
  const QuadrantData data(128);
  EngineOptions opt;
  opt.seed = 17;
  ASSERT_EQ(opt.batch_size, 128);
  auto gpu = make_cuda_engine(g, opt);
  auto cpu = make_cpu_engine(g, opt);
  const Floats p0 = cpu->parameters();
  gpu->set_dataset(data.dataset());
  cpu->set_dataset(data.dataset());
  const auto idx = iota_indices(0, 128);
  const Metrics mg = gpu->train_epoch(idx, 0), mc = cpu->train_epoch(idx, 0);
  EXPECT_EQ(gpu->step(), 1);
  EXPECT_NEAR(mg.loss, mc.loss, 1e-5 * mc.loss);
  EXPECT_EQ(mg.count, 128);
  const Floats pg = gpu->parameters(), pc = cpu->parameters();
  EXPECT_LE(distance(pg, pc), 1e-3 * distance(pc, p0));
}

// The whole engine's step (gather, the captured graph, Adam) with every op at variant 1.
TEST_F(Cuda, OneTrainingStepAtBatch128WithEveryVariant1MatchesTheCpuEngine) {
  const kern::ScopedKernelVariants variants(kern::KernelVariants::all(1));
  const Graph g = Graph::build(ModelSpec::seed());
  const QuadrantData data(256);
  EngineOptions opt;
  opt.seed = 17;
  auto gpu = make_cuda_engine(g, opt);
  auto cpu = make_cpu_engine(g, opt);
  const Floats p0 = cpu->parameters();
  gpu->set_dataset(data.dataset());
  cpu->set_dataset(data.dataset());
  const auto idx = iota_indices(0, 256);
  const Metrics mg = gpu->train_epoch(idx, 0), mc = cpu->train_epoch(idx, 0);
  EXPECT_EQ(gpu->step(), 2) << "two steps: the first eager, the second captured and replayed";
  EXPECT_NEAR(mg.loss, mc.loss, 1e-5 * mc.loss);
  const Floats pg = gpu->parameters(), pc = cpu->parameters();
  EXPECT_LE(distance(pg, pc), 1e-3 * distance(pc, p0));
}

// eval's softmax probabilities (what the confusion matrix and the report are made of), GPU
// against the CPU engine on the same trained weights, with a partial last batch. Both compute in
// float32: logits agree to ~1e-6 of their size (see the network tests), which moves a probability
// by at most a few 1e-6; 1e-4 per probability leaves room, yet a wrong row or class is far above.
TEST_F(Cuda, EvaluateProbabilitiesMatchTheCpuEngine) {
  const Graph g = Graph::build(ModelSpec::seed());
  const QuadrantData data(800);
  EngineOptions opt;
  opt.batch_size = 64;
  opt.seed = 23;
  auto gpu = make_cuda_engine(g, opt);
  auto cpu = make_cpu_engine(g, opt);
  gpu->set_dataset(data.dataset());
  cpu->set_dataset(data.dataset());
  gpu->train_epoch(iota_indices(0, 600), 0);
  cpu->set_parameters(gpu->parameters());
  const auto test_idx = iota_indices(600, 200);  // 3 batches of 64 and one of 8
  std::vector<float> pg, pc;
  const Metrics mg = gpu->evaluate(test_idx, &pg), mc = cpu->evaluate(test_idx, &pc);
  ASSERT_EQ(pg.size(), size_t{200 * 10});
  ASSERT_EQ(pc.size(), pg.size());
  int bad = 0;
  for (size_t i = 0; i < pg.size(); ++i) {
    if (!(std::abs(pg[i] - pc[i]) <= 1e-4f) && ++bad <= 5)
      ADD_FAILURE() << "probs[" << i / 10 << "][" << i % 10 << "]: gpu " << pg[i] << " vs cpu "
                    << pc[i];
  }
  EXPECT_EQ(bad, 0);
  for (size_t r = 0; r < 200; ++r) {
    double sum = 0;
    for (size_t k = 0; k < 10; ++k) sum += pg[r * 10 + k];
    EXPECT_NEAR(sum, 1.0, 1e-5) << "row " << r;
  }
  EXPECT_NEAR(mg.loss, mc.loss, 1e-4 * mc.loss + 1e-7);
  EXPECT_NEAR(mg.accuracy, mc.accuracy, 1.0 / 200 + 1e-12);
  EXPECT_EQ(mg.count, 200);
  EXPECT_GT(mg.accuracy, 0.8) << "an epoch learns the quadrants";
}

// --precision tf32 through the engine: the backend's math mode, the engine's report of it, and
// fifty steps that learn as the float32 CPU engine does. TF32 moves every gradient by ~1e-3 of
// its size, so the runs part ways faster than float32's do; their losses and accuracies stay
// close (5e-2 and 2e-2; float32 against double: 5e-6): a reasoned guess the first GPU run
// calibrates, while a broken GEMM neither learns nor lands near the CPU's loss.
TEST_F(Cuda, Tf32TrainingLearnsLikeTheCpuEngine) {
  const Graph g = Graph::build(ModelSpec::seed());
  const QuadrantData data(2000);
  EngineOptions opt;
  opt.batch_size = 32;
  opt.seed = 11;
  auto fp32 = make_cuda_engine(g, opt);
  EXPECT_EQ(fp32->precision(), Precision::kFp32);
  opt.precision = Precision::kTf32;
  auto gpu = make_cuda_engine(g, opt);
  auto cpu = make_cpu_engine(g, opt);
  EXPECT_EQ(gpu->precision(), Precision::kTf32);
  EXPECT_EQ(cpu->precision(), Precision::kFp32) << "the CPU has no TF32";
  cublasMath_t mode{};
  CUBLAS_CHECK(cublasGetMathMode(backend_of(*gpu).cublas(), &mode));
  EXPECT_EQ(mode, CUBLAS_TF32_TENSOR_OP_MATH);
  gpu->set_dataset(data.dataset());
  cpu->set_dataset(data.dataset());
  const auto train = iota_indices(0, 1600), test_idx = iota_indices(1600, 400);
  const Metrics mg = gpu->train_epoch(train, 0), mc = cpu->train_epoch(train, 0);
  EXPECT_EQ(gpu->step(), 50);
  EXPECT_NEAR(mg.loss, mc.loss, 5e-2 * mc.loss);
  EXPECT_NEAR(mg.accuracy, mc.accuracy, 2e-2);
  const Metrics eg = gpu->evaluate(test_idx, nullptr), ec = cpu->evaluate(test_idx, nullptr);
  EXPECT_NEAR(eg.accuracy, ec.accuracy, 2e-2);
  EXPECT_GT(eg.accuracy, 0.9) << "the task is easy: 50 steps learn it";
}

struct RunResult {
  std::vector<Metrics> metrics;
  Floats params, probs;
  int64_t step = 0;
  size_t graphs = 0;
  bool uses_graphs = false;
  int fused_pairs = 0;  // conv + pool pairs the training step ran as one op
};

// Two epochs with a partial last batch, an evaluation in between that needs bigger index buffers
// (so the captured graphs must be retired and captured again), then the state.
// second_lr > 0: the learning rate set before the second epoch (a schedule's change, after the
// graphs were captured).
// weight_decay: AdamW's rate from the start; second_wd >= 0: the rate set before the second epoch.
RunResult train_twice(bool graphs, double second_lr = 0, double weight_decay = 0,
                      double second_wd = -1,
                      std::string_view spec = "conv8,pool,conv16,pool,drop0.25,dense32,drop0.5") {
  const Graph g = Graph::build(ModelSpec::parse(spec));
  const QuadrantData data(1500);
  EngineOptions opt;
  opt.batch_size = 64;
  opt.seed = 3;
  opt.cuda_graph = graphs;
  opt.adam.weight_decay = weight_decay;
  auto e = make_cuda_engine(g, opt);
  e->set_dataset(data.dataset());
  const auto train = iota_indices(0, 500), test_idx = iota_indices(500, 900);
  RunResult r;
  r.metrics.push_back(e->train_epoch(train, 0));  // 7 batches of 64 and one of 52
  std::vector<float> probs;
  r.metrics.push_back(e->evaluate(test_idx, &probs));
  if (second_lr > 0) e->set_learning_rate(second_lr);
  if (second_wd >= 0) e->set_weight_decay(second_wd);
  r.metrics.push_back(e->train_epoch(train, 1));
  r.params = e->parameters();
  r.probs = probs;
  r.step = e->step();
  r.graphs = backend_of(*e).captured_graphs();
  r.uses_graphs = backend_of(*e).uses_graphs();
  const auto& net = dynamic_cast<BasicEngine<CudaBackend>&>(*e).network();
  for (size_t i = 0; i < g.layers().size(); ++i) r.fused_pairs += net.fused_with_pool(i);
  return r;
}

TEST_F(Cuda, GraphReplayEqualsEagerLaunchesBitForBit) {
  const RunResult graph = train_twice(true), eager = train_twice(false), again = train_twice(true);
  ASSERT_EQ(graph.metrics.size(), eager.metrics.size());
  for (size_t i = 0; i < graph.metrics.size(); ++i) {
    EXPECT_EQ(graph.metrics[i].loss, eager.metrics[i].loss) << i;
    EXPECT_EQ(graph.metrics[i].accuracy, eager.metrics[i].accuracy) << i;
    EXPECT_EQ(graph.metrics[i].count, eager.metrics[i].count) << i;
  }
  EXPECT_EQ(graph.step, 16);
  EXPECT_EQ(eager.step, 16);
  EXPECT_EQ(graph.params, eager.params);
  EXPECT_EQ(graph.probs, eager.probs);
  EXPECT_EQ(graph.params, again.params) << "two runs from one seed must agree bit for bit";
  // Capture is off under MNIST_GPU_SYNC_DEBUG=1 or MNIST_GPU_CUDA_GRAPH=0.
  EXPECT_EQ(graph.graphs, graph.uses_graphs ? 2u : 0u) << "one graph per batch size (64 and 52)";
  EXPECT_FALSE(eager.uses_graphs);
  EXPECT_EQ(eager.graphs, 0u);
}

// With the conv + pool pairs fused (conv_pool = 1), the captured steps hold the fused kernels:
// their replays equal the eager launches bit for bit, a partial last batch (52) included, and
// the run learns as the unfused one does (the same losses to float rounding: the fused kernels
// compute the unfused values, and only the bias gradient's double sum runs in another order).
TEST_F(Cuda, GraphReplayWithConvPoolFusedEqualsEagerLaunchesBitForBit) {
  const RunResult unfused = train_twice(true);
  kern::KernelVariants set;
  set[kern::VariantOp::kConvPool] = 1;
  const kern::ScopedKernelVariants scoped(set);
  const RunResult graph = train_twice(true), eager = train_twice(false);
  EXPECT_EQ(unfused.fused_pairs, 0);
  EXPECT_EQ(graph.fused_pairs, 2);
  EXPECT_EQ(eager.fused_pairs, 2);
  ASSERT_EQ(graph.metrics.size(), eager.metrics.size());
  for (size_t i = 0; i < graph.metrics.size(); ++i) {
    EXPECT_EQ(graph.metrics[i].loss, eager.metrics[i].loss) << i;
    EXPECT_EQ(graph.metrics[i].accuracy, eager.metrics[i].accuracy) << i;
    EXPECT_NEAR(graph.metrics[i].loss, unfused.metrics[i].loss, 1e-4 * unfused.metrics[i].loss)
        << i;
  }
  EXPECT_EQ(graph.params, eager.params);
  EXPECT_EQ(graph.probs, eager.probs);
  EXPECT_EQ(graph.step, 16);
  EXPECT_EQ(graph.graphs, graph.uses_graphs ? 2u : 0u) << "one graph per batch size (64 and 52)";
}

// Batch normalization's moving statistics are updated by the captured step itself: after graph
// replays they (and everything evaluated with them) equal the eager launches' bit for bit.
TEST_F(Cuda, GraphReplayWithBatchNormEqualsEagerLaunchesBitForBit) {
  constexpr std::string_view kSpec = "conv8n,bn,relu,pool,conv16,pool,drop0.25,dense32n,bn,relu";
  const RunResult graph = train_twice(true, 0, 0, -1, kSpec), eager = train_twice(false, 0, 0, -1, kSpec);
  EXPECT_EQ(graph.params, eager.params);
  EXPECT_EQ(graph.probs, eager.probs);
  EXPECT_EQ(graph.graphs, graph.uses_graphs ? 2u : 0u);
  const Graph g = Graph::build(ModelSpec::parse(kSpec));
  const Layer& bn = g.layers()[1];
  int moved = 0;  // from the initial moving_mean 0 and moving_var 1
  for (int64_t k = 0; k < bn.out.c; ++k) {
    moved += graph.params[static_cast<size_t>(bn.stats_offset + k)] != 0.0f;
    moved += graph.params[static_cast<size_t>(bn.stats_offset + bn.out.c + k)] != 1.0f;
  }
  EXPECT_EQ(moved, 2 * bn.out.c);
}

// The learning rate is read from device memory by the captured step: set after the capture, it
// changes what the graph computes exactly as it changes the eager launches.
TEST_F(Cuda, ALearningRateSetAfterCaptureReachesTheGraph) {
  const RunResult graph = train_twice(true, 3e-4), eager = train_twice(false, 3e-4),
                  unchanged = train_twice(true);
  EXPECT_EQ(graph.params, eager.params);
  EXPECT_NE(graph.params, unchanged.params) << "the new rate must change the second epoch";
  EXPECT_EQ(graph.metrics[0].loss, unchanged.metrics[0].loss) << "the first epoch is the same";
  EXPECT_EQ(graph.graphs, graph.uses_graphs ? 2u : 0u) << "no recapture for a new rate";
}

// AdamW's rate is read from device memory the same way: set after the capture, it reaches the
// graph, without a recapture.
TEST_F(Cuda, AdamWeightDecaySetAfterCaptureReachesTheGraph) {
  const RunResult graph = train_twice(true, 0, 0.01, 0.2), eager = train_twice(false, 0, 0.01, 0.2),
                  unchanged = train_twice(true, 0, 0.01);
  EXPECT_EQ(graph.params, eager.params);
  EXPECT_NE(graph.params, unchanged.params) << "the new decay must change the second epoch";
  EXPECT_EQ(graph.metrics[0].loss, unchanged.metrics[0].loss) << "the first epoch is the same";
  EXPECT_EQ(graph.graphs, graph.uses_graphs ? 2u : 0u) << "no recapture for a new decay";
}

// Adam's variant 1 writes the step's alpha and decay into device memory from inside the step, so
// a replayed graph computes them from that replay's step counter, rate and decay: with both
// changed after the capture, the replays equal the eager launches and variant 0, bit for bit.
TEST_F(Cuda, AdamVariant1UnderGraphReplayEqualsVariant0BitForBit) {
  const RunResult v0 = train_twice(true, 3e-4, 0.01, 0.2);
  kern::KernelVariants set;
  set[kern::VariantOp::kAdam] = 1;
  const kern::ScopedKernelVariants scoped(set);
  const RunResult graph = train_twice(true, 3e-4, 0.01, 0.2),
                  eager = train_twice(false, 3e-4, 0.01, 0.2);
  EXPECT_EQ(graph.params, eager.params);
  EXPECT_EQ(graph.params, v0.params);
  EXPECT_EQ(graph.metrics[2].loss, v0.metrics[2].loss);
  EXPECT_EQ(graph.graphs, graph.uses_graphs ? 2u : 0u);
}

TEST_F(Cuda, TrainingStateRoundTripsExactly) {
  const Graph g = Graph::build(ModelSpec::parse("conv4,pool,drop0.25,dense16"));
  const QuadrantData data(300);
  EngineOptions opt;
  opt.batch_size = 50;
  const auto train = iota_indices(0, 300);
  auto straight = make_cuda_engine(g, opt);
  straight->set_dataset(data.dataset());
  straight->train_epoch(train, 0);
  const TrainingState saved = straight->state();
  straight->train_epoch(train, 1);
  auto resumed = make_cuda_engine(g, opt);
  resumed->set_dataset(data.dataset());
  resumed->set_state(saved);
  resumed->train_epoch(train, 1);
  EXPECT_EQ(resumed->step(), straight->step());
  EXPECT_EQ(resumed->parameters(), straight->parameters());
}

// --- the program, in a fresh process -------------------------------------------------------------

namespace fs = std::filesystem;

void write_idx(const fs::path& file, const std::vector<uint32_t>& dims, const uint8_t* data,
               size_t bytes) {
  std::string header{'\0', '\0', '\x08', static_cast<char>(dims.size())};
  for (const uint32_t d : dims) {
    for (int shift = 24; shift >= 0; shift -= 8) header += static_cast<char>((d >> shift) & 0xFF);
  }
  std::ofstream out(file, std::ios::binary);
  out.write(header.data(), static_cast<std::streamsize>(header.size()));
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(bytes));
  ASSERT_TRUE(out.good()) << file;
}

std::string read_text(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// `mnist_gpu train --device cuda` as a user runs it: a fresh process, so the first graph capture
// meets cold kernels and a cold cuBLAS (lazy loading on, as is CUDA's default), on the seed model
// over a small set (350 training images: 5 batches of 64 and one of 30, twice), with graphs and
// without. Both must succeed and agree bit for bit: the checkpoints (weights and Adam moments)
// and history.csv (every loss and accuracy, to the last digit).
TEST_F(Cuda, TrainsInAFreshProcessWithAndWithoutGraphsAlike) {
  const fs::path binary = MNIST_GPU_BINARY;
  ASSERT_TRUE(fs::exists(binary)) << binary << " is missing: build the mnist_gpu target";
  const fs::path dir =
      fs::temp_directory_path() / ("mg_cuda_fresh_process_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir / "data");
  const QuadrantData data(500);  // the "training file" 400 images, the "test file" 100
  write_idx(dir / "data/train-images-idx3-ubyte", {400, 28, 28}, data.images.data(), 400 * 784);
  write_idx(dir / "data/train-labels-idx1-ubyte", {400}, data.labels.data(), 400);
  write_idx(dir / "data/t10k-images-idx3-ubyte", {100, 28, 28}, data.images.data() + 400 * 784,
            100 * 784);
  write_idx(dir / "data/t10k-labels-idx1-ubyte", {100}, data.labels.data() + 400, 100);
  auto train = [&](const std::string& name, const std::string& extra) {
    const fs::path log = dir / (name + ".log");
    const std::string cmd = "CUDA_MODULE_LOADING=LAZY " + binary.string() +
                            " train --device cuda --no-download --data " + (dir / "data").string() +
                            " --epochs 2 --batch-size 64 --out " + (dir / name).string() + " " +
                            extra + " >" + log.string() + " 2>&1 </dev/null";
    const int status = std::system(cmd.c_str());
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << name << ": " << cmd << "\n"
                                                               << read_text(log);
    return read_text(log);
  };
  const std::string graph_log = train("graph", ""), eager_log = train("eager", "--no-cuda-graph");
  for (const std::string* log : {&graph_log, &eager_log}) {
    EXPECT_NE(log->find("device cuda:0 "), std::string::npos) << *log;
    EXPECT_NE(log->find(", fp32"), std::string::npos) << *log;
    EXPECT_NE(log->find("\ntest: loss="), std::string::npos) << *log;
  }
  const std::string ckpt = read_text(dir / "graph/checkpoint.safetensors");
  EXPECT_GT(ckpt.size(), size_t{421642 * 4 * 3}) << "weights and both Adam moments";
  EXPECT_TRUE(ckpt == read_text(dir / "eager/checkpoint.safetensors"))
      << "graph replay and eager launches must train alike, bit for bit";
  const std::string history = read_text(dir / "graph/history.csv");
  EXPECT_EQ(std::count(history.begin(), history.end(), '\n'), 3) << history;
  EXPECT_EQ(history, read_text(dir / "eager/history.csv"));
  EXPECT_NE(read_text(dir / "graph/metrics.json").find("\"precision\": \"fp32\""),
            std::string::npos);
  if (!HasFailure()) fs::remove_all(dir);
}

// --- errors and cuda_usable() (no GPU needed) ----------------------------------------------------

TEST(CudaErrors, ChecksNameTheCallTheErrorAndTheLine) {
  try {
    CUDA_CHECK(cudaErrorInvalidValue);
    FAIL() << "CUDA_CHECK did not throw";
  } catch (const std::runtime_error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("cudaErrorInvalidValue"), std::string::npos) << m;
    EXPECT_NE(m.find("tests/test_cuda.cpp:"), std::string::npos) << m;
  }
  try {
    CUBLAS_CHECK(CUBLAS_STATUS_INVALID_VALUE);
    FAIL() << "CUBLAS_CHECK did not throw";
  } catch (const std::runtime_error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("CUBLAS_STATUS_INVALID_VALUE"), std::string::npos) << m;
    EXPECT_NE(m.find("tests/test_cuda.cpp:"), std::string::npos) << m;
  }
  EXPECT_NO_THROW(CUDA_CHECK(cudaSuccess));
  EXPECT_THROW(cuda::set_max_grid_blocks(0), std::invalid_argument);
}

TEST(CudaUsable, EachCauseGetsAMessageThatSaysWhatToDo) {
  CudaProbe p;
  p.built_architectures = "80,90";
  p.error = "cudaErrorX: text";

  p.status = CudaProbe::Status::kNoDevice;
  EXPECT_EQ(describe_cuda_problem(p).rfind("no CUDA GPU: ", 0), 0u) << describe_cuda_problem(p);

  p.status = CudaProbe::Status::kNoDriver;
  EXPECT_EQ(describe_cuda_problem(p).rfind("no CUDA GPU: no NVIDIA driver", 0), 0u)
      << describe_cuda_problem(p);

  p.status = CudaProbe::Status::kOldDriver;
  p.driver_version = 12040;
  p.runtime_version = 13000;
  const std::string old = describe_cuda_problem(p);
  EXPECT_NE(old.find("CUDA 12.4"), std::string::npos) << old;
  EXPECT_NE(old.find("CUDA 13.0"), std::string::npos) << old;
  EXPECT_NE(old.find("update the NVIDIA driver"), std::string::npos) << old;

  p.status = CudaProbe::Status::kNoKernelImage;
  p.device = "Tesla T4";
  p.major = 7;
  p.minor = 5;
  const std::string arch = describe_cuda_problem(p);
  EXPECT_NE(arch.find("Tesla T4"), std::string::npos) << arch;
  EXPECT_NE(arch.find("sm_75"), std::string::npos) << arch;
  EXPECT_NE(arch.find("sm_80, sm_90"), std::string::npos) << arch;
  EXPECT_NE(arch.find("-DCMAKE_CUDA_ARCHITECTURES=75"), std::string::npos) << arch;

  p.status = CudaProbe::Status::kOtherError;
  EXPECT_EQ(describe_cuda_problem(p), "CUDA is not usable: cudaErrorX: text");
  p.status = CudaProbe::Status::kUsable;
  EXPECT_EQ(describe_cuda_problem(p), "");
}

TEST(CudaUsable, AnswersWithAReasonWhenNot) {
  std::string why = "unchanged";
  const bool usable = cuda_usable(&why);
  if (usable) {
    EXPECT_EQ(why, "");
  } else {
    const bool known = why.rfind("no CUDA GPU: ", 0) == 0 ||
                       why.rfind("the NVIDIA driver is too old", 0) == 0 ||
                       why.rfind("GPU 0 (", 0) == 0 || why.rfind("CUDA is not usable: ", 0) == 0;
    EXPECT_TRUE(known) << why;
  }
  EXPECT_EQ(cuda_usable(nullptr), usable);
}

TEST(CudaUsable, DeviceCudaWithoutAGpuFailsWithTheReason) {
  std::string why;
  if (cuda_usable(&why)) GTEST_SKIP() << "a GPU is usable here";
  const Graph g = Graph::build(ModelSpec::seed());
  try {
    make_engine(Device::kCuda, g, {});
    FAIL() << "make_engine(kCuda) without a GPU did not throw";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(why), std::string::npos) << e.what();
  }
  std::string notice;
  auto e = make_engine(Device::kAuto, g, {}, &notice);
  EXPECT_EQ(e->device_name(), "cpu");
  EXPECT_NE(notice.find(why), std::string::npos) << notice;
}

}  // namespace
}  // namespace mg
