"""Spiking attention: SSA (no softmax, spike output), SDSA against its definition, temporal
attention (TA, DTA) and the SNN-ANN bridge."""

import pytest
import torch
from torch import nn

from snn5.nn import IF
from snn5.nn.attention import (
    AttentionBridge, DualTemporalChannelAttention, SelfAttention, SpikeDrivenSelfAttention,
    SpikingSelfAttention, TemporalAttention, TemporalAttentionKind, build_temporal_attention,
)


def if_neuron(v_th=None):
    return IF(v_th=v_th or 0.3)


def _capture(module):
    """Record the spikes of the q/k/v neurons and the input current of the mixing neuron."""
    seen = {}
    for name in ("q", "k", "v"):
        getattr(module, f"{name}_sn").register_forward_hook(
            lambda m, a, out, name=name: seen.__setitem__(name, out[0].detach()))
    module.mix_sn.register_forward_pre_hook(
        lambda m, a: seen.__setitem__("mix_in", a[0].detach()))
    return seen


def _heads(x, h):
    T, B, N, D = x.shape
    return x.view(T, B, N, h, D // h).transpose(2, 3)


def test_ssa_is_qktv_times_scale_without_softmax_and_spikes_out():
    torch.manual_seed(0)
    ssa = SpikingSelfAttention(8, 2, if_neuron, scale=0.125)
    seen = _capture(ssa)
    x = (torch.rand(3, 2, 5, 8) < 0.5).float()                   # [T, B, N, D]
    out, state = ssa(x)
    q, k, v = (_heads(seen[n], 2) for n in "qkv")
    assert q.sum() > 0 and k.sum() > 0 and v.sum() > 0            # the test sees activity
    for z in (q, k, v, out):
        assert set(z.unique().tolist()) <= {0.0, 1.0}
    attn = q @ k.transpose(-2, -1)                                # no softmax anywhere
    assert torch.allclose(seen["mix_in"], attn @ v * 0.125)
    assert not torch.allclose(attn.sum(-1), torch.ones_like(attn.sum(-1)))
    assert out.shape == x.shape and len(state) == 5


def test_sdsa_on_a_hand_checked_example():
    sdsa = SpikeDrivenSelfAttention(2, 1, if_neuron, attn_v_th=1.5)
    q = torch.tensor([[1., 0.], [0., 1.], [1., 1.]])              # [N=3, d=2]
    k = torch.tensor([[1., 1.], [0., 1.], [1., 0.]])
    v = torch.tensor([[1., 0.], [1., 1.], [1., 1.]])
    # K ⊗ V = [[1, 0], [0, 1], [1, 0]]; column sums [2, 1]; IF(v_th=1.5) at T=1 -> [1, 0]
    out, _ = sdsa._mix(*(t.view(1, 1, 1, 3, 2) for t in (q, k, v)), None)
    expected = torch.tensor([[1., 0.], [0., 0.], [1., 0.]])
    assert torch.equal(out.view(3, 2), expected)


def test_sdsa_module_equals_its_definition():
    torch.manual_seed(1)
    sdsa = SpikeDrivenSelfAttention(6, 3, if_neuron)
    seen = _capture(sdsa)
    mask = {}
    sdsa.mix_sn.register_forward_hook(lambda m, a, out: mask.__setitem__("z", out[0]))
    x = (torch.rand(4, 2, 5, 6) < 0.5).float()
    sdsa(x)
    q, k, v = (_heads(seen[n], 3) for n in "qkv")
    assert torch.equal(seen["mix_in"], (k * v).sum(-2, keepdim=True))     # SUM_c(K ⊗ V)
    kv_spikes, _ = IF(v_th=0.5)(seen["mix_in"])                              # SN, v_th 0.5
    assert torch.equal(mask["z"], kv_spikes)
    assert set(mask["z"].unique().tolist()) <= {0.0, 1.0}


def test_attention_modules_backpropagate_and_refuse_bad_shapes():
    for cls in (SpikingSelfAttention, SpikeDrivenSelfAttention):
        m = cls(4, 2, if_neuron)
        x = torch.rand(2, 3, 5, 4, requires_grad=True)
        m(x)[0].sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all()
        with pytest.raises(ValueError, match=r"tokens \[T, B, N, 4\]"):
            m(torch.rand(2, 3, 4))
    with pytest.raises(ValueError, match="divisible|multiple of heads"):
        SpikingSelfAttention(6, 4, if_neuron)
    assert SelfAttention.parse("sdsa") is SelfAttention.SDSA


def test_temporal_attention_weights_steps_as_its_definition():
    torch.manual_seed(0)
    ta = TemporalAttention(4, reduction=2)
    x = torch.rand(4, 3, 2, 5, 5)
    flat = x.flatten(2)
    w = torch.sigmoid(ta.mlp(flat.mean(-1).t()) + ta.mlp(flat.amax(-1).t())).t()   # [T, B]
    assert torch.allclose(ta(x), x * w[..., None, None, None])
    assert ((w > 0) & (w < 1)).all()
    with pytest.raises(ValueError, match="T=4"):
        ta(torch.rand(3, 3, 2, 5, 5))


def test_dta_scales_each_step_and_channel_by_two_gates():
    torch.manual_seed(0)
    dta = DualTemporalChannelAttention(channels=3, timesteps=4)
    x = torch.rand(4, 2, 3, 5, 5)
    y = dta(x)
    ratio = (y / x).flatten(3)                                   # [T, B, C, H*W]
    assert torch.allclose(ratio, ratio[..., :1].expand_as(ratio))  # one weight per (t, b, c)
    assert ((ratio > 0) & (ratio < 1)).all()
    assert dta(torch.rand(4, 2, 3)).shape == (4, 2, 3)           # flat features too
    with pytest.raises(ValueError, match="C=3"):
        dta(torch.rand(4, 2, 5, 5, 5))


def test_build_temporal_attention_kinds():
    assert build_temporal_attention("none", 3, 4) is None
    assert isinstance(build_temporal_attention("ta", 3, 4), TemporalAttention)
    assert isinstance(build_temporal_attention(TemporalAttentionKind.DTA, 3, 4),
                      DualTemporalChannelAttention)
    with pytest.raises(ValueError, match="none, ta, dta"):
        build_temporal_attention("se", 3, 4)


def test_bridge_turns_spikes_into_one_dense_map():
    torch.manual_seed(0)
    bridge = AttentionBridge(channels=3, timesteps=5)
    x = (torch.rand(5, 2, 3, 6, 6) < 0.3).float()
    y = bridge(x)
    assert y.shape == (1, 2, 3, 6, 6)
    # a silent pixel neighbourhood gets no temporal contribution: the dense map is 0 there
    x2 = x.clone()
    x2[..., :3, :3] = 0
    assert torch.equal(bridge(x2)[..., :2, :2], torch.zeros(1, 2, 3, 2, 2))
    y.sum().backward()
    assert all(p.grad is not None for p in bridge.parameters())
    with pytest.raises(ValueError, match="T=5"):
        bridge(x[:4])


def test_ann_twin_activations_work_in_place_of_neurons():
    m = SpikingSelfAttention(4, 2, lambda v_th=None: nn.ReLU())
    out, state = m(torch.rand(1, 2, 3, 4))
    assert out.shape == (1, 2, 3, 4) and state == (None,) * 5
