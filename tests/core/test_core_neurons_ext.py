"""Hand-computed steps of the neurons in snn5.core.neurons_ext against their papers' equations."""

from __future__ import annotations

import math

import pytest
import torch

from snn5.core import (
    ELLIFParams, GLIFParams, IntLIFParams, LIFParams, LIFState, RefractoryLIFParams,
    RefractoryLIFState, Rectangle, Reset, TCLIFParams, TCLIFState, el_lif_step, glif_scan,
    int_lif_binary_scan, int_lif_scan, int_lif_step, lif_scan, plif_raw, refractory_lif_scan,
    tclif_scan,
)
from snn5.core.neurons_ext import el_leak_bias, refractory_steps

t = torch.tensor


def logit(p: float) -> torch.Tensor:
    return torch.logit(t(p, dtype=torch.float64))


def test_glif_two_steps_by_hand() -> None:
    # gates alpha = 0.8, beta_g = 0.25, gamma = 0.6, g = 0.5; tau = dt / 0.5 -> beta = e^-0.5
    p = GLIFParams(tau_raw=logit(0.5), leak_gate=logit(0.8), integ_gate=logit(0.25),
                   reset_gate=logit(0.6), linear_leak=t(0.1, dtype=torch.float64),
                   conductance=logit(0.5), v_th=1.0)
    x = t([[[3.0]], [[1.0]]], dtype=torch.float64)                       # [T=2, B=1, 1]
    z, s = glif_scan(x, LIFState(t([[0.5]], dtype=torch.float64)), p)
    b = math.exp(-0.5)
    gain = (1 - b) * (1 - 0.25 * (1 - 0.5))                              # integration gate
    v1 = 0.8 * b * 0.5 + 0.2 * (0.5 - 0.1) + gain * 3.0                  # = 1.5755...
    assert v1 > 1.0
    v1r = 0.6 * (v1 - 1.0) + 0.4 * 0.0                                   # soft | hard mixture
    v2 = 0.8 * b * v1r + 0.2 * (v1r - 0.1) + gain * 1.0
    assert v2 < 1.0
    assert z.flatten().tolist() == [1.0, 0.0]
    assert s.v.item() == pytest.approx(v2, rel=1e-12)


def test_glif_with_saturated_gates_is_the_lif() -> None:
    big = t(60.0)                                                        # sigmoid -> 1 (float64)
    p = GLIFParams(tau_raw=plif_raw(5e-3, 1e-3).double(), leak_gate=big, integ_gate=-big,
                   reset_gate=big, linear_leak=t(0.3), conductance=t(0.0))
    x = torch.rand(10, 3, 4, dtype=torch.float64) * 3
    s0 = LIFState(torch.zeros(3, 4, dtype=torch.float64))
    z, s = glif_scan(x, s0, p)
    tau = 1e-3 / torch.sigmoid(plif_raw(5e-3, 1e-3).double()).item()
    z_lif, s_lif = lif_scan(x, s0, LIFParams(tau_mem=tau))
    assert torch.equal(z, z_lif) and 0 < z.sum() < z.numel()
    torch.testing.assert_close(s.v, s_lif.v, rtol=1e-12, atol=1e-12)


def test_tclif_three_steps_by_hand() -> None:
    # beta_1 = -0.5, beta_2 = 0.5, gamma = 0.4, v_th = 1
    p = TCLIFParams(coupling_sd_raw=logit(0.5), coupling_ds_raw=logit(0.5), dendrite_reset=0.4)
    x = t([1.0, 2.0, 0.0], dtype=torch.float64).view(3, 1, 1)
    z, s = tclif_scan(x, TCLIFState(*[torch.zeros(1, 1, dtype=torch.float64)] * 2), p)
    vd, vs, spikes = 0.0, 0.0, []
    for xt in (1.0, 2.0, 0.0):
        vd = vd - 0.5 * vs + xt
        vs = vs + 0.5 * vd
        fire = float(vs >= 1.0)
        vs -= fire * 1.0
        vd -= 0.4 * fire
        spikes.append(fire)
    # step 1: vd = 1, vs = 0.5; step 2: vd = 2.75, vs = 1.875 -> spike; vs = .875, vd = 2.35
    assert spikes == [0.0, 1.0, 1.0]
    assert z.flatten().tolist() == spikes
    assert s.v_d.item() == pytest.approx(vd) and s.v_s.item() == pytest.approx(vs)


def test_el_lif_decay_follows_the_input_and_stays_in_unit_interval() -> None:
    p = ELLIFParams(leak_weight=t(2.0), leak_bias=t(0.0), v_th=10.0)
    x = t([[-50.0, 0.0, 0.5, 50.0]])
    z, s = el_lif_step(x, LIFState(torch.ones(1, 4)), p)
    lam = torch.sigmoid(2.0 * x)
    torch.testing.assert_close(s.v, lam * 1.0 + (1 - lam) * x)
    assert ((lam >= 0) & (lam <= 1)).all() and lam[0, 1] == 0.5
    # starts as a LIF: w = 0 and the bias gives exp(-dt / tau_mem)
    assert torch.sigmoid(el_leak_bias(20e-3, 1e-3)).item() == pytest.approx(math.exp(-0.05))


def test_integer_spike_is_clamped_rounded_v_over_v_th() -> None:
    v = t([[-0.3, 0.2, 0.6, 1.4, 1.6, 2.49, 7.0]])
    p = IntLIFParams(tau_mem=1e-9, max_spike=4, v_th=1.0, reset=Reset.NONE)  # beta = 0: v = x
    z, s = int_lif_step(v, LIFState(torch.zeros_like(v)), p, dt=1e-3)
    assert z.tolist() == [[0.0, 0.0, 1.0, 1.0, 2.0, 2.0, 4.0]]
    assert torch.equal(z, (v / 1.0).round().clamp(0, 4))
    p = p._replace(reset=Reset.SUBTRACT, v_th=0.5)
    z, s = int_lif_step(v, LIFState(torch.zeros_like(v)), p, dt=1e-3)
    assert torch.equal(z, (v / 0.5).round().clamp(0, 4))
    torch.testing.assert_close(s.v, v - 0.5 * z)


def test_integer_rectangle_surrogate_is_the_straight_through_estimator() -> None:
    v = torch.linspace(0.05, 3.95, 40).view(1, -1).requires_grad_(True)
    p = IntLIFParams(tau_mem=1e-9, max_spike=4, v_th=1.0, reset=Reset.NONE)
    z, _ = int_lif_step(v, LIFState(torch.zeros_like(v)), p, surrogate=Rectangle(width=1.0))
    z.sum().backward()
    torch.testing.assert_close(v.grad, torch.ones_like(v))            # d round(v)/dv := 1


@pytest.mark.parametrize("reset", list(Reset))
def test_integer_training_equals_binary_substep_counts(reset: Reset) -> None:
    torch.manual_seed(1)
    p = IntLIFParams(tau_mem=2e-3, max_spike=3, v_th=0.4, reset=reset)
    x = torch.rand(9, 4, 6) * 3
    s0 = LIFState(torch.zeros(4, 6))
    z, s = int_lif_scan(x, s0, p)
    b, s_b = int_lif_binary_scan(x, s0, p)
    assert b.shape == (9 * 3, 4, 6) and set(b.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(b.unflatten(0, (9, 3)).sum(1), z)                # exact, every step
    assert torch.equal(s.v, s_b.v)
    assert z.max() == 3 and (z == 2).any()                               # really integer
    # the sub-steps form a thermometer code: sub-step k fires iff z >= k
    k = torch.arange(1, 4).view(1, 3, 1, 1)
    assert torch.equal(b.unflatten(0, (9, 3)), (z.unsqueeze(1) >= k).float())


def test_refractory_neuron_never_fires_within_its_refractory_period() -> None:
    p = RefractoryLIFParams(tau_mem=2e-3, t_ref=3e-3, ref_gain=0.0, tau_adapt=50e-3, v_th=0.5)
    x = torch.full((20, 1, 1), 5.0)                                      # fires whenever free
    z, _ = refractory_lif_scan(x, RefractoryLIFState(*[torch.zeros(1, 1)] * 3), p)
    fired = z.flatten().nonzero().flatten().tolist()
    assert fired == [0, 4, 8, 12, 16]                                    # 3 silent steps each


def test_refractory_period_grows_with_activity() -> None:
    p = RefractoryLIFParams(tau_mem=2e-3, t_ref=2e-3, ref_gain=4.0, tau_adapt=20e-3, v_th=0.5)
    x = torch.full((60, 1, 1), 5.0)
    z, s = refractory_lif_scan(x, RefractoryLIFState(*[torch.zeros(1, 1)] * 3), p)
    fired = z.flatten().nonzero().flatten().tolist()
    gaps = [b - a for a, b in zip(fired, fired[1:])]
    first = math.ceil(2 * (1 + 4.0 * (1 - math.exp(-1e-3 / 20e-3))))    # 2.39 -> 3 steps
    assert gaps[0] == first + 1 and gaps[-1] > gaps[0]                  # then longer
    assert all(g2 >= g1 for g1, g2 in zip(gaps, gaps[1:4]))
    # every gap is at least the refractory count set at the spike before it
    a = torch.zeros(1, 1)
    rho = math.exp(-1e-3 / 20e-3)
    for step in range(60):
        a = rho * a + (1 - rho) * z[step]
        if z[step].item() == 1 and step != fired[-1]:
            nxt = fired[fired.index(step) + 1]
            assert nxt - step > refractory_steps(2e-3, 4.0, a, 1e-3).item()
    assert s.ref.item() >= 0


def test_refractory_steps_are_whole_and_exact_for_multiples_of_dt() -> None:
    assert refractory_steps(2e-3, 0.0, torch.zeros(1), 1e-3).item() == 2
    assert refractory_steps(2.5e-3, 0.0, torch.zeros(1), 1e-3).item() == 3
    assert refractory_steps(0.0, 5.0, torch.ones(1), 1e-3).item() == 0
