// Event-driven Linear for spike inputs (inference): out[r] = bias + sum over active inputs i of
// s_ri * W^T[i], with s_ri in {-1, +1}. Only additions and subtractions: the weight rows of
// inputs that did not spike are never read, so the work scales with the number of spikes.
//
// Rows of the input are processed in blocks of 64. For a block, one pass over its inputs builds
// a 64-bit mask per input feature i (bit r set when row r spiked at i; a second mask for -1) and
// checks that every nonzero is +-1. Then, per block of kOut outputs, the weight rows W^T[i] of
// features with a nonzero mask are streamed in order (sequential reads) and added to the
// accumulators of the rows in the mask; the 64 x kOut accumulator tile stays in L1. Sums are
// float32 in feature order, so results equal the dense product up to summation order.

#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

constexpr int64_t kRows = 64;   // rows per block: one bit each in a uint64 mask
constexpr int64_t kOut = 64;    // outputs per tile: 64 x 64 float32 accumulators = 16 KiB

// Adds (or subtracts) weight rows into the tile for the rows set in each mask.
template <bool NEG>
inline void accumulate(const uint64_t* mask, int64_t in, const float* wt, int64_t out,
                       int64_t o0, int64_t len, float (*acc)[kOut]) {
  for (int64_t i = 0; i < in; ++i) {
    uint64_t m = mask[i];
    if (!m) continue;
    const float* w = wt + i * out + o0;
    if (len == kOut) {
      float wv[kOut];
      std::memcpy(wv, w, sizeof(wv));
      while (m) {
        const int r = __builtin_ctzll(m);
        m &= m - 1;
#pragma GCC unroll 64
        for (int64_t j = 0; j < kOut; ++j) acc[r][j] = NEG ? acc[r][j] - wv[j] : acc[r][j] + wv[j];
      }
    } else {
      while (m) {
        const int r = __builtin_ctzll(m);
        m &= m - 1;
        for (int64_t j = 0; j < len; ++j) acc[r][j] = NEG ? acc[r][j] - w[j] : acc[r][j] + w[j];
      }
    }
  }
}

}  // namespace

// spikes [R, in] float32 in {-1, 0, 1}; weight_t [in, out] float32; bias [out] or empty.
// Returns (out [R, out], ok): ok is false (out undefined) if some nonzero input is not +-1.
std::tuple<torch::Tensor, bool> event_linear_fwd(torch::Tensor spikes, torch::Tensor weight_t,
                                                 torch::Tensor bias) {
  TORCH_CHECK(spikes.dim() == 2 && weight_t.dim() == 2, "spikes [R, in], weight_t [in, out]");
  TORCH_CHECK(spikes.scalar_type() == at::kFloat && weight_t.scalar_type() == at::kFloat,
              "event_linear takes float32");
  TORCH_CHECK(spikes.is_contiguous() && weight_t.is_contiguous(), "contiguous inputs");
  const int64_t rows = spikes.size(0), in = spikes.size(1), out = weight_t.size(1);
  TORCH_CHECK(weight_t.size(0) == in, "weight_t must be [in, out]");
  const bool has_bias = bias.defined() && bias.numel() > 0;
  auto result = torch::empty({rows, out}, spikes.options());
  const float* s = spikes.data_ptr<float>();
  const float* wt = weight_t.data_ptr<float>();
  const float* b = has_bias ? bias.data_ptr<float>() : nullptr;
  float* y = result.data_ptr<float>();
  std::atomic<bool> ok{true};
  const int64_t blocks = (rows + kRows - 1) / kRows;

  at::parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
    std::vector<uint64_t> plus(in), minus(in);
    alignas(64) float acc[kRows][kOut];
    for (int64_t blk = b0; blk < b1 && ok.load(std::memory_order_relaxed); ++blk) {
      const int64_t r0 = blk * kRows, nr = std::min(kRows, rows - r0);
      std::fill(plus.begin(), plus.end(), 0);
      std::fill(minus.begin(), minus.end(), 0);
      bool any_minus = false;
      for (int64_t r = 0; r < nr; ++r) {
        const float* sr = s + (r0 + r) * in;
        const uint64_t bit = uint64_t{1} << r;
        for (int64_t i = 0; i < in; ++i) {
          const float v = sr[i];
          plus[i] |= (v == 1.0f) ? bit : 0;
          if (v != 0.0f && v != 1.0f) {
            if (v != -1.0f) { ok.store(false); return; }
            minus[i] |= bit;
            any_minus = true;
          }
        }
      }
      for (int64_t o0 = 0; o0 < out; o0 += kOut) {
        const int64_t len = std::min(kOut, out - o0);
        for (int64_t r = 0; r < nr; ++r)
          for (int64_t j = 0; j < len; ++j) acc[r][j] = b ? b[o0 + j] : 0.0f;
        accumulate<false>(plus.data(), in, wt, out, o0, len, acc);
        if (any_minus) accumulate<true>(minus.data(), in, wt, out, o0, len, acc);
        for (int64_t r = 0; r < nr; ++r)
          std::memcpy(y + (r0 + r) * out + o0, acc[r], static_cast<size_t>(len) * sizeof(float));
      }
    }
  });
  return {ok.load() ? result : torch::Tensor(), ok.load()};
}
