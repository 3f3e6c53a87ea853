"""e-prop learner (snn5.train.plasticity.eprop) against autograd and a vectorised reference.

(1) Without recurrent connections e-prop is exact (Bellec et al. 2020): its gradient equals the
    BPTT gradient of autograd through the same network with the same pseudo-derivative, for LIF
    and ALIF neurons, with the firing-rate regulariser.
(2) With recurrence it is an approximation correlated with BPTT, and exactly autograd's gradient
    when the spikes sent through ``W_rec`` are detached (the authors' check).
(3) The online computation equals a vectorised reference that solves the same equations for all
    steps at once from a recorded forward pass.
(4) Determinism; (5) bad inputs named.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from snn5.models.recurrent import RecurrentSNN
from snn5.train.plasticity.eprop import (
    EpropLearner, Feedback, RateRegularization, TaskLoss, rate_regularization, sequence_loss,
)

F64 = torch.float64
REG = RateRegularization(c_reg=0.5, target_rate=20.0)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def make_net(*, n_adaptive=4, recurrent=True, seed=1, n_in=5, n_rec=8, n_out=3, **kw):
    torch.manual_seed(seed)
    kw = {"v_th": 0.3, "tau_mem": 10e-3, "tau_adapt": 30e-3, "beta_adapt": 8.0,
          "input_scale": 6.0, "recurrent_scale": 3.0, "tau_out": 15e-3, **kw}
    net = RecurrentSNN(n_in, n_rec, n_out, n_adaptive=n_adaptive, recurrent=recurrent, **kw)
    with torch.no_grad():
        net.w_in.add_(1.0)                     # excitatory on average: every neuron takes part
    return net.double()


def data(T=30, B=4, n_in=5, n_out=3, seed=2):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(T, B, n_in, generator=g, dtype=F64), torch.randint(0, n_out, (B,), generator=g)


def eprop_grads(net, x, y, **kw):
    step_kw = {k: kw.pop(k) for k in ("time_weights",) if k in kw}
    learner = EpropLearner(net, **kw)
    for p in net.parameters():
        p.grad = None
    result = learner.step(x, y, **step_kw)
    grads = {n: p.grad.clone() for n, p in learner.named_parameters()}
    for p in net.parameters():
        p.grad = None
    return grads, result


def autograd_grads(net, x, y, *, rate_reg=None, stop_recurrent_grad=False, loss="cross_entropy",
                   time_weights=None):
    for p in net.parameters():
        p.grad = None
    y_seq, z_seq, _ = net(x, stop_recurrent_grad=stop_recurrent_grad)
    total = sequence_loss(y_seq, y, loss=loss, time_weights=time_weights)
    if rate_reg is not None:
        total = total + rate_regularization(z_seq, rate_reg, dt=net.dt)
    total.backward()
    grads = {n: p.grad.clone() for n, p in net.named_parameters()}
    for p in net.parameters():
        p.grad = None
    return grads, float(total.detach()), z_seq.detach()


def assert_active(z_seq, net):
    """Guard against checks that pass for silent networks: every neuron group spikes, and the
    adaptive neurons spike more than once (so their threshold moves)."""
    counts = z_seq.sum((0, 1))                                       # [N]
    assert (counts > 0).float().mean() > 0.7
    if net.n_adaptive:
        assert (counts[-net.n_adaptive:] >= 2).float().mean() >= 0.5
    assert 0.02 < float(z_seq.mean()) < 0.6


# ----------------------------------------------------------------------------- (1) exactness

@pytest.mark.parametrize("n_adaptive", [0, 4, 8])
@pytest.mark.parametrize("rate_reg", [None, REG])
def test_feed_forward_eprop_equals_bptt(n_adaptive, rate_reg) -> None:
    net = make_net(n_adaptive=n_adaptive, recurrent=False)
    x, y = data()
    ge, result = eprop_grads(net, x, y, rate_reg=rate_reg)
    gb, loss, z_seq = autograd_grads(net, x, y, rate_reg=rate_reg)
    assert_active(z_seq, net)
    assert set(ge) == set(gb) == {"w_in", "w_out", "b_out"}
    for name in ge:
        assert gb[name].abs().max() > 1e-4, name
        assert torch.allclose(ge[name], gb[name], rtol=1e-9, atol=1e-13), name
    assert result.loss == pytest.approx(loss, rel=1e-12)


def test_feed_forward_exact_for_mse_and_time_weights() -> None:
    net = make_net(n_adaptive=3, recurrent=False)
    x, _ = data()
    y_star = torch.randn(30, 4, 3, dtype=F64)
    w = torch.linspace(0, 1, 30) ** 2
    ge, _ = eprop_grads(net, x, y_star, loss=TaskLoss.MSE, time_weights=w, rate_reg=REG)
    gb, _, _ = autograd_grads(net, x, y_star, loss="mse", time_weights=w, rate_reg=REG)
    for name in ge:
        assert torch.allclose(ge[name], gb[name], rtol=1e-9, atol=1e-13), name


# ----------------------------------------------------------------------------- (2) recurrence

@pytest.mark.parametrize("n_adaptive", [0, 4])
def test_recurrent_eprop_is_autograd_with_detached_recurrent_spikes(n_adaptive) -> None:
    net = make_net(n_adaptive=n_adaptive)
    x, y = data()
    ge, _ = eprop_grads(net, x, y, rate_reg=REG)
    gs, _, z_seq = autograd_grads(net, x, y, rate_reg=REG, stop_recurrent_grad=True)
    gb, _, _ = autograd_grads(net, x, y, rate_reg=REG)
    assert_active(z_seq, net)
    for name in ge:
        assert torch.allclose(ge[name], gs[name], rtol=1e-9, atol=1e-13), name
    # BPTT differs where the recurrence carries gradient; the readout is still exact
    assert not torch.allclose(ge["w_in"], gb["w_in"], rtol=1e-3)
    assert torch.allclose(ge["w_out"], gb["w_out"], rtol=1e-9, atol=1e-13)


def test_recurrent_eprop_correlates_with_bptt() -> None:
    cos = {"w_in": [], "w_rec": []}
    for seed in range(6):
        net = make_net(n_adaptive=4, seed=seed, n_rec=16, recurrent_scale=1.5)
        x, y = data(seed=100 + seed, B=8)
        ge, _ = eprop_grads(net, x, y, rate_reg=REG)
        gb, _, z_seq = autograd_grads(net, x, y, rate_reg=REG)
        assert float(z_seq.mean()) > 0.02
        for name in cos:
            cos[name].append(float(F.cosine_similarity(ge[name].flatten(), gb[name].flatten(), 0)))
    assert min(cos["w_in"]) > 0.7, cos
    assert sum(cos["w_rec"]) / 6 > 0.5 and min(cos["w_rec"]) > 0.2, cos


def test_random_feedback_replaces_w_out_transpose_in_the_learning_signal() -> None:
    net = make_net()
    x, y = data()
    learner = EpropLearner(net, feedback="random", seed=5)
    B = learner.feedback_matrix()
    assert B.shape == (8, 3) and not torch.allclose(B, net.w_out.detach().t())
    assert torch.equal(B, EpropLearner(net, feedback=Feedback.RANDOM, seed=5).feedback_matrix())
    assert not torch.equal(B, EpropLearner(net, feedback=Feedback.RANDOM, seed=6).feedback_matrix())
    g_random, _ = eprop_grads(net, x, y, feedback=Feedback.RANDOM, seed=5)
    ref = _vectorised_gradients(net, x, y, None, torch.full((30,), 1 / 30, dtype=F64), feedback=B)
    for name in ("w_in", "w_rec"):
        assert torch.allclose(g_random[name], ref[name], rtol=1e-9, atol=1e-13), name
    g_out, _, _ = autograd_grads(net, x, y)     # the readout still learns its exact gradient
    assert torch.allclose(g_random["w_out"], g_out["w_out"], rtol=1e-9, atol=1e-13)


# ----------------------------------------------------------------------------- (3) reference

def _filter_matrix(T, d):
    t = torch.arange(T, dtype=F64)
    return torch.tril((1 - d) * d ** (t[:, None] - t[None, :]).clamp_min(0))


def _vectorised_gradients(net, x, y, reg, w, feedback=None):
    """Every step's quantities recorded from one forward pass, then the e-prop equations
    solved for all steps at once (block-bidiagonal triangular solve for the eligibility
    vectors, filter matrices for the low-pass traces, einsums for the gradients)."""
    T, B, _ = x.shape
    with torch.no_grad():
        state = net.init_state(B, dtype=F64)
        pre, psi, zs, ys = [], [], [], []
        for t in range(T):
            pre.append(torch.cat([x[t], state.z], 1))
            out, state = net.step(x[t], state)
            psi.append(net.surrogate.grad(out.v_rel))
            zs.append(out.z)
            ys.append(out.y)
    pre, psi, z, y_seq = (torch.stack(v) for v in (pre, psi, zs, ys))
    N, I = psi.shape[2], pre.shape[2]
    alpha, rho, kappa, beta = net.alpha, net.rho, net.kappa, net.beta_adapt.double()
    M = torch.eye(2 * T, dtype=F64).expand(B, N, 2 * T, 2 * T).clone()
    for t in range(1, T):
        r, c = 2 * t, 2 * t - 2
        M[:, :, r, c] = -alpha
        M[:, :, r, c + 1] = alpha * beta * z[t - 1]
        M[:, :, r + 1, c] = -(1 - rho) * psi[t - 1]
        M[:, :, r + 1, c + 1] = -(rho - (1 - rho) * beta * psi[t - 1])
    rhs = torch.zeros(B, N, 2 * T, I, dtype=F64)
    rhs[:, :, 0::2] = ((1 - alpha) * pre).permute(1, 0, 2)[:, None]
    eps = torch.linalg.solve_triangular(M, rhs, upper=False, unitriangular=True)
    eps_v, eps_a = (eps[:, :, k::2].permute(2, 0, 1, 3) for k in (0, 1))  # [T, B, N, I]
    e = psi[..., None] * (eps_v - beta[:, None] * eps_a)
    ebar = torch.einsum("ts,sbni->tbni", _filter_matrix(T, kappa), e)
    err = (torch.softmax(y_seq, -1) - F.one_hot(y, 3).to(F64)) * (w[:, None, None] / B)
    B_fb = net.w_out.detach().t() if feedback is None else feedback  # [N, K]
    L = err @ B_fb.t()                                               # [T, B, N]
    g_syn = torch.einsum("tbn,tbni->ni", L, ebar)
    rate = z.mean((0, 1))
    if reg is not None:
        gap = rate - reg.target_rate * net.dt
        g_syn += reg.c_reg * gap[:, None] * e.sum((0, 1)) / (T * B)
    zbar_out = torch.einsum("ts,sbn->tbn", _filter_matrix(T, kappa), z)
    ones = torch.einsum("ts,s->t", _filter_matrix(T, kappa), torch.ones(T, dtype=F64))
    return {"w_in": g_syn[:, :x.shape[2]], "w_rec": g_syn[:, x.shape[2]:] * net.rec_mask,
            "w_out": torch.einsum("tbk,tbn->kn", err, zbar_out),
            "b_out": torch.einsum("tbk,t->k", err, ones)}


def test_online_gradients_equal_the_vectorised_reference() -> None:
    net = make_net(n_adaptive=5)
    x, y = data(T=20)
    w = torch.rand(20, dtype=F64)
    w[:5] = 0.0                                        # steps without loss are skipped online
    ge, _ = eprop_grads(net, x, y, rate_reg=REG, time_weights=w)
    ref = _vectorised_gradients(net, x, y, REG, w)
    for name in ge:
        assert ref[name].abs().max() > 1e-5, name
        assert torch.allclose(ge[name], ref[name], rtol=1e-9, atol=1e-13), name


# ----------------------------------------------------------------------------- grad contract

def test_grad_holds_minus_dw_and_accumulates() -> None:
    net = make_net()
    x, y = data()
    learner = EpropLearner(net, rate_reg=REG)
    r1 = learner.step(x, y)
    first = {n: p.grad.clone() for n, p in learner.named_parameters()}
    for name, g in first.items():
        assert torch.equal(r1.dw[name], -g)
    assert torch.all(first["w_rec"].diagonal() == 0)                # no self-connections
    learner.step(x, y)
    for name, p in learner.named_parameters():
        assert torch.allclose(p.grad, 2 * first[name])
    assert r1.y_seq.shape == (30, 4, 3) and r1.rates.shape == (8,)
    assert r1.loss == pytest.approx(r1.task_loss + r1.rate_loss)


def test_adam_on_eprop_gradients_lowers_the_loss() -> None:
    torch.manual_seed(0)
    net = RecurrentSNN(4, 16, 2, n_adaptive=8, v_th=0.2, tau_mem=10e-3, input_scale=3.0)
    T, B = 25, 16
    y = torch.arange(B) % 2
    x = torch.rand(T, B, 4) * 0.3
    x[:, y == 0, :2] += 0.7                          # class 0 drives inputs 0-1, class 1 inputs 2-3
    x[:, y == 1, 2:] += 0.7
    learner = EpropLearner(net, rate_reg=RateRegularization(c_reg=0.1))
    opt = torch.optim.Adam(learner.parameters(), lr=2e-2)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        losses.append(learner.step(x, y).task_loss)
        opt.step()
    assert losses[-1] < 0.5 * losses[0], losses


# ----------------------------------------------------------------------------- (4) determinism

def test_same_seed_same_gradients() -> None:
    x, y = data()
    runs = []
    for _ in range(2):
        net = make_net(seed=7)
        runs.append(eprop_grads(net, x, y, feedback="random", seed=3, rate_reg=REG)[0])
    for name in runs[0]:
        assert torch.equal(runs[0][name], runs[1][name]), name


# ----------------------------------------------------------------------------- (5) bad inputs

@pytest.mark.parametrize("bad, match", [
    (lambda x, y: (x[0], y), r"\[T, B, n_in=5\]"),
    (lambda x, y: (x[..., :3], y), r"n_in=5"),
    (lambda x, y: (x.float(), y), "float32"),
    (lambda x, y: (x.clone().fill_(float("nan")), y), "NaN"),
    (lambda x, y: (x, y + 3), r"\[0, 3\)"),
    (lambda x, y: (x, y.float()), "int64"),
    (lambda x, y: (x, y[:2]), r"\[B=4\]"),
    (lambda x, y: (x, y.tolist()), "tensor"),
])
def test_bad_step_inputs_are_named(bad, match) -> None:
    learner = EpropLearner(make_net())
    x, y = data()
    x, y = bad(x, y)
    with pytest.raises((ValueError, TypeError), match=match):
        learner.step(x, y)


@pytest.mark.parametrize("w, match", [(torch.ones(29), r"\(30,\)"), (-torch.ones(30), ">= 0"),
                                      (torch.zeros(30), "not all zero")])
def test_bad_time_weights_are_named(w, match) -> None:
    learner = EpropLearner(make_net())
    with pytest.raises(ValueError, match=match):
        learner.step(*data(), time_weights=w)


def test_bad_mse_targets_are_named() -> None:
    learner = EpropLearner(make_net(), loss="mse")
    x, _ = data()
    with pytest.raises(TypeError, match="float"):
        learner.step(x, torch.zeros(4, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[B=4, K=3\]"):
        learner.step(x, torch.zeros(4, 2, dtype=F64))


def test_bad_learner_settings_are_named() -> None:
    net = make_net()
    with pytest.raises(TypeError, match="RecurrentSNN"):
        EpropLearner(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="symmetric, random"):
        EpropLearner(net, feedback="transpose")
    with pytest.raises(ValueError, match="cross_entropy, mse"):
        EpropLearner(net, loss="hinge")
    with pytest.raises(TypeError, match="RateRegularization"):
        EpropLearner(net, rate_reg=0.1)
    with pytest.raises(ValueError, match="c_reg"):
        RateRegularization(c_reg=-1.0)
    with pytest.raises(ValueError, match="Hz"):
        RateRegularization(c_reg=1.0, target_rate=float("nan"))
