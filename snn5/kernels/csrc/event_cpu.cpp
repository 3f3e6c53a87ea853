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

// Weight gradient of a Linear fed by spikes, from the packed input bits (training):
// grad_w[o, i] = c * sum over rows r with bit (r, i) set of grad[r, o]. The work is one addition
// per (spike, output) instead of a dense R x in x out product.
//
// The [in, out] gradient is cut into tiles of kOut outputs by (up to) all input features, split
// across threads (features are split too when there are fewer output tiles than threads). For a
// tile, each row's kOut gradient values are read once and added to the accumulator rows of the
// row's active features, found 64 at a time from the packed bytes (little-endian: bit j of byte
// k is feature 8k + j). The accumulator (features x kOut floats, 512 KiB for 2048 features)
// stays in L2, and the gradient is read once per output tile. The tile is written transposed
// and scaled by c. Sums are float32 in row order: the dense result up to summation order.
torch::Tensor event_weight_grad(torch::Tensor bits, torch::Tensor grad, int64_t in, double c) {
  TORCH_CHECK(bits.dim() == 2 && bits.is_contiguous() && bits.scalar_type() == at::kByte,
              "event_weight_grad takes contiguous uint8 bits [R, bytes]");
  TORCH_CHECK(grad.dim() == 2 && grad.is_contiguous() && grad.scalar_type() == at::kFloat,
              "event_weight_grad takes a contiguous float32 grad [R, out]");
  const int64_t rows = grad.size(0), out = grad.size(1), bytes = bits.size(1);
  TORCH_CHECK(bits.size(0) == rows && bytes == (in + 7) / 8, "bits do not match grad / in");
  auto result = torch::empty({out, in}, grad.options());
  const uint8_t* b = bits.data_ptr<uint8_t>();
  const float* g = grad.data_ptr<float>();
  float* gw = result.data_ptr<float>();
  const float value = static_cast<float>(c);
  const int64_t otiles = (out + kOut - 1) / kOut, words = (in + 63) / 64;
  // feature chunks (multiples of 64) so that there are at least two work items per thread
  const int64_t want = 2 * static_cast<int64_t>(at::get_num_threads());
  const int64_t ichunks = std::max<int64_t>(1, std::min(words, (want + otiles - 1) / otiles));
  const int64_t chunk_words = (words + ichunks - 1) / ichunks;

  at::parallel_for(0, otiles * ichunks, 1, [&](int64_t p0, int64_t p1) {
    std::vector<float> acc_buf(static_cast<size_t>(chunk_words * 64 * kOut));
    float (*acc)[kOut] = reinterpret_cast<float (*)[kOut]>(acc_buf.data());
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t o0 = (p % otiles) * kOut, no = std::min(kOut, out - o0);
      const int64_t w0 = (p / otiles) * chunk_words, w1 = std::min(words, w0 + chunk_words);
      if (w0 >= w1) continue;
      const int64_t i0 = w0 * 64, ni = std::min(in, w1 * 64) - i0;
      std::fill(acc_buf.begin(), acc_buf.begin() + ni * kOut, 0.0f);
      for (int64_t r = 0; r < rows; ++r) {
        const uint8_t* br = b + r * bytes;
        const float* gr = g + r * out + o0;
        float gv[kOut];
        bool loaded = false;
        for (int64_t w = w0; w < w1; ++w) {
          uint64_t m = 0;
          std::memcpy(&m, br + w * 8, static_cast<size_t>(std::min<int64_t>(8, bytes - w * 8)));
          if (!m) continue;
          if (!loaded) {
            std::memcpy(gv, gr, static_cast<size_t>(no) * sizeof(float));
            std::fill(gv + no, gv + kOut, 0.0f);
            loaded = true;
          }
          float (*a)[kOut] = acc + (w - w0) * 64;
          while (m) {
            const int i = __builtin_ctzll(m);
            m &= m - 1;
#pragma GCC unroll 64
            for (int64_t j = 0; j < kOut; ++j) a[i][j] += gv[j];
          }
        }
      }
      for (int64_t j = 0; j < no; ++j) {
        float* row = gw + (o0 + j) * in + i0;
        for (int64_t i = 0; i < ni; ++i) row[i] = value * acc[i][j];
      }
    }
  });
  return result;
}
