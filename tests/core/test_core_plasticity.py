"""Plasticity rules of snn5.core.plasticity against hand-computed cases (float64).

Expected values are written from the rules' equations (exponentials of the spike-time
differences), not by calling the library: signs and magnitudes of pair and triplet STDP, the
three-factor rule's reward gating, BCM's sliding threshold, the Hebbian fixed point, BCPNN's
log-odds weights, homeostasis, competition and the weight constraints.
"""

from __future__ import annotations

import math

import pytest
import torch

from snn5.core import plasticity as P

DT = 1e-3
F64 = torch.float64


def train(n_steps: int, spikes: dict[int, str], n_in: int = 1, n_out: int = 1):
    """Spike rasters [T, 1, n] for a single synapse: ``spikes`` maps step -> 'pre'/'post'/'both'."""
    pre = torch.zeros(n_steps, 1, n_in, dtype=F64)
    post = torch.zeros(n_steps, 1, n_out, dtype=F64)
    for t, who in spikes.items():
        if who in ("pre", "both"):
            pre[t] = 1
        if who in ("post", "both"):
            post[t] = 1
    return pre, post


def run_stdp(pre, post, w, p):
    state = P.stdp_init(pre[0], post[0])
    total = torch.zeros_like(w)
    for x, z in zip(pre, post):
        dw, state = P.stdp_step(x, z, state, w, p, dt=DT)
        total += dw
    return total


# ----------------------------------------------------------------------------- pair STDP

@pytest.mark.parametrize("k", [1, 3, 10])
def test_pre_before_post_potentiates_by_the_window(k):
    p = P.STDPParams(a_plus=0.01, a_minus=0.012, tau_plus=20e-3, tau_minus=30e-3)
    pre, post = train(k + 2, {0: "pre", k: "post"})
    dw = run_stdp(pre, post, torch.full((1, 1), 0.5, dtype=F64), p)
    assert dw.item() == pytest.approx(0.01 * math.exp(-k * DT / 20e-3), rel=1e-12)


@pytest.mark.parametrize("k", [1, 3, 10])
def test_post_before_pre_depresses_by_the_window(k):
    p = P.STDPParams(a_plus=0.01, a_minus=0.012, tau_plus=20e-3, tau_minus=30e-3)
    pre, post = train(k + 2, {0: "post", k: "pre"})
    dw = run_stdp(pre, post, torch.full((1, 1), 0.5, dtype=F64), p)
    assert dw.item() == pytest.approx(-0.012 * math.exp(-k * DT / 30e-3), rel=1e-12)


def test_simultaneous_spikes_count_both_orders():
    p = P.STDPParams(a_plus=0.01, a_minus=0.0105)
    pre, post = train(2, {0: "both"})
    dw = run_stdp(pre, post, torch.zeros(1, 1, dtype=F64), p)
    assert dw.item() == pytest.approx(0.01 - 0.0105, rel=1e-12)


def test_all_to_all_and_nearest_traces_differ_as_defined():
    # two pre spikes (steps 0 and 2) then a post spike at step 5
    pre, post = train(6, {0: "pre", 2: "pre", 5: "post"})
    w = torch.zeros(1, 1, dtype=F64)
    a = math.exp(-DT / 20e-3)
    all_to_all = run_stdp(pre, post, w, P.STDPParams(a_plus=1.0, a_minus=0.0))
    nearest = run_stdp(pre, post, w, P.STDPParams(a_plus=1.0, a_minus=0.0,
                                                  trace=P.TraceMode.NEAREST))
    assert all_to_all.item() == pytest.approx(a ** 5 + a ** 3, rel=1e-12)
    assert nearest.item() == pytest.approx(a ** 3, rel=1e-12)


def test_multiplicative_rule_scales_with_distance_to_the_bounds():
    p = P.STDPParams(a_plus=0.01, a_minus=0.01, w_min=0.0, w_max=1.0, mu=1.0)
    up_pre, up_post = train(3, {0: "pre", 1: "post"})
    down_pre, down_post = train(3, {0: "post", 1: "pre"})
    w = torch.tensor([[0.25]], dtype=F64)
    decay = math.exp(-DT / 20e-3)
    assert run_stdp(up_pre, up_post, w, p).item() == pytest.approx(0.01 * 0.75 * decay)
    assert run_stdp(down_pre, down_post, w, p).item() == pytest.approx(-0.01 * 0.25 * decay)
    # at the upper bound potentiation vanishes; mu = 0.5 uses the square root
    assert run_stdp(up_pre, up_post, torch.ones(1, 1, dtype=F64), p).item() == 0.0
    half = P.STDPParams(a_plus=0.01, a_minus=0.01, mu=0.5)
    assert run_stdp(up_pre, up_post, w, half).item() == pytest.approx(0.01 * 0.75 ** 0.5 * decay)


def test_batch_sums_the_samples():
    torch.manual_seed(1)
    pre = (torch.rand(20, 4, 5) < 0.3).double()
    post = (torch.rand(20, 4, 3) < 0.3).double()
    w = torch.rand(3, 5, dtype=F64)
    p = P.STDPParams()
    together = run_stdp(pre, post, w, p)
    apart = sum(run_stdp(pre[:, b:b + 1], post[:, b:b + 1], w, p) for b in range(4))
    torch.testing.assert_close(together, apart, rtol=1e-12, atol=1e-15)


def test_stdp_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"\[out, in\] = \[3, 5\]"):
        P.stdp_step(torch.zeros(2, 5), torch.zeros(2, 3), P.stdp_init(torch.zeros(2, 5),
                    torch.zeros(2, 3)), torch.zeros(5, 3))
    with pytest.raises(ValueError, match="same B"):
        P.stdp_step(torch.zeros(2, 5), torch.zeros(3, 3), P.stdp_init(torch.zeros(2, 5),
                    torch.zeros(3, 3)), torch.zeros(3, 5))


# ----------------------------------------------------------------------------- triplet STDP

def run_triplet(pre, post, p):
    state = P.triplet_init(pre[0], post[0])
    total = torch.zeros(post.shape[2], pre.shape[2], dtype=F64)
    for x, z in zip(pre, post):
        dw, state = P.triplet_step(x, z, state, p, dt=DT)
        total += dw
    return total


def test_triplet_post_pre_post_adds_the_triplet_term():
    p = P.TripletParams()
    pre, post = train(8, {0: "pre", 2: "post", 5: "post"})
    r1 = lambda k: math.exp(-k * DT / p.tau_plus)              # noqa: E731
    # LTP at step 2 (no earlier post spike) and at step 5 (o2 from the post spike at step 2)
    expected = p.a2_plus * r1(2) + r1(5) * (p.a2_plus + p.a3_plus * math.exp(-3 * DT / p.tau_y))
    assert run_triplet(pre, post, p).item() == pytest.approx(expected, rel=1e-12)


def test_triplet_pre_post_pre_depresses_with_the_slow_pre_trace():
    p = P.TripletParams()
    pre, post = train(8, {0: "pre", 2: "post", 6: "pre"})
    ltp = p.a2_plus * math.exp(-2 * DT / p.tau_plus)
    ltd = math.exp(-4 * DT / p.tau_minus) * (p.a2_minus + p.a3_minus * math.exp(-6 * DT / p.tau_x))
    assert run_triplet(pre, post, p).item() == pytest.approx(ltp - ltd, rel=1e-12)


def test_triplet_rule_is_frequency_dependent():
    """Pfister & Gerstner's point: pairings at high frequency potentiate more than at low
    frequency (the pair rule would give the same change per pairing)."""
    p = P.TripletParams()

    def pairing_train(period_steps, n=10):
        spikes = {}
        for i in range(n):
            spikes[i * period_steps] = "pre"
            spikes[i * period_steps + 10] = "post"           # pre->post with +10 ms
        return train(n * period_steps + 20, spikes)

    slow = run_triplet(*pairing_train(1000), p).item()        # 1 Hz
    fast = run_triplet(*pairing_train(50), p).item()          # 20 Hz
    assert fast > 0 and fast > 100 * abs(slow)


# ----------------------------------------------------------------------------- three-factor

def test_reward_gates_and_signs_the_eligible_change():
    p = P.STDPParams(a_plus=0.01, a_minus=0.0)
    pre, post = train(4, {0: "pre", 2: "post"})
    w = torch.zeros(1, 1, dtype=F64)
    state = P.eligibility_init(pre[0], post[0])
    for x, z in zip(pre, post):
        state = P.eligibility_step(x, z, state, w, p, tau_e=50e-3, dt=DT)
    # the STDP change 0.01 e^{-2/20} was stored at step 2 and decayed for one step with tau_e
    e = 0.01 * math.exp(-2 * DT / 20e-3) * math.exp(-DT / 50e-3)
    assert state.e.item() == pytest.approx(e, rel=1e-12)
    assert P.reward_modulated(state.e, 0.0).item() == 0.0
    assert P.reward_modulated(state.e, 2.0, lr=0.5).item() == pytest.approx(e, rel=1e-12)
    assert P.reward_modulated(state.e, -1.0).item() == pytest.approx(-e, rel=1e-12)


def test_per_sample_rewards_weight_each_sample():
    e = torch.tensor([[[1.0, 2.0]], [[10.0, 20.0]]], dtype=F64)       # [B=2, out=1, in=2]
    dw = P.reward_modulated(e, torch.tensor([1.0, -1.0], dtype=F64))
    torch.testing.assert_close(dw, torch.tensor([[-9.0, -18.0]], dtype=F64))
    with pytest.raises(ValueError, match="one value per sample"):
        P.reward_modulated(e, torch.ones(3, dtype=F64))


# ----------------------------------------------------------------------------- rate rules

def test_bcm_potentiates_above_and_depresses_below_the_threshold():
    x = torch.ones(1, 1, dtype=F64)
    theta = torch.tensor([0.5], dtype=F64)
    p = P.BCMParams(eta=0.1, tau_theta=10e-3)
    dw_hi, _ = P.bcm_step(x, torch.tensor([[0.8]], dtype=F64), theta, p, dt=DT)
    dw_lo, _ = P.bcm_step(x, torch.tensor([[0.2]], dtype=F64), theta, p, dt=DT)
    assert dw_hi.item() == pytest.approx(0.1 * 0.8 * 0.3)
    assert dw_lo.item() == pytest.approx(0.1 * 0.2 * -0.3)


def test_bcm_threshold_slides_to_the_mean_square_rate():
    theta = torch.zeros(1, dtype=F64)
    y = torch.tensor([[1.0], [3.0]], dtype=F64)                       # E[y^2] = 5
    for _ in range(2000):
        _, theta = P.bcm_step(torch.ones(2, 1, dtype=F64), y, theta,
                              P.BCMParams(tau_theta=20e-3, y0=2.0), dt=DT)
    assert theta.item() == pytest.approx(5.0 / 2.0, rel=1e-6)


def test_hebbian_decay_converges_to_the_coincidence_rate_over_beta():
    torch.manual_seed(2)
    w = torch.zeros(1, 1, dtype=F64)
    pre = torch.ones(1, 1, dtype=F64)
    for _ in range(3000):
        post = torch.ones(1, 1, dtype=F64)
        w = w + P.hebbian_decay(pre, post, w, eta=0.01, beta=0.5)
    assert w.item() == pytest.approx(1.0 / 0.5, rel=1e-6)


def test_bcpnn_weights_are_log_odds_of_coactivation():
    torch.manual_seed(3)
    T, B = 3000, 8
    a = (torch.rand(T, B, 1) < 0.2).double()
    b = (torch.rand(T, B, 1) < 0.2).double()
    pre = torch.cat([a, b], dim=2)                          # [T, B, 2]: inputs a and b
    post = torch.cat([a, 1 - a], dim=2)                     # post0 copies a, post1 = not a
    state = P.bcpnn_init(2, 2, dtype=F64)
    for x, z in zip(pre, post):
        state = P.bcpnn_step(x, z, state, tau_p=0.5, dt=DT)
    w, bias = P.bcpnn_weights(state)
    assert w[0, 0] > 1.0                                    # post0 with a: log(1/0.2) = 1.6
    assert w[1, 0] < -2.0                                   # post1 never with a
    assert abs(w[0, 1]) < 0.3 and abs(w[1, 1]) < 0.3       # b independent of both
    assert bias[0] == pytest.approx(math.log(0.2), abs=0.15)
    with pytest.raises(ValueError, match="tau_p >= dt"):
        P.bcpnn_step(pre[0], post[0], state, tau_p=1e-4, dt=DT)


# ----------------------------------------------------------------------------- homeostasis

def test_adaptive_threshold_grows_with_spikes_and_decays():
    theta = torch.zeros(3, dtype=F64)
    z = torch.tensor([[1.0, 0.0, 1.0], [1.0, 0.0, 0.0]], dtype=F64)
    theta = P.adaptive_threshold_step(theta, z, theta_plus=0.05, decay=0.5)
    torch.testing.assert_close(theta, torch.tensor([0.1, 0.0, 0.05], dtype=F64))
    theta = P.adaptive_threshold_step(theta, torch.zeros(1, 3, dtype=F64), theta_plus=0.05,
                                      decay=0.5)
    torch.testing.assert_close(theta, torch.tensor([0.05, 0.0, 0.025], dtype=F64))


@pytest.mark.parametrize("start_rate_input", [0.2, 3.0])
def test_rate_homeostasis_moves_a_lif_rate_to_the_target(start_rate_input):
    """A LIF neuron with constant drive: adapting its threshold by rate homeostasis brings its
    measured firing rate to the target, from above and from below."""
    from snn5.core import LIFParams, LIFState, lif_scan

    target = 0.1
    theta = torch.zeros(1, dtype=F64)
    x = torch.full((200, 1, 1), start_rate_input, dtype=F64)
    rates = []
    for _ in range(300):
        z, _ = lif_scan(x, LIFState(torch.zeros(1, 1, dtype=F64)),
                        LIFParams(tau_mem=5e-3, v_th=float(1.0 + theta)), dt=DT)
        rate = z.mean((0, 1))
        rates.append(rate.item())
        theta = (P.rate_homeostasis(theta, rate, target=target, eta=1.0)).clamp_min(-0.99)
    assert abs(rates[0] - target) > 0.05
    assert abs(sum(rates[-20:]) / 20 - target) < 0.02


# ----------------------------------------------------------------------------- competition

def test_winner_take_all_keeps_the_most_depolarised_spiking_neurons():
    z = torch.tensor([[1.0, 1.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    v = torch.tensor([[1.2, 1.5, 9.0, 1.1], [3.0, 2.0, 1.0, 0.0]])
    torch.testing.assert_close(P.winner_take_all(z, v), torch.tensor([[0.0, 1, 0, 0], [0, 0, 0, 0]]))
    torch.testing.assert_close(P.winner_take_all(z, v, k=2),
                               torch.tensor([[1.0, 1, 0, 0], [0, 0, 0, 0]]))


def test_lateral_inhibition_excludes_self():
    z = torch.tensor([[1.0, 0.0, 1.0]])
    torch.testing.assert_close(P.lateral_inhibition(z, strength=2.0),
                               torch.tensor([[-2.0, -4.0, -2.0]]))


# ----------------------------------------------------------------------------- constraints

def test_dale_projection_holds_after_random_updates():
    torch.manual_seed(4)
    signs = P.dale_signs(6, 2)
    w = signs * torch.rand(5, 8)                             # start signed correctly
    assert P.dale_violations(w, signs) == 0
    for _ in range(20):
        w = P.apply_dale(w + 0.5 * torch.randn(5, 8), signs)
        assert P.dale_violations(w, signs) == 0
    assert (w[:, :6] >= 0).all() and (w[:, 6:] <= 0).all()
    assert P.dale_violations(-w.abs() - 1, signs) == 5 * 6


def test_normalise_and_clip():
    w = torch.rand(4, 10) + 0.1
    n = P.normalize_weights(w, 78.0)
    torch.testing.assert_close(n.sum(1), torch.full((4,), 78.0))
    torch.testing.assert_close(n / n.sum(1, keepdim=True), w / w.sum(1, keepdim=True))
    assert P.clip_weights(torch.tensor([-1.0, 0.5, 2.0]), 0.0, 1.0).tolist() == [0.0, 0.5, 1.0]
    with pytest.raises(ValueError, match="w_min < w_max"):
        P.clip_weights(w, 1.0, 0.0)
    with pytest.raises(ValueError, match="positive"):
        P.normalize_weights(w, 0.0)


# ----------------------------------------------------------------------------- scans == steps

@pytest.mark.parametrize("mode", list(P.TraceMode))
@pytest.mark.parametrize("mu", [0.0, 1.0, 0.5])
def test_scans_equal_their_steps(mode, mu):
    torch.manual_seed(5)
    T, B, n_in, n_out = 30, 3, 7, 4
    pre = (torch.rand(T, B, n_in) < 0.2).double()
    post = (torch.rand(T, B, n_out) < 0.2).double()
    w = torch.rand(n_out, n_in, dtype=F64)
    p = P.STDPParams(mu=mu, trace=mode)
    # start from non-zero traces (the scan continues a stream)
    s0 = P.STDPState(torch.rand(B, n_in, dtype=F64), torch.rand(B, n_out, dtype=F64))

    state, total = s0, torch.zeros_like(w)
    for x, z in zip(pre, post):
        dw, state = P.stdp_step(x, z, state, w, p, dt=DT)
        total += dw
    dw_scan, state_scan = P.stdp_scan(pre, post, s0, w, p, dt=DT)
    torch.testing.assert_close(dw_scan, total, rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(state_scan, state, rtol=0, atol=0)

    tp = P.TripletParams(trace=mode)
    t0 = P.TripletState(*(torch.rand(B, n, dtype=F64) for n in (n_in, n_in, n_out, n_out)))
    state, total = t0, torch.zeros_like(w)
    for x, z in zip(pre, post):
        dw, state = P.triplet_step(x, z, state, tp, dt=DT)
        total += dw
    dw_scan, state_scan = P.triplet_scan(pre, post, t0, tp, dt=DT)
    torch.testing.assert_close(dw_scan, total, rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(state_scan, state, rtol=0, atol=0)

    e0 = P.EligibilityState(s0, torch.rand(B, n_out, n_in, dtype=F64))
    state = e0
    for x, z in zip(pre, post):
        state = P.eligibility_step(x, z, state, w, p, tau_e=20e-3, dt=DT)
    scanned = P.eligibility_scan(pre, post, e0, w, p, tau_e=20e-3, dt=DT)
    torch.testing.assert_close(scanned.e, state.e, rtol=1e-10, atol=1e-13)


def test_scan_rejects_mismatched_sequences():
    with pytest.raises(ValueError, match=r"same T >= 1 and B"):
        P.stdp_scan(torch.zeros(5, 2, 3), torch.zeros(4, 2, 2),
                    P.stdp_init(torch.zeros(2, 3), torch.zeros(2, 2)), torch.zeros(2, 3))


def test_first_spike_rstdp_rewards_causal_inputs_and_punishes_them_on_errors():
    inf = math.inf
    pre_time = torch.tensor([[0.0, 3.0, 5.0, inf], [1.0, inf, 2.0, 9.0]], dtype=F64)
    p = P.FirstSpikeRSTDPParams(a_r_plus=4.0, a_r_minus=3.0, a_p_minus=2.0, a_p_plus=1.0)
    winner = torch.tensor([1, 0])
    dw = P.first_spike_rstdp(pre_time, winner, torch.tensor([3, 2]),
                             torch.tensor([True, False]), 3, p, punish_scale=0.5)
    expected = torch.tensor([[-1.0, 0.5, -1.0, 0.5],                # sample 1 punished (x 0.5)
                             [4.0, 4.0, -3.0, -3.0],                # sample 0 rewarded
                             [0.0, 0.0, 0.0, 0.0]], dtype=F64)      # never won: unchanged
    torch.testing.assert_close(dw, expected)
    silent = P.first_spike_rstdp(pre_time, torch.tensor([-1, -1]), torch.tensor([0, 0]),
                                 torch.tensor([True, True]), 3, p)
    assert silent.abs().sum() == 0
