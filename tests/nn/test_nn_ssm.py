"""Diagonal (S4D) SSM: the parallel computation equals the recurrence and the convolution;
spiking SSM layers."""

import pytest
import torch

from snn5.nn import LIF
from snn5.nn.ssm import AttentionSpikingSSMLayer, DiagonalSSM, SpikingSSMLayer, SSMState


def loop(ssm, u, x0=None):
    """x_t = Ā x_{t-1} + B̄ u_t, y_t = 2 Re(C x_t) + D u_t, step by step."""
    a, b, c = ssm.discretize()
    x = torch.zeros(u.shape[1], ssm.channels, ssm.modes, dtype=a.dtype) if x0 is None else x0
    ys = []
    for u_t in u:                                            # [B, H]
        x = a * x + b * u_t[..., None]
        ys.append(2 * (c * x).sum(-1).real + ssm.d * u_t)
    return torch.stack(ys), x


@pytest.fixture
def ssm():
    torch.manual_seed(0)
    return DiagonalSSM(3, modes=4, dt_min=0.05, dt_max=0.5).double()


def test_parallel_forward_equals_the_recurrence(ssm):
    u = torch.randn(9, 2, 3, dtype=torch.float64)
    y, state = ssm(u)
    y_ref, x_ref = loop(ssm, u)
    assert torch.allclose(y, y_ref, atol=1e-10)
    assert torch.allclose(state.x, x_ref, atol=1e-10)


def test_zero_state_output_is_the_causal_convolution_with_the_kernel(ssm):
    u = torch.randn(7, 2, 3, dtype=torch.float64)
    k = ssm.kernel(7)                                        # [H, L]
    y_conv = torch.stack([sum(k[:, l] * u[t - l] for l in range(t + 1)) + ssm.d * u[t]
                          for t in range(7)])
    assert torch.allclose(ssm(u)[0], y_conv, atol=1e-10)
    impulse = torch.zeros(7, 1, 3, dtype=torch.float64)
    impulse[0] = 1.0
    assert torch.allclose(ssm(impulse)[0][:, 0] - ssm.d * impulse[:, 0], k.t(), atol=1e-10)


def test_a_stream_in_chunks_equals_one_pass(ssm):
    u = torch.randn(10, 2, 3, dtype=torch.float64)
    y, state = ssm(u)
    y1, s1 = ssm(u[:4])
    y2, s2 = ssm(u[4:], s1)
    assert torch.allclose(torch.cat([y1, y2]), y, atol=1e-10)
    assert torch.allclose(s2.x, state.x, atol=1e-10)
    y_ref, _ = loop(ssm, u[4:], s1.x)
    assert torch.allclose(y2, y_ref, atol=1e-10)


def test_decay_is_stable_and_gradients_reach_every_parameter():
    ssm = DiagonalSSM(4, modes=8)
    a_bar, _, _ = ssm.discretize()
    assert (a_bar.abs() < 1).all()
    y, _ = ssm(torch.randn(6, 2, 4))
    y.pow(2).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in ssm.parameters())


def test_bad_shapes_and_settings_are_named(ssm):
    with pytest.raises(ValueError, match=r"\[T, B, 3\]"):
        ssm(torch.randn(4, 2, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="state"):
        ssm(torch.randn(4, 2, 3, dtype=torch.float64),
            SSMState(torch.zeros(1, 3, 4, dtype=torch.complex128)))
    with pytest.raises(ValueError, match="dt_min <= dt_max"):
        DiagonalSSM(2, dt_min=0.5, dt_max=0.1)


@pytest.mark.parametrize("cls,n_states", [(SpikingSSMLayer, 3), (AttentionSpikingSSMLayer, 4)])
def test_spiking_ssm_layers_emit_spikes_and_thread_state(cls, n_states):
    torch.manual_seed(0)
    layer = cls(6, 4, lambda v_th=None: LIF(5e-3, v_th=0.2)).eval()
    x = (torch.rand(8, 2, 6) < 0.5).float()
    out, state = layer(x)
    assert out.shape == x.shape and len(state) == n_states
    assert set(out.unique().tolist()) <= {0.0, 1.0}
    first, s = layer(x[:3])
    rest, _ = layer(x[3:], s)
    assert torch.equal(torch.cat([first, rest]), out)


def test_attention_gate_masks_the_ssm_spikes():
    torch.manual_seed(0)
    layer = AttentionSpikingSSMLayer(5, 4, lambda v_th=None: LIF(5e-3, v_th=0.2)).eval()
    seen = {}
    layer.sn.register_forward_hook(lambda m, a, out: seen.__setitem__("z", out[0]))
    layer.gate_sn.register_forward_hook(lambda m, a, out: seen.__setitem__("g", out[0]))
    layer.linear.register_forward_pre_hook(lambda m, a: seen.__setitem__("in", a[0]))
    layer((torch.rand(6, 2, 5) < 0.5).float())
    assert torch.equal(seen["in"], seen["z"] * seen["g"])
