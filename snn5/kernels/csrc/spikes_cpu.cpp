// Spike tensors stored as bits: a Linear fed by spikes keeps its input for the weight gradient
// as 1 bit per element instead of 4 bytes. Values may be 0 or one common nonzero value c (1 for
// spikes, 1 / (1 - p) after dropout); pack_spikes checks this in the same pass that packs
// (little-endian bit order within a byte) and returns c.

#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <vector>

// x [R, in] float32 or bfloat16 -> (bits uint8 [R, ceil(in / 8)], ok, c, count of nonzeros).
// Each thread takes the first nonzero it meets as c and checks the rest of its rows against it
// (a branch-free loop over groups of 8, which the compiler vectorises); the threads' values must
// then agree.
std::tuple<torch::Tensor, bool, double, int64_t> pack_spikes(torch::Tensor x) {
  TORCH_CHECK(x.dim() == 2 && x.is_contiguous(), "pack_spikes takes a contiguous [R, in] tensor");
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16,
              "pack_spikes takes float32 or bfloat16");
  const int64_t rows = x.size(0), in = x.size(1), bytes = (in + 7) / 8;
  auto bits = torch::empty({rows, bytes}, x.options().dtype(torch::kUInt8));
  uint8_t* out = bits.data_ptr<uint8_t>();
  std::atomic<bool> ok{true};
  std::atomic<int64_t> count{0};
  const size_t slots = static_cast<size_t>(at::get_num_threads()) + 1;
  std::vector<float> found(slots, 0.0f);
  auto run = [&](auto* data) {
    at::parallel_for(0, rows, 64, [&](int64_t r0, int64_t r1) {
      float value = 0.0f;
      int64_t nnz = 0;
      for (int64_t r = r0; r < r1 && ok.load(std::memory_order_relaxed); ++r) {
        const auto* xr = data + r * in;
        uint8_t* br = out + r * bytes;
        if (value == 0.0f) {
          for (int64_t i = 0; i < in; ++i) {
            const float v = static_cast<float>(xr[i]);
            if (v != 0.0f) { value = v; break; }
          }
        }
        uint32_t bad = 0;
        // byte k from n <= 8 values; branch-free, so the full bytes' loop vectorises
        auto pack = [&](int64_t k, int64_t n) {
          uint32_t byte = 0;
          for (int64_t j = 0; j < n; ++j) {
            const float v = static_cast<float>(xr[8 * k + j]);
            const uint32_t nz = v != 0.0f;
            byte |= nz << j;
            bad |= nz & static_cast<uint32_t>(v != value);
          }
          br[k] = static_cast<uint8_t>(byte);
          nnz += __builtin_popcount(byte);
        };
        const int64_t full = in / 8;
        for (int64_t k = 0; k < full; ++k) pack(k, 8);
        if (full < bytes) pack(full, in - 8 * full);
        if (bad) ok.store(false);
      }
      count.fetch_add(nnz);
      const size_t slot = static_cast<size_t>(at::get_thread_num());
      if (value != 0.0f) {
        if (found[slot] != 0.0f && found[slot] != value) ok.store(false);
        found[slot] = value;
      }
    });
  };
  if (x.scalar_type() == at::kFloat) run(x.data_ptr<float>());
  else run(x.data_ptr<c10::BFloat16>());
  float c = 0.0f;
  for (float v : found) {
    if (v == 0.0f) continue;
    if (c != 0.0f && v != c) ok.store(false);
    c = v;
  }
  if (!std::isfinite(c)) ok.store(false);  // unpack multiplies bits by c: inf * 0 would be NaN
  return {bits, ok.load(), c == 0.0f ? 1.0 : static_cast<double>(c), count.load()};
}

// bits uint8 [R, ceil(in / 8)] -> [R, in] of dtype (0 or c)
torch::Tensor unpack_spikes(torch::Tensor bits, int64_t in, double c, at::ScalarType dtype) {
  TORCH_CHECK(bits.dim() == 2 && bits.is_contiguous() && bits.scalar_type() == at::kByte,
              "unpack_spikes takes contiguous uint8 [R, bytes]");
  const int64_t rows = bits.size(0), bytes = bits.size(1);
  TORCH_CHECK(bytes == (in + 7) / 8, "bits do not match in_features");
  auto x = torch::empty({rows, in}, bits.options().dtype(dtype));
  const uint8_t* b = bits.data_ptr<uint8_t>();
  const float value = static_cast<float>(c);
  auto run = [&](auto* data) {
    at::parallel_for(0, rows, 64, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        auto* xr = data + r * in;
        const uint8_t* br = b + r * bytes;
        // byte by byte, eight branch-free stores each: the compiler vectorises the full bytes
        const int64_t full = in / 8;
        for (int64_t k = 0; k < full; ++k) {
          const uint32_t byte = br[k];
          for (int j = 0; j < 8; ++j) xr[8 * k + j] = static_cast<float>((byte >> j) & 1u) * value;
        }
        for (int64_t i = 8 * full; i < in; ++i) {
          xr[i] = static_cast<float>((br[i >> 3] >> (i & 7)) & 1u) * value;
        }
      }
    });
  };
  if (dtype == at::kFloat) run(x.data_ptr<float>());
  else if (dtype == at::kBFloat16) run(x.data_ptr<c10::BFloat16>());
  else TORCH_CHECK(false, "unpack_spikes makes float32 or bfloat16");
  return x;
}
