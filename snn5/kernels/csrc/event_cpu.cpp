// Event-driven Linear for spike inputs: the work is proportional to the number of spikes.
//
// Forward: out[r] = bias + sum over the active inputs i of row r of s_ri W^T[i], s_ri = +-1.
// Weight gradient (training): grad_w[:, i] = c * sum over the rows r where input i spiked of
// grad[r]. Only additions and subtractions; the weight rows of silent inputs are never read.
//
// Both are gathers. Each output row has a list of indices (forward: the row's active inputs;
// weight gradient: the rows where the feature spiked), and for each tile of 64 outputs the
// listed 64-float slices of one matrix (W^T [in, out] for the forward, grad [R, out] for the
// weight gradient) are summed in registers: two sets of four 16-float vectors alternate between
// consecutive indices so that the additions do not wait on each other, and nothing is stored
// until the tile's sum is complete. The gathered matrix is read tile-major (each 64-column tile
// contiguous: the weight is packed once per call or cached by the caller, the gradient tile is
// copied per block of rows): a tile of a row-major matrix with a stride of a few KiB maps onto
// a few cache sets only and would not stay in cache. A thread works through one tile for a
// block of rows at a time, so the tile (in x 64 floats, 512 KiB for in = 2048) stays in L2
// while every list of the block reads it. Sums are float32 in a fixed order: the dense product
// up to summation order.

#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

namespace {

// 16 floats (GCC/Clang vector extension; lowered to the widest vectors the target has). The
// unaligned, may_alias twin loads from and stores to float arrays.
typedef float vf __attribute__((vector_size(64)));
typedef float vfu __attribute__((vector_size(64), aligned(4), may_alias));
constexpr int kVec = 16;
constexpr int64_t kTile = 64;  // outputs per tile: 4 vectors

inline vf load(const float* p) { return *reinterpret_cast<const vfu*>(p); }
inline void store(float* p, vf v) { *reinterpret_cast<vfu*>(p) = v; }

// acc[v] (+ or -)= sum over k < n of the 16 floats at base + idx[k] * stride + 16 v.
template <int NV, bool SUB>
inline void gather_add(const int32_t* idx, int64_t n, const float* base, int64_t stride,
                       vf* acc) {
  vf a[NV], b[NV];
  for (int v = 0; v < NV; ++v) a[v] = b[v] = vf{};
  int64_t k = 0;
  for (; k + 1 < n; k += 2) {
    const float* p = base + static_cast<int64_t>(idx[k]) * stride;
    const float* q = base + static_cast<int64_t>(idx[k + 1]) * stride;
    for (int v = 0; v < NV; ++v) {
      a[v] += load(p + kVec * v);
      b[v] += load(q + kVec * v);
    }
  }
  if (k < n) {
    const float* p = base + static_cast<int64_t>(idx[k]) * stride;
    for (int v = 0; v < NV; ++v) a[v] += load(p + kVec * v);
  }
  for (int v = 0; v < NV; ++v) acc[v] = SUB ? acc[v] - (a[v] + b[v]) : acc[v] + (a[v] + b[v]);
}

// out[j] = init[j] + sum of the pos slices - sum of the neg slices, for j < NV * 16.
template <int NV>
inline void tile_vectors(const int32_t* pos, int64_t npos, const int32_t* neg, int64_t nneg,
                         const float* base, int64_t stride, const float* init, float* out) {
  vf acc[NV];
  for (int v = 0; v < NV; ++v) acc[v] = init ? load(init + kVec * v) : vf{};
  gather_add<NV, false>(pos, npos, base, stride, acc);
  if (nneg) gather_add<NV, true>(neg, nneg, base, stride, acc);
  for (int v = 0; v < NV; ++v) store(out + kVec * v, acc[v]);
}

// The same for a tile of len <= kTile columns: whole vectors, then the remainder one by one.
inline void tile_sum(const int32_t* pos, int64_t npos, const int32_t* neg, int64_t nneg,
                     const float* base, int64_t stride, const float* init, float* out,
                     int64_t len) {
  const int nv = static_cast<int>(len / kVec);
  switch (nv) {
    case 4: tile_vectors<4>(pos, npos, neg, nneg, base, stride, init, out); break;
    case 3: tile_vectors<3>(pos, npos, neg, nneg, base, stride, init, out); break;
    case 2: tile_vectors<2>(pos, npos, neg, nneg, base, stride, init, out); break;
    case 1: tile_vectors<1>(pos, npos, neg, nneg, base, stride, init, out); break;
    default: break;
  }
  for (int64_t j = static_cast<int64_t>(nv) * kVec; j < len; ++j) {
    float s = 0.0f, m = 0.0f;
    for (int64_t k = 0; k < npos; ++k) s += base[static_cast<int64_t>(pos[k]) * stride + j];
    for (int64_t k = 0; k < nneg; ++k) m += base[static_cast<int64_t>(neg[k]) * stride + j];
    out[j] = (init ? init[j] : 0.0f) + s - m;
  }
}

// Word w (64 bits, little-endian) of a row of packed bits with `bytes` bytes.
inline uint64_t bit_word(const uint8_t* row, int64_t w, int64_t bytes) {
  uint64_t m = 0;
  std::memcpy(&m, row + w * 8, static_cast<size_t>(std::min<int64_t>(8, bytes - w * 8)));
  return m;
}

// Per-row index lists of a block of rows: row r's positive indices, then its negative ones.
// Rows are collected in fixed chunks (one list buffer per chunk, whatever thread runs it).
struct RowLists {
  std::vector<std::vector<int32_t>> buf;
  std::vector<int64_t> chunk_of, start;
  std::vector<int32_t> npos, nneg;

  // collect(r, list) appends row r's positive indices, then its negative ones, to list and
  // returns how many were negative, or -1 if the row is invalid (which stops the collection).
  template <typename Collect>
  bool build(int64_t rows, const Collect& collect) {
    const int64_t chunks = std::min<int64_t>(rows, 4 * static_cast<int64_t>(at::get_num_threads()));
    buf.resize(static_cast<size_t>(chunks));
    chunk_of.assign(rows, 0);
    start.assign(rows, 0);
    npos.assign(rows, 0);
    nneg.assign(rows, 0);
    std::atomic<bool> ok{true};
    at::parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1 && ok.load(std::memory_order_relaxed); ++c) {
        std::vector<int32_t>& list = buf[c];
        list.clear();
        for (int64_t r = c * rows / chunks; r < (c + 1) * rows / chunks; ++r) {
          const size_t before = list.size();
          const int64_t neg = collect(r, list);
          if (neg < 0) { ok.store(false); return; }
          chunk_of[r] = c;
          start[r] = static_cast<int64_t>(before);
          nneg[r] = static_cast<int32_t>(neg);
          npos[r] = static_cast<int32_t>(list.size() - before) - nneg[r];
        }
      }
    });
    return ok.load();
  }
  const int32_t* pos(int64_t r) const { return buf[chunk_of[r]].data() + start[r]; }
  const int32_t* neg(int64_t r) const { return pos(r) + npos[r]; }
};

// out[r0 + r, :] = bias + the gathered sums of the rows' lists, from the packed weight
// wp [tiles, in, kTile]; split over (tile, part of the block's rows) so that there are at least
// two work items per thread.
void gather_rows(const RowLists& lists, int64_t r0, int64_t nr, const float* wp, int64_t in,
                 int64_t out, const float* bias, float* y) {
  const int64_t tiles = (out + kTile - 1) / kTile;
  const int64_t want = 2 * static_cast<int64_t>(at::get_num_threads());
  const int64_t parts = std::max<int64_t>(1, std::min(nr, (want + tiles - 1) / tiles));
  at::parallel_for(0, tiles * parts, 1, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t o0 = (p % tiles) * kTile, len = std::min(kTile, out - o0);
      const int64_t part = p / tiles;
      for (int64_t r = part * nr / parts; r < (part + 1) * nr / parts; ++r) {
        tile_sum(lists.pos(r), lists.npos[r], lists.neg(r), lists.nneg[r], wp + o0 * in, kTile,
                 bias ? bias + o0 : nullptr, y + (r0 + r) * out + o0, len);
      }
    }
  });
}

constexpr int64_t kRowBlock = 1024;  // forward: rows whose lists share one pass over W^T

std::tuple<torch::Tensor, const float*, const float*> fwd_setup(torch::Tensor packed,
                                                                torch::Tensor bias, int64_t rows,
                                                                int64_t in, int64_t out) {
  TORCH_CHECK(packed.dim() == 3 && packed.scalar_type() == at::kFloat && packed.is_contiguous(),
              "event_linear takes the weight packed by event_pack_weight");
  TORCH_CHECK(packed.size(0) == (out + kTile - 1) / kTile && packed.size(1) == in &&
                  packed.size(2) == kTile,
              "the packed weight does not match [out, in]");
  TORCH_CHECK(in <= std::numeric_limits<int32_t>::max(), "too many input features");
  const bool has_bias = bias.defined() && bias.numel() > 0;
  if (has_bias) {
    TORCH_CHECK(bias.scalar_type() == at::kFloat && bias.is_contiguous() && bias.numel() == out,
                "bias must be a contiguous float32 [out]");
  }
  auto result = torch::empty({rows, out}, packed.options());
  return {result, packed.data_ptr<float>(), has_bias ? bias.data_ptr<float>() : nullptr};
}

}  // namespace

// weight [out, in] float32 -> [ceil(out / 64), in, 64]: each tile of 64 outputs contiguous,
// transposed (the weights of input i for the tile's outputs side by side), zero-padded.
torch::Tensor event_pack_weight(torch::Tensor weight) {
  TORCH_CHECK(weight.dim() == 2 && weight.scalar_type() == at::kFloat,
              "event_pack_weight takes a float32 weight [out, in]");
  auto w = weight.contiguous();
  const int64_t out = w.size(0), in = w.size(1), tiles = (out + kTile - 1) / kTile;
  auto packed = torch::empty({tiles, in, kTile}, w.options());
  const float* src = w.data_ptr<float>();
  float* dst = packed.data_ptr<float>();
  // blocks of 16 inputs x kTile outputs: reads of 16 consecutive floats from each of the tile's
  // rows, writes of 16 whole 64-float rows
  const int64_t iblocks = (in + 15) / 16;
  at::parallel_for(0, tiles * iblocks, 16, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t t = p / iblocks, i0 = (p % iblocks) * 16, ni = std::min<int64_t>(16, in - i0);
      const int64_t o0 = t * kTile, no = std::min(kTile, out - o0);
      float* d = dst + (t * in + i0) * kTile;
      for (int64_t j = 0; j < kTile; ++j) {
        const float* srow = src + (o0 + j) * in + i0;
        for (int64_t i = 0; i < ni; ++i) d[i * kTile + j] = j < no ? srow[i] : 0.0f;
      }
    }
  });
  return packed;
}

// spikes [R, in] float32 in {-1, 0, 1}; packed weight from event_pack_weight; bias [out] or
// empty. Returns (out [R, out], ok): ok is false (out undefined) if some nonzero input is not
// +-1.
std::tuple<torch::Tensor, bool> event_linear_fwd(torch::Tensor spikes, torch::Tensor packed,
                                                 torch::Tensor bias, int64_t out) {
  TORCH_CHECK(spikes.dim() == 2 && spikes.scalar_type() == at::kFloat && spikes.is_contiguous(),
              "event_linear takes contiguous float32 spikes [R, in]");
  const int64_t rows = spikes.size(0), in = spikes.size(1);
  auto [result, wp, b] = fwd_setup(packed, bias, rows, in, out);
  const float* s = spikes.data_ptr<float>();
  float* y = result.data_ptr<float>();
  RowLists lists;
  for (int64_t r0 = 0; r0 < rows; r0 += kRowBlock) {
    const int64_t nr = std::min(kRowBlock, rows - r0);
    const bool ok = lists.build(nr, [&](int64_t r, std::vector<int32_t>& list) -> int64_t {
      const float* sr = s + (r0 + r) * in;
      // 64 inputs at a time: branch-free masks, then the set bits in order; the -1 inputs
      // (rare: signed spikes) are appended after the row's +1 inputs
      std::vector<int32_t> neg;
      for (int64_t i0 = 0; i0 < in; i0 += 64) {
        const int64_t n = std::min<int64_t>(64, in - i0);
        uint64_t mp = 0, mn = 0;
        uint32_t bad = 0;
        for (int64_t j = 0; j < n; ++j) {
          const float v = sr[i0 + j];
          mp |= static_cast<uint64_t>(v == 1.0f) << j;
          mn |= static_cast<uint64_t>(v == -1.0f) << j;
          bad |= static_cast<uint32_t>(v != 0.0f && v != 1.0f && v != -1.0f);
        }
        if (bad) return -1;
        for (; mp; mp &= mp - 1) list.push_back(static_cast<int32_t>(i0 + __builtin_ctzll(mp)));
        for (; mn; mn &= mn - 1) neg.push_back(static_cast<int32_t>(i0 + __builtin_ctzll(mn)));
      }
      list.insert(list.end(), neg.begin(), neg.end());
      return static_cast<int64_t>(neg.size());
    });
    if (!ok) return {torch::Tensor(), false};
    gather_rows(lists, r0, nr, wp, in, out, b, y);
  }
  return {result, true};
}

// The forward from packed bits (uint8 [R, ceil(in / 8)], as pack_spikes makes them): the
// spikes are 1 where a bit is set (training, where the bits are made anyway).
torch::Tensor event_linear_bits(torch::Tensor bits, int64_t in, torch::Tensor packed,
                                torch::Tensor bias, int64_t out) {
  TORCH_CHECK(bits.dim() == 2 && bits.is_contiguous() && bits.scalar_type() == at::kByte,
              "event_linear_bits takes contiguous uint8 bits [R, bytes]");
  const int64_t rows = bits.size(0), bytes = bits.size(1);
  TORCH_CHECK(bytes == (in + 7) / 8, "bits do not match in_features");
  auto [result, wp, b] = fwd_setup(packed, bias, rows, in, out);
  const uint8_t* bp = bits.data_ptr<uint8_t>();
  float* y = result.data_ptr<float>();
  const int64_t words = (in + 63) / 64;
  RowLists lists;
  for (int64_t r0 = 0; r0 < rows; r0 += kRowBlock) {
    const int64_t nr = std::min(kRowBlock, rows - r0);
    lists.build(nr, [&](int64_t r, std::vector<int32_t>& list) -> int64_t {
      const uint8_t* row = bp + (r0 + r) * bytes;
      for (int64_t w = 0; w < words; ++w) {
        for (uint64_t m = bit_word(row, w, bytes); m; m &= m - 1) {
          list.push_back(static_cast<int32_t>(64 * w + __builtin_ctzll(m)));
        }
      }
      return 0;
    });
    gather_rows(lists, r0, nr, wp, in, out, b, y);
  }
  return result;
}

// Weight gradient of a Linear fed by spikes, from the packed input bits:
// grad_w[o, i] = c * sum over the rows r with bit (r, i) set of grad[r, o].
//
// Rows are taken in blocks of kRowBlockGrad (the block's 64-column tile of grad, 512 KiB, stays
// in L2). For a block, the rows where each feature spiked are listed (counted, then filled, in
// parallel over ranges of features); then, per (64-output tile, range of features), each
// feature's listed gradient slices are summed in registers and the sum is written to column i
// of grad_w (added from the second block on). The block's gradient tile is first copied to a
// contiguous buffer (see the top of the file).
constexpr int64_t kRowBlockGrad = 2048;

torch::Tensor event_weight_grad(torch::Tensor bits, torch::Tensor grad, int64_t in, double c) {
  TORCH_CHECK(bits.dim() == 2 && bits.is_contiguous() && bits.scalar_type() == at::kByte,
              "event_weight_grad takes contiguous uint8 bits [R, bytes]");
  TORCH_CHECK(grad.dim() == 2 && grad.is_contiguous() && grad.scalar_type() == at::kFloat,
              "event_weight_grad takes a contiguous float32 grad [R, out]");
  const int64_t rows = grad.size(0), out = grad.size(1), bytes = bits.size(1);
  TORCH_CHECK(bits.size(0) == rows && bytes == (in + 7) / 8, "bits do not match grad / in");
  TORCH_CHECK(rows <= std::numeric_limits<int32_t>::max(), "too many rows");
  auto result = torch::empty({out, in}, grad.options());
  if (rows == 0) return result.zero_();
  const uint8_t* bp = bits.data_ptr<uint8_t>();
  const float* g = grad.data_ptr<float>();
  float* gw = result.data_ptr<float>();
  const float value = static_cast<float>(c);
  const int64_t words = (in + 63) / 64, tiles = (out + kTile - 1) / kTile;
  const int64_t threads = at::get_num_threads();
  const int64_t wchunks = std::max<int64_t>(1, std::min(words, 4 * threads));
  const int64_t want = 2 * threads;
  const int64_t fparts = std::max<int64_t>(1, std::min(in, (want + tiles - 1) / tiles));
  std::vector<int64_t> offset(static_cast<size_t>(in) + 1);
  std::vector<int32_t> list;

  for (int64_t r0 = 0; r0 < rows; r0 += kRowBlockGrad) {
    const int64_t nr = std::min(kRowBlockGrad, rows - r0);
    // count, per feature, the rows of the block where it spiked; then list them in row order
    std::fill(offset.begin(), offset.end(), 0);
    auto scan = [&](auto&& visit) {
      at::parallel_for(0, wchunks, 1, [&](int64_t c0, int64_t c1) {
        for (int64_t ch = c0; ch < c1; ++ch) {
          const int64_t w0 = ch * words / wchunks, w1 = (ch + 1) * words / wchunks;
          for (int64_t r = 0; r < nr; ++r) {
            const uint8_t* row = bp + (r0 + r) * bytes;
            for (int64_t w = w0; w < w1; ++w) {
              for (uint64_t m = bit_word(row, w, bytes); m; m &= m - 1) {
                visit(64 * w + __builtin_ctzll(m), r);   // r within the block
              }
            }
          }
        }
      });
    };
    scan([&](int64_t i, int64_t) { ++offset[i + 1]; });
    for (int64_t i = 0; i < in; ++i) offset[i + 1] += offset[i];
    list.resize(static_cast<size_t>(offset[in]));
    std::vector<int64_t> cursor(offset.begin(), offset.end() - 1);
    scan([&](int64_t i, int64_t r) { list[cursor[i]++] = static_cast<int32_t>(r); });

    const bool first = r0 == 0;
    at::parallel_for(0, tiles * fparts, 1, [&](int64_t p0, int64_t p1) {
      alignas(64) float sum[kTile];
      std::vector<float> tile(static_cast<size_t>(nr * kTile));   // grad[block, tile], packed
      for (int64_t p = p0; p < p1; ++p) {
        const int64_t o0 = (p % tiles) * kTile, len = std::min(kTile, out - o0);
        const int64_t part = p / tiles;
        for (int64_t r = 0; r < nr; ++r) {
          std::memcpy(tile.data() + r * kTile, g + (r0 + r) * out + o0,
                      static_cast<size_t>(len) * sizeof(float));
        }
        for (int64_t i = part * in / fparts; i < (part + 1) * in / fparts; ++i) {
          tile_sum(list.data() + offset[i], offset[i + 1] - offset[i], nullptr, 0, tile.data(),
                   kTile, nullptr, sum, len);
          float* col = gw + o0 * in + i;
          if (first) {
            for (int64_t j = 0; j < len; ++j) col[j * in] = value * sum[j];
          } else {
            for (int64_t j = 0; j < len; ++j) col[j * in] += value * sum[j];
          }
        }
      }
    });
  }
  return result;
}
