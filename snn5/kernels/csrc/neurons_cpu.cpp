// Fused multi-step neuron kernels for the CPU: the time loop runs inside the kernel, neurons are
// split into chunks across threads (at::parallel_for), and each chunk's state stays in cache.
//
// Parity contract with snn5/core/neurons.py (the reference): the forward performs the same
// floating-point operations in the same order, rounding to the storage dtype after every
// operation as PyTorch's elementwise ops do (a no-op for float32, round-to-nearest-even for
// bfloat16), so spikes are bitwise identical. Built with -ffp-contract=off: a fused
// multiply-add would change the rounding. The backward computes in float32 (gradients are
// compared within tolerances).
//
// Families: IF (h = v + x), LIF / PLIF (h = beta v + omb x; omb = 1 - beta as the reference
// rounds it), ALIF (adaptive threshold A = v_th + b a, a <- rho a + (1 - rho) z).
// Saved for the backward: the pre-reset membrane h[T, N] (and a[T, N] before each step for
// ALIF, x[T, N] when the PLIF decay needs a gradient); spikes are recomputed from h exactly.

#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

enum Surrogate { ATAN = 0, SIGMOID = 1, FAST_SIGMOID = 2, TRIANGLE = 3, RECTANGLE = 4 };
enum Reset { SUBTRACT = 0, ZERO = 1, NONE = 2 };
constexpr float kPi = 3.14159265358979323846f;
constexpr int64_t kGrain = 2048;  // neurons per block: a block's state stays in L1

// Runs f(b0, b1) over blocks of at most kGrain neurons, the blocks split across threads. Kernels
// pass lambdas that capture by value: a float captured by reference may alias the output
// stores, which keeps the compiler from vectorising the inner loops.
template <typename F>
inline void for_blocks(int64_t n, const F& f) {
  at::parallel_for(0, n, kGrain, [&f](int64_t n0, int64_t n1) {
    for (int64_t b0 = n0; b0 < n1; b0 += kGrain) f(b0, std::min(b0 + kGrain, n1));
  });
}

template <typename T> inline float rnd(float v);
template <> inline float rnd<float>(float v) { return v; }
template <> inline float rnd<c10::BFloat16>(float v) {
  return static_cast<float>(c10::BFloat16(v));
}

// exp(x) for the surrogate gradients, written so that the compiler vectorises the loops that
// call it (std::exp stays a scalar libm call): Cody-Waite range reduction x = n ln2 + r and a
// degree-5 polynomial for exp(r) on |r| <= ln2 / 2 (the Cephes expf coefficients), within 2 ulp
// of expf on the clamped range [-87, 88]. Used only in backward passes (gradients are compared
// within tolerances); the forward never calls it.
inline float exp_vec(float x) {
  x = std::min(std::max(x, -87.0f), 88.0f);
  // round to nearest by adding and subtracting 1.5 * 2^23 (|x log2 e| < 2^22); std::nearbyint
  // would be a library call that blocks vectorisation
  const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;  // 2^n, n in [-126, 127]
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

// d primitive / du and d primitive / d width of each surrogate (see core/surrogate.py).
template <int S> inline float sg_grad(float u, float w) {
  if constexpr (S == ATAN) {
    const float k = 0.5f * kPi * w * u;
    return 0.5f * w / (1.0f + k * k);
  } else if constexpr (S == SIGMOID) {
    const float s = 1.0f / (1.0f + exp_vec(-w * u));
    return w * s * (1.0f - s);
  } else if constexpr (S == FAST_SIGMOID) {
    const float d = 1.0f + w * std::fabs(u);
    return 0.5f * w / (d * d);
  } else if constexpr (S == TRIANGLE) {
    const float r = 1.0f - std::fabs(u) / w;
    return r > 0.0f ? r / w : 0.0f;
  } else {
    return std::fabs(u) < 0.5f * w ? 1.0f / w : 0.0f;
  }
}

template <int S> inline float sg_dwidth(float u, float w) {
  if constexpr (S == ATAN) {
    const float k = 0.5f * kPi * w * u;
    return 0.5f * u / (1.0f + k * k);
  } else if constexpr (S == SIGMOID) {
    const float s = 1.0f / (1.0f + exp_vec(-w * u));
    return u * s * (1.0f - s);
  } else if constexpr (S == FAST_SIGMOID) {
    const float d = 1.0f + w * std::fabs(u);
    return 0.5f * u / (d * d);
  } else if constexpr (S == TRIANGLE) {
    const float a = std::fabs(u) / w;
    return a < 1.0f ? -(1.0f - a) * u / (w * w) : 0.0f;
  } else {
    // inclusive bound: the reference differentiates clamp(u / w + 1/2, 0, 1), whose backward
    // passes the gradient at the bounds
    return std::fabs(u) <= 0.5f * w ? -u / (w * w) : 0.0f;
  }
}

// A [T, N] incoming gradient read row by row without a copy: rows may repeat (step stride 0, as
// for the gradient of a mean over steps) and a row may be one value broadcast over the neurons
// (as for the gradient of a sum).
template <typename T>
struct GradRows {
  const T* data;
  int64_t step_stride;
  bool bcast;
  // Row t of the block [n0, n0 + len): a pointer into data, or scratch filled with the value.
  const T* row(int64_t t, int64_t n0, int64_t len, T* scratch) const {
    const T* r = data + t * step_stride;
    if (!bcast) return r + n0;
    std::fill(scratch, scratch + len, r[0]);
    return scratch;
  }
};

// Per-thread partial sums of the scalar parameter gradients.
struct Partials {
  explicit Partials(int n) : v(static_cast<size_t>(n) * 4, 0.0) {}
  double* at(int thread) { return v.data() + static_cast<size_t>(thread) * 4; }
  double sum(int k) const {
    double s = 0.0;
    for (size_t i = k; i < v.size(); i += 4) s += v[i];
    return s;
  }
  std::vector<double> v;
};

// Parameter-gradient terms are accumulated per neuron in float (a vectorisable loop, no
// cross-lane reduction), then summed over the chunk's neurons in double.
inline double chunk_sum(const std::vector<float>& acc) {
  double s = 0.0;
  for (float a : acc) s += a;
  return s;
}

// ------------------------------------------------------------------ IF / LIF / PLIF forward
template <typename T, bool IS_IF, int RESET, bool SAVE>
void leaky_forward(const T* x, const T* v0, T* z, T* h_out, T* v_out, int64_t steps, int64_t n,
                   float beta, float omb, float v_th) {
  for_blocks(n, [=](int64_t n0, int64_t n1) {
    const int64_t len = n1 - n0;
    std::vector<float> v(len);
    for (int64_t i = 0; i < len; ++i) v[i] = static_cast<float>(v0[n0 + i]);
    for (int64_t t = 0; t < steps; ++t) {
      const T* xt = x + t * n + n0;
      T* zt = z + t * n + n0;
      T* ht = SAVE ? h_out + t * n + n0 : nullptr;
      for (int64_t i = 0; i < len; ++i) {
        const float xi = static_cast<float>(xt[i]);
        float h;
        if constexpr (IS_IF) {
          h = rnd<T>(v[i] + xi);
        } else {
          h = rnd<T>(rnd<T>(beta * v[i]) + rnd<T>(omb * xi));
        }
        const float s = rnd<T>(h - v_th) >= 0.0f ? 1.0f : 0.0f;
        float vn;
        if constexpr (RESET == SUBTRACT) {
          vn = rnd<T>(h - rnd<T>(s * v_th));
        } else if constexpr (RESET == ZERO) {
          vn = rnd<T>(h * (1.0f - s));
        } else {
          vn = h;
        }
        v[i] = vn;
        zt[i] = static_cast<T>(s);
        if constexpr (SAVE) ht[i] = static_cast<T>(h);
      }
    }
    for (int64_t i = 0; i < len; ++i) v_out[n0 + i] = static_cast<T>(v[i]);
  });
}

// The membrane after the reset of step t, recomputed from the saved h exactly as the forward.
template <typename T, int RESET>
inline float after_reset(float h, float v_th) {
  const float s = rnd<T>(h - v_th) >= 0.0f ? 1.0f : 0.0f;
  if constexpr (RESET == SUBTRACT) return rnd<T>(h - rnd<T>(s * v_th));
  else if constexpr (RESET == ZERO) return rnd<T>(h * (1.0f - s));
  else return h;
}

// ------------------------------------------------------------------ IF / LIF / PLIF backward
// grads: [0] v_th, [1] d/d beta (sum gh * v_prev), [2] width, [3] d/d omb (sum gh * x).
// PARAMS: the scalar-parameter gradients are wanted (v_th and width always, beta and omb when x
// is given); without it the loop is a pure per-neuron recurrence.
// The gradient through one step's fire-and-reset, shared by the leaky and ALIF backwards: from
// the incoming spike gradient gzi and the membrane gradient g of the next step, the gradient of
// the pre-reset membrane gh and of the threshold thr (dthr). gzi is updated in place (the reset
// term, scaled by keep = 0 when the reset is detached) because the width gradient uses it.
template <int RESET, int S>
inline void through_reset(float& gzi, float g, float h, float thr, float s, float u, float width,
                          float keep, float& gh, float& dthr) {
  if constexpr (RESET == SUBTRACT) {
    gzi -= keep * (g * thr);
    const float gu = gzi * sg_grad<S>(u, width);
    gh = g + gu;
    dthr = -gu - g * s;
  } else if constexpr (RESET == ZERO) {
    gzi -= keep * (g * h);
    const float gu = gzi * sg_grad<S>(u, width);
    gh = g * (1.0f - s) + gu;
    dthr = -gu;
  } else {
    const float gu = gzi * sg_grad<S>(u, width);
    gh = g + gu;
    dthr = -gu;
  }
}

// One step of the backward over a block of neurons. The restrict-qualified pointers (distinct
// buffers) let the compiler vectorise without runtime alias checks, which it gives up on when
// there are many pointers.
template <typename T, bool IS_IF, int RESET, int S, bool PARAMS>
inline void leaky_backward_step(const T* __restrict__ ht, const T* __restrict__ gzt,
                                T* __restrict__ gxt, float* __restrict__ g,
                                float* __restrict__ acc_th, float* __restrict__ acc_w,
                                float* __restrict__ gh_step, int64_t len, float beta, float omb,
                                float v_th, float width, float keep) {
  for (int64_t i = 0; i < len; ++i) {
    const float hi = static_cast<float>(ht[i]);
    const float u = rnd<T>(hi - v_th);
    const float s = u >= 0.0f ? 1.0f : 0.0f;
    float gzi = static_cast<float>(gzt[i]);
    float gh, dth;
    through_reset<RESET, S>(gzi, g[i], hi, v_th, s, u, width, keep, gh, dth);
    if constexpr (PARAMS) {
      acc_th[i] += dth;
      acc_w[i] += gzi * sg_dwidth<S>(u, width);
      if constexpr (!IS_IF) gh_step[i] = gh;
    }
    if constexpr (IS_IF) {
      gxt[i] = static_cast<T>(gh);
      g[i] = gh;
    } else {
      gxt[i] = static_cast<T>(omb * gh);
      g[i] = beta * gh;
    }
  }
}

template <typename T, bool IS_IF, int RESET, int S, bool PARAMS>
void leaky_backward(GradRows<T> gz, const T* gv_last, const T* h, const T* x, const T* v0, T* gx,
                    T* gv0, int64_t steps, int64_t n, float beta, float omb, float v_th,
                    float width, bool detach_reset, bool want_beta, double* grads) {
  Partials part(at::get_num_threads());
  for_blocks(n, [=, &part](int64_t n0, int64_t n1) {
    const int64_t len = n1 - n0;
    const size_t acc_len = PARAMS ? static_cast<size_t>(len) : 0;
    std::vector<float> gv(len), acc_th(acc_len, 0.0f), acc_w(acc_len, 0.0f);
    const size_t beta_len = PARAMS && !IS_IF && want_beta ? static_cast<size_t>(len) : 0;
    std::vector<float> acc_beta(beta_len, 0.0f), acc_omb(beta_len, 0.0f);
    std::vector<float> gh_step(PARAMS && !IS_IF ? len : 0);  // gh of the current step
    for (int64_t i = 0; i < len; ++i) gv[i] = gv_last ? static_cast<float>(gv_last[n0 + i]) : 0.0f;
    float* g = gv.data();
    std::vector<T> gz_scratch(gz.bcast ? len : 0);
    // branch-free detach (keep * term is exactly term or 0): a branch in the loop body can keep
    // the compiler from vectorising it
    const float keep = detach_reset ? 0.0f : 1.0f;
    for (int64_t t = steps - 1; t >= 0; --t) {
      const T* ht = h + t * n + n0;
      const T* gzt = gz.row(t, n0, len, gz_scratch.data());
      T* gxt = gx + t * n + n0;
      leaky_backward_step<T, IS_IF, RESET, S, PARAMS>(ht, gzt, gxt, g, acc_th.data(), acc_w.data(),
                                                      gh_step.data(), len, beta, omb, v_th,
                                                      width, keep);
      if constexpr (PARAMS && !IS_IF) {
        if (want_beta) {
          // d/d beta = sum gh * v_prev, d/d omb = sum gh * x: a second pass over the step.
          const T* xt = x + t * n + n0;
          if (t > 0) {
            const T* hp = h + (t - 1) * n + n0;
            for (int64_t i = 0; i < len; ++i) {
              const float v_prev = after_reset<T, RESET>(static_cast<float>(hp[i]), v_th);
              acc_beta[i] += gh_step[i] * v_prev;
              acc_omb[i] += gh_step[i] * static_cast<float>(xt[i]);
            }
          } else {
            for (int64_t i = 0; i < len; ++i) {
              acc_beta[i] += gh_step[i] * static_cast<float>(v0[n0 + i]);
              acc_omb[i] += gh_step[i] * static_cast<float>(xt[i]);
            }
          }
        }
      }
    }
    for (int64_t i = 0; i < len; ++i) gv0[n0 + i] = static_cast<T>(gv[i]);
    if constexpr (PARAMS) {
      double* p = part.at(at::get_thread_num());
      p[0] += chunk_sum(acc_th);
      p[2] += chunk_sum(acc_w);
      if (want_beta) {
        p[1] += chunk_sum(acc_beta);
        p[3] += chunk_sum(acc_omb);
      }
    }
  });
  for (int k = 0; k < 4; ++k) grads[k] = part.sum(k);
}

// ------------------------------------------------------------------ ALIF
template <typename T, int RESET, bool SAVE>
void alif_forward(const T* x, const T* v0, const T* a0, T* z, T* h_out, T* a_out_seq, T* v_out,
                  T* a_out, int64_t steps, int64_t n, float beta, float omb, float rho,
                  float omr, float b_adapt, float v_th) {
  for_blocks(n, [=](int64_t n0, int64_t n1) {
    const int64_t len = n1 - n0;
    std::vector<float> v(len), a(len);
    for (int64_t i = 0; i < len; ++i) {
      v[i] = static_cast<float>(v0[n0 + i]);
      a[i] = static_cast<float>(a0[n0 + i]);
    }
    for (int64_t t = 0; t < steps; ++t) {
      const T* xt = x + t * n + n0;
      T* zt = z + t * n + n0;
      T* ht = SAVE ? h_out + t * n + n0 : nullptr;
      T* at_ = SAVE ? a_out_seq + t * n + n0 : nullptr;
      for (int64_t i = 0; i < len; ++i) {
        const float h = rnd<T>(rnd<T>(beta * v[i]) + rnd<T>(omb * static_cast<float>(xt[i])));
        const float thr = rnd<T>(v_th + rnd<T>(b_adapt * a[i]));
        const float s = rnd<T>(h - thr) >= 0.0f ? 1.0f : 0.0f;
        float vn;
        if constexpr (RESET == SUBTRACT) vn = rnd<T>(h - rnd<T>(s * thr));
        else if constexpr (RESET == ZERO) vn = rnd<T>(h * (1.0f - s));
        else vn = h;
        if constexpr (SAVE) at_[i] = static_cast<T>(a[i]);  // a before this step
        a[i] = rnd<T>(rnd<T>(rho * a[i]) + rnd<T>(omr * s));
        v[i] = vn;
        zt[i] = static_cast<T>(s);
        if constexpr (SAVE) ht[i] = static_cast<T>(h);
      }
    }
    for (int64_t i = 0; i < len; ++i) {
      v_out[n0 + i] = static_cast<T>(v[i]);
      a_out[n0 + i] = static_cast<T>(a[i]);
    }
  });
}

// One step of the ALIF backward over a block of neurons (restrict: see leaky_backward_step).
template <typename T, int RESET, int S, bool PARAMS>
inline void alif_backward_step(const T* __restrict__ ht, const T* __restrict__ at_,
                               const T* __restrict__ gzt, T* __restrict__ gxt,
                               float* __restrict__ g, float* __restrict__ gav,
                               float* __restrict__ acc_th, float* __restrict__ acc_w, int64_t len,
                               float beta, float omb, float rho, float omr, float b_adapt,
                               float v_th, float width, float keep) {
  for (int64_t i = 0; i < len; ++i) {
    const float hi = static_cast<float>(ht[i]);
    const float thr = rnd<T>(v_th + rnd<T>(b_adapt * static_cast<float>(at_[i])));
    const float u = rnd<T>(hi - thr);
    const float s = u >= 0.0f ? 1.0f : 0.0f;
    float gzi = static_cast<float>(gzt[i]) + gav[i] * omr;
    float gh, g_thr;
    through_reset<RESET, S>(gzi, g[i], hi, thr, s, u, width, keep, gh, g_thr);
    if constexpr (PARAMS) {
      acc_th[i] += g_thr;
      acc_w[i] += gzi * sg_dwidth<S>(u, width);
    }
    gxt[i] = static_cast<T>(omb * gh);
    g[i] = beta * gh;
    gav[i] = rho * gav[i] + b_adapt * g_thr;
  }
}

// grads: [0] v_th, [2] width (only with PARAMS).
template <typename T, int RESET, int S, bool PARAMS>
void alif_backward(GradRows<T> gz, const T* gv_last, const T* ga_last, const T* h, const T* a_seq,
                   T* gx, T* gv0, T* ga0, int64_t steps, int64_t n, float beta, float omb,
                   float rho, float omr, float b_adapt, float v_th, float width,
                   bool detach_reset, double* grads) {
  Partials part(at::get_num_threads());
  for_blocks(n, [=, &part](int64_t n0, int64_t n1) {
    const int64_t len = n1 - n0;
    const size_t acc_len = PARAMS ? static_cast<size_t>(len) : 0;
    std::vector<float> gv(len), ga(len), acc_th(acc_len, 0.0f), acc_w(acc_len, 0.0f);
    for (int64_t i = 0; i < len; ++i) {
      gv[i] = gv_last ? static_cast<float>(gv_last[n0 + i]) : 0.0f;
      ga[i] = ga_last ? static_cast<float>(ga_last[n0 + i]) : 0.0f;
    }
    const float keep = detach_reset ? 0.0f : 1.0f;  // branch-free detach (see leaky_backward)
    std::vector<T> gz_scratch(gz.bcast ? len : 0);
    for (int64_t t = steps - 1; t >= 0; --t) {
      const T* ht = h + t * n + n0;
      const T* at_ = a_seq + t * n + n0;
      const T* gzt = gz.row(t, n0, len, gz_scratch.data());
      T* gxt = gx + t * n + n0;
      alif_backward_step<T, RESET, S, PARAMS>(ht, at_, gzt, gxt, gv.data(), ga.data(),
                                              acc_th.data(), acc_w.data(), len, beta, omb, rho,
                                              omr, b_adapt, v_th, width, keep);
    }
    for (int64_t i = 0; i < len; ++i) {
      gv0[n0 + i] = static_cast<T>(gv[i]);
      ga0[n0 + i] = static_cast<T>(ga[i]);
    }
    if constexpr (PARAMS) {
      double* p = part.at(at::get_thread_num());
      p[0] += chunk_sum(acc_th);
      p[2] += chunk_sum(acc_w);
    }
  });
  grads[0] = part.sum(0);
  grads[2] = part.sum(2);
}

// ------------------------------------------------------------------ dispatch helpers
#define SNN5_RESET_CASES(RESET_VAR, ...)                                          \
  switch (RESET_VAR) {                                                            \
    case SUBTRACT: { constexpr int R = SUBTRACT; __VA_ARGS__; break; }            \
    case ZERO: { constexpr int R = ZERO; __VA_ARGS__; break; }                    \
    default: { constexpr int R = NONE; __VA_ARGS__; break; }                      \
  }

#define SNN5_SURROGATE_CASES(SURR_VAR, ...)                                       \
  switch (SURR_VAR) {                                                             \
    case ATAN: { constexpr int SG = ATAN; __VA_ARGS__; break; }                   \
    case SIGMOID: { constexpr int SG = SIGMOID; __VA_ARGS__; break; }             \
    case FAST_SIGMOID: { constexpr int SG = FAST_SIGMOID; __VA_ARGS__; break; }   \
    case TRIANGLE: { constexpr int SG = TRIANGLE; __VA_ARGS__; break; }           \
    default: { constexpr int SG = RECTANGLE; __VA_ARGS__; break; }                \
  }

// float32 and bfloat16 only: float64 and other dtypes stay on the reference.
#define SNN5_DISPATCH(TYPE, ...)                                                  \
  if ((TYPE) == at::kFloat) {                                                     \
    using scalar_t = float;                                                       \
    __VA_ARGS__();                                                                \
  } else {                                                                        \
    using scalar_t = c10::BFloat16;                                               \
    __VA_ARGS__();                                                                \
  }

void check_dtype(const torch::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu(), name, " must be a CPU tensor");
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kBFloat16, name,
              " must be float32 or bfloat16");
}

// grad [T, N] whose rows are contiguous or one broadcast value (stride 0), any step stride >= 0.
template <typename T>
GradRows<T> grad_rows(const torch::Tensor& g, const torch::Tensor& like) {
  check_dtype(g, "grad_z");
  TORCH_CHECK(g.dim() == 2 && g.size(0) == like.size(0) && g.size(1) == like.size(1),
              "grad_z must have the shape of h");
  TORCH_CHECK(g.scalar_type() == like.scalar_type(), "grad_z must have the dtype of h");
  const bool bcast = g.size(1) > 1 && g.stride(1) == 0;
  TORCH_CHECK(g.stride(0) >= 0 && (bcast || g.size(1) <= 1 || g.stride(1) == 1),
              "grad_z rows must be contiguous or broadcast (stride 0)");
  return GradRows<T>{g.data_ptr<T>(), g.size(0) > 1 ? g.stride(0) : 0, bcast};
}

void check_input(const torch::Tensor& t, const char* name) {
  check_dtype(t, name);
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
}

}  // namespace

#define SNN5_BOOL_CASES(VAR, NAME, ...)                                           \
  if (VAR) {                                                                      \
    constexpr bool NAME = true;                                                   \
    __VA_ARGS__;                                                                  \
  } else {                                                                        \
    constexpr bool NAME = false;                                                  \
    __VA_ARGS__;                                                                  \
  }

// x: [T, N]; v0: [N]. Returns (z [T, N], h [T, N] (empty unless save_h), v_T [N]).
std::vector<torch::Tensor> leaky_fwd(torch::Tensor x, torch::Tensor v0, bool is_if, int64_t reset,
                                     double beta, double omb, double v_th, bool save_h) {
  check_input(x, "x");
  check_input(v0, "v0");
  const int64_t steps = x.size(0), n = x.size(1);
  auto z = torch::empty_like(x), v_out = torch::empty_like(v0);
  auto h = save_h ? torch::empty_like(x) : torch::empty({0}, x.options());
  SNN5_DISPATCH(x.scalar_type(), [&] {
    scalar_t* hp = save_h ? h.data_ptr<scalar_t>() : nullptr;
    SNN5_RESET_CASES(reset, {
      SNN5_BOOL_CASES(save_h, SAVE, {
        if (is_if) {
          leaky_forward<scalar_t, true, R, SAVE>(x.data_ptr<scalar_t>(), v0.data_ptr<scalar_t>(),
                                                 z.data_ptr<scalar_t>(), hp,
                                                 v_out.data_ptr<scalar_t>(), steps, n, 1.0f, 1.0f,
                                                 v_th);
        } else {
          leaky_forward<scalar_t, false, R, SAVE>(x.data_ptr<scalar_t>(), v0.data_ptr<scalar_t>(),
                                                  z.data_ptr<scalar_t>(), hp,
                                                  v_out.data_ptr<scalar_t>(), steps, n, beta, omb,
                                                  v_th);
        }
      });
    });
  });
  return {z, h, v_out};
}

// Returns (grad_x [T, N], grad_v0 [N], grads [4] float64: v_th, beta, width, omb; zeros unless
// param_grads; beta and omb only when x is given).
std::vector<torch::Tensor> leaky_bwd(torch::Tensor gz, std::optional<torch::Tensor> gv_last,
                                     torch::Tensor h, std::optional<torch::Tensor> x,
                                     torch::Tensor v0, bool is_if, int64_t reset,
                                     int64_t surrogate, double beta, double omb, double v_th,
                                     double width, bool detach_reset, bool param_grads) {
  check_input(h, "h");
  if (gv_last && gv_last->defined()) check_input(*gv_last, "grad_v");
  if (x && x->defined()) check_input(*x, "x");
  const int64_t steps = h.size(0), n = h.size(1);
  auto gx = torch::empty_like(h), gv0 = torch::empty_like(v0);
  auto grads = torch::zeros({4}, torch::kFloat64);
  const bool want_beta = param_grads && !is_if && x.has_value() && x->defined();
  SNN5_DISPATCH(h.scalar_type(), [&] {
    const scalar_t* gvl = gv_last && gv_last->defined() ? gv_last->data_ptr<scalar_t>() : nullptr;
    const scalar_t* xp = want_beta ? x->data_ptr<scalar_t>() : nullptr;
    SNN5_RESET_CASES(reset, {
      SNN5_SURROGATE_CASES(surrogate, {
        SNN5_BOOL_CASES(param_grads, PARAMS, {
          if (is_if) {
            leaky_backward<scalar_t, true, R, SG, PARAMS>(
                grad_rows<scalar_t>(gz, h), gvl, h.data_ptr<scalar_t>(), xp,
                v0.data_ptr<scalar_t>(), gx.data_ptr<scalar_t>(), gv0.data_ptr<scalar_t>(), steps,
                n, 1.0f, 1.0f, v_th, width, detach_reset, false, grads.data_ptr<double>());
          } else {
            leaky_backward<scalar_t, false, R, SG, PARAMS>(
                grad_rows<scalar_t>(gz, h), gvl, h.data_ptr<scalar_t>(), xp,
                v0.data_ptr<scalar_t>(), gx.data_ptr<scalar_t>(), gv0.data_ptr<scalar_t>(), steps,
                n, beta, omb, v_th, width, detach_reset, want_beta, grads.data_ptr<double>());
          }
        });
      });
    });
  });
  return {gx, gv0, grads};
}

// x: [T, N]; v0, a0: [N]. Returns (z, h, a_seq (a before each step), v_T, a_T); h and a_seq are
// empty unless save.
std::vector<torch::Tensor> alif_fwd(torch::Tensor x, torch::Tensor v0, torch::Tensor a0,
                                    int64_t reset, double beta, double omb, double rho,
                                    double omr, double b_adapt, double v_th, bool save) {
  check_input(x, "x");
  check_input(v0, "v0");
  check_input(a0, "a0");
  const int64_t steps = x.size(0), n = x.size(1);
  auto z = torch::empty_like(x);
  auto h = save ? torch::empty_like(x) : torch::empty({0}, x.options());
  auto a_seq = save ? torch::empty_like(x) : torch::empty({0}, x.options());
  auto v_out = torch::empty_like(v0), a_out = torch::empty_like(a0);
  SNN5_DISPATCH(x.scalar_type(), [&] {
    scalar_t* hp = save ? h.data_ptr<scalar_t>() : nullptr;
    scalar_t* ap = save ? a_seq.data_ptr<scalar_t>() : nullptr;
    SNN5_RESET_CASES(reset, {
      SNN5_BOOL_CASES(save, SAVE, {
        alif_forward<scalar_t, R, SAVE>(x.data_ptr<scalar_t>(), v0.data_ptr<scalar_t>(),
                                        a0.data_ptr<scalar_t>(), z.data_ptr<scalar_t>(), hp, ap,
                                        v_out.data_ptr<scalar_t>(), a_out.data_ptr<scalar_t>(),
                                        steps, n, beta, omb, rho, omr, b_adapt, v_th);
      });
    });
  });
  return {z, h, a_seq, v_out, a_out};
}

// Returns (grad_x, grad_v0, grad_a0, grads [4] float64: v_th, 0, width, 0; zeros unless
// param_grads).
std::vector<torch::Tensor> alif_bwd(torch::Tensor gz, std::optional<torch::Tensor> gv_last,
                                    std::optional<torch::Tensor> ga_last, torch::Tensor h,
                                    torch::Tensor a_seq, int64_t reset, int64_t surrogate,
                                    double beta, double omb, double rho, double omr,
                                    double b_adapt, double v_th, double width,
                                    bool detach_reset, bool param_grads) {
  check_input(h, "h");
  check_input(a_seq, "a_seq");
  if (gv_last && gv_last->defined()) check_input(*gv_last, "grad_v");
  if (ga_last && ga_last->defined()) check_input(*ga_last, "grad_a");
  const int64_t steps = h.size(0), n = h.size(1);
  auto gx = torch::empty_like(h);
  auto gv0 = torch::empty({n}, h.options()), ga0 = torch::empty({n}, h.options());
  auto grads = torch::zeros({4}, torch::kFloat64);
  SNN5_DISPATCH(h.scalar_type(), [&] {
    const scalar_t* gvl = gv_last && gv_last->defined() ? gv_last->data_ptr<scalar_t>() : nullptr;
    const scalar_t* gal = ga_last && ga_last->defined() ? ga_last->data_ptr<scalar_t>() : nullptr;
    SNN5_RESET_CASES(reset, {
      SNN5_SURROGATE_CASES(surrogate, {
        SNN5_BOOL_CASES(param_grads, PARAMS, {
          alif_backward<scalar_t, R, SG, PARAMS>(
              grad_rows<scalar_t>(gz, h), gvl, gal, h.data_ptr<scalar_t>(),
              a_seq.data_ptr<scalar_t>(), gx.data_ptr<scalar_t>(), gv0.data_ptr<scalar_t>(),
              ga0.data_ptr<scalar_t>(), steps, n, beta, omb, rho, omr, b_adapt, v_th, width,
              detach_reset, grads.data_ptr<double>());
        });
      });
    });
  });
  return {gx, gv0, ga0, grads};
}

torch::Tensor event_pack_weight(torch::Tensor weight);  // event_cpu.cpp
std::tuple<torch::Tensor, bool> event_linear_fwd(torch::Tensor spikes, torch::Tensor packed,
                                                 torch::Tensor bias, int64_t out);
torch::Tensor event_linear_bits(torch::Tensor bits, int64_t in, torch::Tensor packed,
                                torch::Tensor bias, int64_t out);
torch::Tensor event_weight_grad(torch::Tensor bits, torch::Tensor grad, int64_t in, double c);
std::tuple<torch::Tensor, bool, double, int64_t> pack_spikes(torch::Tensor x);  // spikes_cpu.cpp
torch::Tensor unpack_spikes(torch::Tensor bits, int64_t in, double c, at::ScalarType dtype);

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("leaky_fwd", &leaky_fwd, "IF/LIF/PLIF multi-step forward (CPU)");
  m.def("leaky_bwd", &leaky_bwd, "IF/LIF/PLIF multi-step backward (CPU)");
  m.def("alif_fwd", &alif_fwd, "ALIF multi-step forward (CPU)");
  m.def("alif_bwd", &alif_bwd, "ALIF multi-step backward (CPU)");
  m.def("event_pack_weight", &event_pack_weight, "weight [out, in] -> tiles for event_linear");
  m.def("event_linear_fwd", &event_linear_fwd, "event-driven Linear on spike input (CPU)");
  m.def("event_linear_bits", &event_linear_bits, "event-driven Linear on packed spike bits (CPU)");
  m.def("event_weight_grad", &event_weight_grad,
        "weight gradient of a Linear from its packed spike input (CPU)");
  m.def("pack_spikes", &pack_spikes, "0/c tensor -> (bits, ok, c, nonzeros), checking the values (CPU)");
  m.def("unpack_spikes", &unpack_spikes, "bits -> 0/1 tensor (CPU)");
}
