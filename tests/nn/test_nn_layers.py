"""Containers: TimeDistributed (time folded into batch) and the state-threading Sequential."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from snn5.core import ALIFState, LIFState
from snn5.nn import ALIF, LI, LIF, LIFCell, Sequential, TimeDistributed, is_stateful


def test_time_distributed_equals_the_layer_applied_step_by_step() -> None:
    conv = nn.Conv2d(2, 3, 3, padding=1, dtype=torch.float64)
    td = TimeDistributed(conv)
    x = torch.randn(5, 4, 2, 6, 6, dtype=torch.float64)      # [T, B, C, H, W]
    y = td(x)
    assert y.shape == (5, 4, 3, 6, 6)
    torch.testing.assert_close(y, torch.stack([conv(xt) for xt in x]), rtol=1e-12, atol=1e-12)


def test_time_distributed_keeps_per_step_statistics_out_of_eval_batchnorm() -> None:
    bn = nn.BatchNorm1d(3).eval()
    with torch.no_grad():
        bn.running_mean.copy_(torch.tensor([0.5, -1.0, 2.0]))
        bn.running_var.copy_(torch.tensor([4.0, 0.25, 1.0]))
    x = torch.randn(4, 2, 3)
    torch.testing.assert_close(TimeDistributed(bn)(x), torch.stack([bn(xt) for xt in x]))


def test_time_distributed_rejects_stateful_layers_and_short_inputs() -> None:
    with pytest.raises(TypeError, match="state"):
        TimeDistributed(LIF())
    with pytest.raises(ValueError, match=r"\[T, B"):
        TimeDistributed(nn.Identity())(torch.randn(4, 3))


def test_time_distributed_rejects_a_neuron_cell() -> None:
    """A Cell keeps state over time too; folding time into batch would restart it every step."""
    with pytest.raises(TypeError):
        TimeDistributed(LIFCell())


def net() -> Sequential:
    model = Sequential(nn.Linear(6, 8, dtype=torch.float64), LIF(tau_mem=5e-3), nn.ReLU(),
                       nn.Linear(8, 4, dtype=torch.float64), ALIF(tau_mem=5e-3, tau_adapt=20e-3))
    with torch.no_grad():                                   # excitatory weights: layers fire
        for layer in (model[0], model[3]):
            layer.weight.uniform_(0.0, 0.8)
            layer.bias.zero_()
    return model


def test_sequential_threads_state_per_layer() -> None:
    model = net()
    assert is_stateful(model) and is_stateful(LIF()) and not is_stateful(nn.Linear(2, 2))
    x = torch.rand(10, 3, 6, dtype=torch.float64) * 3
    out, state = model(x)
    assert out.shape == (10, 3, 4) and len(state) == len(model)
    assert state[0] is None and state[2] is None and state[3] is None
    assert isinstance(state[1], LIFState) and isinstance(state[4], ALIFState)
    # independently: the same layers called one after another
    h = model[0](x)
    z1, s1 = model[1](h)
    z2, s2 = model[4](model[3](model[2](z1)))
    assert torch.equal(out, z2) and torch.equal(state[1].v, s1.v) and torch.equal(state[4].a, s2.a)
    assert 0 < out.sum() < out.numel()


@pytest.mark.parametrize("split", [1, 4, 9])
def test_sequential_in_chunks_equals_one_call(split: int) -> None:
    model = net()
    x = torch.rand(10, 3, 6, dtype=torch.float64) * 3
    out, state = model(x)
    out1, s1 = model(x[:split])
    out2, s2 = model(x[split:], s1)
    assert torch.equal(torch.cat([out1, out2]), out)
    for a, b in zip(s2, state):
        assert (a is None and b is None) or all(
            torch.allclose(u, v, rtol=0, atol=1e-12) for u, v in zip(a, b))


def test_nested_sequential_threads_nested_state() -> None:
    inner = Sequential(nn.Linear(4, 4, dtype=torch.float64), LIF(tau_mem=5e-3))
    model = Sequential(inner, LI(tau_mem=5e-3))
    x = torch.rand(8, 2, 4, dtype=torch.float64) * 3
    out, state = model(x)
    assert isinstance(state[0], tuple) and isinstance(state[0][1], LIFState)
    out1, s1 = model(x[:3])
    out2, _ = model(x[3:], s1)
    torch.testing.assert_close(torch.cat([out1, out2]), out, rtol=0, atol=1e-12)


@pytest.mark.parametrize("n", [0, 4, 6])
def test_sequential_rejects_a_state_of_the_wrong_length(n: int) -> None:
    model = net()
    with pytest.raises(ValueError, match="5 layers.*state"):
        model(torch.rand(3, 2, 6, dtype=torch.float64), (None,) * n)


def test_time_chunked_checkpointing_equals_the_whole_run_and_saves_less():
    import snn5
    torch.manual_seed(0)
    net = snn5.Sequential(torch.nn.Linear(12, 32), snn5.LIF(3e-3, learn_v_th=True),
                          torch.nn.Linear(32, 8), snn5.ALIF(5e-3))
    x = torch.randn(40, 4, 12)

    def run(**kw):
        saved = []
        with torch.autograd.graph.saved_tensors_hooks(
                lambda t: saved.append(t.numel() * t.element_size()) or t, lambda t: t):
            out, state = net(x, **kw)
        grads = torch.autograd.grad(out.sum() + state[-1].v.sum(), list(net.parameters()))
        return out, grads, sum(saved)

    out, grads, whole = run()
    out_c, grads_c, chunked = run(checkpoint_steps=7)
    assert torch.equal(out, out_c)
    for a, b in zip(grads, grads_c):
        assert torch.allclose(a, b, atol=1e-6)
    assert chunked < whole / 3
    with torch.no_grad():
        assert torch.equal(net(x, checkpoint_steps=7)[0], out)     # inference: ignored


def test_time_chunked_checkpointing_refuses_training_batchnorm():
    import snn5
    net = snn5.Sequential(snn5.TimeDistributed(torch.nn.BatchNorm1d(5)), snn5.LIF())
    with pytest.raises(ValueError, match="batch statistics of BatchNorm1d"):
        net(torch.randn(6, 3, 5), checkpoint_steps=2)
    with pytest.raises(ValueError, match="checkpoint_steps must be >= 1"):
        snn5.Sequential(snn5.LIF())(torch.randn(6, 3, 5), checkpoint_steps=0)


def test_detach_state_keeps_values_and_cuts_gradients() -> None:
    from snn5.nn.layers import detach_state
    torch.manual_seed(0)
    net = Sequential(nn.Linear(3, 5), LIF(5e-3), nn.Linear(5, 4), ALIF(5e-3),
                     Sequential(nn.Linear(4, 2), LIF(4e-3)))
    x = torch.randn(8, 2, 3, requires_grad=True)
    whole, _ = net(x)
    out1, state = net(x[:5])
    cut = detach_state(state)
    assert type(cut) is tuple and cut[0] is None and type(cut[1]) is type(state[1])
    assert type(cut[4][1]) is type(state[4][1])                # nested NamedTuples kept
    def tensors(s):
        if isinstance(s, torch.Tensor):
            return [s]
        return [t for part in s for t in tensors(part)] if isinstance(s, tuple) else []

    leaves = tensors(cut)
    assert len(leaves) == len(tensors(state))
    assert leaves and all(not t.requires_grad for t in leaves)
    out2, _ = net(x[5:], cut)
    torch.testing.assert_close(torch.cat([out1, out2]), whole, rtol=0, atol=0)
    out2.sum().backward()
    assert torch.count_nonzero(x.grad[:5]) == 0 and torch.count_nonzero(x.grad[5:]) > 0
    with pytest.raises(TypeError, match="cannot detach a state of type dict"):
        detach_state({"v": torch.zeros(1)})
