"""The recurrent LIF/ALIF network (snn5.models.recurrent) against its equations written out here."""

from __future__ import annotations

import math

import pytest
import torch

from snn5.core.eprop import DampenedTriangle
from snn5.core.surrogate import ATan
from snn5.models.recurrent import RecurrentSNN, RecurrentState

F64 = torch.float64


def make(**kw):
    torch.manual_seed(0)
    kw = {"n_adaptive": 3, "v_th": 0.3, "tau_mem": 8e-3, "tau_adapt": 40e-3, "beta_adapt": 4.0,
          "tau_out": 12e-3, "input_scale": 4.0, "recurrent_scale": 2.0, **kw}
    return RecurrentSNN(4, 6, 2, **kw).double()


def test_dynamics_follow_the_equations() -> None:
    net = make()
    T, B = 20, 3
    x = torch.rand(T, B, 4, dtype=F64) + 0.3
    with torch.no_grad():
        y_seq, z_seq, _ = net(x)
    a_, r_, k_ = math.exp(-1 / 8), math.exp(-1 / 40), math.exp(-1 / 12)
    beta = torch.tensor([0, 0, 0, 4.0, 4.0, 4.0], dtype=F64)
    W_in, W_rec = net.w_in.detach(), net.w_rec.detach() * (1 - torch.eye(6, dtype=F64))
    v = a = z = torch.zeros(B, 6, dtype=F64)
    thr = 0.3 + beta * a
    y = torch.zeros(B, 2, dtype=F64)
    for t in range(T):
        v = a_ * (v - z * thr) + (1 - a_) * (x[t] @ W_in.t() + z @ W_rec.t())
        thr = 0.3 + beta * a
        z = (v >= thr).to(F64)
        a = r_ * a + (1 - r_) * z
        y = k_ * y + (1 - k_) * (z @ net.w_out.detach().t() + net.b_out.detach())
        assert torch.equal(z_seq[t], z), t
        assert torch.allclose(y_seq[t], y, atol=1e-12), t
    assert 0.05 < float(z_seq.mean()) < 0.7 and (z_seq[:, :, 3:].sum(0) >= 2).any()


def test_forward_is_the_step_loop_and_streams() -> None:
    net = make()
    x = torch.rand(15, 2, 4, dtype=F64) * 2
    y_seq, z_seq, final = net(x)
    state = net.init_state(2, dtype=F64)
    for t in range(15):
        out, state = net.step(x[t], state)
        assert torch.equal(out.z, z_seq[t]) and torch.equal(out.y, y_seq[t])
    assert isinstance(final, RecurrentState)
    y1, z1, s1 = net(x[:6])
    y2, z2, _ = net(x[6:], s1)
    assert torch.equal(torch.cat([z1, z2]), z_seq) and torch.equal(torch.cat([y1, y2]), y_seq)


def test_v_rel_is_the_spike_argument() -> None:
    net = make()
    x = torch.rand(10, 2, 4, dtype=F64) * 2
    state = net.init_state(2, dtype=F64)
    for t in range(10):
        out, state = net.step(x[t], state)
        assert torch.equal(out.z, (out.v_rel >= 0).to(F64))
        assert not out.v_rel.requires_grad


def test_no_self_connections_and_gradients_reach_all_weights() -> None:
    net = make()
    assert torch.all(net.w_rec.diagonal() == 0)
    x = torch.rand(20, 3, 4, dtype=F64) + 0.3
    y_seq, _, _ = net(x)
    y_seq.sum().backward()
    assert torch.all(net.w_rec.grad.diagonal() == 0)
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    with torch.no_grad():
        net.w_rec.fill_diagonal_(5.0)                       # masked: changes nothing
    assert torch.equal(net(x)[0], y_seq.detach())


def test_feed_forward_variant_and_defaults() -> None:
    net = RecurrentSNN(3, 5, 2, recurrent=False, v_th=0.5)
    assert net.w_rec is None and not net.recurrent
    assert {n for n, _ in net.named_parameters()} == {"w_in", "w_out", "b_out"}
    assert net.surrogate == DampenedTriangle(width=0.5, gamma=0.3)
    assert torch.equal(net.beta_adapt, torch.zeros(5))
    y, z, _ = net(torch.rand(4, 2, 3))
    assert y.shape == (4, 2, 2) and z.shape == (4, 2, 5)
    assert torch.equal(RecurrentSNN(3, 5, 2, n_adaptive=2).beta_adapt,
                       torch.tensor([0, 0, 0, 1.8, 1.8]))
    assert "2 adaptive" in repr(RecurrentSNN(3, 5, 2, n_adaptive=2))


@pytest.mark.parametrize("kw, err, match", [
    ({"n_rec": 0}, ValueError, "n_rec"),
    ({"n_adaptive": 9}, ValueError, r"n_adaptive.*n_rec=5"),
    ({"tau_mem": 5e-4}, ValueError, "milliseconds"),
    ({"tau_out": 1e-3}, ValueError, "tau_out must exceed dt"),
    ({"v_th": 0.0}, ValueError, "v_th"),
    ({"beta_adapt": -1.0}, ValueError, "beta_adapt"),
    ({"surrogate": "atan"}, TypeError, "Surrogate object"),
    ({"surrogate": ATan(learnable=True)}, ValueError, "learnable=False"),
])
def test_bad_construction_is_named(kw, err, match) -> None:
    args = {"n_in": 3, "n_rec": 5, "n_out": 2}
    args.update({k: kw.pop(k) for k in list(kw) if k in args})
    with pytest.raises(err, match=match):
        RecurrentSNN(args["n_in"], args["n_rec"], args["n_out"], **kw)


@pytest.mark.parametrize("x, err, match", [
    (torch.rand(4, 3), ValueError, r"\[T, B, n_in=3\]"),
    (torch.rand(0, 2, 3), ValueError, "T >= 1"),
    (torch.rand(4, 2, 5), ValueError, "n_in=3"),
    (torch.rand(4, 2, 3, dtype=F64), TypeError, "float32"),
])
def test_bad_inputs_are_named(x, err, match) -> None:
    with pytest.raises(err, match=match):
        RecurrentSNN(3, 5, 2)(x)
