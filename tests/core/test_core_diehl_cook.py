"""Diehl & Cook (2015) reference physics, checked by hand: synaptic input, lateral inhibition,
refractoriness, the STDP rule with its constants (immediate, clipped updates), adaptive
thresholds, the retry rule, the counter-based input spikes, labelling and classification,
parameter errors."""

import math

import pytest
import torch

from snn5.core.diehl_cook import (
    DiehlCookParams, assign_labels, class_sums, classify, derive, diehl_cook_present,
    diehl_cook_run, diehl_cook_step, hash32, init_delays, init_state, init_weight, input_rates,
    normalize_weight, poisson_spikes, sample_key, split_synapses,
)

P = DiehlCookParams()
F64 = torch.float64


def theta0(n: int = 1) -> torch.Tensor:
    return torch.full((n,), P.theta_init, dtype=F64)


def run_steps(x_seq, weight, p=P, *, learn=False, state=None):
    """Step through inputs ``x_seq [T, B, n_in]``; returns (z_e [T, B, n_e], z_i, v_e, v_i, state)."""
    state = state if state is not None else init_state(x_seq.shape[1], theta0(weight.shape[0]),
                                                       weight.shape[1], p, learn=learn,
                                                       weight=weight if learn else None)
    ze, zi, ve, vi = [], [], [], []
    for x in x_seq:
        z_e, z_i, state = diehl_cook_step(x, state, weight, p, learn=learn)
        ze.append(z_e), zi.append(z_i), ve.append(state.v_e), vi.append(state.v_i)
    return torch.stack(ze), torch.stack(zi), torch.stack(ve), torch.stack(vi), state


def spikes_at(steps_by_input, T, n_in):
    """A single sample's trains ``[T, 1, n_in]`` with input i firing at ``steps_by_input[i]``."""
    x = torch.zeros(T, 1, n_in, dtype=torch.bool)
    for i, steps in enumerate(steps_by_input):
        for t in steps:
            x[t, 0, i] = True
    return x


# ----------------------------------------------------------------------------- dynamics

def test_a_single_input_spike_raises_ge_then_v():
    weight = torch.tensor([[0.5]])
    _, _, v_e, _, state = run_steps(spikes_at([[0]], 3, 1), weight)
    k = P.dt / P.tau_e
    assert v_e[0, 0, 0] == P.v_rest_e                    # the spike's conductance acts next step
    v1 = P.v_rest_e + (0.5 * (P.e_exc - P.v_rest_e)) * k   # ge = 0.5 during step 1
    assert v_e[1, 0, 0].item() == pytest.approx(v1, abs=1e-15)
    assert v1 - P.v_rest_e == pytest.approx(0.5 * 65e-3 * 0.005)   # +0.1625 mV
    v2 = v1 + ((P.v_rest_e - v1) + 0.25 * (P.e_exc - v1)) * k    # ge halves per step (Euler)
    assert v_e[2, 0, 0].item() == pytest.approx(v2, abs=1e-15)
    assert state.ge_e.item() == 0.125                    # 0.5 * (1 - dt / 1 ms)^2


def test_a_delayed_synapse_delivers_its_weight_later():
    c = derive(P)
    assert c.delay_slots == 20                           # 0 .. 19 steps (0 .. 9.5 ms)
    weight = torch.tensor([[0.5, 0.25]])
    delays = torch.tensor([[3, 0]], dtype=torch.uint8)
    state = init_state(1, theta0(), 2, P, learn=False)
    syn = split_synapses(weight, delays, c.delay_slots)
    assert syn.weight.shape == (20, 1, 2) and syn.weight[3, 0, 0] == 0.5
    assert syn.weight[0, 0, 1] == 0.25 and syn.onehot.sum() == 2
    ge = []
    for x in spikes_at([[0], [0]], 6, 2):
        _, _, state = diehl_cook_step(x, state, syn, P, learn=False)
        ge.append(state.ge_e.item())
    # input 1 (no delay) at step 0, halving per step; input 0 lands 3 steps later
    assert ge == [0.25, 0.125, 0.0625, 0.03125 + 0.5, 0.53125 / 2, 0.53125 / 4]
    d = init_delays(40, 784, P, torch.Generator().manual_seed(0))
    assert d.dtype == torch.uint8 and int(d.min()) == 0 and int(d.max()) == 19
    assert d.float().mean().item() == pytest.approx(9.5, abs=0.1)
    with pytest.raises(ValueError, match="delays reach 25 steps"):
        split_synapses(weight, torch.tensor([[25, 0]], dtype=torch.uint8), c.delay_slots)


def test_excitatory_spike_drives_its_partner_which_inhibits_the_others():
    weight = torch.tensor([[50.0], [0.0], [0.0]])        # one input drives neuron 0 only
    z_e, z_i, _, _, state = run_steps(spikes_at([[0]], 3, 1), weight)
    assert z_e[:, 0].nonzero().tolist() == [[1, 0]]      # v jumps by 16.25 mV at step 1
    assert z_i[:, 0].nonzero().tolist() == [[2, 0]]      # the partner fires the next step
    gi_after = P.w_ie                                    # added at step 2, not decayed yet
    assert state.gi_e[0].tolist() == [0.0, gi_after, gi_after]   # all but the partner


def test_refractory_period_holds_v_and_blocks_spikes():
    c = derive(P)
    assert (c.refrac_e, c.refrac_i) == (10, 4)
    weight = torch.tensor([[50.0]])
    T = 30
    z_e, _, v_e, _, _ = run_steps(torch.ones(T, 1, 1, dtype=torch.bool), weight)
    fired = z_e[:, 0, 0].nonzero().flatten().tolist()
    assert fired == [1, 12, 23]                          # 10 held steps after each spike
    assert (v_e[2:12, 0, 0] == P.v_reset_e).all()        # v held at the reset value
    assert v_e[12, 0, 0] == P.v_reset_e                  # reset again after the next spike
    # inhibitory: 4 held steps at v_reset_i
    state = init_state(1, theta0(), 1, P, learn=False)
    state = state._replace(ge_i=torch.full((1, 1), 1000.0, dtype=F64))
    _, z_i, _, v_i, _ = run_steps(torch.zeros(8, 1, 1, dtype=torch.bool), torch.zeros(1, 1),
                                  state=state)
    assert z_i[:, 0, 0].nonzero().flatten().tolist() == [0, 5]
    assert (v_i[1:5, 0, 0] == P.v_reset_i).all()


# ----------------------------------------------------------------------------- STDP, theta

def short(steps: int, **change) -> DiehlCookParams:
    return P._replace(t_present=steps * P.dt, **change)


# the probes start at 0.5 (no clipping); the driver (50, which fires the neuron in one step)
# needs w_max above it. dw is float32: 0.5 + change is rounded to 6e-8, 50 + change to 4e-6.
def test_post_before_pre_depresses_by_nu_pre_times_post1():
    p = short(10, w_max=100.0)
    weight = torch.tensor([[0.5, 50.0]])                 # input 0: probe, input 1: driver
    res = diehl_cook_present(spikes_at([[5], [0]], 10, 2), weight, theta0(), p, learn=True)
    assert res.counts.tolist() == [[1]]                  # post spike at step 1
    d1 = math.exp(-P.dt / P.tau_post1)
    assert res.dw[0, 0].item() == pytest.approx(-P.nu_pre * d1 ** 4, abs=1e-7)
    assert res.dw[0, 1].item() == 0.0                    # driver fired before any post spike,
                                                          # and a first post spike has post2 = 0
    assert torch.equal(res.weight, weight + res.dw)


def test_pre_before_post_potentiates_by_nu_post_times_pre_times_post2():
    T = 30
    p = short(T, w_max=100.0)
    weight = torch.tensor([[0.5, 50.0]])
    res = diehl_cook_present(spikes_at([[15], [0, 20]], T, 2), weight, theta0(), p, learn=True)
    assert res.counts.tolist() == [[2]]                  # post spikes at steps 1 and 21
    d_pre = math.exp(-P.dt / P.tau_pre)
    d1, d2 = math.exp(-P.dt / P.tau_post1), math.exp(-P.dt / P.tau_post2)
    probe = -P.nu_pre * d1 ** 14 + P.nu_post * d_pre ** 6 * d2 ** 20
    driver = -P.nu_pre * d1 ** 19 + P.nu_post * d_pre ** 1 * d2 ** 20
    assert probe > 0
    assert res.dw[0, 0].item() == pytest.approx(probe, abs=1e-7)
    assert res.dw[0, 1].item() == pytest.approx(driver, abs=4e-6)
    # theta: +theta_plus per spike, everything decaying by (1 - dt / tau_theta) per step
    d = 1 - P.dt / P.tau_theta
    expected = P.theta_init * (d ** T - 1) + P.theta_plus * (d ** (T - 2) + d ** (T - 22))
    assert res.dtheta.item() == pytest.approx(expected, rel=1e-9)


def test_stdp_is_timed_where_the_spike_arrives():
    T = 30
    p = short(T, w_max=100.0)
    weight = torch.tensor([[0.5, 0.5, 50.0]])            # two probes (delay 4), one driver
    delays = torch.tensor([[4, 4, 0]], dtype=torch.uint8)
    trains = spikes_at([[15], [19], [0, 20]], T, 3)
    res = diehl_cook_present(trains, weight, theta0(), p, delays=delays, learn=True)
    assert res.counts.tolist() == [[2]]                  # post spikes at steps 1 and 21
    d_pre = math.exp(-P.dt / P.tau_pre)
    d1, d2 = math.exp(-P.dt / P.tau_post1), math.exp(-P.dt / P.tau_post2)
    # probe 0 arrives at 19: depressed by post1 (18 steps after the first post spike); the
    # post spike at 21 reads its trace at 21 - 4 = 17, two steps after it fired
    assert res.dw[0, 0].item() == pytest.approx(-P.nu_pre * d1 ** 18
                                                + P.nu_post * d_pre ** 2 * d2 ** 20, abs=1e-7)
    # probe 1 fired at 19, before the post spike at 21, but arrives at 23: only depression
    assert res.dw[0, 1].item() == pytest.approx(-P.nu_pre * d1 ** 2, abs=1e-7)


def test_weights_change_at_once_and_every_update_is_clipped():
    T = 30
    d1 = math.exp(-P.dt / P.tau_post1)
    # neuron 0: a driver of 50 (above w_max = 1) fires it at step 1; input 1 (1e-5) arrives at
    # step 3 and input 2 (1.5) never fires; neuron 1 receives nothing
    weight = torch.tensor([[50.0, 1e-5, 1.5], [0.0, 0.5, 1.5]])
    trains = spikes_at([[0, 20], [3], []], T, 3)
    res = diehl_cook_present(trains, weight, theta0(2), short(T), learn=True)
    frozen = diehl_cook_present(trains, weight, theta0(2), short(T))
    assert frozen.counts.tolist() == [[2, 0]]            # the driver fires neuron 0 twice
    assert res.counts.tolist() == [[1, 0]]               # clipped to 1 at its first arrival, its
    w = res.weight                                       # second spike no longer fires it
    assert w[0, 0].item() == pytest.approx(1.0 - P.nu_pre * d1 ** 19, abs=1e-7)  # arrival at 20
    assert w[0, 1].item() == 0.0                         # 1e-5 - 1e-4 * post1: clipped at w_min
    assert w[0, 2].item() == 1.0                         # the post spike clips the whole column
    assert w[1].tolist() == [0.0, 0.5, 1.5]              # no post spike: only arrivals clipped


def test_without_learning_theta_and_weights_stay():
    weight = torch.tensor([[0.0, 50.0]])
    res = diehl_cook_present(spikes_at([[15], [0, 20]], 30, 2), weight, theta0(), short(30))
    assert res.dw is None and res.dtheta is None
    assert res.counts.tolist() == [[2]]


def test_first_presentation_starts_below_rest():
    state = init_state(2, theta0(3), 4, P, learn=False, v_offset=P.v_init_offset)
    assert torch.allclose(state.v_e, torch.full((2, 3), -105e-3, dtype=F64))
    assert torch.allclose(state.v_i, torch.full((2, 3), -100e-3, dtype=F64))


# ----------------------------------------------------------------------------- inputs, retries

def test_hash_matches_plain_uint32_arithmetic():
    def plain(x):
        x ^= x >> 16
        x = (x * 0x7FEB352D) & 0xFFFFFFFF
        x ^= x >> 15
        x = (x * 0x846CA68B) & 0xFFFFFFFF
        return x ^ (x >> 16)

    values = torch.randint(0, 2**32, (2000,), dtype=torch.int64)
    values[:3] = torch.tensor([0, 1, 2**32 - 1])
    assert hash32(values).tolist() == [plain(v) for v in values.tolist()]
    assert hash32(12345) == plain(12345)
    seeds = torch.tensor([0, 7, 2**62 - 1, -5])
    assert sample_key(seeds, 3).tolist() == [sample_key(s, 3) for s in seeds.tolist()]


def test_poisson_spikes_have_the_rate_and_intensity_of_the_attempt():
    rates = torch.full((4, 784), 100.0, dtype=F64)                       # Hz at intensity 1
    seeds = torch.tensor([1, 2, 3, 4])
    z = poisson_spikes(rates, seeds, P, attempt=3)                      # intensity 2 + 3 = 5
    assert z.shape == (700, 4, 784) and z.dtype == torch.bool
    assert z.float().mean().item() == pytest.approx(100 * 5 * P.dt, abs=2e-3)   # 0.25
    zf = z.float()                                      # pairs fire together at p^2 = 0.0625
    assert (zf[:, :, 1:] * zf[:, :, :-1]).mean().item() == pytest.approx(0.0625, abs=1e-3)
    assert (zf[1:] * zf[:-1]).mean().item() == pytest.approx(0.0625, abs=1e-3)   # across steps
    assert torch.equal(z, poisson_spikes(rates, seeds, P, attempt=3))   # reproducible
    assert not torch.equal(z, poisson_spikes(rates, seeds, P, attempt=2))
    assert not torch.equal(z[:, 0], z[:, 1])                            # seeds differ
    zero = poisson_spikes(torch.zeros(1, 5, dtype=F64), seeds[:1], P)
    assert not zero.any()
    saturated = poisson_spikes(torch.full((1, 5), 1e6, dtype=F64), seeds[:1], P)
    assert saturated.all()                                              # p >= 1: every step


def test_input_rates_are_pixel_over_8_hz():
    x = torch.tensor([[0.0, 1.0, 128 / 255]])
    r = input_rates(x, P)
    assert r.dtype == F64
    assert r[0].tolist() == pytest.approx([0.0, 31.875, 16.0])
    with pytest.raises(ValueError, match="divide 8-bit images by 255"):
        input_rates(torch.tensor([[0.0, 255.0]]), P)


def test_retry_rule_repeats_weak_responses_at_higher_intensity():
    p = P._replace(t_present=0.05, min_spikes=8, max_retries=6)
    g = torch.Generator().manual_seed(0)
    n_in, n_e, B = 100, 10, 6
    weight = (torch.rand(n_e, n_in, generator=g) + 0.01) * 0.3
    rates = (torch.rand(B, n_in, generator=g) < 0.3).double() * p.input_rate
    seeds = torch.randint(0, 2**62, (B,), generator=g)
    res = diehl_cook_run(rates, seeds, weight, theta0(n_e), p)
    assert res.attempts.max() > 0, "the test needs samples that were repeated"
    for b in range(B):
        a = int(res.attempts[b])
        kept = diehl_cook_present(poisson_spikes(rates[b:b + 1], seeds[b:b + 1], p, attempt=a),
                                  weight, theta0(n_e), p)
        assert torch.equal(kept.counts[0], res.counts[b])
        assert res.counts[b].sum() >= p.min_spikes or a == p.max_retries
        if a > 0:                                        # the attempt before was too weak
            before = diehl_cook_present(
                poisson_spikes(rates[b:b + 1], seeds[b:b + 1], p, attempt=a - 1), weight,
                theta0(n_e), p)
            assert before.counts.sum() < p.min_spikes
    silent = diehl_cook_run(rates, seeds, torch.zeros(n_e, n_in), theta0(n_e), p)
    assert (silent.attempts == p.max_retries).all() and (silent.counts == 0).all()
    once = diehl_cook_run(rates, seeds, torch.zeros(n_e, n_in), theta0(n_e), p, retry=False)
    assert (once.attempts == 0).all()


# ----------------------------------------------------------------------------- weights, labels

def test_initial_weights_and_normalisation():
    w = init_weight(5, 784, P, torch.Generator().manual_seed(0))
    assert w.shape == (5, 784) and w.dtype == torch.float32
    assert w.min() >= 0.003 and w.max() < 0.303 + 1e-6
    w[2] = 0.0
    n = normalize_weight(w, P)
    assert torch.allclose(n[[0, 1, 3, 4]].sum(1), torch.full((4,), 78.0))
    assert (n[2] == 0).all()                             # an all-zero neuron stays zero


def test_labels_by_mean_response_and_classification():
    counts = torch.tensor([[5, 0, 0], [3, 0, 1], [0, 4, 0], [0, 0, 0]])
    labels = torch.tensor([0, 0, 1, 2])
    sums, totals = class_sums(counts, labels, 3)
    assert totals.tolist() == [2, 1, 1]
    assert assign_labels(sums, totals).tolist() == [0, 1, 0]   # neuron 2: 0.5 for class 0
    never = assign_labels(torch.zeros(3, 2, dtype=F64), torch.tensor([1, 1, 1]))
    assert never.tolist() == [0, 0]                      # silent neurons: class 0
    assignments = torch.tensor([0, 1, 1, 2])
    pred = classify(torch.tensor([[4, 1, 1, 0], [0, 3, 3, 5], [0, 0, 0, 0]]), assignments, 4)
    assert pred.tolist() == [0, 2, 0]                    # means per class; ties: lowest class


# ----------------------------------------------------------------------------- errors

@pytest.mark.parametrize("change, message", [
    ({"dt": 0.5}, "Did you pass milliseconds"),
    ({"tau_ge": 0.2e-3}, "tau_ge=.* is shorter than dt"),
    ({"t_present": 0.3502}, "not a whole number of steps"),
    ({"tau_e": -1.0}, "tau_e must be > 0"),
    ({"min_spikes": 2.5}, "min_spikes must be a whole number"),
    ({"w_min": 1.0}, "w_min=1.0 must be below w_max"),
    ({"nu_post": float("nan")}, "nu_post must be a finite number"),
])
def test_bad_parameters_name_the_field_and_the_fix(change, message):
    with pytest.raises(ValueError, match=message):
        derive(P._replace(**change))


def test_present_checks_the_spike_shape():
    with pytest.raises(ValueError, match=r"expected input spikes \[T=700, B, n_in=4\]"):
        diehl_cook_present(torch.zeros(10, 1, 4, dtype=torch.bool), torch.zeros(2, 4),
                           theta0(2), P)
