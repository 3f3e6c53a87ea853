"""The liquid's pure step, scan and features against hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch

from snn5.core.reservoir import (
    ReservoirParams, ReservoirState, bin_index, reservoir_features, reservoir_init,
    reservoir_scan, reservoir_step,
)


def _state(v=0.0, i_exc=0.0, i_inh=0.0, refractory=0.0, z=0.0, n=2) -> ReservoirState:
    """A one-sample state; each variable a number (all neurons) or a list (per neuron)."""
    def full(value):
        if isinstance(value, list):
            return torch.tensor([value], dtype=torch.float32)
        return torch.full((1, n), float(value))
    return ReservoirState(full(v), full(i_exc), full(i_inh), full(refractory), full(z))


def test_one_step_by_hand():
    p = ReservoirParams(tau_mem=20e-3, tau_syn_exc=5e-3, tau_syn_inh=10e-3, t_ref=0.0)
    dt = 1e-3
    w = torch.tensor([[0.0, -0.7],                                   # I (neuron 1) -> E
                      [0.5, 0.0]])                                   # E (neuron 0) -> I
    state = _state(v=[0.2, 0.1], i_exc=[1.0, 0.0], i_inh=[0.0, -0.5], z=[1.0, 1.0])
    drive = torch.tensor([[0.3, 0.0]])
    z, new = reservoir_step(drive, state, w, p, n_exc=1, dt=dt)
    a_e, a_i, beta = math.exp(-1 / 5), math.exp(-1 / 10), math.exp(-1 / 20)
    i_exc = [a_e * 1.0 + 0.3, 0.5]                                   # + drive, + E spike
    i_inh = [-0.7, a_i * -0.5]                                       # + I spike
    v = [beta * 0.2 + (1 - beta) * (i_exc[0] + i_inh[0]),
         beta * 0.1 + (1 - beta) * (i_exc[1] + i_inh[1])]
    assert new.i_exc[0].tolist() == pytest.approx(i_exc)
    assert new.i_inh[0].tolist() == pytest.approx(i_inh)
    assert new.v[0].tolist() == pytest.approx(v)
    assert z.tolist() == [[0.0, 0.0]] and torch.equal(new.z, z)


def test_fire_reset_and_refractory_period():
    # a strong constant current: fire, then t_ref = 2 ms = 2 steps held at v_reset, fire again
    p = ReservoirParams(tau_mem=10e-3, tau_syn_exc=1e-9, t_ref=2e-3, v_reset=0.25)
    drive = torch.full((12, 1, 1), 1e3)                              # [T, B, N]
    z, state = reservoir_scan(drive, reservoir_init(1, 1), torch.zeros(1, 1), p, n_exc=1,
                              dt=1e-3)
    assert z.flatten().tolist() == [1, 0, 0] * 4                     # period dt + t_ref = 3 ms
    assert float(state.v) == 0.25                                    # held at v_reset
    # the rate is 1 / (dt + t_ref): 333 Hz
    assert float(z.sum()) / (12e-3) == pytest.approx(1 / 3e-3)


def test_membrane_integrates_exactly_whatever_dt():
    # constant synaptic current (tau_syn huge): v(t) = I (1 - exp(-t / tau_mem)) at any dt
    p = ReservoirParams(tau_mem=30e-3, tau_syn_exc=1e9, v_th=10.0)
    w = torch.zeros(1, 1, dtype=torch.float64)
    out = []
    for dt, steps in ((1e-3, 20), (0.25e-3, 80)):
        state = ReservoirState(torch.zeros(1, 1, dtype=torch.float64),
                               torch.full((1, 1), 0.8, dtype=torch.float64),
                               *(torch.zeros(1, 1, dtype=torch.float64),) * 3)
        _, state = reservoir_scan(torch.zeros(steps, 1, 1, dtype=torch.float64), state, w, p,
                                  n_exc=1, dt=dt)
        out.append(float(state.v))
    assert out[0] == pytest.approx(0.8 * (1 - math.exp(-20 / 30)), rel=1e-6)
    assert out[1] == pytest.approx(out[0], rel=1e-6)


def test_dale_signs_flow_into_the_right_currents():
    n = 5
    w = torch.rand(n, n)
    w[:, 3:] *= -1                                                   # neurons 3, 4 inhibitory
    p = ReservoirParams(v_th=1e9)
    _, state = reservoir_step(torch.zeros(1, n), _state(z=1.0, n=n), w, p, n_exc=3)
    assert torch.allclose(state.i_exc[0], w[:, :3].sum(1))
    assert torch.allclose(state.i_inh[0], w[:, 3:].sum(1))
    assert bool((state.i_inh <= 0).all()) and bool((state.i_exc >= 0).all())


def test_scan_is_the_step_loop_and_keeps_dtype():
    torch.manual_seed(1)
    n, B, T = 30, 4, 25
    w = torch.randn(n, n, dtype=torch.float64).abs() * 0.4
    w[:, 24:] *= -2
    drive = torch.rand(T, B, n, dtype=torch.float64) * 3
    state = reservoir_init(B, n, dtype=torch.float64)
    z_seq, final = reservoir_scan(drive, state, w, n_exc=24)
    s = state
    for t in range(T):
        z, s = reservoir_step(drive[t], s, w, n_exc=24)
        assert torch.equal(z, z_seq[t])
    assert all(torch.equal(a, b) for a, b in zip(final, s, strict=True))
    assert z_seq.dtype == torch.float64 and 0 < float(z_seq.mean()) < 1


def test_features_are_binned_means_of_the_filtered_spikes():
    torch.manual_seed(2)
    n, B, T_in, hold, bins = 20, 3, 7, 3, 4
    w = torch.randn(n, n).abs() * 0.3
    w[:, 16:] *= -2
    drive = torch.rand(T_in, B, n) * 4
    p, dt, tau = ReservoirParams(), 1e-3, 5e-3
    out = reservoir_features(drive, reservoir_init(B, n), w, p, n_exc=16, dt=dt, hold=hold,
                             bins=bins, tau_readout=tau)
    # reference: the scan over the held drive, a trace, bin means
    z, final = reservoir_scan(drive.repeat_interleave(hold, 0), reservoir_init(B, n), w, p,
                              n_exc=16, dt=dt)                       # [21, B, n]
    trace, r = [], torch.zeros(B, n)
    for zt in z:
        r = math.exp(-dt / tau) * r + zt
        trace.append(r)
    trace = torch.stack(trace)
    which = bin_index(T_in * hold, bins)
    expected = torch.stack([trace[which == k].mean(0) for k in range(bins)], dim=1)
    assert out.features.shape == (B, bins, n)
    assert torch.allclose(out.features, expected, atol=1e-6)
    assert torch.equal(out.counts, z.sum(0))
    assert torch.equal(out.state.v, final.v)


def test_bin_index():
    assert bin_index(10, 3).tolist() == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert bin_index(4, 4).tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="1 <= bins <= steps"):
        bin_index(3, 4)


def test_bad_inputs_are_named():
    s = reservoir_init(2, 3)
    with pytest.raises(ValueError, match=r"w_rec must be square"):
        reservoir_scan(torch.zeros(4, 2, 3), s, torch.zeros(3, 2), n_exc=2)
    with pytest.raises(ValueError, match=r"drive \[\.\.\., B, N\] and state"):
        reservoir_scan(torch.zeros(4, 2, 5), s, torch.zeros(3, 3), n_exc=2)
    with pytest.raises(ValueError, match=r"n_exc must lie in 0\.\.N=3"):
        reservoir_scan(torch.zeros(4, 2, 3), s, torch.zeros(3, 3), n_exc=4)
    with pytest.raises(ValueError, match=r"time-major drive \[T, B, N\]"):
        reservoir_scan(torch.zeros(2, 3), s, torch.zeros(3, 3), n_exc=2)
    with pytest.raises(ValueError, match=r"milliseconds\? 30 ms is 30e-3"):
        reservoir_scan(torch.zeros(4, 2, 3), s, torch.zeros(3, 3), ReservoirParams(tau_mem=-30.0),
                       n_exc=2)
    with pytest.raises(ValueError, match=r"must share one dtype.*w_rec\.to\(drive\)"):
        reservoir_scan(torch.zeros(4, 2, 3), s, torch.zeros(3, 3, dtype=torch.float64), n_exc=2)
    with pytest.raises(ValueError, match="hold must be an int >= 1"):
        reservoir_features(torch.zeros(4, 2, 3), s, torch.zeros(3, 3), n_exc=2, hold=0)
