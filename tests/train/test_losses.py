"""Objectives of surrogate training against hand computation: TRT (Zhang, Xu & Tao 2025), the
spike-entropy regulariser (IM-Loss's objective) and the chunk shares used by truncated BPTT."""

import math

import pytest
import torch
import torch.nn.functional as F

from snn5.train.surrogate import CELoss, TETLoss, TRTLoss
from snn5.train.surrogate.losses import (
    chunk_loss, spike_entropy, tet_loss, trt_loss, trt_weights,
)


def hand_trt(out, y, weights, decay, lam, eps, eta):
    """TRT in python floats, step by step, element by element."""
    T, B, C = len(out), len(out[0]), len(out[0][0])
    total = 0.0
    for t in range(T):
        ce = sum(-math.log(math.exp(out[t][b][y[b]])
                           / sum(math.exp(out[t][b][c]) for c in range(C))) for b in range(B)) / B
        mse = sum((out[t][b][c] - (1.0 if c == y[b] else 0.0)) ** 2
                  for b in range(B) for c in range(C)) / (B * C)
        reg = sum(lam * w * w / (1 + (math.exp(decay * t) - 1) * (abs(w) + eps))
                  for W in weights for w in W.flatten().tolist())
        total += (1 - eta) * ce + eta * mse + reg
    return total / T


def test_trt_matches_hand_computation():
    torch.manual_seed(0)
    out = torch.randn(3, 2, 4, dtype=torch.float64)
    y = torch.tensor([1, 3])
    weights = [torch.randn(2, 3, dtype=torch.float64), torch.randn(4, 1, dtype=torch.float64)]
    kw = dict(decay=0.5, lam=0.1, epsilon=1e-5, eta=0.3)
    got = trt_loss(out, y, weights, **kw)
    expected = hand_trt(out.tolist(), y.tolist(), weights, 0.5, 0.1, 1e-5, 0.3)
    assert float(got) == pytest.approx(expected, rel=1e-6)
    # without the penalty and the MSE term it is TET's per-step cross-entropy
    assert float(trt_loss(out, y, weights, lam=0.0, eta=0.0)) == pytest.approx(
        float(tet_loss(out, y, lam=0.0)), rel=1e-6)


def test_trt_penalty_decays_with_time_and_is_l2_at_the_first_step():
    out = torch.zeros(1, 1, 2)
    y = torch.tensor([0])
    w = [torch.tensor([[2.0, -1.0]])]
    base = float(trt_loss(out, y, w, lam=0.0))
    at0 = float(trt_loss(out, y, w, lam=0.5, first_step=0)) - base
    assert at0 == pytest.approx(0.5 * (4 + 1), rel=1e-6)        # plain L2 at t = 0
    at3 = float(trt_loss(out, y, w, lam=0.5, first_step=3, total_steps=4)) - base / 4
    assert 0 < at3 < at0 / 4                                     # weaker at later steps


def test_trt_chunks_add_up_to_the_whole_sequence():
    torch.manual_seed(1)
    out = torch.randn(7, 3, 5, dtype=torch.float64)
    y = torch.tensor([0, 4, 2])
    w = [torch.randn(5, 5, dtype=torch.float64)]
    whole = trt_loss(out, y, w, lam=1e-2)
    parts = sum(trt_loss(out[t:t + 3], y, w, lam=1e-2, first_step=t, total_steps=7)
                for t in range(0, 7, 3))
    assert float(parts) == pytest.approx(float(whole), rel=1e-12)


def test_trt_weights_are_the_synaptic_weights():
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4),
                              torch.nn.Conv1d(4, 2, 3))
    assert [tuple(p.shape) for p in trt_weights(net)] == [(4, 3), (2, 4, 3)]


def test_trt_bad_inputs_are_named():
    w = [torch.ones(2, 2)]
    with pytest.raises(ValueError, match=r"\[T, B, C\]"):
        trt_loss(torch.zeros(2, 4), torch.tensor([0, 1]), w)
    with pytest.raises(ValueError, match="labels must be"):
        trt_loss(torch.zeros(2, 2, 4), torch.tensor([0]), w)
    with pytest.raises(ValueError, match="outside a sequence of total_steps=3"):
        trt_loss(torch.zeros(2, 2, 4), torch.tensor([0, 1]), w, first_step=2, total_steps=3)
    with pytest.raises(ValueError, match="eta must lie"):
        trt_loss(torch.zeros(2, 2, 4), torch.tensor([0, 1]), w, eta=1.5)


def test_spike_entropy_matches_hand_computation():
    a = torch.zeros(4, 2, 2)
    a[0] = 1.0                                   # rate 1/4
    b = torch.zeros(2, 1, 3)
    b[0] = 1.0                                   # rate 1/2
    h_quarter = -(0.25 * math.log2(0.25) + 0.75 * math.log2(0.75))
    value = spike_entropy({"a": a, "b": b}, weight=0.2)
    assert float(value) == pytest.approx(-0.2 * (h_quarter + 1.0) / 2, rel=1e-6)
    assert spike_entropy({"a": a}, weight=0.0) is None
    silent = torch.zeros(3, 2, 2, requires_grad=True)
    spike_entropy({"s": silent}, weight=1.0).backward()        # finite at rate 0
    assert torch.isfinite(silent.grad).all() and (silent.grad < 0).all()   # asks for spikes


def test_chunk_loss_shares():
    torch.manual_seed(2)
    scores = torch.randn(6, 3, 4)
    y = torch.tensor([0, 1, 3])
    mean = lambda s: s.mean(0)                    # noqa: E731
    whole_ce = chunk_loss(CELoss(), scores, y, reduce_steps=mean)
    assert float(whole_ce) == float(F.cross_entropy(scores.mean(0), y))
    part = chunk_loss(CELoss(), scores[:2], y, reduce_steps=mean, first_step=0, total_steps=6)
    assert float(part) == pytest.approx(float(F.cross_entropy(scores[:2].mean(0), y)) / 3)
    tet = TETLoss(name="tet", lam=0.1)
    parts = sum(chunk_loss(tet, scores[t:t + 4], y, reduce_steps=mean, first_step=t,
                           total_steps=6) for t in (0, 4))
    assert float(parts) == pytest.approx(float(tet_loss(scores, y, lam=0.1)), rel=1e-6)
    trt = TRTLoss(name="trt", lam=0.0)
    assert float(chunk_loss(trt, scores, y, reduce_steps=mean)) == pytest.approx(
        float(trt_loss(scores, y, [], lam=0.0)))
