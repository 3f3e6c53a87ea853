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
from snn5.core.neurons_ext import ELLIFState, GLIFState, el_lif_scan, refractory_steps

t = torch.tensor


def logit(p: float) -> torch.Tensor:
    return torch.logit(t(p, dtype=torch.float64))


def test_glif_three_steps_by_hand_from_the_paper() -> None:
    # Yao et al. 2022: U[t] = k U[t-1] (1 - gamma S[t-1]) - (1 - gamma) V_R S[t-1]
    #                         - (1 - alpha) E_L + (1 - beta (1 - g)) x[t],  k = 1 - alpha (1 - lam)
    # alpha = 0.8, beta = 0.25, gamma = 0.6, g = 0.5, lam = 0.5, E_L = 0.1, V_R = 0.5, v_th = 1
    p = GLIFParams(tau_raw=logit(0.5), leak_gate=logit(0.8), integ_gate=logit(0.25),
                   reset_gate=logit(0.6), linear_leak=logit(0.1), reset_potential=logit(0.5),
                   conductance=logit(0.5), v_th=1.0)
    x = t([2.0, 1.0, 0.0], dtype=torch.float64).view(3, 1, 1)
    s0 = GLIFState(t([[0.5]], dtype=torch.float64), t([[0.0]], dtype=torch.float64))
    z, s = glif_scan(x, s0, p)
    # k = 1 - 0.8 * 0.5 = 0.6; input gain 1 - 0.25 * 0.5 = 0.875; linear leak 0.2 * 0.1 = 0.02
    u1 = 0.6 * 0.5 - 0.02 + 0.875 * 2.0                                 # 2.03 -> spike
    u2 = 0.6 * 2.03 * (1 - 0.6) - 0.4 * 0.5 - 0.02 + 0.875 * 1.0        # 1.1422 -> spike
    u3 = 0.6 * 1.1422 * 0.4 - 0.2 - 0.02 + 0.0                          # 0.054128 -> silent
    assert (u1, u2) == (pytest.approx(2.03), pytest.approx(1.1422))
    assert z.flatten().tolist() == [1.0, 1.0, 0.0]
    assert s.v.item() == pytest.approx(u3, rel=1e-12) and s.z.item() == 0.0


def test_glif_reset_gate_one_is_the_hard_reset_and_zero_the_soft_reset() -> None:
    big = t(60.0, dtype=torch.float64)                                  # sigmoid -> 1
    x = t([3.0, 0.0], dtype=torch.float64).view(2, 1, 1)
    s0 = GLIFState(*[torch.zeros(1, 1, dtype=torch.float64)] * 2)
    # alpha = 1, beta = 0 (plain input), lam = 0.5, V_R = 0.5
    common = dict(tau_raw=logit(0.5), leak_gate=big, integ_gate=-big, linear_leak=logit(0.1),
                  reset_potential=logit(0.5), conductance=logit(0.5))
    _, hard = glif_scan(x, s0, GLIFParams(reset_gate=big, **common))
    _, soft = glif_scan(x, s0, GLIFParams(reset_gate=-big, **common))
    assert hard.v.item() == pytest.approx(0.0, abs=1e-12)               # 0.5 * 3 * (1 - 1)
    assert soft.v.item() == pytest.approx(0.5 * 3.0 - 0.5, rel=1e-12)   # decay, then - V_R


def test_tclif_three_steps_by_hand() -> None:
    # Zhang et al. 2024: beta_1 = -0.5, beta_2 = 0.5, gamma = 0.4, v_th = 1
    p = TCLIFParams(coupling_sd_raw=logit(0.5), coupling_ds_raw=logit(0.5), dendrite_reset=0.4)
    x = t([1.0, 2.0, 0.0], dtype=torch.float64).view(3, 1, 1)
    z, s = tclif_scan(x, TCLIFState(*[torch.zeros(1, 1, dtype=torch.float64)] * 2), p)
    # step 1: v_d = 1, v_s = 0.5
    # step 2: v_d = 1 - 0.25 + 2 = 2.75, v_s = 0.5 + 1.375 = 1.875 -> spike: v_s 0.875, v_d 2.35
    # step 3: v_d = 2.35 - 0.4375 = 1.9125, v_s = 0.875 + 0.95625 = 1.83125 -> spike:
    #         v_s = 0.83125, v_d = 1.5125
    assert z.flatten().tolist() == [0.0, 1.0, 1.0]
    assert s.v_d.item() == pytest.approx(1.5125) and s.v_s.item() == pytest.approx(0.83125)


def test_tclif_hard_reset_leaves_the_dendrite() -> None:
    p = TCLIFParams(coupling_sd_raw=logit(0.5), coupling_ds_raw=logit(0.5), dendrite_reset=0.4,
                    reset=Reset.ZERO)
    x = t([4.0], dtype=torch.float64).view(1, 1, 1)
    z, s = tclif_scan(x, TCLIFState(*[torch.zeros(1, 1, dtype=torch.float64)] * 2), p)
    assert z.item() == 1.0 and s.v_s.item() == 0.0 and s.v_d.item() == 4.0


def test_el_lif_three_steps_by_hand_with_a_leak_per_step() -> None:
    # Xu et al. 2024: v = lam_t v + x[t], hard reset; lam = (0.5, 1.5), the last one reused
    p = ELLIFParams(leak=t([0.5, 1.5], dtype=torch.float64), v_th=1.0, reset=Reset.ZERO)
    x = t([0.8, 0.6, 0.1], dtype=torch.float64).view(3, 1, 1)
    s0 = ELLIFState(*[torch.zeros(1, 1, dtype=torch.float64)] * 2)
    z, s = el_lif_scan(x, s0, p)
    # lam_0 at step 0: v = 0.5 * 0 + 0.8 = 0.8; step 1: v = 1.5 * 0.8 + 0.6 = 1.8 -> spike,
    # v = 0; step 2 (lam_1 reused): v = 1.5 * 0 + 0.1 = 0.1
    assert z.flatten().tolist() == [0.0, 1.0, 0.0]
    assert s.v.item() == pytest.approx(0.1) and s.step.item() == 1.0


def test_el_lif_leak_does_not_depend_on_the_input() -> None:
    p = ELLIFParams(leak=t([0.5]), v_th=1e3)
    s0 = ELLIFState(torch.ones(1, 3), torch.zeros(1, 3))
    x = t([[-50.0, 0.0, 50.0]])
    _, s = el_lif_step(x, s0, p)
    torch.testing.assert_close(s.v, 0.5 + x)


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
