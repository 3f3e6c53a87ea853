"""The event-driven runtime equals a dense simulation of the same graph, and its counts equal
snn5's own operation counter.

Equality contract: spikes per step identical (exact), membranes / readout values within
``ATOL = 1e-5`` (float32; the event path sums the same products in another order).
"""

from __future__ import annotations

import math

import nir
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from snn5.export import export_nir
from snn5.export.runtime import COUNT_KEYS, EventRuntime, run_events
from snn5.metrics.ops import OpCounter, conv_synops
from snn5.models import SpikingClassifier
from snn5.models.registry import build_model, parse_model_config
from snn5.nn import IF, LIF, MembraneReadout, TimeDistributed
from snn5.nn.neurons import NeuronBase

ATOL = 1e-5
DT = 1e-3


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _w(rng: np.random.Generator, *shape: int, scale: float = 1.0) -> np.ndarray:
    return (rng.normal(size=shape) * scale).astype(np.float32)


def _lif(shape: tuple[int, ...], tau: float = 5e-3, v_th: float = 0.5) -> nir.LIF:
    return nir.LIF(tau=np.full(shape, tau), r=np.ones(shape), v_leak=np.zeros(shape),
                   v_threshold=np.full(shape, v_th))


# ----------------------------------------------------------------------------- dense reference

def _dense_reference(graph: nir.NIRGraph, x_seq: Tensor, dt: float
                     ) -> tuple[dict[str, Tensor], dict[str, Tensor], dict[str, int]]:
    """NIR semantics simulated densely (strict ``v > v_threshold``, reset to ``v_reset``):
    ``(outputs [T, B, *F], spikes per neuron node [T, B, *F], synops per weight node)`` with
    synops = active inputs x fan-out computed from the dense spike tensors (after an average
    pool, from the pooled spike counts ``h * prod(kernel)``)."""
    order = [e[0] for e in graph.edges] + [graph.edges[-1][1]]      # chains only
    state: dict[str, list[Tensor]] = {}
    outs: dict[str, list[Tensor]] = {}
    spikes: dict[str, list[Tensor]] = {}
    synops = dict.fromkeys(order, 0)

    def t(a: np.ndarray) -> Tensor:
        return torch.tensor(np.asarray(a, dtype=np.float64)).float()

    for x in x_seq.unbind(0):                                       # [B, *F]
        h, unit = x, 1.0                        # unit: charge of one spike on this edge
        for name in order:
            node = graph.nodes[name]
            n = h / unit                                            # spike counts if spiking
            spiking_in = bool((n == torch.round(n)).all())
            if isinstance(node, (nir.Linear, nir.Affine)):
                if spiking_in:
                    synops[name] += int(n.abs().sum()) * node.weight.shape[0]
                h, unit = h @ t(node.weight).T, 1.0
                if isinstance(node, nir.Affine):
                    h = h + t(node.bias)
            elif isinstance(node, nir.Conv2d):
                if spiking_in:
                    ref = nn.Conv2d(node.weight.shape[1] * node.groups, node.weight.shape[0],
                                    node.weight.shape[2:], stride=node.stride,
                                    padding=node.padding, dilation=node.dilation,
                                    groups=node.groups)
                    synops[name] += conv_synops(ref, n)
                unit = 1.0
                h = F.conv2d(h, t(node.weight), t(node.bias), node.stride, node.padding,
                             node.dilation, node.groups)
            elif isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
                h = F.avg_pool2d(h, tuple(node.kernel_size), tuple(node.stride),
                                 tuple(node.padding),
                                 divisor_override=1 if isinstance(node, nir.SumPool2d) else None)
                if isinstance(node, nir.AvgPool2d):
                    unit /= math.prod(node.kernel_size)
            elif isinstance(node, nir.Flatten):
                h = h.flatten(1)
            elif isinstance(node, (nir.LIF, nir.LI, nir.IF, nir.CubaLIF)):
                v = state.setdefault(name, [torch.zeros_like(h), torch.zeros_like(h)])
                unit = 1.0
                if isinstance(node, nir.CubaLIF):
                    a = math.exp(-dt / float(node.tau_syn.flat[0]))
                    v[1] = a * v[1] + (1 - a) * (t(node.w_in) * h)
                    h = v[1]
                if isinstance(node, nir.IF):
                    v[0] = v[0] + t(node.r) * h
                else:
                    tau = node.tau_mem if isinstance(node, nir.CubaLIF) else node.tau
                    b = math.exp(-dt / float(np.asarray(tau).flat[0]))
                    v[0] = b * v[0] + (1 - b) * (t(node.v_leak) + t(node.r) * h)
                if isinstance(node, nir.LI):
                    h = v[0]
                else:
                    z = (v[0] > t(node.v_threshold)).float()
                    v[0] = torch.where(z > 0, t(node.v_reset), v[0])
                    spikes.setdefault(name, []).append(z)
                    h = z
            elif isinstance(node, nir.Output):
                outs.setdefault(name, []).append(h)
    return ({k: torch.stack(v) for k, v in outs.items()},
            {k: torch.stack(v) for k, v in spikes.items()}, synops)


def _check_equal(graph: nir.NIRGraph, x: Tensor) -> None:
    res = run_events(graph, x, dt=DT)
    outs, spikes, synops = _dense_reference(graph, x, DT)
    assert set(res.spikes) == set(spikes)
    for name, z in spikes.items():
        assert z.sum() > 0, f"{name} silent: the test would not check much"
        assert torch.equal(res.spikes[name], z), name
    for name, y in outs.items():
        torch.testing.assert_close(res.outputs[name], y, atol=ATOL, rtol=0)
    for name, n in synops.items():
        if n:
            assert res.counts[name]["synops"] == n, name
    assert res.total("synops") == sum(synops.values())


# ----------------------------------------------------------------------------- hand-built graphs

def test_mlp_graph_equals_dense_simulation_and_counts_synops():
    rng = _rng(0)
    graph = nir.NIRGraph.from_list(
        nir.Linear(weight=_w(rng, 32, 20)), _lif((32,)),
        nir.Affine(weight=_w(rng, 16, 32), bias=_w(rng, 16, scale=0.1)),
        _lif((16,), tau=8e-3, v_th=0.3),
        nir.Affine(weight=_w(rng, 5, 16), bias=_w(rng, 5)),
        nir.LI(tau=np.full(5, 10e-3), r=np.ones(5), v_leak=np.zeros(5)))
    x = (torch.rand(12, 3, 20, generator=torch.Generator().manual_seed(0)) < 0.3).float()
    _check_equal(graph, x)


def test_conv_pool_flatten_if_cubalif_graph_equals_dense_simulation():
    rng = _rng(1)
    conv = nir.Conv2d(input_shape=(9, 9), weight=_w(rng, 6, 1, 3, 3), stride=2, padding=1,
                      dilation=1, groups=2, bias=_w(rng, 6, scale=0.1))
    graph = nir.NIRGraph.from_list(
        nir.Input(input_type={"input": np.array([2, 9, 9])}),      # NIR ignores groups here
        conv, nir.IF(r=np.ones((6, 5, 5)), v_threshold=np.full((6, 5, 5), 0.8)),
        nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([1, 1]),
                      padding=np.array([0, 0])),                    # overlapping windows
        nir.Conv2d(input_shape=(4, 4), weight=_w(rng, 6, 6, 3, 3, scale=0.5), stride=1,
                   padding=2, dilation=2, groups=1, bias=np.zeros(6, np.float32)),
        nir.Flatten(input_type={"input": np.array([6, 4, 4])}, start_dim=0),
        nir.Affine(weight=_w(rng, 6 * 25, 96, scale=0.3), bias=np.zeros(150, np.float32)),
        nir.Flatten(input_type={"input": np.array([150])}, start_dim=0),  # no-op reshape
        nir.CubaLIF(tau_syn=np.full(150, 3e-3), tau_mem=np.full(150, 6e-3), r=np.ones(150),
                    v_leak=np.zeros(150), v_threshold=np.full(150, 0.2), w_in=2.0),
        type_check=False)
    x = (torch.rand(6, 2, 2, 9, 9, generator=torch.Generator().manual_seed(1)) < 0.4).float()
    _check_equal(graph, x)


def test_avg_pool_and_same_padding_graph():
    rng = _rng(2)
    graph = nir.NIRGraph.from_list(
        nir.Conv2d(input_shape=(8, 8), weight=_w(rng, 4, 3, 3, 3), stride=1, padding="same",
                   dilation=1, groups=1, bias=_w(rng, 4, scale=0.1)),
        _lif((4, 8, 8), v_th=0.4),
        nir.AvgPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]),
                      padding=np.array([0, 0])),
        nir.Conv2d(input_shape=(4, 4), weight=_w(rng, 5, 4, 2, 2), stride=2, padding=0,
                   dilation=1, groups=1, bias=np.zeros(5, np.float32)),
        _lif((5, 2, 2), v_th=0.2))
    x = (torch.rand(8, 2, 3, 8, 8, generator=torch.Generator().manual_seed(2)) < 0.3).float()
    _check_equal(graph, x)


def test_batch_entries_are_independent():
    rng = _rng(3)
    graph = nir.NIRGraph.from_list(nir.Linear(weight=_w(rng, 10, 6)), _lif((10,)),
                                   nir.Linear(weight=_w(rng, 4, 10)), _lif((4,), v_th=0.2))
    x = (torch.rand(10, 4, 6, generator=torch.Generator().manual_seed(3)) < 0.4).float()
    whole = run_events(graph, x, dt=DT)
    one = run_events(graph, x[:, 2:3], dt=DT)
    assert torch.equal(whole.outputs["output"][:, 2:3], one.outputs["output"])
    assert whole.outputs["output"].sum() > 0


def test_analog_input_is_dense_macs_and_a_static_input_runs_the_stem_once():
    rng = _rng(4)
    graph = nir.NIRGraph.from_list(nir.Affine(weight=_w(rng, 12, 7), bias=_w(rng, 12)),
                                   _lif((12,)), nir.Linear(weight=_w(rng, 3, 12)))
    x = torch.randn(5, 7, generator=torch.Generator().manual_seed(4))   # [B, F] analog
    static = EventRuntime(graph, dt=DT).run(x, steps=6)
    seq = EventRuntime(graph, dt=DT).run(x.expand(6, 5, 7))
    assert torch.equal(static.outputs["output"], seq.outputs["output"])
    assert static.counts["affine"] == {"synops": 0, "macs": 5 * 12 * 7,
                                       "dense_macs": 5 * 12 * 7, "neuron_updates": 0,
                                       "spikes": 0}
    assert seq.counts["affine"]["macs"] == 6 * 5 * 12 * 7
    lif = static.counts["lif"]
    assert lif["neuron_updates"] == 6 * 5 * 12 and lif["spikes"] == int(static.spikes["lif"].sum())
    assert static.counts["linear"]["synops"] == lif["spikes"] * 3
    assert static.counts["linear"]["dense_macs"] == 6 * 5 * 3 * 12
    assert set(static.counts["linear"]) == set(COUNT_KEYS)


def test_threshold_equality_follows_nir_or_snn5_semantics():
    """v hits the threshold exactly after two half-weight spikes: NIR's ``v > v_th`` waits for
    the third and resets to 0, snn5's ``v >= v_th`` (graph and node metadata) fires at once and
    subtracts."""
    def graph(meta: bool) -> nir.NIRGraph:
        node = nir.IF(r=np.ones(1), v_threshold=np.ones(1),
                      metadata={"snn5": {"options": {"reset": "subtract"}}} if meta else {})
        g = nir.NIRGraph.from_list(nir.Linear(weight=np.full((1, 1), 0.5, np.float32)), node)
        if meta:
            g.metadata = {"snn5": {"dt": DT, "spike_condition": "v >= v_threshold"}}
        return g
    x = torch.ones(4, 1, 1)
    plain = run_events(graph(False), x, dt=DT)
    snn5 = EventRuntime(graph(True)).run(x)
    assert plain.spikes["if"].flatten().tolist() == [0, 0, 1, 0]        # 0.5, 1, 1.5
    assert snn5.spikes["if"].flatten().tolist() == [0, 1, 0, 1]         # 0.5, 1, 0.5, 1


# ----------------------------------------------------------------------------- snn5 models

def _mlp(neuron: NeuronBase, hidden: NeuronBase, seed: int) -> SpikingClassifier:
    torch.manual_seed(seed)
    layers = [TimeDistributed(nn.Flatten()), nn.Linear(20, 32), neuron, nn.Linear(32, 24),
              hidden, nn.Linear(24, 4)]
    return SpikingClassifier(layers, MembraneReadout(5e-3, dt=DT), timesteps=10,
                             encoding="direct", input_shape=(20,)).eval()


def _neuron_outputs(model: SpikingClassifier) -> tuple[dict[str, list[Tensor]], list]:
    """Forward hooks keeping each body neuron's spikes under its node name."""
    seen: dict[str, list[Tensor]] = {}
    handles = []
    for i, layer in enumerate(model.body):
        if isinstance(layer, NeuronBase):
            def hook(m, args, out, key=f"body.{i}"):
                seen.setdefault(key, []).append(out[0].detach())
            handles.append(layer.register_forward_hook(hook))
    return seen, handles


def _check_model(model: SpikingClassifier, x: Tensor) -> dict[str, dict[str, int]]:
    """Runtime on the exported graph == the snn5 model: spikes of every layer, readout trace,
    and SynOps/MACs of every weight node == OpCounter's where OpCounter counts SynOps."""
    seen, handles = _neuron_outputs(model)
    counter = OpCounter(model)
    with torch.no_grad(), counter:
        _, scores = model(x, per_step=True)                         # [T, B, C]
    for h in handles:
        h.remove()
    res = EventRuntime(export_nir(model)).run(x)
    for name, (z,) in seen.items():
        assert z.sum() > 0, f"{name} silent: the test would not check much"
        assert torch.equal(res.spikes[name], z), name
    torch.testing.assert_close(res.outputs["output"], scores, atol=ATOL, rtol=0)
    _check_counts(res.counts, counter)
    return res.counts


def _check_counts(counts: dict[str, dict[str, int]], counter: OpCounter,
                  skip: tuple[str, ...] = ()) -> None:
    """Every count OpCounter keeps for a layer (totals over the batch) equals the runtime's
    count of its node (``stem.0.module`` -> ``stem.0``, ``readout.li`` -> ``readout``)."""
    for layer, ops in counter.layers.items():
        node = layer.removesuffix(".module").removesuffix(".li")
        keys = ("neuron_updates", "spikes") if ops.neuron else ("synops", "macs", "dense_macs")
        for key in keys:
            if node not in skip:
                assert counts[node][key] == getattr(ops, key), (layer, key)


@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_exported_lif_mlp_matches_snn5(reset):
    model = _mlp(LIF(4e-3, v_th=0.5, reset=reset), LIF(6e-3, v_th=0.3, reset=reset), seed=0)
    x = torch.randn(5, 20, generator=torch.Generator().manual_seed(0)) * 2
    counts = _check_model(model, x)
    assert counts["body.1"]["synops"] > 0 and counts["stem.1"]["macs"] == 5 * 32 * 20


def test_pruned_synapses_are_not_events():
    """After pruning the runtime sends no event along a zero weight: its SynOps equal
    OpCounter's (which skips zero synapses too) and fall below the dense model's."""
    from snn5.compress import MagnitudePrune, prune_, remove_pruning_
    model = _mlp(LIF(4e-3, v_th=0.5), LIF(6e-3, v_th=0.3), seed=0)
    x = torch.randn(5, 20, generator=torch.Generator().manual_seed(0)) * 2
    dense = _check_model(model, x)
    prune_(model, MagnitudePrune(sparsity=0.5), lambda m, name: name in ("body.1", "body.3"))
    remove_pruning_(model, restore=False)                   # zeros baked into the weight
    pruned = _check_model(model, x)
    assert all(pruned[n]["synops"] < dense[n]["synops"] for n in ("body.1", "body.3"))


@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_exported_if_mlp_matches_snn5(reset):
    model = _mlp(IF(v_th=1.0, reset=reset), IF(v_th=0.5, reset=reset), seed=1)
    x = torch.randn(4, 20, generator=torch.Generator().manual_seed(1))
    _check_model(model, x)


def test_exported_conv_snn_with_avg_pool_matches_snn5():
    """conv_snn (pool: avg, BatchNorm folded by the exporter): the conv and linear after an
    average pool see pooled spikes (OpCounter: MACs); the runtime routes each spike through the
    pool and counts its accumulates, the SynOps of the same layer fed the spike counts."""
    cfg = parse_model_config({"name": "conv_snn", "channels": [4, 6], "pool": "avg",
                              "fc_hidden": [12], "timesteps": 6,
                              "neuron": {"kind": "lif", "tau_mem": 5e-3, "v_th": 0.2}})
    torch.manual_seed(2)
    model = build_model(cfg, (1, 8, 8), 3).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):                 # statistics to fold
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.fill_(3.0)
        model.body[7].weight.mul_(4)                          # drive the hidden layer
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(2)) * 6
    pooled: dict[str, list[Tensor]] = {}
    handles = [model.body[i].register_forward_pre_hook(
        lambda m, args, key=f"body.{i}": pooled.setdefault(key, []).append(args[0]))
        for i in (2, 7)]
    seen, more = _neuron_outputs(model)
    counter = OpCounter(model)
    with torch.no_grad(), counter:
        _, scores = model(x, per_step=True)
    for h in handles + more:
        h.remove()
    res = EventRuntime(export_nir(model)).run(x)
    for name, (z,) in seen.items():
        assert z.sum() > 0, name
        assert torch.equal(res.spikes[name], z), name
    torch.testing.assert_close(res.outputs["output"], scores, atol=ATOL, rtol=0)
    _check_counts(res.counts, counter, skip=("body.2", "body.7"))  # OpCounter: MACs there
    conv = model.body[2].module
    counts_conv = conv_synops(conv, pooled["body.2"][0].flatten(0, 1) * 4)   # spike counts
    assert res.counts["body.2"]["synops"] == counts_conv > 0
    assert res.counts["body.7"]["synops"] == int(pooled["body.7"][0].sum() * 4) * 12


def test_graph_read_back_from_a_file_runs_the_same(tmp_path):
    model = _mlp(LIF(4e-3, v_th=0.5), LIF(6e-3, v_th=0.3), seed=3)
    x = torch.randn(2, 20, generator=torch.Generator().manual_seed(3)) * 2
    nir.write(tmp_path / "mlp.nir", export_nir(model))
    direct = EventRuntime(export_nir(model)).run(x)
    read = EventRuntime(nir.read(tmp_path / "mlp.nir")).run(x)     # dt, T, reset from metadata
    assert read.steps == model.timesteps
    assert torch.equal(read.outputs["output"], direct.outputs["output"])
    assert read.counts == direct.counts


# ----------------------------------------------------------------------------- errors

def _chain(*nodes: nir.NIRNode) -> nir.NIRGraph:
    return nir.NIRGraph.from_list(*nodes, type_check=False)


def test_unsupported_node_names_the_supported_ones():
    graph = _chain(nir.Linear(weight=np.ones((2, 2), np.float32)),
                   nir.Threshold(threshold=np.ones(2)))
    with pytest.raises(ValueError, match="Threshold.*supported: Input, Output, Linear"):
        EventRuntime(graph, dt=DT)


def test_cycle_is_refused_with_the_fix():
    graph = _chain(nir.Linear(weight=np.ones((2, 2), np.float32)), _lif((2,)))
    graph.edges.append(("lif", "linear"))
    with pytest.raises(ValueError, match="cycle through.*unroll"):
        EventRuntime(graph, dt=DT)


def test_missing_dt_and_bad_input_shape_are_named():
    graph = _chain(nir.Linear(weight=np.ones((2, 3), np.float32)), _lif((2,)))
    with pytest.raises(ValueError, match="dt must be a positive step.*dt=1e-3"):
        EventRuntime(graph)
    with pytest.raises(ValueError, match=r"expected input \[T, B, 3\]"):
        EventRuntime(graph, dt=DT).run(torch.zeros(4, 2, 5))


def test_adaptive_neuron_metadata_is_refused():
    node = _lif((2,))
    node.metadata = {"snn5": {"kind": "alif", "nir_semantics": "subtract reset, "
                                                              "adaptive threshold"}}
    with pytest.raises(ValueError, match="'alif' neuron whose adaptive threshold"):
        EventRuntime(_chain(nir.Linear(weight=np.ones((2, 2), np.float32)), node), dt=DT)
