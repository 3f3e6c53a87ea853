"""Physics of the pure neuron functions in snn5.core.neurons.

Two kinds of checks:
- every ``*_scan`` is exactly (bitwise) its ``*_step`` applied over time, for every reset mode;
- dynamics against closed forms computed here in float64, not by calling the library
  (LIF charging curve and first spike time, IF spike counts, reset residues, ALIF adaptation,
  LI trace, PLIF time-constant parametrisation).
"""

from __future__ import annotations

import math

import pytest
import torch

from snn5.core import (
    ALIFParams, ALIFState, ATan, IFParams, IFState, LIFParams, LIFState, LIParams, LIState,
    PLIFParams, Reset, Triangle, alif_scan, alif_step, decay, if_scan, if_step, li_scan, li_step,
    lif_scan, lif_step, plif_raw, plif_scan, plif_step, plif_tau, reset_membrane,
)

DT = 1e-3
RESETS = list(Reset)


def zeros_state(kind, shape, dtype=torch.float64):
    return kind(*[torch.zeros(shape, dtype=dtype) for _ in kind._fields])


# name -> (step, scan, state type, params for a reset mode); non-default values throughout.
CORE = {
    "if": (if_step, if_scan, IFState, lambda r: IFParams(v_th=0.8, reset=r)),
    "lif": (lif_step, lif_scan, LIFState, lambda r: LIFParams(tau_mem=7e-3, v_th=0.9, reset=r)),
    "plif": (plif_step, plif_scan, LIFState,
             lambda r: PLIFParams(tau_raw=torch.tensor([-1.0, 0.0, 0.5, 2.0]), v_th=0.9, reset=r)),
    "alif": (alif_step, alif_scan, ALIFState,
             lambda r: ALIFParams(tau_mem=7e-3, tau_adapt=30e-3, beta_adapt=1.5, v_th=0.9,
                                  reset=r)),
    "li": (li_step, li_scan, LIState, lambda r: LIParams(tau_mem=7e-3)),
}


@pytest.mark.parametrize("name", sorted(CORE))
@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_scan_equals_repeated_step_bitwise(name: str, reset: Reset, dtype: torch.dtype) -> None:
    step, scan, state_type, params = CORE[name]
    p = params(reset)
    x_seq = (torch.rand(25, 3, 4) * 3 - 0.5).to(dtype)              # [T, B, F]
    s0 = zeros_state(state_type, (3, 4), dtype)
    kw = {"dt": DT, "surrogate": Triangle(width=0.5)}
    z_seq, s_scan = scan(x_seq, s0, p, **kw)
    s, outs = s0, []
    for x in x_seq:
        z, s = step(x, s, p, **kw)
        outs.append(z)
    assert torch.equal(z_seq, torch.stack(outs))
    assert type(s_scan) is state_type and all(torch.equal(a, b) for a, b in zip(s_scan, s))
    assert z_seq.dtype == dtype and all(t.dtype == dtype for t in s_scan)
    if name != "li":
        assert (z_seq == 0).any() and (z_seq == 1).any(), "the check needs spikes and silence"


@pytest.mark.parametrize("name", sorted(CORE))
@pytest.mark.parametrize("shape", [(4,), (0, 2, 4), ()])
def test_scan_rejects_non_sequences(name: str, shape: tuple[int, ...]) -> None:
    _, scan, state_type, params = CORE[name]
    with pytest.raises(ValueError, match=r"\[T, B"):
        scan(torch.zeros(shape), zeros_state(state_type, (2, 4), torch.float32),
             params(Reset.SUBTRACT))


# ----------------------------------------------------------------------------- helpers

def test_decay_is_exp_minus_dt_over_tau() -> None:
    assert decay(20e-3, 1e-3) == pytest.approx(math.exp(-0.05), rel=1e-15)
    t = decay(torch.tensor([20e-3, 5e-3], dtype=torch.float64), 1e-3)
    assert t.tolist() == pytest.approx([math.exp(-0.05), math.exp(-0.2)], rel=1e-15)


@pytest.mark.parametrize("reset, expected", [(Reset.SUBTRACT, [0.25, 0.5, -0.5]),
                                             (Reset.ZERO, [0.0, 0.5, 0.0]),
                                             (Reset.NONE, [1.25, 0.5, 0.5])])
def test_reset_membrane(reset: Reset, expected: list[float]) -> None:
    v = torch.tensor([1.25, 0.5, 0.5])
    z = torch.tensor([1.0, 0.0, 1.0])                  # last one: a spike forced by the caller
    assert reset_membrane(v, z, 1.0, reset).tolist() == expected


def test_reset_parse_accepts_names_and_lists_valid_ones() -> None:
    assert Reset.parse("zero") is Reset.ZERO and Reset.parse(Reset.NONE) is Reset.NONE
    with pytest.raises(ValueError, match="subtract, zero, none"):
        Reset.parse("soft")


def test_detach_reset_stops_the_gradient_through_the_reset_only() -> None:
    v = torch.tensor([1.5], requires_grad=True)
    z = torch.tensor([1.0], requires_grad=True)
    reset_membrane(v, z, 1.0, Reset.SUBTRACT, detach=True).sum().backward()
    assert z.grad is None and v.grad.item() == 1.0
    reset_membrane(v, z, 1.0, Reset.SUBTRACT).sum().backward()
    assert z.grad.item() == -1.0


# ----------------------------------------------------------------------------- closed forms

def run_steps(step, x_seq, state, p, **kw):
    """Spikes and the post-reset membrane after every step (float64)."""
    zs, vs = [], []
    for x in x_seq:
        z, state = step(x, state, p, dt=DT, **kw)
        zs.append(z)
        vs.append(state.v)
    return torch.stack(zs), torch.stack(vs), state


@pytest.mark.parametrize("tau", [5e-3, 20e-3, 100e-3])
def test_lif_subthreshold_membrane_is_exponential_charging(tau: float) -> None:
    I, T = 0.9, 300                                    # steady state 0.9 < v_th = 1: never fires
    x = torch.full((T, 1), I, dtype=torch.float64)
    z, v, _ = run_steps(lif_step, x, LIFState(torch.zeros(1, dtype=torch.float64)),
                        LIFParams(tau_mem=tau, v_th=1.0))
    beta = math.exp(-DT / tau)
    expected = torch.tensor([I * (1 - beta ** t) for t in range(1, T + 1)], dtype=torch.float64)
    assert z.sum() == 0
    torch.testing.assert_close(v[:, 0], expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("I, tau, v_th", [(2.0, 20e-3, 1.0), (1.3, 10e-3, 1.0), (5.0, 50e-3, 2.0)])
@pytest.mark.parametrize("reset", RESETS)
def test_lif_first_spike_time_and_reset_residue(I: float, tau: float, v_th: float,
                                                 reset: Reset) -> None:
    beta = math.exp(-DT / tau)
    t_cross = math.log(1 - v_th / I) / math.log(beta)  # continuous crossing, in steps
    assert abs(t_cross - round(t_cross)) > 1e-3, "choose a case without a rounding tie"
    k = math.ceil(t_cross)                              # first step (1-based) with v >= v_th
    x = torch.full((k + 3, 1), I, dtype=torch.float64)
    z, v, _ = run_steps(lif_step, x, LIFState(torch.zeros(1, dtype=torch.float64)),
                        LIFParams(tau_mem=tau, v_th=v_th, reset=reset))
    assert z[:k - 1].sum() == 0 and z[k - 1].item() == 1.0
    v_peak = I * (1 - beta ** k)
    residue = {Reset.SUBTRACT: v_peak - v_th, Reset.ZERO: 0.0, Reset.NONE: v_peak}[reset]
    assert v[k - 1].item() == pytest.approx(residue, rel=1e-12, abs=1e-12)
    # the next step charges from the residue by the same equation
    pre = beta * residue + (1 - beta) * I
    fired = pre >= v_th
    post = {Reset.SUBTRACT: pre - v_th * fired, Reset.ZERO: 0.0 if fired else pre,
            Reset.NONE: pre}[reset]
    assert z[k].item() == float(fired)
    assert v[k].item() == pytest.approx(post, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("I, T, v_th", [(0.25, 100, 1.0), (0.375, 37, 1.0), (0.125, 50, 0.5),
                                        (0.75, 9, 1.0), (1.0, 7, 1.0)])
def test_if_spike_count_with_subtract_reset(I: float, T: int, v_th: float) -> None:
    """With I <= v_th (at most one spike per step) the count is floor(T * I / v_th)."""
    x = torch.full((T, 2), I)                          # exact binary fractions: no rounding
    z, _ = if_scan(x, IFState(torch.zeros(2)), IFParams(v_th=v_th))
    assert z.sum(0).tolist() == [math.floor(T * I / v_th)] * 2
    # the k-th spike comes at the first step t (1-based) with t * I >= k * v_th
    fire_steps = [t for t in range(1, T + 1)
                  if math.floor(t * I / v_th) > math.floor((t - 1) * I / v_th)]
    assert (z[:, 0].nonzero().flatten() + 1).tolist() == fire_steps


def test_if_spike_counts_of_zero_and_no_reset() -> None:
    I, T = 0.375, 40                                   # 3 steps to reach 1.125 >= 1
    x = torch.full((T, 1), I)
    z_zero, s_zero = if_scan(x, IFState(torch.zeros(1)), IFParams(reset=Reset.ZERO))
    assert z_zero.sum().item() == T // 3
    assert s_zero.v.item() == (T % 3) * I
    z_none, s_none = if_scan(x, IFState(torch.zeros(1)), IFParams(reset=Reset.NONE))
    assert z_none.sum().item() == T - 2                # fires at every step from the 3rd on
    assert s_none.v.item() == T * I


def test_if_reset_residue_after_one_spike() -> None:
    s = IFState(torch.tensor([0.5, 0.5, 0.5]))
    x = torch.tensor([0.75, 0.75, 0.25])
    for reset, expected in [(Reset.SUBTRACT, [0.25, 0.25, 0.75]), (Reset.ZERO, [0.0, 0.0, 0.75]),
                            (Reset.NONE, [1.25, 1.25, 0.75])]:
        z, s1 = if_step(x, s, IFParams(v_th=1.0, reset=reset))
        assert z.tolist() == [1.0, 1.0, 0.0]
        assert s1.v.tolist() == expected


def alif_reference(I: float, T: int, tau_mem: float, tau_adapt: float, beta_adapt: float,
                   v_th: float) -> tuple[list[int], list[float]]:
    """Bellec et al. 2018 in plain python floats: spike steps and the threshold after each step."""
    beta, rho = math.exp(-DT / tau_mem), math.exp(-DT / tau_adapt)
    v = a = 0.0
    spikes, thresholds = [], []
    for t in range(T):
        v = beta * v + (1 - beta) * I
        A = v_th + beta_adapt * a
        z = 1.0 if v >= A else 0.0
        v -= z * A
        a = rho * a + (1 - rho) * z
        if z:
            spikes.append(t)
        thresholds.append(v_th + beta_adapt * a)
    return spikes, thresholds


def test_alif_threshold_rises_and_interspike_intervals_grow() -> None:
    I, T = 3.0, 400
    p = ALIFParams(tau_mem=20e-3, tau_adapt=100e-3, beta_adapt=1.8, v_th=1.0)
    x = torch.full((T, 1), I, dtype=torch.float64)
    s = ALIFState(torch.zeros(1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64))
    zs, thresholds = [], []
    for xt in x:
        z, s = alif_step(xt, s, p, dt=DT)
        zs.append(z.item())
        thresholds.append((p.v_th + p.beta_adapt * s.a).item())
    spikes = [t for t, z in enumerate(zs) if z]
    ref_spikes, ref_thresholds = alif_reference(I, T, 20e-3, 100e-3, 1.8, 1.0)
    assert spikes == ref_spikes
    assert thresholds == pytest.approx(ref_thresholds, rel=1e-12)
    isi = [b - a for a, b in zip(spikes, spikes[1:])]
    assert len(isi) >= 10
    assert isi[-1] > isi[0] and sum(isi[-3:]) > sum(isi[:3])
    # the threshold jumps at every spike (a rises by (1 - rho)) and decays in between
    rho = math.exp(-DT / 100e-3)
    first = spikes[0]
    assert thresholds[first] == pytest.approx(1.0 + 1.8 * (1 - rho), rel=1e-12)
    assert all(thresholds[t] < thresholds[t - 1] for t in range(first + 1, spikes[1]))
    # a plain LIF with the same input fires more
    z_lif, _ = lif_scan(x, LIFState(torch.zeros(1, dtype=torch.float64)), LIFParams(20e-3))
    assert z_lif.sum().item() > len(spikes)


@pytest.mark.parametrize("reset", RESETS)
def test_alif_without_adaptation_is_lif(reset: Reset) -> None:
    x = torch.rand(60, 3, 5, dtype=torch.float64) * 3
    z_a, s_a = alif_scan(x, ALIFState(torch.zeros(3, 5, dtype=torch.float64),
                                      torch.zeros(3, 5, dtype=torch.float64)),
                         ALIFParams(tau_mem=10e-3, beta_adapt=0.0, v_th=1.2, reset=reset))
    z_l, s_l = lif_scan(x, LIFState(torch.zeros(3, 5, dtype=torch.float64)),
                        LIFParams(tau_mem=10e-3, v_th=1.2, reset=reset))
    assert torch.equal(z_a, z_l) and z_a.sum() > 0
    torch.testing.assert_close(s_a.v, s_l.v, rtol=0, atol=1e-12)


def test_li_trace_is_exponential_filter() -> None:
    tau = 8e-3
    beta = math.exp(-DT / tau)
    x = torch.randn(30, 2, dtype=torch.float64)
    v_seq, s = li_scan(x, LIState(torch.zeros(2, dtype=torch.float64)), LIParams(tau_mem=tau))
    # v[t] = (1 - beta) * sum_k beta^(t-k) x[k]  (closed form of the recursion)
    for t in range(30):
        ref = sum((1 - beta) * beta ** (t - k) * x[k] for k in range(t + 1))
        torch.testing.assert_close(v_seq[t], ref, rtol=1e-12, atol=1e-14)
    assert torch.equal(s.v, v_seq[-1])


# ----------------------------------------------------------------------------- PLIF

@pytest.mark.parametrize("tau", [1.5e-3, 2e-3, 20e-3, 0.5])
def test_plif_raw_round_trips_tau(tau: float) -> None:
    raw = plif_raw(tau, DT)
    assert raw.dtype == torch.float32
    # independent inverse: tau = dt / sigmoid(raw) = dt * (1 + exp(-raw))
    assert DT * (1 + math.exp(-raw.item())) == pytest.approx(tau, rel=1e-6)
    assert plif_tau(raw, DT).item() == pytest.approx(tau, rel=1e-6)


@pytest.mark.parametrize("raw", [-15.0, -3.0, 0.0, 3.0, 15.0])
def test_plif_tau_exceeds_dt(raw: float) -> None:
    assert plif_tau(torch.tensor(raw), DT).item() > DT


@pytest.mark.parametrize("raw", [-1e4, -80.0, 80.0, 1e4])
def test_plif_extreme_raw_parameters_stay_valid(raw: float) -> None:
    """Saturated sigmoid: tau is at least dt, the decay stays in [exp(-1), 1], outputs finite."""
    tau_raw = torch.tensor(raw)
    assert plif_tau(tau_raw, DT).item() >= DT
    x = torch.rand(20, 2, 3) * 2
    z, s = plif_scan(x, LIFState(torch.zeros(2, 3)), PLIFParams(tau_raw=tau_raw))
    assert torch.isfinite(s.v).all() and set(z.unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("tau", [2e-3, 20e-3])
def test_plif_step_is_lif_with_tau_from_raw(tau: float) -> None:
    tau_raw = plif_raw(tau, DT).double()
    beta = math.exp(-DT / (DT * (1 + math.exp(-tau_raw.item()))))
    x = torch.tensor([0.5, 2.0, 3.0], dtype=torch.float64)
    v0 = torch.tensor([0.25, 0.5, 0.9], dtype=torch.float64)
    z, s = plif_step(x, LIFState(v0), PLIFParams(tau_raw=tau_raw, reset=Reset.NONE), dt=DT)
    expected = [beta * v + (1 - beta) * i for v, i in zip(v0.tolist(), x.tolist())]
    assert s.v.tolist() == pytest.approx(expected, rel=1e-12)
    assert z.tolist() == [float(e >= 1.0) for e in expected]


# ----------------------------------------------------------------------------- one-step gradients

@pytest.mark.parametrize("name, gain", [("if", lambda: 1.0),
                                        ("lif", lambda: 1 - math.exp(-DT / 7e-3)),
                                        ("alif", lambda: 1 - math.exp(-DT / 7e-3))])
def test_one_step_input_gradient_is_gain_times_surrogate(name: str, gain) -> None:
    """dz/dx = (dv/dx) * surrogate'(v - v_th): the surrogate stands in for the Dirac delta."""
    step, _, state_type, params = CORE[name]
    p = params(Reset.SUBTRACT)
    alpha = 3.0
    x = (torch.linspace(-1, 2.5, 17, dtype=torch.float64) / gain()).requires_grad_(True)
    z, _ = step(x, zeros_state(state_type, (17,)), p, dt=DT, surrogate=ATan(alpha=alpha))
    z.sum().backward()
    u = gain() * x.detach() - p.v_th                       # distance to threshold from rest
    expected = gain() * (alpha / 2) / (1 + (math.pi / 2 * alpha * u) ** 2)
    assert 0 < z.sum() < 17
    torch.testing.assert_close(x.grad, expected, rtol=1e-12, atol=1e-15)
