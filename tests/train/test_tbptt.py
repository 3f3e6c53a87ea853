"""Truncated BPTT: K >= T is full BPTT bit for bit; K < T cuts every gradient path across a
chunk boundary; forward values do not depend on the chunking; what it cannot honour is refused."""

import pytest
import torch
from torch import nn

from snn5.models import SpikingClassifier, build_model
from snn5.nn import LIF, MembraneReadout
from snn5.train.surrogate import CELoss, TBPTTError, TETLoss, TRTLoss, check_tbptt
from snn5.train.surrogate.losses import chunk_loss, trt_weights
from snn5.train.surrogate.tbptt import tbptt_backward

T = 6


def mlp(**kw):
    torch.manual_seed(0)
    cfg = {"name": "spiking_mlp", "hidden": [16, 12], "timesteps": T, **kw}
    model = build_model(cfg, (1, 8, 8), 10)
    with torch.no_grad():                 # strong weights: every layer spikes, every grad != 0
        for m in model.modules():
            if isinstance(m, nn.Linear):
                m.weight.mul_(6.0)
    return model


def grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def objective(model, cfg, y):
    weights = trt_weights(model)
    return lambda scores, first, total: chunk_loss(
        cfg, scores, y, reduce_steps=model.readout.reduce_steps, weights=weights,
        first_step=first, total_steps=total)


@pytest.mark.parametrize("loss", [CELoss(), TETLoss(name="tet"), TRTLoss(name="trt", lam=1e-3)])
@pytest.mark.parametrize("readout", ["mean_membrane", "max_membrane", "spike_count"])
def test_chunks_of_at_least_T_steps_give_the_full_bptt_gradient_exactly(loss, readout):
    model = mlp(readout=readout)
    x, y = torch.rand(5, 1, 8, 8), torch.randint(0, 10, (5,))
    logits, scores = model(x, per_step=True)
    full = chunk_loss(loss, scores, y, reduce_steps=model.readout.reduce_steps,
                      weights=trt_weights(model))
    full.backward()
    reference = grads(model)
    assert reference and all(g.abs().sum() > 0 for g in reference.values())
    for K in (T, T + 3):
        model.zero_grad(set_to_none=True)
        value, chunked_logits = tbptt_backward(model, x, K, objective(model, loss, y))
        assert value == full.item()
        assert torch.equal(chunked_logits, logits)
        got = grads(model)
        assert got.keys() == reference.keys()
        for name in reference:
            assert torch.equal(got[name], reference[name]), name


def events_model(hidden=8, classes=3, features=4):
    torch.manual_seed(0)
    layers = [nn.Linear(features, hidden), LIF(5e-3), nn.Linear(hidden, classes)]
    return SpikingClassifier(layers, MembraneReadout(5e-3), timesteps=T, encoding="events",
                             input_shape=(T, features))


def last_chunk_only(K):
    def loss(scores, first, total):
        if first + scores.shape[0] < total:
            return scores.sum() * 0.0                   # earlier chunks carry no loss
        return (scores * torch.linspace(1, 2, scores.shape[-1])).sum()
    return loss


def test_no_gradient_crosses_a_chunk_boundary():
    model = events_model()
    K = 2
    x = torch.randn(3, T, 4, requires_grad=True)      # [B, T, F]: one frame per step
    tbptt_backward(model, x, K, last_chunk_only(K))
    early, late = x.grad[:, :T - K], x.grad[:, T - K:]
    assert torch.count_nonzero(early) == 0            # the last chunk's loss stops at its border
    assert torch.count_nonzero(late) > 0
    # full BPTT of the same loss reaches the early steps (through LIF and LI state)
    x.grad = None
    _, scores = model(x, per_step=True)
    last_chunk_only(K)(scores[T - K:], T - K, T).backward()
    assert torch.count_nonzero(x.grad[:, :T - K]) > 0


def test_truncated_state_carries_values_forward():
    """Detaching changes gradients only: the forward of the chunks is the one-pass forward."""
    model = events_model()
    x = torch.randn(3, T, 4)
    logits, scores = model(x, per_step=True)
    seen = []

    def record(s, first, total):
        seen.append(s.detach())
        return s.sum() * 0.0

    _, chunked_logits = tbptt_backward(model, x, 4, record)
    assert [s.shape[0] for s in seen] == [4, 2]
    torch.testing.assert_close(torch.cat(seen), scores, rtol=0, atol=0)
    torch.testing.assert_close(chunked_logits, logits, rtol=0, atol=0)


def test_chunk_losses_add_up_to_the_per_step_loss():
    model = mlp()
    x, y = torch.rand(4, 1, 8, 8), torch.randint(0, 10, (4,))
    for loss in (TETLoss(name="tet"), TRTLoss(name="trt", lam=1e-3)):
        with torch.no_grad():
            _, scores = model(x, per_step=True)
            whole = float(chunk_loss(loss, scores, y, reduce_steps=model.readout.reduce_steps,
                                     weights=trt_weights(model)))
        value, _ = tbptt_backward(model, x, 4, objective(model, loss, y))
        assert value == pytest.approx(whole, rel=1e-6)


def test_batch_norm_in_the_body_is_refused_across_chunks():
    model = mlp(batch_norm=True)          # the second BatchNorm sits after the first neuron
    x, y = torch.rand(4, 1, 8, 8), torch.randint(0, 10, (4,))
    with pytest.raises(TBPTTError, match=r"BatchNorm 'body\.\d+.*batch_norm: false"):
        tbptt_backward(model, x, 2, objective(model, CELoss(), y))
    tbptt_backward(model, x, T, objective(model, CELoss(), y))    # one chunk: allowed
    model.eval()
    check_tbptt(model, 2, T)                                       # eval statistics: allowed


def test_models_without_per_step_scores_are_refused():
    with pytest.raises(TBPTTError, match="needs a SpikingClassifier.*Remove train.tbptt_steps"):
        check_tbptt(nn.Linear(2, 2), 2, T)
