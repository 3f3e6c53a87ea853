// Diehl & Cook (2015) network on the CPU: a whole presentation per sample, the time loop inside.
//
// Parity contract with snn5/core/diehl_cook.py (diehl_cook_step / diehl_cook_present /
// poisson_spikes): the same float64 operations in the same order on the state, so spike counts
// are identical and the weights and theta at the end are bitwise equal. Three points make this
// hold without following the reference's dense loops:
//   * the weights of the spikes arriving in a step are summed in float64 (the ring slot of that
//     step) in the order of emission (step, then input) before ge += sum; the reference adds
//     them in the same order while learning; without learning it uses a matmul, which gives the
//     same float64 number because sums of float32 weights within a 2^29 range of each other are
//     exact (e.g. any initial weights; later a 1-ulp difference of float64 is possible);
//   * the STDP traces are kept as the steps of the spikes and read from tables built by the
//     same repeated multiplication (1, d, d*d, ...) by which the reference decays them;
//   * every weight update is w = min(max(w + change, w_min), w_max) in float64, synapse by
//     synapse in time order (depression of this step's arrivals before the potentiation of its
//     post spikes), as the reference does it on its dense working copy.
// Built with -ffp-contract=off (no fused multiply-add) as every snn5 kernel.
//
// Event-driven: an input spike adds one contiguous row of the input-major weight W^T [n_in, n_e]
// to ge, each weight into the ring slot of its synapse's arrival step (delays 0-19 steps). While
// learning, the weights change at every spike event (as Brian 1's STDP in the reference code),
// in a float64 working copy of the rows of the inputs that have fired; each update is clipped to
// [w_min, w_max]. A post spike potentiates its column by (nu_post * pre) * post2 over the inputs
// that have fired and clips the rest of the column (the rows of silent inputs are clipped once
// at the end). An arriving input spike depresses its synapse by nu_pre * post1; for a neuron
// that has not fired yet in the presentation post1 = 0 and the update is a bare clip, which is
// idempotent and only matters where normalisation left a weight above w_max: it is applied
// lazily (a spike of input i carries clip(w) to neuron j iff an earlier spike of i has arrived
// at j, i.e. d_ij < t - first spike of i; the neuron's first post spike clips the column), so
// the per-step work covers only the few neurons that have fired. An input spike carries the
// weight it has when it is emitted. Input spikes come either from given trains
// [T, B, n_in] or from the counter-based hash of the core
// (u = hash32(hash32(key + t * 0x9E3779B9) + i * 0x85EBCA6B)), evaluated only for inputs with a
// nonzero rate.
//
// Samples are independent. Without learning they run in parallel (at::parallel_for over samples)
// and each applies the retry rule itself (fewer than min_spikes excitatory spikes: present again
// from rest with the next attempt number, i.e. intensity + 1). With learning a call presents one
// sample once (the caller applies the new weights and repeats).

#include <torch/extension.h>
#include <torch/library.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

namespace {

// The derived constants, in the order of snn5/kernels/diehl_cook.py::CONSTS.
struct Consts {
  double k_e, v_rest_e, v_reset_e, v_thresh_e, theta_offset, e_exc, e_inh_e;
  double k_i, v_rest_i, v_reset_i, v_thresh_i, e_inh_i;
  double ge_decay, gi_decay, w_ei, w_ie, theta_plus, theta_decay;
  double nu_pre, nu_post, pre_decay, post1_decay, post2_decay, dt, intensity, w_min, w_max;
};
constexpr int64_t kConsts = static_cast<int64_t>(sizeof(Consts) / sizeof(double));

// The integers, in the order of snn5/kernels/diehl_cook.py::SIZES.
struct Sizes {
  int64_t steps, delay_slots, refrac_e, refrac_i, min_spikes, max_retries, attempt;
};
constexpr int64_t kSizes = static_cast<int64_t>(sizeof(Sizes) / sizeof(int64_t));

// C. Wellons' lowbias32 (as snn5.core.diehl_cook.hash32)
inline uint32_t hash32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352du;
  x ^= x >> 15;
  x *= 0x846ca68bu;
  x ^= x >> 16;
  return x;
}

inline uint32_t sample_key(int64_t seed, int64_t attempt) {
  const uint64_t s = static_cast<uint64_t>(seed);
  const uint32_t lo = static_cast<uint32_t>(s), hi = static_cast<uint32_t>(s >> 32);
  return hash32(lo ^ hash32(hi + hash32(static_cast<uint32_t>(attempt))));
}

// floor(rate * intensity * dt * 2^32), at most 2^32 (as snn5.core.diehl_cook.spike_thresholds)
inline uint64_t spike_threshold(double rate, double intensity, double dt) {
  const double p = std::floor(rate * intensity * dt * 4294967296.0);
  return p >= 4294967296.0 ? (uint64_t{1} << 32) : static_cast<uint64_t>(p);
}

// Where one sample's input spikes come from: given trains or the seeded hash.
struct Input {
  const uint8_t* trains = nullptr;   // [T, B, n_in] or null
  int64_t stride = 0;                // B * n_in
  const double* rates = nullptr;     // [n_in] of this sample
  int64_t seed = 0;
};

// The state of one sample and the work lists, reused across its attempts.
struct Net {
  int64_t n, m, R;                               // excitatory (= inhibitory) neurons, inputs,
                                                 // delay slots
  std::vector<double> v_e, ge_e, gi_e, theta, thr_e, v_i, ge_i, gi_i, acc, ring;
  std::vector<double> c1;                        // [n]: nu_pre * post1 of this step (learning)
  std::vector<int32_t> ref_e, ref_i, last_post, ze, zi, zx, seen, active, posted;
  std::vector<std::vector<int32_t>> emitted;     // [m]: steps at which each input fired
  std::vector<std::pair<int32_t, int32_t>> sent; // (input, step) of every input spike, in order
  std::vector<uint8_t> fz_e, fz_i;
  std::vector<uint64_t> thr_x;
  std::unique_ptr<double[]> wk;                  // [m, n] working weights W^T (learning): the
                                                 // rows of inputs that have fired

  Net(int64_t n_, int64_t m_, int64_t slots, bool learn) : n(n_), m(m_), R(slots) {
    ring.resize(static_cast<size_t>(slots * n_));
    for (auto* v : {&v_e, &ge_e, &gi_e, &theta, &thr_e, &v_i, &ge_i, &gi_i, &acc, &c1}) {
      v->resize(n);
    }
    emitted.resize(m);
    for (auto* v : {&ref_e, &ref_i, &last_post}) v->resize(n);
    fz_e.resize(n);
    fz_i.resize(n);
    thr_x.resize(m);
    ze.reserve(n); zi.reserve(n); zx.reserve(m); seen.reserve(m); active.reserve(m);
    posted.reserve(n);
    if (learn) wk.reset(new double[static_cast<size_t>(m * n)]);
  }
};

// How a population's threshold is given: per neuron (fixed theta), from the adaptive theta
// (decayed in this step), or one constant.
enum Threshold { kArray, kTheta, kConstant };

// Integrate one population over a step (forward Euler with the previous step's conductances;
// v held while refractory), decay its conductances, then threshold into fired[]. The pointers
// are restrict-qualified so that the loop vectorises.
template <Threshold TH>
inline void integrate(int64_t n, double* __restrict__ v, double* __restrict__ ge,
                      double* __restrict__ gi, int32_t* __restrict__ ref, double* __restrict__ th,
                      uint8_t* __restrict__ fired, double v_rest, double e_exc, double e_inh,
                      double k, double ge_decay, double gi_decay, double theta_decay,
                      double theta_offset, double v_thresh) {
  for (int64_t j = 0; j < n; ++j) {
    const double u = v[j];
    const double un = u + (((v_rest - u) + ge[j] * (e_exc - u)) + gi[j] * (e_inh - u)) * k;
    const int32_t r = ref[j];
    const bool hold = r > 0;
    const double uu = hold ? u : un;
    v[j] = uu;
    ref[j] = r - static_cast<int32_t>(hold);
    ge[j] *= ge_decay;
    gi[j] *= gi_decay;
    double limit;
    if (TH == kTheta) {
      const double theta = th[j] * theta_decay;
      th[j] = theta;
      limit = (theta - theta_offset) + v_thresh;
    } else if (TH == kArray) {
      limit = th[j];
    } else {
      limit = v_thresh;
    }
    fired[j] = static_cast<uint8_t>(!hold & (uu > limit));
  }
}

inline double clip(double w, double lo, double hi) { return std::min(std::max(w, lo), hi); }

// An input spike: its row of weights into the ring slots of the arrival steps (or into acc when
// there are no delays). CLIP: weight j is clipped where dr[j] < gap (an earlier spike of the
// input has arrived there; see the top of the file).
template <bool CLIP, typename W>
inline void send_row(const W* __restrict__ wr, const uint8_t* __restrict__ dr,
                     double* __restrict__ ring, double* __restrict__ acc, int64_t n, int64_t now,
                     int64_t R, int64_t gap, double lo, double hi) {
  if (dr) {
    for (int64_t j = 0; j < n; ++j) {
      int64_t slot = now + dr[j];
      slot -= slot >= R ? R : 0;
      double x = static_cast<double>(wr[j]);
      if (CLIP) x = dr[j] < gap ? clip(x, lo, hi) : x;
      ring[j * R + slot] += x;
    }
  } else {
    for (int64_t j = 0; j < n; ++j) {
      double x = static_cast<double>(wr[j]);
      if (CLIP) x = gap > 0 ? clip(x, lo, hi) : x;
      acc[j] += x;
    }
  }
}

// One presentation. Returns the total of the excitatory spikes; counts [n] are overwritten.
// With LEARN, the weights change at every spike event (see the top of the file), theta evolves
// in net.theta, and w_out [m, n] receives the weights W^T at the end (float32).
template <bool LEARN>
int64_t simulate(Net& net, const Consts& c, const Sizes& s, const float* w, const uint8_t* delays,
                 const double* theta0, const Input& in, int64_t attempt, double v_offset,
                 const double* tab_pre, const double* tab_post1, const double* tab_post2,
                 int64_t* counts, float* w_out) {
  const int64_t n = net.n, m = net.m, T = s.steps;
  double* v_e = net.v_e.data();
  double* ge_e = net.ge_e.data();
  double* gi_e = net.gi_e.data();
  double* theta = net.theta.data();
  double* thr_e = net.thr_e.data();
  double* v_i = net.v_i.data();
  double* ge_i = net.ge_i.data();
  double* gi_i = net.gi_i.data();
  double* acc = net.acc.data();
  double* c1 = net.c1.data();
  int32_t* ref_e = net.ref_e.data();
  int32_t* ref_i = net.ref_i.data();
  int32_t* last_post = net.last_post.data();
  uint8_t* fz_e = net.fz_e.data();
  uint8_t* fz_i = net.fz_i.data();
  double* wk = LEARN ? net.wk.get() : nullptr;
  const double w_min = c.w_min, w_max = c.w_max;

  const double v0_e = c.v_rest_e + v_offset, v0_i = c.v_rest_i + v_offset;
  for (int64_t j = 0; j < n; ++j) {
    v_e[j] = v0_e; v_i[j] = v0_i;
    ge_e[j] = gi_e[j] = ge_i[j] = gi_i[j] = 0.0;
    ref_e[j] = ref_i[j] = 0;
    theta[j] = theta0[j];
    thr_e[j] = (theta0[j] - c.theta_offset) + c.v_thresh_e;
    last_post[j] = -1;
    counts[j] = 0;
  }
  std::fill(net.ring.begin(), net.ring.end(), 0.0);            // nothing in flight
  double* ring = net.ring.data();
  const int64_t R = s.delay_slots;
  for (const int32_t i : net.seen) net.emitted[i].clear();
  net.seen.clear();
  net.sent.clear();
  net.posted.clear();                                       // neurons that have fired
  size_t in_flight = 0;                                     // net.sent[in_flight:] can arrive
  int64_t posts = 0;                                        // excitatory spikes so far

  uint32_t key = 0;
  if (!in.trains) {                                         // seeded: inputs that can fire
    key = sample_key(in.seed, attempt);
    const double intensity = c.intensity + static_cast<double>(attempt);
    net.active.clear();
    for (int64_t i = 0; i < m; ++i) {
      net.thr_x[i] = spike_threshold(in.rates[i], intensity, c.dt);
      if (net.thr_x[i] > 0) net.active.push_back(static_cast<int32_t>(i));
    }
  }
  const double v_rest_e = c.v_rest_e, e_exc = c.e_exc, e_inh_e = c.e_inh_e, k_e = c.k_e;
  const double v_rest_i = c.v_rest_i, e_inh_i = c.e_inh_i, k_i = c.k_i;
  const double ge_decay = c.ge_decay, gi_decay = c.gi_decay, theta_decay = c.theta_decay;
  const double theta_offset = c.theta_offset, v_thresh_e = c.v_thresh_e, v_thresh_i = c.v_thresh_i;

  for (int64_t t = 0; t < T; ++t) {
    // 1-2. integrate with the previous step's conductances (forward Euler), then threshold
    if (LEARN) {
      integrate<kTheta>(n, v_e, ge_e, gi_e, ref_e, theta, fz_e, v_rest_e, e_exc, e_inh_e, k_e,
                        ge_decay, gi_decay, theta_decay, theta_offset, v_thresh_e);
    } else {
      integrate<kArray>(n, v_e, ge_e, gi_e, ref_e, thr_e, fz_e, v_rest_e, e_exc, e_inh_e, k_e,
                        ge_decay, gi_decay, 1.0, 0.0, 0.0);
    }
    integrate<kConstant>(n, v_i, ge_i, gi_i, ref_i, nullptr, fz_i, v_rest_i, e_exc, e_inh_i, k_i,
                         ge_decay, gi_decay, 1.0, 0.0, v_thresh_i);
    net.ze.clear();
    net.zi.clear();
    for (int64_t j = 0; j < n; ++j) {
      if (fz_e[j]) net.ze.push_back(static_cast<int32_t>(j));
      if (fz_i[j]) net.zi.push_back(static_cast<int32_t>(j));
    }
    // input spikes of this step, in increasing input order
    net.zx.clear();
    if (in.trains) {
      const uint8_t* row = in.trains + t * in.stride;
      for (int64_t i = 0; i < m; ++i) {
        if (row[i]) net.zx.push_back(static_cast<int32_t>(i));
      }
    } else {
      const uint32_t kt = hash32(key + static_cast<uint32_t>(t) * 0x9e3779b9u);
      for (const int32_t i : net.active) {
        const uint32_t u = hash32(kt + static_cast<uint32_t>(i) * 0x85ebca6bu);
        if (static_cast<uint64_t>(u) < net.thr_x[i]) net.zx.push_back(i);
      }
    }

    // 3. propagate: inputs -> ge_e (one weight row per spike, the weights of now)
    const int64_t now = t % R;
    if (!delays && !net.zx.empty()) std::fill(acc, acc + n, 0.0);
    for (const int32_t i : net.zx) {
      const int64_t row = static_cast<int64_t>(i) * n;
      const uint8_t* dr = delays ? delays + row : nullptr;
      if (LEARN) {
        std::vector<int32_t>& em = net.emitted[i];
        if (em.empty()) {                   // first spike of the input: its working row
          net.seen.push_back(i);
          double* __restrict__ wr = wk + row;
          const float* __restrict__ w0 = w + row;
          for (int64_t j = 0; j < n; ++j) wr[j] = static_cast<double>(w0[j]);
          for (const int32_t j : net.posted) wr[j] = clip(wr[j], w_min, w_max);
          send_row<false>(wr, dr, ring, acc, n, now, R, 0, w_min, w_max);
        } else {
          send_row<true>(wk + row, dr, ring, acc, n, now, R, t - em[0], w_min, w_max);
        }
      } else {
        send_row<false>(w + row, dr, ring, acc, n, now, R, 0, 0.0, 0.0);
      }
    }
    if (delays) {
      for (int64_t j = 0; j < n; ++j) {
        ge_e[j] += ring[j * R + now];
        ring[j * R + now] = 0.0;
      }
    } else if (!net.zx.empty()) {
      for (int64_t j = 0; j < n; ++j) ge_e[j] += acc[j];
    }
    for (const int32_t j : net.ze) ge_i[j] += c.w_ei;
    if (!net.zi.empty()) {                  // every inhibitory spike but the partner's
      const int64_t k = static_cast<int64_t>(net.zi.size());
      const double w_ie = c.w_ie;
      for (int64_t j = 0; j < n; ++j) gi_e[j] += w_ie * static_cast<double>(k - fz_i[j]);
    }
    if (LEARN) {
      // pre pathway: the input's trace is set (it is read through its firing steps)
      for (const int32_t i : net.zx) {
        net.emitted[i].push_back(static_cast<int32_t>(t));
        net.sent.emplace_back(i, static_cast<int32_t>(t));
      }
      // the spikes arriving now depress their synapses: w = clip(w - nu_pre * post1), post1 of
      // this step (before its post spikes); only at neurons that have fired (elsewhere post1 = 0)
      while (in_flight < net.sent.size() && net.sent[in_flight].second + R <= t) ++in_flight;
      if (!net.posted.empty()) {
        for (const int32_t j : net.posted) c1[j] = c.nu_pre * tab_post1[t - last_post[j]];
        for (size_t k = in_flight; k < net.sent.size(); ++k) {
          const int64_t i = net.sent[k].first, d = t - net.sent[k].second;
          double* __restrict__ wr = wk + i * n;
          const uint8_t* dr = delays ? delays + i * n : nullptr;
          for (const int32_t j : net.posted) {
            if ((dr ? dr[j] : 0) == d) wr[j] = clip(wr[j] - c1[j], w_min, w_max);
          }
        }
      }
      // post pathway: w = clip(w + (nu_post * pre(t - d_ij)) * post2 (before this spike)) over
      // the column; post1 = post2 = 1
      for (const int32_t j : net.ze) {
        const double p2b = last_post[j] >= 0 ? tab_post2[t - last_post[j]] : 0.0;
        for (const int32_t i : net.seen) {
          double& wij = wk[static_cast<int64_t>(i) * n + j];
          double add = 0.0;
          if (p2b != 0.0) {
            const int64_t target = t - (delays ? delays[static_cast<int64_t>(i) * n + j] : 0);
            const std::vector<int32_t>& em = net.emitted[i];
            int64_t k = static_cast<int64_t>(em.size()) - 1;
            while (k >= 0 && em[k] > target) --k;      // its last firing at or before target
            if (k >= 0) add = (c.nu_post * tab_pre[target - em[k]]) * p2b;
          }
          wij = clip(wij + add, w_min, w_max);
        }
        if (last_post[j] < 0) net.posted.push_back(j);
        last_post[j] = static_cast<int32_t>(t);
      }
    }
    // 4. reset
    for (const int32_t j : net.ze) {
      v_e[j] = c.v_reset_e;
      ref_e[j] = static_cast<int32_t>(s.refrac_e);
      if (LEARN) theta[j] += c.theta_plus;
      ++counts[j];
    }
    posts += static_cast<int64_t>(net.ze.size());
    for (const int32_t j : net.zi) {
      v_i[j] = c.v_reset_i;
      ref_i[j] = static_cast<int32_t>(s.refrac_i);
    }
  }
  if (LEARN) {
    // the weights at the end: the working rows (clipped where a spike has arrived), the other
    // rows clipped in the columns of the neurons that fired
    for (int64_t i = 0; i < m; ++i) {
      float* __restrict__ o = w_out + i * n;
      const float* __restrict__ w0 = w + i * n;
      const std::vector<int32_t>& em = net.emitted[i];
      if (!em.empty()) {
        const double* __restrict__ wr = wk + i * n;
        const int64_t gap = T - em[0];
        const uint8_t* __restrict__ dr = delays ? delays + i * n : nullptr;
        for (int64_t j = 0; j < n; ++j) {
          const double x = wr[j];
          o[j] = static_cast<float>((dr ? dr[j] : 0) < gap ? clip(x, w_min, w_max) : x);
        }
      } else {
        std::copy(w0, w0 + n, o);
        for (const int32_t j : net.posted) {
          o[j] = static_cast<float>(clip(static_cast<double>(w0[j]), w_min, w_max));
        }
      }
    }
  }
  return posts;
}

// repeated multiplication 1, d, d*d, ... (as the reference decays a trace set to 1)
std::vector<double> trace_table(double decay, int64_t steps) {
  std::vector<double> tab(static_cast<size_t>(steps) + 1);
  tab[0] = 1.0;
  for (int64_t k = 1; k <= steps; ++k) tab[k] = tab[k - 1] * decay;
  return tab;
}

}  // namespace

// weight_t [n_in, n_e] float32; delays_t [n_in, n_e] uint8 steps (< delay_slots) or none;
// theta [n_e] float64; rates [B, n_in] float64 and seeds [B] int64
// (seeded inputs) or spikes [T, B, n_in] bool/uint8 (given trains; rates and seeds ignored).
// Returns (counts [B, n_e] int64, the weights W^T at the end [n_in, n_e] float32 or empty,
// dtheta [n_e] float64 or empty, attempts [B] int64). Learning presents one sample (B = 1).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> diehl_cook_present_cpu(
    const at::Tensor& weight_t, const at::Tensor& theta, const at::Tensor& rates,
    const at::Tensor& seeds, const std::optional<at::Tensor>& spikes,
    const std::optional<at::Tensor>& delays_t, at::ArrayRef<double> consts,
    at::IntArrayRef sizes, bool learn, bool retry, double v_offset) {
  TORCH_CHECK(static_cast<int64_t>(consts.size()) == kConsts, "diehl_cook: expected ", kConsts,
              " constants, got ", consts.size());
  TORCH_CHECK(static_cast<int64_t>(sizes.size()) == kSizes, "diehl_cook: expected ", kSizes,
              " sizes, got ", sizes.size());
  Consts c;
  std::memcpy(&c, consts.data(), sizeof(Consts));
  Sizes s;
  std::memcpy(&s, sizes.data(), sizeof(Sizes));
  TORCH_CHECK(weight_t.dim() == 2 && weight_t.scalar_type() == at::kFloat &&
              weight_t.is_contiguous(), "diehl_cook: weight_t must be contiguous float32 [n_in, n_e]");
  const int64_t m = weight_t.size(0), n = weight_t.size(1);
  TORCH_CHECK(theta.dim() == 1 && theta.size(0) == n && theta.scalar_type() == at::kDouble &&
              theta.is_contiguous(), "diehl_cook: theta must be contiguous float64 [n_e]");
  TORCH_CHECK(s.steps >= 1 && s.steps < (int64_t{1} << 30), "diehl_cook: bad number of steps");
  TORCH_CHECK(s.delay_slots >= 1 && s.delay_slots <= 256, "diehl_cook: bad number of delay slots");
  const uint8_t* dly = nullptr;
  if (delays_t.has_value() && delays_t->defined()) {
    const at::Tensor& d = *delays_t;
    TORCH_CHECK(d.dim() == 2 && d.size(0) == m && d.size(1) == n && d.is_contiguous() &&
                d.scalar_type() == at::kByte, "diehl_cook: delays_t must be contiguous uint8 [n_in, n_e]");
    const uint8_t* dp = d.data_ptr<uint8_t>();
    TORCH_CHECK(d.numel() == 0 || *std::max_element(dp, dp + d.numel()) < s.delay_slots,
                "diehl_cook: a delay reaches delay_slots");
    dly = d.data_ptr<uint8_t>();
  }
  const bool given = spikes.has_value() && spikes->defined();
  int64_t B;
  if (given) {
    const at::Tensor& z = *spikes;
    TORCH_CHECK(z.dim() == 3 && z.size(0) == s.steps && z.size(2) == m && z.is_contiguous() &&
                (z.scalar_type() == at::kBool || z.scalar_type() == at::kByte),
                "diehl_cook: spikes must be contiguous bool/uint8 [T, B, n_in]");
    B = z.size(1);
  } else {
    TORCH_CHECK(rates.dim() == 2 && rates.size(1) == m && rates.scalar_type() == at::kDouble &&
                rates.is_contiguous(), "diehl_cook: rates must be contiguous float64 [B, n_in]");
    B = rates.size(0);
    TORCH_CHECK(seeds.dim() == 1 && seeds.size(0) == B && seeds.scalar_type() == at::kLong &&
                seeds.is_contiguous(), "diehl_cook: seeds must be contiguous int64 [B]");
  }
  TORCH_CHECK(!learn || B == 1, "diehl_cook: learning presents one sample per call, got B=", B);
  const auto tab_pre = trace_table(c.pre_decay, s.steps);
  const auto tab_post1 = trace_table(c.post1_decay, s.steps);
  const auto tab_post2 = trace_table(c.post2_decay, s.steps);

  auto counts = at::zeros({B, n}, weight_t.options().dtype(at::kLong));
  auto attempts = at::full({B}, s.attempt, weight_t.options().dtype(at::kLong));
  at::Tensor w_new, dtheta;
  const float* w = weight_t.data_ptr<float>();
  const double* th0 = theta.data_ptr<double>();
  int64_t* cnt = counts.data_ptr<int64_t>();
  int64_t* att = attempts.data_ptr<int64_t>();
  const uint8_t* trains = given ? static_cast<const uint8_t*>(spikes->data_ptr()) : nullptr;
  const double* rt = given ? nullptr : rates.data_ptr<double>();
  const int64_t* sd = given ? nullptr : seeds.data_ptr<int64_t>();
  auto input_of = [&](int64_t b) {
    Input in;
    if (given) {
      in.trains = trains + b * m;
      in.stride = B * m;
    } else {
      in.rates = rt + b * m;
      in.seed = sd[b];
    }
    return in;
  };

  if (learn) {
    Net net(n, m, s.delay_slots, true);
    w_new = at::empty({m, n}, weight_t.options());             // W^T layout, as weight_t
    simulate<true>(net, c, s, w, dly, th0, input_of(0), s.attempt, v_offset, tab_pre.data(),
                   tab_post1.data(), tab_post2.data(), cnt, w_new.data_ptr<float>());
    dtheta = at::empty({n}, theta.options());
    double* dth = dtheta.data_ptr<double>();
    for (int64_t j = 0; j < n; ++j) dth[j] = net.theta[j] - th0[j];
  } else {
    at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      Net net(n, m, s.delay_slots, false);
      for (int64_t b = b0; b < b1; ++b) {
        const Input in = input_of(b);
        int64_t a = s.attempt;
        double offset = v_offset;
        while (true) {
          const int64_t total = simulate<false>(net, c, s, w, dly, th0, in, a, offset, nullptr,
                                                nullptr, nullptr, cnt + b * n, nullptr);
          att[b] = a;
          if (given || !retry || total >= s.min_spikes || a - s.attempt >= s.max_retries) break;
          ++a;
          offset = 0.0;
        }
      }
    });
    w_new = at::empty({0}, weight_t.options());
    dtheta = at::empty({0}, theta.options());
  }
  return {counts, w_new, dtheta, attempts};
}

// A private namespace: snn5/kernels/diehl_cook.py defines the public op snn5::diehl_cook_present
// (schema, fake kernel) and calls this one from its CPU implementation.
TORCH_LIBRARY_FRAGMENT(snn5_cpu, m) {
  m.def("diehl_cook_present(Tensor weight_t, Tensor theta, Tensor rates, Tensor seeds, "
        "Tensor? spikes, Tensor? delays_t, float[] consts, int[] sizes, bool learn, bool retry, "
        "float v_offset) "
        "-> (Tensor, Tensor, Tensor, Tensor)",
        &diehl_cook_present_cpu);
}
