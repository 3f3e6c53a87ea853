"""SynOps and MACs counted by OpCounter / count_macs against hand and brute-force counts (neuron
updates and spikes: test_metrics_neuron_ops.py)."""

from __future__ import annotations

import gc
import itertools
import math
import weakref

import pytest
import torch
from torch import nn

from snn5.core import encode_direct
from snn5.metrics.ops import MAX_SPIKES_PER_STEP, is_spike_count_tensor
from snn5.metrics import OpCounter, count_macs, is_spike_tensor
from snn5.metrics.ops import conv_synops
from snn5.nn import LIF, Sequential, SpikeRecorder, TimeDistributed


def _out_size(n: int, k: int, s: int, p: int, d: int) -> int:
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def brute_conv_synops(conv: nn.Module, x: torch.Tensor) -> int:
    """Loop over active inputs; count the output positions whose window holds each one.

    Zero padding with integer (per-dimension) padding. Each (input, output position) pair feeds
    the C_out / groups output channels of the input's group.
    """
    nd = len(conv.kernel_size)
    spatial = x.shape[2:]
    out = [_out_size(spatial[i], conv.kernel_size[i], conv.stride[i], conv.padding[i],
                     conv.dilation[i]) for i in range(nd)]
    total = 0
    for idx in torch.nonzero(x).tolist():                  # [n, c, *pos] of every active input
        pos = idx[2:]
        for o in itertools.product(*(range(m) for m in out)):
            if all(any(o[i] * conv.stride[i] - conv.padding[i] + k * conv.dilation[i] == pos[i]
                       for k in range(conv.kernel_size[i])) for i in range(nd)):
                total += conv.out_channels // conv.groups
    return total


def brute_conv_synops_circular(conv: nn.Module, x: torch.Tensor) -> int:
    """Loop over output positions and kernel taps, wrapping around (circular padding)."""
    nd = len(conv.kernel_size)
    spatial = x.shape[2:]
    out = [_out_size(spatial[i], conv.kernel_size[i], conv.stride[i], conv.padding[i],
                     conv.dilation[i]) for i in range(nd)]
    cin_g = conv.in_channels // conv.groups
    total = 0
    for n, g in itertools.product(range(x.shape[0]), range(conv.groups)):
        for o in itertools.product(*(range(m) for m in out)):
            for k in itertools.product(*(range(kk) for kk in conv.kernel_size)):
                src = tuple((o[i] * conv.stride[i] + k[i] * conv.dilation[i] - conv.padding[i])
                            % spatial[i] for i in range(nd))
                active = x[(n, slice(g * cin_g, (g + 1) * cin_g), *src)] != 0
                total += int(active.sum()) * (conv.out_channels // conv.groups)
    return total


def _spikes(*shape: int, p: float = 0.3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(*shape, generator=g) < p).float()


# ----------------------------------------------------------------------------- Linear

def test_linear_synops_of_a_known_spike_pattern():
    layer = nn.Linear(5, 3)
    x = torch.tensor([[[1., 0., 0., 1., 0.], [0., 0., 0., 0., 0.]],
                      [[0., -1., 0., 0., 0.], [1., 1., 1., 0., 0.]]])     # [T=2, B=2, 5]
    with OpCounter(layer, infer_samples=False) as ops:
        layer(x)
    assert ops.layers[""].synops == 6 * 3          # 6 nonzero inputs x 3 outputs
    assert ops.layers[""].macs == 0
    assert ops.layers[""].calls == 1


def test_linear_real_input_counts_dense_macs():
    layer = nn.Linear(5, 3)
    x = torch.full((2, 4, 5), 0.5)                 # [T=2, B=4, 5], not spikes
    with OpCounter(layer, infer_samples=False) as ops:
        layer(x)
    assert ops.layers[""].macs == (2 * 4 * 3) * 5  # output elements x in_features
    assert ops.layers[""].synops == 0


def test_spike_detection():
    assert is_spike_tensor(torch.tensor([0., 1., -1., 1.]))
    assert is_spike_tensor(torch.zeros(3))
    assert not is_spike_tensor(torch.tensor([0., 1., 0.5]))
    assert not is_spike_tensor(torch.tensor([0., 2.]))
    assert not is_spike_tensor(torch.tensor([0., float("nan")]))
    assert is_spike_count_tensor(torch.tensor([0., 2., -3., float(MAX_SPIKES_PER_STEP)]))
    assert not is_spike_count_tensor(torch.tensor([0., 2.5]))
    assert not is_spike_count_tensor(torch.tensor([0., 255.]))     # raw pixels: analog input
    assert not is_spike_count_tensor(torch.tensor([1., float("nan")]))


def test_multi_spike_counts_are_synops_per_spike():
    """An input n (n spikes in one step) triggers n times the accumulates of one spike: the
    same total as n binary maps sent one after the other."""
    torch.manual_seed(0)
    counts = torch.randint(0, 5, (3, 2, 6, 6)).float()             # scale-and-fire, N = 4
    lin, conv = nn.Linear(72, 7), nn.Conv2d(2, 5, 3, padding=1, stride=2)
    with OpCounter(nn.ModuleList([lin, conv]), infer_samples=False) as ops:
        lin(counts.flatten(1))
        conv(counts)
    assert ops.layers["0"].synops == int(counts.sum()) * 7 and ops.layers["0"].macs == 0
    with OpCounter(conv, infer_samples=False) as binary:
        for k in range(1, 5):                                       # spike k of each input
            conv((counts >= k).float())
    assert ops.layers["1"].synops == binary.layers[""].synops > 0 and ops.layers["1"].macs == 0


# ----------------------------------------------------------------------------- Conv

CONV2D_CASES = [
    dict(stride=1, padding=0, dilation=1, groups=1),
    dict(stride=2, padding=1, dilation=1, groups=1),
    dict(stride=2, padding=2, dilation=2, groups=1),
    dict(stride=(1, 2), padding=(1, 0), dilation=1, groups=2),
    dict(stride=3, padding=1, dilation=1, groups=4),
]


@pytest.mark.parametrize("kw", CONV2D_CASES, ids=lambda kw: "-".join(map(str, kw.values())))
def test_conv2d_synops_match_brute_force(kw):
    conv = nn.Conv2d(4, 8, 3, bias=True, **kw)
    x = _spikes(2, 4, 7, 6)                        # [N, C_in, H, W]
    x[0, 1, 3, 2] = -1.0                           # a signed spike counts too
    expected = brute_conv_synops(conv, x)
    assert expected > 0
    with OpCounter(conv, infer_samples=False) as ops:
        conv(x)
    assert ops.layers[""].synops == expected
    assert ops.layers[""].macs == 0


def test_pruned_synapses_trigger_nothing():
    # Linear: each spike counts the nonzero weights of its column only
    lin = nn.Linear(6, 5)
    with torch.no_grad():
        lin.weight.mul_((torch.rand(5, 6, generator=torch.Generator().manual_seed(1)) < 0.5))
    x = _spikes(3, 6, p=0.5, seed=2)
    expected = sum(int((lin.weight[:, j] != 0).sum()) * int(x[:, j].sum()) for j in range(6))
    with OpCounter(lin, infer_samples=False) as ops:
        lin(x)
    assert ops.layers[""].synops == expected < int(x.sum()) * 5
    assert ops.layers[""].dense_macs == 3 * 5 * 6                 # the dense pass is unchanged
    # Conv: loop over (active input, reached position, output channel of its group) triples
    conv = nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2)
    with torch.no_grad():
        conv.weight.mul_((torch.rand(conv.weight.shape,
                                     generator=torch.Generator().manual_seed(3)) < 0.4))
    x = _spikes(2, 4, 7, 6, seed=4)
    out_hw = [_out_size(n, 3, 2, 1, 1) for n in (7, 6)]
    expected = 0
    for n, c, i, j in torch.nonzero(x).tolist():
        g, local = divmod(c, 2)
        for oi, oj in itertools.product(range(out_hw[0]), range(out_hw[1])):
            ki, kj = i - (oi * 2 - 1), j - (oj * 2 - 1)
            if 0 <= ki < 3 and 0 <= kj < 3:
                expected += int((conv.weight[3 * g:3 * g + 3, local, ki, kj] != 0).sum())
    with OpCounter(conv, infer_samples=False) as ops:
        conv(x)
    assert ops.layers[""].synops == expected
    assert expected < brute_conv_synops(conv, x)                 # fewer than the dense layer


def test_conv2d_circular_padding_matches_brute_force():
    conv = nn.Conv2d(2, 4, 3, stride=2, padding=1, groups=2, padding_mode="circular")
    x = _spikes(2, 2, 5, 6, seed=3)
    assert conv_synops(conv, x) == brute_conv_synops_circular(conv, x)


def test_conv2d_same_padding_matches_brute_force():
    conv = nn.Conv2d(3, 3, (3, 5), padding="same")
    x = _spikes(1, 3, 6, 7, seed=4)
    ref = nn.Conv2d(3, 3, (3, 5), padding=(1, 2))  # "same" = the symmetric integer padding
    assert conv_synops(conv, x) == brute_conv_synops(ref, x)


def test_conv1d_and_conv3d_synops_match_brute_force():
    conv1 = nn.Conv1d(4, 6, 3, stride=2, padding=1, groups=2)
    x1 = _spikes(3, 4, 9, seed=1)
    conv3 = nn.Conv3d(2, 4, (2, 3, 3), stride=(1, 2, 1), padding=(0, 1, 1), dilation=(1, 1, 2))
    x3 = _spikes(1, 2, 3, 5, 6, seed=2)
    with OpCounter(conv1, infer_samples=False) as ops1:
        conv1(x1)
    with OpCounter(conv3, infer_samples=False) as ops3:
        conv3(x3)
    assert ops1.layers[""].synops == brute_conv_synops(conv1, x1) > 0
    assert ops3.layers[""].synops == brute_conv_synops(conv3, x3) > 0


def test_unbatched_conv_input():
    conv = nn.Conv2d(2, 4, 3, padding=1)
    x = _spikes(2, 5, 5, seed=5)                   # [C_in, H, W]
    assert conv_synops(conv, x) == brute_conv_synops(conv, x.unsqueeze(0))


@pytest.mark.parametrize("groups", [1, 2])
def test_conv_macs_closed_form(groups):
    conv = nn.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=1, groups=groups)
    x = torch.rand(3, 4, 8, 7) + 0.1               # real values
    with OpCounter(conv, infer_samples=False) as ops:
        y = conv(x)
    h, w = _out_size(8, 3, 2, 1, 1), _out_size(7, 2, 1, 1, 1)
    assert y.shape == (3, 6, h, w)
    assert ops.layers[""].macs == 3 * 6 * h * w * (4 // groups) * 3 * 2
    assert ops.layers[""].synops == 0


def test_all_zero_input_counts_nothing():
    conv = nn.Conv2d(2, 4, 3)
    with OpCounter(conv, infer_samples=False) as ops:
        conv(torch.zeros(1, 2, 5, 5))
    assert (ops.layers[""].synops, ops.layers[""].macs, ops.layers[""].calls) == (0, 0, 1)


# ----------------------------------------------------------------------------- models

def test_snn_counts_per_layer_and_per_sample(snn, batches):
    """Real-valued conv input -> MACs; the Linear after a LIF sees spikes -> SynOps."""
    x, _ = batches[0]
    B, T = x.shape[0], snn.timesteps
    with OpCounter(snn) as ops, SpikeRecorder(snn) as rec:
        snn(x)
    assert ops.samples == B                        # inferred from the model's input
    conv_name, lin_name = "net.0.module", "net.3"
    assert list(ops.layers) == [conv_name, "net.1", lin_name, "net.4"]     # model order
    assert [n for n, o in ops.layers.items() if o.neuron] == ["net.1", "net.4"]
    conv_macs = T * B * (4 * 6 * 6) * (1 * 3 * 3)  # every step: output elements x fan-in
    assert ops.layers[conv_name].macs == conv_macs and ops.layers[conv_name].synops == 0
    z1 = rec.spikes["net.1"]                       # [T, B, 4, 6, 6], input of the Linear
    active = int(z1.count_nonzero())
    assert 0 < active < z1.numel()
    assert ops.layers[lin_name].synops == active * 3 and ops.layers[lin_name].macs == 0
    assert ops.synops_per_sample == pytest.approx(active * 3 / B)
    assert ops.macs_per_sample == pytest.approx(conv_macs / B)
    assert ops.synops_per_layer == {conv_name: 0.0, lin_name: pytest.approx(active * 3 / B)}
    assert ops.macs_per_layer[conv_name] == pytest.approx(conv_macs / B)


def test_direct_encoding_layer_run_once_counts_one_pass():
    """Layers before the first neuron run once on [1, B, ...]: one dense pass per sample."""
    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.timesteps = 5
            self.stem = TimeDistributed(nn.Conv2d(1, 2, 3))
            self.body = Sequential(LIF(2e-3), TimeDistributed(nn.Flatten()), nn.Linear(8, 2))

        def forward(self, x):                                   # x: [B, 1, 4, 4]
            y = self.stem(x.unsqueeze(0))                       # [1, B, 2, 2, 2]
            y = y.expand(self.timesteps, *y.shape[1:])          # [T, B, 2, 2, 2]
            return self.body(y)[0].sum(0)                       # [B, 2]

    model = Model()
    with OpCounter(model) as ops:
        model(torch.rand(3, 1, 4, 4))
    assert ops.macs_per_layer["stem.module"] == (2 * 2 * 2) * 9  # no factor T


def test_counts_accumulate_and_reset(snn, batches):
    counter = OpCounter(snn)
    with counter:
        snn(batches[0][0])
    first = counter.macs
    with counter:                                  # a second block keeps adding
        snn(batches[1][0])
    assert counter.macs == 2 * first
    assert counter.samples == 10
    counter.reset()
    assert (counter.macs, counter.synops, counter.samples) == (0, 0, 0)
    with pytest.raises(RuntimeError, match="add_samples"):
        counter.synops_per_sample


def test_explicit_samples_and_validation():
    layer = nn.Linear(4, 2)
    counter = OpCounter(layer, infer_samples=False)
    with counter:
        layer(torch.ones(2, 3, 4))                 # [T=2, B=3, 4] spikes
    counter.add_samples(3)
    assert counter.synops_per_sample == 2 * 3 * 4 * 2 / 3
    with pytest.raises(ValueError, match="n must be"):
        counter.add_samples(-1)


# ----------------------------------------------------------------------------- read-only

def _hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_hooks_removed_and_outputs_and_grads_unchanged(snn, batches):
    x, y = batches[0]
    snn.train()

    def run() -> tuple[torch.Tensor, list[torch.Tensor]]:
        snn.zero_grad()
        out = snn(x)
        nn.functional.cross_entropy(out, y).backward()
        return out.detach(), [p.grad.clone() for p in snn.parameters()]

    out_plain, grads_plain = run()
    with OpCounter(snn) as ops:
        assert _hook_count(snn) > 0
        out_counted, grads_counted = run()
    assert _hook_count(snn) == 0
    assert ops.synops > 0
    assert torch.equal(out_plain, out_counted)
    assert all(torch.equal(a, b) for a, b in zip(grads_plain, grads_counted))


def test_hooks_removed_on_error():
    layer = nn.Linear(4, 2)
    with pytest.raises(RuntimeError, match="boom"):
        with OpCounter(layer):
            layer(torch.ones(1, 4))
            raise RuntimeError("boom")
    assert _hook_count(layer) == 0


def test_counter_keeps_no_tensor_alive():
    layer = nn.Linear(4, 2)
    x = torch.ones(3, 4)
    with OpCounter(layer) as ops:
        y = layer(x)
    refs = [weakref.ref(x), weakref.ref(y)]
    del x, y
    gc.collect()
    assert all(r() is None for r in refs)
    assert ops.synops == 3 * 4 * 2


def test_reentering_an_active_counter_fails():
    counter = OpCounter(nn.Linear(2, 2))
    with counter:
        with pytest.raises(RuntimeError, match="already active"):
            counter.__enter__()


# ----------------------------------------------------------------------------- count_macs

def test_count_macs_of_the_ann_twin(ann, batches):
    x, _ = batches[0]
    expected = (4 * 6 * 6) * (1 * 3 * 3) + 3 * (4 * 6 * 6)   # conv + linear, one step
    assert count_macs(ann, x) == expected


def test_count_macs_is_dense_on_spikes_and_restores_modes():
    bn = nn.BatchNorm1d(4)
    model = nn.Sequential(nn.Linear(6, 4), bn, nn.Linear(4, 2))
    model.train()
    model[2].eval()                                # mixed flags are restored as they were
    x = torch.bernoulli(torch.full((5, 6), 0.5))   # spikes, still counted dense
    stats = bn.running_mean.clone()
    assert count_macs(model, x) == 6 * 4 + 4 * 2
    assert torch.equal(bn.running_mean, stats)
    assert [m.training for m in model.modules()] == [True, True, True, False]
    with pytest.raises(ValueError, match="batch"):
        count_macs(model, torch.tensor(1.0))


def test_direct_input_macs_use_closed_form_over_time(make_snn):
    snn = make_snn(timesteps=3)
    x = encode_direct(torch.rand(2, 1, 6, 6), 1)[0]
    with OpCounter(snn) as ops:
        snn(x)
    assert ops.macs_per_sample == 3 * (4 * 36) * 9
    assert math.isfinite(ops.synops_per_sample)


def test_conv_synops_stay_exact_under_autocast():
    conv = nn.Conv2d(67, 2, 3, padding=1)
    x = torch.ones(1, 67, 4, 4)                    # 67 * 9 = 603 hits: not a bfloat16 number
    expected = brute_conv_synops(conv, x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert conv_synops(conv, x) == expected


def test_add_only_layers_count_their_additions_as_synops():
    """A logic-gated layer's additions are SynOps (active inputs x fan-out with the bias folded);
    with dense=True the same layer counts dense MACs."""
    from snn5.nn.ternary import AddOnlyLinear

    torch.manual_seed(0)
    codes = torch.randint(-1, 2, (6, 10), dtype=torch.int8)
    layer = AddOnlyLinear(codes, 0.5, None, fold_scale=True)
    spikes = (torch.rand(4, 10) < 0.3).float()
    with OpCounter(layer, infer_samples=False) as ops:
        layer(spikes)
        layer(spikes)
    assert ops.layers[""].synops == 2 * int(spikes.sum()) * 6 > 0
    assert ops.layers[""].macs == 0
    with OpCounter(layer, infer_samples=False, dense=True) as dense:
        layer(spikes)
    assert dense.layers[""].macs == 4 * 6 * 10 and dense.layers[""].synops == 0


# ----------------------------------------------------------------------------- spike products

def _brute_matmul_ops(a, b):
    """(additions, MACs) of a @ b by looping over every product a[i, m] * b[m, p]."""
    spike_a, spike_b = is_spike_count_tensor(a), is_spike_count_tensor(b)
    if not (spike_a or spike_b):
        return 0, a.shape[-2] * a.shape[-1] * b.shape[-1]
    adds = 0
    for i, m, p in itertools.product(range(a.shape[0]), range(a.shape[1]), range(b.shape[1])):
        ai, bp = a[i, m].abs().item(), b[m, p].abs().item()
        if spike_a and spike_b:
            adds += int(ai * bp)              # both active: |a| * |b| accumulates
        elif spike_a:
            adds += int(ai)                   # a's spike adds b[m, p], zero or not
        else:
            adds += int(bp)
    return adds, 0


@pytest.mark.parametrize("kind", ["spikes x spikes", "spikes x real", "real x spikes",
                                  "real x real", "counts x spikes"])
def test_matmul_ops_equal_a_loop_over_products(kind):
    from snn5.metrics.ops import matmul_ops
    g = torch.Generator().manual_seed(0)
    a, b = _spikes(4, 5, seed=1), _spikes(5, 3, seed=2)
    if "real x" in kind:
        a = torch.rand(4, 5, generator=g)
    if "x real" in kind:
        b = torch.rand(5, 3, generator=g)
    if kind.startswith("counts"):
        a = a * 3
    assert matmul_ops(a, b) == _brute_matmul_ops(a, b)
    assert matmul_ops(a, b, dense=True) == (0, 4 * 5 * 3)


def test_attention_products_are_counted_in_a_model():
    from snn5.nn import IF
    from snn5.nn.attention import SpikeDrivenSelfAttention, SpikingSelfAttention
    x = _spikes(3, 2, 5, 4, p=0.6)                       # [T, B, N, D]
    ssa = SpikingSelfAttention(4, 2, lambda v_th=None: IF(v_th=v_th or 0.3))
    qkv = {}
    for n in ("q", "k", "v"):
        getattr(ssa, f"{n}_sn").register_forward_hook(
            lambda m, a, out, n=n: qkv.__setitem__(n, out[0].view(3, 2, 5, 2, 2).transpose(2, 3)))
    with OpCounter(ssa, infer_samples=False) as ops:
        ssa(x)
    q, k, v = qkv["q"], qkv["k"], qkv["v"]
    meets = (q.sum(-2) * k.sum(-2)).sum()                # pairs of active q[i, c], k[j, c]
    assert ops.layers["qk"].synops == int(meets) and ops.layers["qk"].calls == 1
    assert ops.layers["qk"].dense_macs == 3 * 2 * 2 * (5 * 2 * 5)   # [T, B, H]: N x d x N
    attn = q @ k.transpose(-2, -1)
    if is_spike_count_tensor(attn):                      # overlaps <= 15: spike counts
        expected = int((attn.sum(-2) * v.sum(-1)).sum())
    else:                                                # each spike of v adds a column
        expected = int(v.sum()) * attn.shape[-2]
    assert ops.layers["av"].synops == expected > 0
    sdsa = SpikeDrivenSelfAttention(4, 2, lambda v_th=None: IF(v_th=v_th or 0.3))
    kv = {}
    sdsa.kv.register_forward_pre_hook(lambda m, a: kv.__setitem__("both", (a[0] * a[1]).sum()))
    with OpCounter(sdsa, infer_samples=False) as ops:
        sdsa(x)
    assert ops.layers["kv"].synops == int(kv["both"]) and ops.layers["kv"].macs == 0


def test_ssm_counts_input_accumulates_and_mode_macs():
    from snn5.nn.ssm import DiagonalSSM
    ssm = DiagonalSSM(3, modes=4)
    u = _spikes(6, 2, 3, p=0.5)
    with OpCounter(ssm, infer_samples=False) as ops:
        ssm(u)
    assert ops.layers[""].synops == int(u.sum()) * (2 * 4 + 1)
    assert ops.layers[""].macs == u.numel() * 6 * 4
    assert ops.layers[""].dense_macs == u.numel() * (6 * 4 + 2 * 4 + 1)   # spikes or not
    with OpCounter(ssm, infer_samples=False) as ops:
        ssm(torch.rand(6, 2, 3))
    assert ops.layers[""].synops == 0 and ops.layers[""].macs == 36 * (6 * 4 + 2 * 4 + 1)


def test_dense_only_layers_count_macs_even_on_zero_input():
    layer = nn.Linear(4, 2)
    layer.dense_only = True
    with OpCounter(layer, infer_samples=False) as ops:
        layer(torch.zeros(3, 4))
    assert ops.layers[""].macs == 3 * 2 * 4 and ops.layers[""].synops == 0
