"""Event-driven Linear: the same outputs as the dense product, chosen by spike rate."""

import pytest
import torch
import torch.nn.functional as F

from snn5.kernels import event_linear, load_cpu_kernels
from snn5.models import build_model
from snn5.nn import EventLinear

pytestmark = pytest.mark.skipif(load_cpu_kernels() is None, reason="CPU kernels not built")


@pytest.mark.parametrize("rows, n_in, n_out", [(1, 1, 1), (63, 7, 65), (64, 128, 64),
                                               (130, 257, 129), (300, 512, 200),
                                               (257, 33, 31), (600, 70, 97)])
@pytest.mark.parametrize("rate", [0.0, 0.01, 0.1, 0.5, 1.0])
def test_equals_dense_product(rows, n_in, n_out, rate):
    g = torch.Generator().manual_seed(rows * 7 + n_in)
    spikes = (torch.rand(rows, n_in, generator=g) < rate).float()
    weight = torch.randn(n_out, n_in, generator=g)
    bias = torch.randn(n_out, generator=g)
    with torch.no_grad():
        out = event_linear(spikes, weight, bias)
        dense = F.linear(spikes, weight, bias)
    # float32 sums in another order: bounded by the number of terms times an ulp of the terms
    tol = 1e-6 * (1 + spikes.sum(1, keepdim=True)) * weight.abs().max()
    assert ((out - dense).abs() <= tol).all()


def test_signed_spikes_no_bias_and_leading_dims():
    g = torch.Generator().manual_seed(0)
    spikes = torch.randint(-1, 2, (3, 5, 40), generator=g).float()       # [T, B, in]
    weight = torch.randn(9, 40, generator=g)
    with torch.no_grad():
        out = event_linear(spikes, weight)
    assert out.shape == (3, 5, 9)
    assert torch.allclose(out, F.linear(spikes, weight), atol=1e-5)
    many = torch.randint(-1, 2, (2100, 130), generator=g).float()          # several row blocks
    many[:300] = many[:300].clamp(min=0)                                   # rows without -1
    many[1500:, 64:] = many[1500:, 64:].clamp(max=0)                       # -1 only, past 64
    weight = torch.randn(70, 130, generator=g)
    with torch.no_grad():
        assert torch.allclose(event_linear(many, weight), F.linear(many, weight), atol=1e-4)
    bad = many.clone()
    bad[1650, 3] = 0.5                                                     # not a spike
    with torch.no_grad():
        assert torch.equal(event_linear(bad, weight), F.linear(bad, weight))


def test_other_values_and_grad_mode_use_the_dense_product():
    weight = torch.randn(6, 10)
    x = torch.rand(4, 10)
    with torch.no_grad():
        assert torch.equal(event_linear(x, weight), F.linear(x, weight))
    spikes = (torch.rand(4, 10) < 0.2).float().requires_grad_()
    out = event_linear(spikes, weight)
    out.sum().backward()                                      # grad mode: dense, differentiable
    assert spikes.grad is not None


def test_event_linear_module_picks_the_path_by_rate(monkeypatch):
    import snn5.nn.event as event_module
    calls = []
    real = event_module.event_linear
    monkeypatch.setattr(event_module, "event_linear",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    torch.manual_seed(0)
    layer, dense = EventLinear(50, 20, max_rate=0.2), torch.nn.Linear(50, 20)
    dense.load_state_dict(layer.state_dict())                 # same keys as nn.Linear
    sparse = (torch.rand(30, 50) < 0.1).float()
    busy = (torch.rand(30, 50) < 0.5).float()
    with torch.no_grad():
        assert torch.allclose(layer(sparse), dense(sparse), atol=1e-5)
        assert len(calls) == 1
        assert torch.equal(layer(busy), dense(busy))          # above max_rate: dense
        assert len(calls) == 1
    out = layer(sparse)                                       # training: event-driven too
    assert out.grad_fn.name() == "_BitSavedLinearBackward"
    assert torch.allclose(out, dense(sparse), atol=1e-5)
    assert torch.equal(layer(busy), dense(busy))              # training above max_rate: dense
    with torch.no_grad():
        layer.weight.mul_(2)                                  # cached transpose follows updates
        assert torch.allclose(layer(sparse), F.linear(sparse, layer.weight, layer.bias), atol=1e-5)


class _Scaled(torch.nn.Module):
    """A parametrization whose value changes when its buffer does (as a quantizer's scale)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("scale", torch.ones(()))

    def forward(self, w):
        return w * self.scale


def test_a_weight_recomputed_at_every_access_is_never_served_from_the_cache(monkeypatch):
    # a parametrization (quantization) or a pruning mask makes a new weight tensor at every
    # access; the allocator may hand it the address of an earlier one, with version 0 again,
    # so only a plain Parameter may be cached
    import snn5.nn.event as event_module
    from torch.nn.utils import parametrize
    packs = []
    real = event_module.pack_weight
    monkeypatch.setattr(event_module, "pack_weight", lambda w: packs.append(1) or real(w))
    torch.manual_seed(0)
    plain, layer = EventLinear(64, 32, max_rate=0.5), EventLinear(64, 32, max_rate=0.5)
    parametrize.register_parametrization(layer, "weight", _Scaled())
    scale = layer.parametrizations.weight[0].scale
    sparse = (torch.rand(16, 64) < 0.1).float()
    with torch.no_grad():
        for _ in range(3):
            plain(sparse)
        assert len(packs) == 1                                  # cached
        for step in range(5):
            scale.fill_(1.0 + step)
            expected = F.linear(sparse, layer.weight, layer.bias)
            assert torch.allclose(layer(sparse), expected, atol=1e-4), step
        assert len(packs) == 6                                  # packed at every forward


def test_models_use_event_layers_after_spikes_and_predict_the_same():
    torch.manual_seed(0)
    snn = build_model({"name": "spiking_mlp", "hidden": [64, 32]}, (1, 8, 8), 10).eval()
    kinds = [type(m).__name__ for m in snn.modules() if isinstance(m, torch.nn.Linear)]
    assert kinds == ["Linear", "EventLinear", "EventLinear"]     # pixels in, spikes after
    ann = build_model({"name": "spiking_mlp", "hidden": [64, 32]}, (1, 8, 8), 10, ann=True)
    assert all(type(m) is torch.nn.Linear for m in ann.modules() if isinstance(m, torch.nn.Linear))
    x = torch.rand(16, 1, 8, 8)
    with torch.no_grad():
        event_logits = snn(x)
        for m in snn.modules():
            if isinstance(m, EventLinear):
                m.max_rate = 0.0                                 # force the dense path
        dense_logits = snn(x)
    assert torch.allclose(event_logits, dense_logits, atol=1e-4)
    assert torch.equal(event_logits.argmax(1), dense_logits.argmax(1))


@pytest.mark.parametrize("dropout_scale", [1.0, 1.25])
def test_training_saves_spikes_as_bits_with_dense_gradients(dropout_scale):
    from snn5.kernels import spike_linear
    torch.manual_seed(0)
    x = (torch.rand(3, 7, 21) < 0.3).float() * dropout_scale
    weight, bias = torch.randn(5, 21, requires_grad=True), torch.randn(5, requires_grad=True)
    xa = x.clone().requires_grad_()
    xb = x.clone().requires_grad_()
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        out = spike_linear(xa, weight, bias)
    assert all(t.dtype != torch.float32 or t.shape != (21, 21) for t in saved)
    assert any(t.dtype == torch.uint8 for t in saved)                  # the bits, not the floats
    assert not any(t.dtype == torch.float32 and t.numel() == x.numel() for t in saved)
    ref = F.linear(xb, weight, bias)
    assert torch.equal(out, ref)
    g = torch.randn_like(out)
    ga = torch.autograd.grad(out, [xa, weight, bias], g)
    gb = torch.autograd.grad(ref, [xb, weight, bias], g)
    for a, b in zip(ga, gb):
        assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("shape, out_features", [((3, 7, 21), 5), ((130, 200), 70),
                                                 ((2, 64, 128), 64), ((1, 1), 1)],
                         ids=["odd", "tiles", "exact", "one"])
@pytest.mark.parametrize("dropout_scale", [1.0, 1.25])
@pytest.mark.parametrize("with_bias", [True, False])
def test_event_driven_training_matches_dense(shape, out_features, dropout_scale, with_bias):
    """At or below max_rate the product and the weight gradient are event-driven (the forward
    only for 0/1 spikes); both equal the dense ones up to float32 summation order."""
    from snn5.kernels import spike_linear
    torch.manual_seed(0)
    x = (torch.rand(shape) < 0.1).float() * dropout_scale
    weight = torch.randn(out_features, shape[-1], requires_grad=True)
    bias = torch.randn(out_features, requires_grad=True) if with_bias else None
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    out = spike_linear(xa, weight, bias, max_rate=1.0)
    ref = F.linear(xb, weight, bias)
    assert torch.allclose(out, ref, atol=1e-5)
    g = torch.randn_like(out)
    params = [weight] + ([bias] if with_bias else [])
    ga = torch.autograd.grad(out, [xa, *params], g)
    gb = torch.autograd.grad(ref, [xb, *params], g)
    for a, b in zip(ga, gb):
        assert torch.allclose(a, b, atol=1e-4)


@pytest.mark.parametrize("rows, n_in, n_out", [(4500, 100, 65), (2048, 64, 128), (3, 1, 1)])
def test_event_kernels_on_bits_across_row_blocks(rows, n_in, n_out):
    """Forward and weight gradient from the bits, over several blocks of rows (1024 rows per
    forward block, 2048 per gradient block) and a partial last tile of outputs."""
    ext = load_cpu_kernels()
    g = torch.Generator().manual_seed(rows)
    spikes = (torch.rand(rows, n_in, generator=g) < 0.15).float()
    weight, bias = torch.randn(n_out, n_in, generator=g), torch.randn(n_out, generator=g)
    grad = torch.randn(rows, n_out, generator=g)
    bits, ok, value, count = ext.pack_spikes(spikes)
    out = ext.event_linear_bits(bits, n_in, ext.event_pack_weight(weight), bias, n_out)
    assert torch.allclose(out, F.linear(spikes, weight, bias), atol=1e-4)
    gw = ext.event_weight_grad(bits, grad, n_in, 1.5)
    assert torch.allclose(gw, 1.5 * grad.t() @ spikes, atol=1e-3)


def test_packed_weight_layout():
    ext = load_cpu_kernels()
    weight = torch.randn(70, 19)
    packed = ext.event_pack_weight(weight)                   # [ceil(70 / 64), 19, 64]
    assert packed.shape == (2, 19, 64)
    assert torch.equal(packed[0], weight[:64].t())
    assert torch.equal(packed[1, :, :6], weight[64:].t())
    assert not packed[1, :, 6:].any()                        # padding


def test_event_weight_gradient_kernel_reads_the_bits():
    ext = load_cpu_kernels()
    torch.manual_seed(0)
    spikes = (torch.rand(77, 150) < 0.2).float()
    grad = torch.randn(77, 90)
    bits, ok, value, count = ext.pack_spikes(spikes)
    assert ok and value == 1.0 and count == int(spikes.sum())
    gw = ext.event_weight_grad(bits, grad, 150, 0.5)
    assert torch.allclose(gw, 0.5 * grad.t() @ spikes, atol=1e-4)


def test_training_on_non_spikes_is_plain_linear():
    from snn5.kernels import spike_linear
    x = torch.rand(4, 6, requires_grad=True)
    weight = torch.randn(3, 6, requires_grad=True)
    out = spike_linear(x, weight)
    assert out.grad_fn.name() != "_BitSavedLinearBackward"
    assert torch.equal(out, F.linear(x, weight))


def test_bit_saving_rejects_two_different_nonzero_values():
    from snn5.kernels import spike_linear
    x = torch.zeros(300, 10)
    x[0, 0], x[299, 9] = 1.0, 2.0                       # far apart: different threads' rows
    x.requires_grad_()
    out = spike_linear(x, torch.randn(4, 10))
    assert out.grad_fn.name() != "_BitSavedLinearBackward"


def test_bit_saving_rejects_infinite_spikes():
    """Unpacking multiplies each bit by the spike value: an infinite value takes F.linear."""
    from snn5.kernels import spike_linear
    x = torch.zeros(5, 10)
    x[1, 3] = float("inf")
    x.requires_grad_()
    out = spike_linear(x, torch.randn(4, 10))
    assert out.grad_fn.name() != "_BitSavedLinearBackward"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("n_in", [1, 8, 13, 64])
def test_unpack_inverts_pack(dtype, n_in):
    ext = load_cpu_kernels()
    torch.manual_seed(0)
    x = ((torch.rand(70, n_in) < 0.4).float() * 1.25).to(dtype)
    bits, ok, value, count = ext.pack_spikes(x)
    assert ok and value == 1.25 and count == int((x != 0).sum())
    assert torch.equal(ext.unpack_spikes(bits, n_in, value, dtype), x)
