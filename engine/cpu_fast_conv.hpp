// The CPU backend's fast convolutions (float): a direct convolution instead of im2col + GEMM, and
// the convolution fused with the 2x2 max-pool after it. engine/cpu_ops.hpp stays the
// specification; tests/test_cpu_fast.cpp checks these against it at the seed model's shapes and
// odd ones. docs/performance.md ("The CPU backend") says why each piece is shaped as it is.
//
// Forward. Each image's input is copied once into a zero-bordered, channel-last tile (NHWC, in L1
// or L2), and a register-blocked kernel computes a few output pixels for 16 to 64 output channels
// at a time: z[pixel][co] = sum over (ky, kx, ci) of x[pixel + (ky, kx)][ci] * w[co][ci][ky][kx].
// No column matrix is written (conv2d_1's would be 29 MB at batch 128). An epilogue adds the bias,
// applies the ReLU and either writes the NCHW output or, fused, the 2x2 max-pool's output and
// argmax (the first maximum in row-major order, as cpu::maxpool2x2_forward) without writing the
// convolution's output at all.
//
// Backward of the fused conv + pool. After a 2x2 max-pool, at most one pixel in four of the
// convolution's output gradient is non-zero (the window's winner, and only where the ReLU let it
// through: pooled > 0). The fused backward visits only those: for each non-zero (co, pixel, g)
//   dw[co][:]  += g * column(pixel)     (the pixel's receptive field: K x K x C_in inputs)
//   dx[field(pixel)] += g * w[co][:]    (skipped for the first layer, which needs no dx)
//   db[co]     += g
// with the accumulators held in registers across a channel's (or a pixel's) list. A quarter of
// the dense GEMMs' FLOPs at most, and no permuted gradient, column matrix or col2im pass.
//
// Determinism: the images are split into at most kMaxChunks chunks fixed by the batch size alone;
// each chunk's weight and bias gradients are summed in a fixed order and the chunks' partial sums
// are added in chunk order. The result is therefore the same at any thread count.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/cpu_ops.hpp"

namespace mg::cpu::fast {

// The fused and direct paths take K x K convolutions (any odd K the spec allows, 'same' or
// 'valid') whose output channels are a multiple of 16 and whose per-chunk sizes fit 32-bit
// indices; anything else takes the reference path (engine/cpu_ops.hpp).
bool conv_supported(const ConvDims& d);

// Scratch the fast convolutions reuse from call to call: reordered weights, per-thread tiles and
// lists, per-chunk partial gradients. It grows to the largest call it has seen and then no longer
// allocates.
class ConvWorkspace {
 public:
  struct Thread {
    std::vector<float> tile;    // the image's channel-last, zero-bordered input (backward,
                                // narrow layers: its column matrix, [pixel][k padded])
    std::vector<float> out;     // forward: the image's output, [pixel][c_out]
    std::vector<float> dtile;   // backward: d(tile) of one image (narrow layers: first the tile)
    std::vector<float> row;     // backward, narrow layers: one pixel's d(column)
    std::vector<int32_t> off;   // backward: list entries' source offsets
    std::vector<float> g;       // backward: list entries' gradients
    std::vector<int32_t> start; // backward: where each channel's (or pixel's) list starts
  };
  std::vector<Thread> threads;
  std::vector<float> w_kc;      // forward weights, [k][c_out], k = (ky*K + kx)*C_in + ci
  std::vector<float> w_ck;      // backward weights, [c_out][k padded]
  std::vector<float> dw_parts;  // per chunk: [c_out][k padded]
  std::vector<float> db_parts;  // per chunk: [c_out]
  std::vector<int32_t> base;    // each output pixel's offset in the tile (its field's start)
};

// The most chunks a batch is split into for the backward's partial sums (fixed, so the result
// does not depend on the thread count).
inline constexpr int64_t kMaxChunks = 32;

// y = act(conv(x, w) + b), NCHW. conv_supported(d) must hold.
void conv_forward(const float* x, const float* w, const float* b, bool relu, const ConvDims& d,
                  float* y, ConvWorkspace& ws);

// pooled = maxpool2x2(act(conv(x, w) + b)) and its argmax ([n, c_out, oh/2, ow/2], offsets into
// the convolution's output plane, as cpu::maxpool2x2_forward writes them). The convolution's own
// output is not written. conv_supported(d) must hold.
void conv_pool_forward(const float* x, const float* w, const float* b, bool relu,
                       const ConvDims& d, float* pooled, int32_t* argmax, ConvWorkspace& ws);

// The backward of conv_pool_forward from the pooled output's gradient dpooled: dw, db and, when
// dx is not null, dx (all overwritten). pooled and argmax are the forward's; with relu, a window
// whose pooled value is not positive passes no gradient (the ReLU's mask at its winner).
void conv_pool_backward(const float* x, const float* w, const float* pooled,
                        const float* dpooled, const int32_t* argmax, bool relu,
                        const ConvDims& d, float* dx, float* dw, float* db, ConvWorkspace& ws);

}  // namespace mg::cpu::fast
