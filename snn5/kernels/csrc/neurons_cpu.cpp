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

#include <cmath>
#include <vector>

namespace {

enum Surrogate { ATAN = 0, SIGMOID = 1, FAST_SIGMOID = 2, TRIANGLE = 3, RECTANGLE = 4 };
enum Reset { SUBTRACT = 0, ZERO = 1, NONE = 2 };
constexpr float kPi = 3.14159265358979323846f;
constexpr int64_t kGrain = 2048;  // neurons per task: a chunk's state fits in L1/L2

template <typename T> inline float rnd(float v);
template <> inline float rnd<float>(float v) { return v; }
template <> inline float rnd<c10::BFloat16>(float v) {
  return static_cast<float>(c10::BFloat16(v));
}

// d primitive / du and d primitive / d width of each surrogate (see core/surrogate.py).
template <int S> inline float sg_grad(float u, float w) {
  if constexpr (S == ATAN) {
    const float k = 0.5f * kPi * w * u;
    return 0.5f * w / (1.0f + k * k);
  } else if constexpr (S == SIGMOID) {
    const float s = 1.0f / (1.0f + std::exp(-w * u));
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
    const float s = 1.0f / (1.0f + std::exp(-w * u));
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

// ------------------------------------------------------------------ IF / LIF / PLIF forward
template <typename T, bool IS_IF, int RESET>
void leaky_forward(const T* x, const T* v0, T* z, T* h_out, T* v_out, int64_t steps, int64_t n,
                   float beta, float omb, float v_th) {
  at::parallel_for(0, n, kGrain, [&](int64_t n0, int64_t n1) {
    const int64_t len = n1 - n0;
    std::vector<float> v(len);
    for (int64_t i = 0; i < len; ++i) v[i] = static_cast<float>(v0[n0 + i]);
    for (int64_t t = 0; t < steps; ++t) {
      const T* xt = x + t * n + n0;
      T* zt = z + t * n + n0;
      T* ht = h_out ? h_out + t * n + n0 : nullptr;
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
        if (ht) ht[i] = static_cast<T>(h);
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
template <typename T, bool IS_IF, int RESET, int S>
void leaky_backward(const T* gz, const T* gv_last, const T* h, const T* x, const T* v0, T* gx,
                    T* gv0, int64_t steps, int64_t n, float beta, float omb, float v_th,
                    float width, bool detach_reset, bool want_beta, double* grads) {
  Partials part(at::get_num_threads());
  at::parallel_for(0, n, kGrain, [&](int64_t n0, int64_t n1) {
    const int64_t len = n1 - n0;
    double g_th = 0.0, g_beta = 0.0, g_w = 0.0, g_omb = 0.0;
    std::vector<float> gv(len);
    for (int64_t i = 0; i < len; ++i) gv[i] = gv_last ? static_cast<float>(gv_last[n0 + i]) : 0.0f;
    for (int64_t t = steps - 1; t >= 0; --t) {
      const T* ht = h + t * n + n0;
      const T* gzt = gz + t * n + n0;
      T* gxt = gx + t * n + n0;
      for (int64_t i = 0; i < len; ++i) {
        const float hi = static_cast<float>(ht[i]);
        const float u = rnd<T>(hi - v_th);
        const float s = u >= 0.0f ? 1.0f : 0.0f;
        float gzi = static_cast<float>(gzt[i]);
        float gh;
        if constexpr (RESET == SUBTRACT) {
          if (!detach_reset) gzi -= gv[i] * v_th;
          const float gu = gzi * sg_grad<S>(u, width);
          gh = gv[i] + gu;
          g_th -= static_cast<double>(gu) + static_cast<double>(gv[i] * s);
          g_w += static_cast<double>(gzi * sg_dwidth<S>(u, width));
        } else if constexpr (RESET == ZERO) {
          if (!detach_reset) gzi -= gv[i] * hi;
          const float gu = gzi * sg_grad<S>(u, width);
          gh = gv[i] * (1.0f - s) + gu;
          g_th -= static_cast<double>(gu);
          g_w += static_cast<double>(gzi * sg_dwidth<S>(u, width));
        } else {
          const float gu = gzi * sg_grad<S>(u, width);
          gh = gv[i] + gu;
          g_th -= static_cast<double>(gu);
          g_w += static_cast<double>(gzi * sg_dwidth<S>(u, width));
        }
        if constexpr (IS_IF) {
          gxt[i] = static_cast<T>(gh);
          gv[i] = gh;
        } else {
          gxt[i] = static_cast<T>(omb * gh);
          if (want_beta) {
            const float v_prev =
                t > 0 ? after_reset<T, RESET>(static_cast<float>(h[(t - 1) * n + n0 + i]), v_th)
                      : static_cast<float>(v0[n0 + i]);
            g_beta += static_cast<double>(gh) * v_prev;
            g_omb += static_cast<double>(gh) * static_cast<float>(x[t * n + n0 + i]);
          }
          gv[i] = beta * gh;
        }
      }
    }
    for (int64_t i = 0; i < len; ++i) gv0[n0 + i] = static_cast<T>(gv[i]);
    double* p = part.at(at::get_thread_num());
    p[0] += g_th;
    p[1] += g_beta;
    p[2] += g_w;
    p[3] += g_omb;
  });
  for (int k = 0; k < 4; ++k) grads[k] = part.sum(k);
}

// ------------------------------------------------------------------ ALIF
template <typename T, int RESET>
void alif_forward(const T* x, const T* v0, const T* a0, T* z, T* h_out, T* a_out_seq, T* v_out,
                  T* a_out, int64_t steps, int64_t n, float beta, float omb, float rho,
                  float omr, float b_adapt, float v_th) {
  at::parallel_for(0, n, kGrain, [&](int64_t n0, int64_t n1) {
    const int64_t len = n1 - n0;
    std::vector<float> v(len), a(len);
    for (int64_t i = 0; i < len; ++i) {
      v[i] = static_cast<float>(v0[n0 + i]);
      a[i] = static_cast<float>(a0[n0 + i]);
    }
    for (int64_t t = 0; t < steps; ++t) {
      const T* xt = x + t * n + n0;
      T* zt = z + t * n + n0;
      T* ht = h_out + t * n + n0;
      T* at_ = a_out_seq + t * n + n0;
      for (int64_t i = 0; i < len; ++i) {
        const float h = rnd<T>(rnd<T>(beta * v[i]) + rnd<T>(omb * static_cast<float>(xt[i])));
        const float thr = rnd<T>(v_th + rnd<T>(b_adapt * a[i]));
        const float s = rnd<T>(h - thr) >= 0.0f ? 1.0f : 0.0f;
        float vn;
        if constexpr (RESET == SUBTRACT) vn = rnd<T>(h - rnd<T>(s * thr));
        else if constexpr (RESET == ZERO) vn = rnd<T>(h * (1.0f - s));
        else vn = h;
        at_[i] = static_cast<T>(a[i]);                 // a before this step
        a[i] = rnd<T>(rnd<T>(rho * a[i]) + rnd<T>(omr * s));
        v[i] = vn;
        zt[i] = static_cast<T>(s);
        ht[i] = static_cast<T>(h);
      }
    }
    for (int64_t i = 0; i < len; ++i) {
      v_out[n0 + i] = static_cast<T>(v[i]);
      a_out[n0 + i] = static_cast<T>(a[i]);
    }
  });
}

// grads: [0] v_th, [2] width.
template <typename T, int RESET, int S>
void alif_backward(const T* gz, const T* gv_last, const T* ga_last, const T* h, const T* a_seq,
                   T* gx, T* gv0, T* ga0, int64_t steps, int64_t n, float beta, float omb,
                   float rho, float omr, float b_adapt, float v_th, float width,
                   bool detach_reset, double* grads) {
  Partials part(at::get_num_threads());
  at::parallel_for(0, n, kGrain, [&](int64_t n0, int64_t n1) {
    const int64_t len = n1 - n0;
    double g_th = 0.0, g_w = 0.0;
    std::vector<float> gv(len), ga(len);
    for (int64_t i = 0; i < len; ++i) {
      gv[i] = gv_last ? static_cast<float>(gv_last[n0 + i]) : 0.0f;
      ga[i] = ga_last ? static_cast<float>(ga_last[n0 + i]) : 0.0f;
    }
    for (int64_t t = steps - 1; t >= 0; --t) {
      const T* ht = h + t * n + n0;
      const T* at_ = a_seq + t * n + n0;
      const T* gzt = gz + t * n + n0;
      T* gxt = gx + t * n + n0;
      for (int64_t i = 0; i < len; ++i) {
        const float hi = static_cast<float>(ht[i]);
        const float thr = rnd<T>(v_th + rnd<T>(b_adapt * static_cast<float>(at_[i])));
        const float u = rnd<T>(hi - thr);
        const float s = u >= 0.0f ? 1.0f : 0.0f;
        float gzi = static_cast<float>(gzt[i]) + ga[i] * omr;
        float gh, g_thr;
        if constexpr (RESET == SUBTRACT) {
          if (!detach_reset) gzi -= gv[i] * thr;
          const float gu = gzi * sg_grad<S>(u, width);
          gh = gv[i] + gu;
          g_thr = -gu - gv[i] * s;
        } else if constexpr (RESET == ZERO) {
          if (!detach_reset) gzi -= gv[i] * hi;
          const float gu = gzi * sg_grad<S>(u, width);
          gh = gv[i] * (1.0f - s) + gu;
          g_thr = -gu;
        } else {
          const float gu = gzi * sg_grad<S>(u, width);
          gh = gv[i] + gu;
          g_thr = -gu;
        }
        g_th += static_cast<double>(g_thr);
        g_w += static_cast<double>(gzi * sg_dwidth<S>(u, width));
        gxt[i] = static_cast<T>(omb * gh);
        gv[i] = beta * gh;
        ga[i] = rho * ga[i] + b_adapt * g_thr;
      }
    }
    for (int64_t i = 0; i < len; ++i) {
      gv0[n0 + i] = static_cast<T>(gv[i]);
      ga0[n0 + i] = static_cast<T>(ga[i]);
    }
    double* p = part.at(at::get_thread_num());
    p[0] += g_th;
    p[2] += g_w;
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

void check_input(const torch::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu(), name, " must be a CPU tensor");
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kBFloat16, name,
              " must be float32 or bfloat16");
}

}  // namespace

// x: [T, N]; v0: [N]. Returns (z [T, N], h [T, N] (empty unless save_h), v_T [N]).
std::vector<torch::Tensor> leaky_fwd(torch::Tensor x, torch::Tensor v0, bool is_if, int64_t reset,
                                     double beta, double omb, double v_th, bool save_h) {
  check_input(x, "x");
  check_input(v0, "v0");
  const int64_t steps = x.size(0), n = x.size(1);
  auto z = torch::empty_like(x), v_out = torch::empty_like(v0);
  auto h = save_h ? torch::empty_like(x) : torch::empty({0}, x.options());
  SNN5_DISPATCH(x.scalar_type(), [&] {
    SNN5_RESET_CASES(reset, {
      if (is_if) {
        leaky_forward<scalar_t, true, R>(x.data_ptr<scalar_t>(), v0.data_ptr<scalar_t>(),
                                         z.data_ptr<scalar_t>(),
                                         save_h ? h.data_ptr<scalar_t>() : nullptr,
                                         v_out.data_ptr<scalar_t>(), steps, n, 1.0f, 1.0f, v_th);
      } else {
        leaky_forward<scalar_t, false, R>(x.data_ptr<scalar_t>(), v0.data_ptr<scalar_t>(),
                                          z.data_ptr<scalar_t>(),
                                          save_h ? h.data_ptr<scalar_t>() : nullptr,
                                          v_out.data_ptr<scalar_t>(), steps, n, beta, omb, v_th);
      }
    });
  });
  return {z, h, v_out};
}

// Returns (grad_x [T, N], grad_v0 [N], grads [4] float64: v_th, beta, width, omb).
std::vector<torch::Tensor> leaky_bwd(torch::Tensor gz, std::optional<torch::Tensor> gv_last,
                                     torch::Tensor h, std::optional<torch::Tensor> x,
                                     torch::Tensor v0, bool is_if, int64_t reset,
                                     int64_t surrogate, double beta, double omb, double v_th,
                                     double width, bool detach_reset) {
  check_input(gz, "grad_z");
  check_input(h, "h");
  if (gv_last && gv_last->defined()) check_input(*gv_last, "grad_v");
  if (x && x->defined()) check_input(*x, "x");
  const int64_t steps = h.size(0), n = h.size(1);
  auto gx = torch::empty_like(h), gv0 = torch::empty_like(v0);
  auto grads = torch::zeros({4}, torch::kFloat64);
  const bool want_beta = x.has_value() && x->defined();
  SNN5_DISPATCH(h.scalar_type(), [&] {
    const scalar_t* gvl = gv_last && gv_last->defined() ? gv_last->data_ptr<scalar_t>() : nullptr;
    const scalar_t* xp = want_beta ? x->data_ptr<scalar_t>() : nullptr;
    SNN5_RESET_CASES(reset, {
      SNN5_SURROGATE_CASES(surrogate, {
        if (is_if) {
          leaky_backward<scalar_t, true, R, SG>(
              gz.data_ptr<scalar_t>(), gvl, h.data_ptr<scalar_t>(), xp, v0.data_ptr<scalar_t>(),
              gx.data_ptr<scalar_t>(), gv0.data_ptr<scalar_t>(), steps, n, 1.0f, 1.0f, v_th,
              width, detach_reset, false, grads.data_ptr<double>());
        } else {
          leaky_backward<scalar_t, false, R, SG>(
              gz.data_ptr<scalar_t>(), gvl, h.data_ptr<scalar_t>(), xp, v0.data_ptr<scalar_t>(),
              gx.data_ptr<scalar_t>(), gv0.data_ptr<scalar_t>(), steps, n, beta, omb, v_th,
              width, detach_reset, want_beta, grads.data_ptr<double>());
        }
      });
    });
  });
  return {gx, gv0, grads};
}

// x: [T, N]; v0, a0: [N]. Returns (z, h, a_seq (a before each step), v_T, a_T).
std::vector<torch::Tensor> alif_fwd(torch::Tensor x, torch::Tensor v0, torch::Tensor a0,
                                    int64_t reset, double beta, double omb, double rho,
                                    double omr, double b_adapt, double v_th) {
  check_input(x, "x");
  check_input(v0, "v0");
  check_input(a0, "a0");
  const int64_t steps = x.size(0), n = x.size(1);
  auto z = torch::empty_like(x), h = torch::empty_like(x), a_seq = torch::empty_like(x);
  auto v_out = torch::empty_like(v0), a_out = torch::empty_like(a0);
  SNN5_DISPATCH(x.scalar_type(), [&] {
    SNN5_RESET_CASES(reset, {
      alif_forward<scalar_t, R>(x.data_ptr<scalar_t>(), v0.data_ptr<scalar_t>(),
                                a0.data_ptr<scalar_t>(), z.data_ptr<scalar_t>(),
                                h.data_ptr<scalar_t>(), a_seq.data_ptr<scalar_t>(),
                                v_out.data_ptr<scalar_t>(), a_out.data_ptr<scalar_t>(), steps, n,
                                beta, omb, rho, omr, b_adapt, v_th);
    });
  });
  return {z, h, a_seq, v_out, a_out};
}

// Returns (grad_x, grad_v0, grad_a0, grads [4] float64: v_th, 0, width, 0).
std::vector<torch::Tensor> alif_bwd(torch::Tensor gz, std::optional<torch::Tensor> gv_last,
                                    std::optional<torch::Tensor> ga_last, torch::Tensor h,
                                    torch::Tensor a_seq, int64_t reset, int64_t surrogate,
                                    double beta, double omb, double rho, double omr,
                                    double b_adapt, double v_th, double width,
                                    bool detach_reset) {
  check_input(gz, "grad_z");
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
        alif_backward<scalar_t, R, SG>(
            gz.data_ptr<scalar_t>(), gvl, gal, h.data_ptr<scalar_t>(),
            a_seq.data_ptr<scalar_t>(), gx.data_ptr<scalar_t>(), gv0.data_ptr<scalar_t>(),
            ga0.data_ptr<scalar_t>(), steps, n, beta, omb, rho, omr, b_adapt, v_th, width,
            detach_reset, grads.data_ptr<double>());
      });
    });
  });
  return {gx, gv0, ga0, grads};
}

std::tuple<torch::Tensor, bool> event_linear_fwd(torch::Tensor spikes, torch::Tensor weight_t,
                                                 torch::Tensor bias);  // event_cpu.cpp
std::tuple<torch::Tensor, bool, double> pack_spikes(torch::Tensor x);  // spikes_cpu.cpp
torch::Tensor unpack_spikes(torch::Tensor bits, int64_t in, double c, at::ScalarType dtype);

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("leaky_fwd", &leaky_fwd, "IF/LIF/PLIF multi-step forward (CPU)");
  m.def("leaky_bwd", &leaky_bwd, "IF/LIF/PLIF multi-step backward (CPU)");
  m.def("alif_fwd", &alif_fwd, "ALIF multi-step forward (CPU)");
  m.def("alif_bwd", &alif_bwd, "ALIF multi-step backward (CPU)");
  m.def("event_linear_fwd", &event_linear_fwd, "event-driven Linear on spike input (CPU)");
  m.def("pack_spikes", &pack_spikes, "0/c tensor -> (bits, ok, c), checking the values (CPU)");
  m.def("unpack_spikes", &unpack_spikes, "bits -> 0/1 tensor (CPU)");
}
