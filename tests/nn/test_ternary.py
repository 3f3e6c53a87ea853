"""Ternary layers: absmean ternarization with a straight-through gradient, add-only inference on
binary spikes (== the dense ternary product, additions only, counted), and input noise."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from snn5.core.conversion import MTParams, MTState, multithreshold_scan, ternarize
from snn5.nn.ternary import (
    AddOnlyConv2d, AddOnlyLinear, InputNoise, OpCounts, TernaryConv2d, TernaryLinear,
)

# aten ops that multiply, divide or run a multiply-accumulate; none may run in the add-only path.
MULTIPLYING = ("mul", "div", "mm", "matmul", "conv", "linear", "dot", "einsum", "addcmul",
               "baddbmm", "bmm", "addmv", "mv", "pow", "prod")


class OpRecorder(TorchDispatchMode):
    """Records the name of every aten op that runs."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.add(func._schema.name.split("::")[1])             # e.g. "index_add_"
        return func(*args, **(kwargs or {}))


def multiplying_ops(ops: set[str]) -> set[str]:
    return {op for op in ops if any(op.rstrip("_").startswith(m) or op.endswith(m)
                                    for m in MULTIPLYING)}


def spikes(*shape: int, rate: float = 0.3) -> torch.Tensor:
    return (torch.rand(*shape) < rate).float()


def dense_conv(layer: TernaryConv2d, x: torch.Tensor) -> torch.Tensor:
    """The reference: nn.Conv2d's own forward with the weight gamma * codes."""
    w = layer.scale() * layer.codes().float()
    return layer._conv_forward(x, w, layer.bias)


# ----------------------------------------------------------------------------- ternarize

def test_ternarize_values_are_absmean_codes_times_gamma():
    w = torch.tensor([[0.9, -0.1, 0.3], [-1.4, 0.5, 0.0]])
    gamma = w.abs().mean()                                          # 3.2 / 6
    expected = torch.tensor([[1, 0, 1], [-1, 1, 0]]) * gamma        # round(w / 0.533) clipped
    assert torch.allclose(ternarize(w), expected)
    layer = TernaryLinear(3, 2)
    with torch.no_grad():
        layer.weight.copy_(w)
    assert torch.equal(layer.codes(), torch.tensor([[1, 0, 1], [-1, 1, 0]], dtype=torch.int8))
    assert torch.isclose(layer.scale(), gamma)


def test_ternarize_gradient_is_straight_through():
    w = torch.randn(5, 4, requires_grad=True)
    g = torch.randn(5, 4)
    ternarize(w).backward(g)
    assert torch.equal(w.grad, g)


def test_ternary_layers_use_ternary_weights_and_train_the_latent_weight():
    lin = TernaryLinear(6, 3)
    x = torch.randn(4, 6)
    w_t = lin.scale() * lin.codes().float()
    assert torch.allclose(lin(x), F.linear(x, w_t, lin.bias), atol=1e-6)
    lin(x).sum().backward()                                         # dL/dW = dL/dW_t (STE)
    assert torch.allclose(lin.weight.grad, torch.ones(4, 3).t() @ x, atol=1e-5)
    conv = TernaryConv2d(2, 4, 3, padding=1)
    x = torch.randn(2, 2, 5, 5)
    assert torch.allclose(conv(x), dense_conv(conv, x), atol=1e-6)
    conv(x).square().mean().backward()
    assert conv.weight.grad.abs().sum() > 0


def test_codes_are_ternary_int8():
    for layer in (TernaryLinear(50, 40), TernaryConv2d(8, 16, 3)):
        codes = layer.codes()
        assert codes.dtype == torch.int8 and codes.shape == layer.weight.shape
        assert set(codes.unique().tolist()) == {-1, 0, 1}


def test_from_dense_copies_weights():
    dense = torch.nn.Conv2d(3, 5, 3, stride=2, padding=1)
    tern = TernaryConv2d.from_dense(dense)
    assert torch.equal(tern.weight, dense.weight) and torch.equal(tern.bias, dense.bias)
    assert (tern.stride, tern.padding) == ((2, 2), (1, 1))
    lin = torch.nn.Linear(4, 2, bias=False)
    assert TernaryLinear.from_dense(lin).bias is None


# ----------------------------------------------------------------------------- add-only == dense

@pytest.mark.parametrize("bias", [True, False])
def test_add_only_linear_equals_dense_ternary(bias):
    layer = TernaryLinear(20, 7, bias=bias)
    add = AddOnlyLinear.from_ternary(layer)
    x = spikes(3, 4, 20)                                            # any leading shape
    with torch.no_grad():
        assert torch.allclose(add(x), layer(x), atol=1e-5)
        assert torch.allclose(add(x.bool()), layer(x), atol=1e-5)   # bool spikes too
    assert add(x).shape == (3, 4, 7)


CONV_CASES = [
    dict(kernel_size=3),
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 2)),
    dict(kernel_size=4, padding="same", dilation=2),                # asymmetric 'same' padding
    dict(kernel_size=3, padding=2, groups=2, padding_mode="reflect"),
    dict(kernel_size=3, padding=1, padding_mode="circular", bias=False),
]


@pytest.mark.parametrize("case", CONV_CASES,
                         ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_add_only_conv_equals_dense_ternary(case):
    layer = TernaryConv2d(4, 6, **case)
    add = AddOnlyConv2d.from_ternary(layer)
    x = spikes(2, 4, 9, 8)
    with torch.no_grad():
        ref = dense_conv(layer, x)
        assert torch.allclose(layer(x), ref, atol=1e-5)
        out = add(x)
    assert out.shape == ref.shape
    assert torch.allclose(out, ref, atol=1e-5)


def test_input_scale_multiplies_gamma():
    layer = TernaryLinear(10, 3)
    x = spikes(5, 10)
    add = AddOnlyLinear.from_ternary(layer, input_scale=2.5)
    ref = F.linear(2.5 * x, layer.scale() * layer.codes().float(), layer.bias)
    assert torch.allclose(add(x), ref, atol=1e-5)


# ----------------------------------------------------------------------------- counting

def test_linear_counts_additions_per_active_input_and_fan_out():
    layer = TernaryLinear(30, 9)
    x = spikes(6, 30)
    active = int(x.sum())
    folded = AddOnlyLinear.from_ternary(layer, fold_scale=True)
    folded(x)
    assert folded.op_counts == OpCounts(additions=active * 9, multiplications=0)
    folded(x)                                                       # counts accumulate
    assert folded.op_counts.additions == 2 * active * 9
    full = AddOnlyLinear.from_ternary(layer)                        # gamma and bias applied
    full(x)
    assert full.op_counts == OpCounts(additions=active * 9 + 6 * 9, multiplications=6 * 9)
    full.op_counts.reset()
    assert full.op_counts == OpCounts()


@pytest.mark.parametrize("groups", [1, 2])
def test_conv_counts_one_addition_per_active_synapse(groups):
    layer = TernaryConv2d(4, 6, 3, stride=2, padding=1, groups=groups, bias=False)
    add = AddOnlyConv2d.from_ternary(layer, fold_scale=True)
    x = spikes(2, 4, 7, 7)
    out = add(x)
    # active inputs in each output's receptive field (per group), times the group's fan-out
    ones = torch.ones(groups, 4 // groups, 3, 3)
    active_fields = F.conv2d(x, ones, stride=2, padding=1, groups=groups).sum()
    assert add.op_counts == OpCounts(additions=int(active_fields) * (6 // groups),
                                     multiplications=0)
    assert torch.equal(out, out.round())                            # integer accumulation


def test_add_only_forward_runs_no_matmul_or_conv_flops():
    lin, conv = TernaryLinear(32, 16), TernaryConv2d(3, 8, 3, padding=1)
    x_lin, x_conv = spikes(8, 32), spikes(2, 3, 6, 6)
    for fold in (True, False):
        adds = (AddOnlyLinear.from_ternary(lin, fold_scale=fold),
                AddOnlyConv2d.from_ternary(conv, fold_scale=fold))
        with FlopCounterMode(display=False) as counter:
            adds[0](x_lin)
            adds[1](x_conv)
        assert counter.get_total_flops() == 0
    with FlopCounterMode(display=False) as counter:                 # the counter does count
        lin(x_lin)
        conv(x_conv)
    assert counter.get_total_flops() > 0


def test_folded_add_only_forward_runs_no_multiplying_op():
    lin = AddOnlyLinear.from_ternary(TernaryLinear(32, 16), fold_scale=True)
    conv = AddOnlyConv2d.from_ternary(TernaryConv2d(4, 8, 3, padding=1, stride=2, groups=2),
                                      fold_scale=True)
    with OpRecorder() as rec:
        lin(spikes(8, 32))
        conv(spikes(2, 4, 6, 6))
    assert "index_add_" in rec.ops and "nonzero" in rec.ops
    assert multiplying_ops(rec.ops) == set(), sorted(rec.ops)
    lin.fold_scale = False                                          # the recorder sees gamma
    with OpRecorder() as rec:
        lin(spikes(8, 32))
    assert multiplying_ops(rec.ops) == {"mul"}


def test_folded_scale_gives_the_same_spikes_downstream():
    codes = torch.randint(-1, 2, (5, 12), dtype=torch.int8)
    bias = torch.tensor([0.125, -0.25, 0.0, 0.5, -0.375])
    full = AddOnlyLinear(codes, 0.25, bias)                          # exact binary fractions
    folded = AddOnlyLinear(codes, 0.25, bias, fold_scale=True)
    x_seq = spikes(6, 3, 12, rate=0.4)                              # [T, B, in]
    v_th = 0.75
    n_full, _ = multithreshold_scan(full(x_seq), MTState(torch.zeros(3, 5)), MTParams(v_th))
    fold = folded.folded(v_th)
    assert torch.equal(fold.v_th, torch.tensor(3.0)) and torch.equal(fold.offset, bias * 4)
    n_fold, _ = multithreshold_scan(folded(x_seq) + fold.offset, MTState(torch.zeros(3, 5)),
                                    MTParams(fold.v_th))
    assert n_full.sum() > 0 and torch.equal(n_full, n_fold)


# ----------------------------------------------------------------------------- errors, state

def test_non_binary_input_is_rejected_with_the_fix():
    add = AddOnlyLinear.from_ternary(TernaryLinear(4, 2))
    with pytest.raises(ValueError, match=r"binary spikes.*0\.5.*TernaryLinear"):
        add(torch.tensor([[0.0, 0.5, 1.0, 1.0]]))
    with pytest.raises(ValueError, match="binary spikes"):
        add(torch.tensor([[0.0, float("nan"), 1.0, 1.0]]))
    with pytest.raises(ValueError, match=r"\[\.\.\., 4\]"):
        add(torch.ones(3, 5))
    conv = AddOnlyConv2d.from_ternary(TernaryConv2d(2, 3, 3))
    with pytest.raises(ValueError, match="TernaryConv2d"):
        conv(torch.full((1, 2, 5, 5), 2.0))
    with pytest.raises(ValueError, match=r"\[T\*B, C, H, W\]"):
        conv(torch.ones(2, 5, 5))


def test_invalid_add_only_construction():
    with pytest.raises(ValueError, match="int8 codes"):
        AddOnlyLinear(torch.ones(2, 3), 1.0)
    with pytest.raises(ValueError, match="int8 codes"):
        AddOnlyLinear(torch.full((2, 3), 2, dtype=torch.int8), 1.0)
    with pytest.raises(ValueError, match="positive"):
        AddOnlyLinear(torch.zeros(2, 3, dtype=torch.int8), 0.0)
    with pytest.raises(ValueError, match="groups"):
        AddOnlyConv2d(torch.zeros(3, 2, 3, 3, dtype=torch.int8), 1.0, groups=2)
    with pytest.raises(TypeError, match="TernaryLinear"):
        AddOnlyLinear.from_ternary(torch.nn.Linear(2, 2))


def test_add_only_state_dict_round_trip():
    add = AddOnlyConv2d.from_ternary(TernaryConv2d(2, 3, 3, padding=1))
    other = AddOnlyConv2d(torch.zeros(3, 2, 3, 3, dtype=torch.int8), 1.0, torch.zeros(3),
                          padding=1)
    other.load_state_dict(add.state_dict())
    x = spikes(1, 2, 4, 4)
    assert torch.equal(other(x), add(x))
    assert set(add.state_dict()) == {"codes", "gamma", "bias"}


# ----------------------------------------------------------------------------- input noise

def test_input_noise_is_identity_in_eval_and_noisy_in_train():
    noise = InputNoise()
    x = torch.full((8, 100), 2.0)                                   # outside the noise range
    noise.eval()
    assert noise(x) is x
    noise.train()
    y = noise(x)
    assert y.shape == x.shape and not torch.equal(y, x)
    changed = y != 2.0
    assert ((y[changed] >= 0) & (y[changed] < 1)).all()


def test_input_noise_is_reproducible_with_a_generator():
    x = torch.rand(4, 50)
    a = InputNoise(generator=torch.Generator().manual_seed(3))(x)
    b = InputNoise(generator=torch.Generator().manual_seed(3))(x)
    c = InputNoise(generator=torch.Generator().manual_seed(4))(x)
    assert torch.equal(a, b) and not torch.equal(a, c)
    clone = copy.deepcopy(InputNoise(generator=torch.Generator().manual_seed(3)))
    assert torch.equal(clone(x), a)


def test_input_noise_fraction_matches_its_range():
    x = torch.full((400, 500), 2.0)
    gen = torch.Generator().manual_seed(0)
    fixed = InputNoise(0.3, 0.3, generator=gen)(x)
    assert abs((fixed != 2.0).float().mean().item() - 0.3) < 0.005
    per_sample = (InputNoise(generator=gen)(x) != 2.0).float().mean(dim=1)       # [400]
    assert abs(per_sample.mean().item() - 0.225) < 0.02             # E[U(0, 0.45)]
    assert per_sample.min() < 0.05 and 0.4 < per_sample.max() < 0.5
    assert torch.equal(InputNoise(0.0, 0.0)(x), x)


def test_input_noise_validates_its_arguments():
    with pytest.raises(ValueError, match="0.45"):
        InputNoise(0.0, 45)
    with pytest.raises(ValueError, match="must not exceed"):
        InputNoise(0.4, 0.2)
    with pytest.raises(ValueError, match="noise_range"):
        InputNoise(noise_range=(1.0, 0.0))
    with pytest.raises(TypeError, match="Generator"):
        InputNoise(generator=0)
    with pytest.raises(ValueError, match="float input"):
        InputNoise()(torch.ones(2, 3, dtype=torch.long))
