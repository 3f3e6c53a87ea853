"""e-prop's pure per-step math (snn5.core.eprop).

- the pseudo-derivative is the paper's ``gamma / v_th * max(0, 1 - |v - A| / v_th)`` and is what
  the spike's backward pass uses;
- eligibility traces stepped online equal (a) a vectorised reference that solves the same linear
  recursion for all steps at once, and (b) autograd of ``z^t`` through ``alif_step`` along the
  neuron's own dynamics (the definition of the eligibility trace ``e^t = dz^t / dW``);
- output errors are the autograd gradients of their losses.
"""

from __future__ import annotations

import math

import pytest
import torch

from snn5.core.eprop import (
    ALIFTraces, DampenedTriangle, LIFTraces, alif_eligibility_step, alif_eligibility_step_,
    alif_traces, cross_entropy_error, eprop_gradient, learning_signal, lif_eligibility_step,
    lif_eligibility_step_, lif_traces, low_pass, mse_error,
)
from snn5.core.neurons import ALIFParams, ALIFState, alif_step, decay
from snn5.core.options import Reset
from snn5.core.surrogate import Triangle, spike

DT = 1e-3
F64 = torch.float64


# ----------------------------------------------------------------------------- pseudo-derivative

def test_dampened_triangle_is_the_papers_pseudo_derivative() -> None:
    v_th, gamma = 0.6, 0.3
    sur = DampenedTriangle(width=v_th, gamma=gamma)
    x = torch.linspace(-1.5, 1.5, 301, dtype=F64)
    paper = gamma / v_th * torch.clamp(1 - (x / v_th).abs(), min=0)     # written out here
    assert torch.allclose(sur.grad(x), paper, rtol=0, atol=1e-15)
    assert torch.allclose(sur.grad(x), gamma * Triangle(width=v_th).grad(x), atol=1e-15)
    assert sur.grad(torch.tensor(0.0, dtype=F64)) == pytest.approx(gamma / v_th)
    # the primitive's derivative is psi (checked by finite differences), from 0 to gamma
    h = 1e-6
    fd = (sur.primitive(x + h) - sur.primitive(x - h)) / (2 * h)
    inside = (x.abs() - v_th).abs() > 1e-3                              # away from the kinks
    assert torch.allclose(fd[inside], paper[inside], atol=1e-6)
    assert sur.primitive(torch.tensor(-9.0)) == 0 and sur.primitive(torch.tensor(9.0)) == pytest.approx(gamma)


def test_spike_backward_uses_the_pseudo_derivative() -> None:
    sur = DampenedTriangle(width=0.5, gamma=0.3)
    x = torch.linspace(-1, 1, 41, dtype=F64, requires_grad=True)
    z = spike(x, sur)
    assert set(z.tolist()) == {0.0, 1.0}
    z.sum().backward()
    assert torch.equal(x.grad, sur.grad(x.detach()))


@pytest.mark.parametrize("kw, match", [({"gamma": 0.0}, "gamma"), ({"gamma": -1.0}, "gamma"),
                                       ({"gamma": math.inf}, "gamma"), ({"width": 0.0}, "width"),
                                       ({"gamma": "0.3"}, "gamma")])
def test_dampened_triangle_rejects_bad_parameters(kw, match) -> None:
    with pytest.raises(ValueError, match=match):
        DampenedTriangle(**kw)


# ----------------------------------------------------------------------------- references

def _filter_matrix(T: int, decay_: float) -> torch.Tensor:
    """``[T, T]`` lower-triangular ``K[t, s] = (1 - d) d^(t - s)``: ``F_d`` of a whole sequence."""
    t = torch.arange(T, dtype=F64)
    k = (1 - decay_) * decay_ ** (t[:, None] - t[None, :]).clamp_min(0)
    return torch.tril(k)


def _vectorised_traces(pre, psi, z, *, alpha, rho, beta, kappa):
    """All eligibility traces at once: the eligibility vectors solve the block-bidiagonal linear
    system ``eps^t - J^t eps^{t-1} = b^t`` for every (batch, neuron) in one triangular solve.

    pre [T, B, I], psi/z [T, B, N], beta/rho [N] -> (e, ebar) [T, B, N, I].
    """
    T, B, I = pre.shape
    N = psi.shape[2]
    M = torch.eye(2 * T, dtype=F64).expand(B, N, 2 * T, 2 * T).clone()   # [B, N, 2T, 2T]
    for t in range(1, T):                                 # the -J^t block below the diagonal
        r, c = 2 * t, 2 * (t - 1)
        M[:, :, r, c] = -alpha
        M[:, :, r, c + 1] = alpha * beta * z[t - 1]
        M[:, :, r + 1, c] = -(1 - rho) * psi[t - 1]
        M[:, :, r + 1, c + 1] = -(rho - (1 - rho) * beta * psi[t - 1])
    rhs = torch.zeros(B, N, 2 * T, I, dtype=F64)
    rhs[:, :, 0::2, :] = ((1 - alpha) * pre).permute(1, 0, 2)[:, None]  # b^t = ((1-a) pre^t, 0)
    eps = torch.linalg.solve_triangular(M, rhs, upper=False, unitriangular=True)
    eps_v = eps[:, :, 0::2].permute(2, 0, 1, 3)                           # [T, B, N, I]
    eps_a = eps[:, :, 1::2].permute(2, 0, 1, 3)
    e = psi[..., None] * (eps_v - beta[:, None] * eps_a)
    ebar = torch.einsum("ts,sbni->tbni", _filter_matrix(T, kappa), e)
    return e, ebar


def _random_sequence(T=12, B=3, N=5, I=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    pre = (torch.rand(T, B, I, generator=g, dtype=F64) < 0.4).to(F64) * 1.3
    psi = torch.rand(T, B, N, generator=g, dtype=F64) * 0.5
    z = (torch.rand(T, B, N, generator=g, dtype=F64) < 0.3).to(F64)
    return pre, psi, z


def _online(pre, psi, z, *, alif: bool, **kw):
    T, B, I = pre.shape
    N = psi.shape[2]
    traces = (alif_traces if alif else lif_traces)(B, N, I, dtype=F64)
    es, ebars = [], []
    for t in range(T):
        if alif:
            e, traces = alif_eligibility_step(pre[t], psi[t], z[t], traces, **kw)
        else:
            e, traces = lif_eligibility_step(pre[t], psi[t], traces, **kw)
        es.append(e)
        ebars.append(traces.ebar)
    return torch.stack(es), torch.stack(ebars)


def test_alif_traces_online_equal_the_vectorised_solve() -> None:
    pre, psi, z = _random_sequence()
    beta = torch.tensor([0.0, 0.5, 2.0, 4.0, 1.0], dtype=F64)
    kw = dict(alpha=decay(20e-3, DT), rho=decay(50e-3, DT), kappa=decay(15e-3, DT))
    e_on, ebar_on = _online(pre, psi, z, alif=True, beta=beta, **kw)
    e_ref, ebar_ref = _vectorised_traces(pre, psi, z, beta=beta, **kw)
    assert e_ref.abs().max() > 1e-3 and (e_ref[..., 1:, :] != e_ref[..., :1, :]).any()
    assert torch.allclose(e_on, e_ref, rtol=1e-10, atol=1e-13)
    assert torch.allclose(ebar_on, ebar_ref, rtol=1e-10, atol=1e-13)


def test_alif_traces_take_per_neuron_adaptation_decays() -> None:
    pre, psi, z = _random_sequence(seed=1)
    beta = torch.full((5,), 1.5, dtype=F64)
    rho = decay(torch.tensor([30e-3, 60e-3, 100e-3, 200e-3, 400e-3], dtype=F64), DT)
    e_on, _ = _online(pre, psi, z, alif=True, alpha=0.9, rho=rho, beta=beta, kappa=0.8)
    for n in range(5):                     # each neuron alone with its scalar rho
        e_n, _ = _online(pre, psi[..., n:n + 1], z[..., n:n + 1], alif=True, alpha=0.9,
                         rho=float(rho[n]), beta=1.5, kappa=0.8)
        assert torch.allclose(e_on[:, :, n:n + 1], e_n, rtol=1e-12, atol=1e-15)


def test_lif_traces_equal_the_filter_matrices_and_alif_with_beta_zero() -> None:
    pre, psi, z = _random_sequence(seed=2)
    alpha, kappa = decay(10e-3, DT), decay(25e-3, DT)
    e_on, ebar_on = _online(pre, psi, z, alif=False, alpha=alpha, kappa=kappa)
    zbar = torch.einsum("ts,sbi->tbi", _filter_matrix(pre.shape[0], alpha), pre)  # [T, B, I]
    e_ref = psi[..., None] * zbar[:, :, None, :]
    ebar_ref = torch.einsum("ts,sbni->tbni", _filter_matrix(pre.shape[0], kappa), e_ref)
    assert torch.allclose(e_on, e_ref, rtol=1e-12, atol=1e-15)
    assert torch.allclose(ebar_on, ebar_ref, rtol=1e-12, atol=1e-15)
    e_alif, ebar_alif = _online(pre, psi, z, alif=True, alpha=alpha, rho=0.99,
                                beta=torch.zeros(5, dtype=F64), kappa=kappa)
    assert torch.allclose(e_alif, e_on, atol=1e-15) and torch.allclose(ebar_alif, ebar_on, atol=1e-15)


@pytest.mark.parametrize("beta", [0.7, torch.tensor([0.0, 0.5, 2.0, 4.0, 1.0], dtype=F64)])
def test_in_place_steps_equal_the_pure_steps(beta) -> None:
    pre, psi, z = _random_sequence(T=15, seed=4)
    T, B, I = pre.shape
    N = psi.shape[2]
    kw = dict(alpha=0.85, rho=0.97, kappa=0.9)
    pure, fast = alif_traces(B, N, I, dtype=F64), alif_traces(B, N, I, dtype=F64)
    lif_pure, lif_fast = lif_traces(B, N, I, dtype=F64), lif_traces(B, N, I, dtype=F64)
    work = torch.empty(B, N, I, dtype=F64)
    for t in range(T):
        e, pure = alif_eligibility_step(pre[t], psi[t], z[t], pure, beta=beta, **kw)
        e_fast, fast = alif_eligibility_step_(pre[t], psi[t], z[t], fast, beta=beta, out=work, **kw)
        assert e_fast is work
        assert torch.allclose(e_fast, e, rtol=1e-12, atol=1e-15)
        for a, b in zip(fast, pure):
            assert torch.allclose(a, b, rtol=1e-12, atol=1e-15)
        _, lif_pure = lif_eligibility_step(pre[t], psi[t], lif_pure, alpha=0.85, kappa=0.9)
        lif_fast = lif_eligibility_step_(pre[t], psi[t], lif_fast, alpha=0.85, kappa=0.9)
        for a, b in zip(lif_fast, lif_pure):
            assert torch.allclose(a, b, rtol=1e-12, atol=1e-15)
    assert pure.ebar.abs().max() > 1e-3


def test_alif_eligibility_trace_is_dz_dw_along_the_neurons_own_dynamics() -> None:
    """``e^t_ji = dz_j^t / dW_ji`` by autograd through ``alif_step`` (pseudo-derivative, detached
    reset spike) for neurons that do not talk to each other."""
    T, B, N, I = 25, 2, 4, 3
    g = torch.Generator().manual_seed(3)
    x = torch.rand(T, B, I, generator=g, dtype=F64) * 4.0
    W = (torch.randn(N, I, generator=g, dtype=F64) * 0.8 + 0.5).requires_grad_(True)
    beta = torch.tensor([0.0, 0.4, 1.0, 2.5], dtype=F64)
    sur = DampenedTriangle(width=0.4, gamma=0.3)
    p = ALIFParams(tau_mem=8e-3, tau_adapt=40e-3, beta_adapt=beta, v_th=0.4,
                   reset=Reset.SUBTRACT, detach_reset=True)
    state = ALIFState(torch.zeros(B, N, dtype=F64), torch.zeros(B, N, dtype=F64))
    traces = alif_traces(B, N, I, dtype=F64)
    alpha, rho = decay(p.tau_mem, DT), decay(p.tau_adapt, DT)
    spikes = 0.0
    for t in range(T):
        a_prev = state.a.detach()
        z, state = alif_step(x[t] @ W.t(), state, p, dt=DT, surrogate=sur)
        # autograd: row j of dz_j^t/dW (z_j depends on W_j only), per batch element
        e_auto = torch.stack([torch.autograd.grad(z[b].sum(), W, retain_graph=True)[0]
                              for b in range(B)])                    # [B, N, I]
        v_rel = state.v.detach() - (1 - z.detach()) * (p.v_th + beta * a_prev)
        e, traces = alif_eligibility_step(x[t], sur.grad(v_rel), z.detach(), traces,
                                          alpha=alpha, rho=rho, beta=beta, kappa=0.5)
        assert torch.allclose(e, e_auto, rtol=1e-10, atol=1e-14), f"step {t}"
        spikes += float(z.detach().sum())
    assert spikes > 2 * N * B, "the check needs spiking (and adapting) neurons"


# ----------------------------------------------------------------------------- small pieces

def test_errors_are_the_gradients_of_their_losses() -> None:
    y = torch.randn(4, 6, dtype=F64, requires_grad=True)
    target = torch.tensor([0, 5, 2, 2])
    torch.nn.functional.cross_entropy(y, target, reduction="sum").backward()
    assert torch.allclose(cross_entropy_error(y.detach(), target), y.grad, atol=1e-14)
    y.grad = None
    y_star = torch.randn(4, 6, dtype=F64)
    (0.5 * ((y - y_star) ** 2).sum()).backward()
    assert torch.allclose(mse_error(y.detach(), y_star), y.grad, atol=1e-14)


def test_learning_signal_and_gradient_term() -> None:
    err = torch.randn(3, 2, dtype=F64)
    B = torch.randn(5, 2, dtype=F64)
    L = learning_signal(err, B)
    assert L.shape == (3, 5)
    assert torch.allclose(L[1, 4], (B[4] * err[1]).sum())
    ebar = torch.randn(3, 5, 7, dtype=F64)
    g = eprop_gradient(L, ebar)
    assert g.shape == (5, 7)
    assert torch.allclose(g[2, 3], sum(L[b, 2] * ebar[b, 2, 3] for b in range(3)))


def test_trace_constructors_and_low_pass() -> None:
    t = lif_traces(2, 3, 4)
    assert isinstance(t, LIFTraces) and t.zbar.shape == (2, 4) and t.ebar.shape == (2, 3, 4)
    a = alif_traces(2, 3, 4, dtype=F64)
    assert isinstance(a, ALIFTraces) and a.eps_v.shape == a.ebar.shape == (2, 3, 4)
    assert a.psi.shape == a.z.shape == (2, 3) and a.eps_v.dtype == F64
    assert all(float(v.abs().sum()) == 0 for v in a)
    assert a.eps_v.data_ptr() != a.eps_a.data_ptr() != a.ebar.data_ptr()
    assert torch.equal(low_pass(torch.ones(2), torch.zeros(2), 0.75), torch.full((2,), 0.75))


def test_steps_keep_float32() -> None:
    pre, psi, z = (v.float() for v in _random_sequence(T=1))
    e, tr = alif_eligibility_step(pre[0], psi[0], z[0], alif_traces(3, 5, 4), alpha=0.9,
                                  rho=0.99, beta=torch.ones(5), kappa=0.9)
    assert e.dtype == torch.float32 and all(v.dtype == torch.float32 for v in tr)
