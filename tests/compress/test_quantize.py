"""Quantization-aware training: weights and membranes on their grids through training, a
straight-through gradient, an exact inverse, integer export and load, and named errors."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from snn5.compress import (
    MagnitudePrune, MembraneQuant, TernaryQuant, WeightQuant, dequantize_, export_quantized,
    is_quantized, load_quantized_, prune_, quantize_,
)
from snn5.models import build_model
from snn5.nn.neurons import LI, LIF, LIFCell

MODELS = {
    "mlp_snn": ({"name": "spiking_mlp", "hidden": [16], "timesteps": 3}, (12,)),
    "conv_snn": ({"name": "conv_snn", "channels": [4], "fc_hidden": [16], "timesteps": 2},
                 (1, 8, 8)),
}
CONFIGS = [WeightQuant(8), WeightQuant(4), WeightQuant(2), WeightQuant(4, per_channel=False),
           WeightQuant(2, narrow_range=False), TernaryQuant(), TernaryQuant(per_channel=True),
           MembraneQuant(4)]


def snn(kind: str) -> nn.Module:
    torch.manual_seed(0)
    cfg, shape = MODELS[kind]
    return build_model(cfg, shape, 3)


def batch(kind: str, n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.rand(n, *MODELS[kind][1], generator=g) * 2, torch.randint(0, 3, (n,), generator=g)


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int = 5) -> None:
    opt = torch.optim.AdamW(model.parameters(), lr=5e-2)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


def weighted(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


def assert_on_grid(w: torch.Tensor, cfg: WeightQuant) -> None:
    """``w = s * q`` with integer ``q`` in the code range and ``s = max|w_c| / q_max``."""
    q_min, q_max = cfg.code_range
    flat = w.detach().reshape(w.shape[0], -1) if cfg.per_channel else w.detach().reshape(1, -1)
    s = torch.maximum(flat.amax(1) / q_max, -flat.amin(1) / -q_min)[:, None]   # [C, 1]
    q = flat / s
    assert torch.allclose(q, q.round(), atol=1e-4)
    assert q.round().min() >= q_min and q.round().max() <= q_max


# ----------------------------------------------------------------------------- weights

@pytest.mark.parametrize("cfg", [WeightQuant(8), WeightQuant(4), WeightQuant(2),
                                 WeightQuant(4, per_channel=False),
                                 WeightQuant(2, narrow_range=False)], ids=repr)
def test_qat_weights_stay_on_the_grid_through_training(cfg: WeightQuant) -> None:
    model = snn("mlp_snn")
    quantize_(model, cfg)
    first = weighted(model)[0][1]
    latent = first.parametrizations.weight.original.detach().clone()
    train(model, *batch("mlp_snn"))
    assert not torch.equal(first.parametrizations.weight.original, latent)        # trained
    for _, m in weighted(model):
        assert_on_grid(m.weight, cfg)
        levels = m.weight[0].unique().numel()
        assert levels <= cfg.code_range[1] - cfg.code_range[0] + 1


def test_two_bit_grids_narrow_and_full_range() -> None:
    w = torch.tensor([[-1.0, -0.4, 0.2, 0.5], [0.9, 0.1, -0.3, 0.0]])
    layer = nn.Linear(4, 2, bias=False)
    with torch.no_grad():
        layer.weight.copy_(w)
    quantize_(layer, WeightQuant(2))                          # {-1, 0, 1} * max|w|
    assert torch.equal(layer.weight, torch.tensor([[-1.0, 0, 0, 0], [0.9, 0, 0, 0]]))
    dequantize_(layer)
    quantize_(layer, WeightQuant(2, narrow_range=False))      # {-2, -1, 0, 1} * s
    codes, scale = export_quantized(layer)[""]
    assert codes.tolist() == [[-2, -1, 0, 1], [1, 0, 0, 0]]
    assert torch.allclose(scale, torch.tensor([0.5, 0.9]))   # max(0.5 / 1, 1 / 2), 0.9 / 1


def test_straight_through_gradient_reaches_the_latent_weight() -> None:
    torch.manual_seed(0)
    layer, twin = nn.Linear(6, 4), nn.Linear(6, 4)
    quantize_(layer, WeightQuant(4))
    with torch.no_grad():                       # the twin computes with the quantized weight
        twin.weight.copy_(layer.weight)
        twin.bias.copy_(layer.bias)
    x = torch.randn(5, 6)
    (layer(x) ** 2).sum().backward()
    (twin(x) ** 2).sum().backward()
    grad = layer.parametrizations.weight.original.grad
    assert grad is not None and grad.abs().sum() > 0
    assert torch.allclose(grad, twin.weight.grad)             # dL/dw = dL/dw_hat


def test_ternary_weights_are_gamma_times_minus_one_zero_one() -> None:
    model = snn("conv_snn")
    quantize_(model, TernaryQuant())
    train(model, *batch("conv_snn"))
    for _, m in weighted(model):
        gamma = m.parametrizations.weight.original.detach().abs().mean()
        assert torch.allclose(m.weight.unique(), torch.tensor([-1.0, 0.0, 1.0]) * gamma)


def test_per_channel_ternary_uses_each_channels_absmean() -> None:
    model = snn("mlp_snn")
    quantize_(model, TernaryQuant(per_channel=True))
    train(model, *batch("mlp_snn"))
    for _, m in weighted(model):
        latent = m.parametrizations.weight.original.detach()
        for w, row in zip(m.weight.detach(), latent):          # one output channel each
            gamma = row.abs().mean()
            codes = torch.clamp(torch.round(row / gamma), -1, 1)
            assert torch.allclose(w, codes * gamma, rtol=1e-5, atol=0)
            assert w.unique().numel() <= 3


# ----------------------------------------------------------------------------- membranes

def test_membrane_on_the_grid_at_every_step_and_gradient_through_it() -> None:
    torch.manual_seed(0)
    lif = LIF(tau_mem=5e-3, v_th=0.5)
    quantize_(lif, MembraneQuant(bits=4, v_range=1.0))
    delta = 1.0 * 0.5 / 8
    x = (torch.rand(12, 3, 7) * 1.5).requires_grad_()
    z_all, final = lif(x)
    state, zs = None, []
    for t in range(12):                                       # one step per call
        z, state = lif(x[t:t + 1], state)
        zs.append(z)
        q = state.v / delta
        assert torch.allclose(q, q.round(), atol=1e-5)
        assert q.min() >= -8 and q.max() <= 7
    assert torch.equal(torch.cat(zs), z_all) and torch.equal(state.v, final.v)
    assert 0 < z_all.mean() < 1
    plain, _ = LIF(tau_mem=5e-3, v_th=0.5)(x)
    assert not torch.equal(plain, z_all)                      # the grid changes the dynamics
    z_all[-1].sum().backward()                                # reaches x[0] only through v
    assert x.grad[0].abs().sum() > 0


def test_state_quantizer_hook_forces_the_reference_loop_and_acts_on_cells() -> None:
    torch.manual_seed(0)
    x = torch.rand(6, 4, 5) * 2
    lif = LIF(tau_mem=5e-3)
    expected, state = lif(x)
    seen = []
    lif.state_quantizer = lambda s, p: (seen.append(p.v_th), s)[1]    # identity, counted
    out, state_q = lif(x)
    assert len(seen) == 6 and torch.equal(out, expected) and torch.equal(state_q.v, state.v)
    cell = LIFCell(tau_mem=5e-3)
    cell.state_quantizer = lambda s, p: s._replace(v=torch.zeros_like(s.v))
    _, s = cell(x[0])
    assert torch.equal(s.v, torch.zeros_like(s.v))


# ----------------------------------------------------------------------------- inverse, export

@pytest.mark.parametrize("cfg", CONFIGS, ids=repr)
@pytest.mark.parametrize("kind", sorted(MODELS))
def test_config_by_model_matrix(kind: str, cfg) -> None:
    model = snn(kind)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    quantize_(model, cfg)
    assert any(is_quantized(m) for m in model.modules())
    copied = copy.deepcopy(model)                             # quantizers survive a deep copy
    assert any(is_quantized(m) for m in copied.modules())
    dequantize_(model)                                        # round trip: exact inverse
    after = model.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before)
    assert not any(is_quantized(m) for m in model.modules())
    x, y = batch(kind)
    train(copied, x, y, steps=3)
    copied.eval()
    out = copied(x)
    assert torch.isfinite(out).all()
    dequantize_(copied, restore=False)                        # bake the grid values
    if not isinstance(cfg, MembraneQuant):                    # (membrane quantizers go)
        assert torch.equal(copied(x), out)


@pytest.mark.parametrize("cfg", [WeightQuant(8), WeightQuant(4, per_channel=False),
                                 WeightQuant(2, narrow_range=False), TernaryQuant(),
                                 TernaryQuant(per_channel=True)], ids=repr)
def test_export_gives_integers_in_range_and_loads_back(cfg) -> None:
    model = snn("conv_snn")
    quantize_(model, cfg)
    train(model, *batch("conv_snn"), steps=3)
    model.eval()
    ints = export_quantized(model)
    assert sorted(ints) == sorted(n for n, _ in weighted(model))
    q_min, q_max = (-1, 1) if isinstance(cfg, TernaryQuant) else cfg.code_range
    modules = dict(model.named_modules())
    for name, (codes, scale) in ints.items():
        assert codes.dtype == torch.int8 and codes.min() >= q_min and codes.max() <= q_max
        s = scale.reshape(-1, *([1] * (codes.ndim - 1))) if scale.ndim == 1 else scale
        assert torch.equal(codes.float() * s, modules[name].weight)
    fresh = snn("conv_snn")
    fresh.load_state_dict({k.replace("parametrizations.weight.original", "weight"): v
                           for k, v in model.state_dict().items()})   # BN, biases as trained
    load_quantized_(fresh, ints)
    fresh.eval()
    x, _ = batch("conv_snn")
    assert torch.equal(fresh(x), model(x))


def test_weights_and_membranes_together_and_state_dict_round_trip() -> None:
    model = snn("mlp_snn")
    quantize_(model, WeightQuant(4))
    quantize_(model, MembraneQuant(8))
    train(model, *batch("mlp_snn"), steps=2)
    twin = quantize_(quantize_(snn("mlp_snn"), WeightQuant(4)), MembraneQuant(8))
    twin.load_state_dict(model.state_dict())
    model.eval()
    twin.eval()
    x, _ = batch("mlp_snn")
    assert torch.equal(twin(x), model(x))


# ----------------------------------------------------------------------------- errors

def test_named_errors() -> None:
    with pytest.raises(ValueError, match="bits must be one of"):
        WeightQuant(3)
    with pytest.raises(ValueError, match=r"bits must be an integer in \[2, 16\]"):
        MembraneQuant(1)
    with pytest.raises(ValueError, match="v_range"):
        MembraneQuant(8, v_range=0)
    model = snn("mlp_snn")
    with pytest.raises(TypeError, match="WeightQuant, TernaryQuant or MembraneQuant"):
        quantize_(model, MagnitudePrune(0.5))
    with pytest.raises(ValueError, match="selected no Linear/Conv"):
        quantize_(model, WeightQuant(4), filter_fn=lambda m, name: False)
    with pytest.raises(ValueError, match="nothing to undo"):
        dequantize_(model)
    with pytest.raises(ValueError, match="no weight-quantized layer"):
        export_quantized(model)
    quantize_(model, WeightQuant(4))
    with pytest.raises(ValueError, match="already quantized"):
        quantize_(model, TernaryQuant())
    with pytest.raises(ValueError, match="is quantized; load the integers into a float model"):
        load_quantized_(model, export_quantized(model))
    with pytest.raises(KeyError, match="no layer"):
        load_quantized_(snn("mlp_snn"), {"nope": (torch.zeros(1, dtype=torch.int8),
                                                  torch.ones(()))})
    quantize_(model, MembraneQuant(4))
    with pytest.raises(ValueError, match="membrane of .* is already quantized"):
        quantize_(model, MembraneQuant(8))
    with pytest.raises(ValueError, match="spiking neurons"):
        quantize_(LI(), MembraneQuant(4), filter_fn=lambda m, name: True)
    pruned = prune_(snn("mlp_snn"), MagnitudePrune(0.5))
    with pytest.raises(ValueError, match="pruning mask"):
        quantize_(pruned, WeightQuant(4))
