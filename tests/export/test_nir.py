"""NIR export/import: round trips give identical spikes and logits, parameters follow the
documented exact discretisation, and what NIR cannot express is a named error or metadata."""

import math
from pathlib import Path

import nir
import numpy as np
import pytest
import torch
import yaml
from torch import nn

from snn5.cli.main import main
from snn5.config import load_config
from snn5.export import META_KEY, NIRExportError, export_nir, import_nir
from snn5.models import SpikingClassifier, build_model
from snn5.models.convnet import ConvSNNConfig
from snn5.models.mlp import SpikingMLPConfig
from snn5.models.spikformer import SpikformerConfig
from snn5.nn import LIF, MembraneReadout, Sequential, SpikeRecorder
from snn5.nn.layers import TimeDistributed

SHAPE = (1, 8, 8)
GAIN = 8.0
CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _perturb_batch_norm(model: nn.Module) -> None:
    """Running statistics and affine parameters far from their init, so folding matters; and
    weights 4x their init, so that every layer fires."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            with torch.no_grad():
                m.weight.mul_(GAIN)
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            with torch.no_grad():
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.rand(n, generator=g) - 0.2)


def _round_trip(model: SpikingClassifier, tmp_path) -> SpikingClassifier:
    path = tmp_path / "model.nir"
    nir.write(path, export_nir(model.eval()))
    return import_nir(path)


def _run(model: SpikingClassifier, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict]:
    torch.manual_seed(3)                                   # same spikes for random encoders
    with torch.inference_mode(), SpikeRecorder(model) as rec:
        logits, scores = model(x, per_step=True)
    return logits, scores, rec.spikes


CASES = {
    "mlp_lif_subtract_batchnorm": SpikingMLPConfig(
        hidden=(32, 16), timesteps=6, batch_norm=True,
        neuron={"kind": "lif", "tau_mem": 5e-3, "reset": "subtract"}),
    "conv_avgpool_bn_zero_reset": ConvSNNConfig(
        channels=(4, 8), pool="avg", fc_hidden=(16,), timesteps=4, dropout=0.2,
        neuron={"kind": "lif", "tau_mem": 4e-3, "reset": "zero", "v_th": 0.5}),
    "conv_pool_before_neuron_if_spike_count": ConvSNNConfig(
        channels=(4,), pool="avg", pool_before_neuron=True, fc_hidden=(12,), timesteps=4,
        readout="spike_count", neuron={"kind": "if", "v_th": 0.7}),
    "mlp_plif_learned_threshold_max_membrane": SpikingMLPConfig(
        hidden=(24,), timesteps=5, readout="max_membrane", readout_tau_mem=8e-3,
        neuron={"kind": "plif", "tau_mem": 3e-3, "learn_v_th": True,
                "surrogate": {"name": "atan", "alpha": 3.0, "learnable": True}}),
    "mlp_alif_poisson": SpikingMLPConfig(
        hidden=(20,), timesteps=6, encoding="poisson",
        neuron={"kind": "alif", "tau_mem": 5e-3, "tau_adapt": 30e-3}),
    "mlp_int_lif_latency": SpikingMLPConfig(
        hidden=(20,), timesteps=5, encoding="latency", neuron={"kind": "int_lif"}),
    "mlp_if_ttfs_first_spike": SpikingMLPConfig(
        hidden=(20,), timesteps=6, encoding="latency", readout="first_spike",
        neuron={"kind": "if", "v_th": 0.5}),
}


@pytest.mark.parametrize("name", list(CASES))
def test_round_trip_gives_identical_spikes_and_logits(name, tmp_path):
    torch.manual_seed(0)
    model = build_model(CASES[name], SHAPE, 10)
    _perturb_batch_norm(model)
    x = torch.rand(6, *SHAPE)
    back = _round_trip(model, tmp_path)
    assert isinstance(back, SpikingClassifier)
    logits, scores, spikes = _run(model.eval(), x)
    logits2, scores2, spikes2 = _run(back, x)
    assert list(spikes2) == list(spikes) and spikes     # same spiking layers, same names
    for layer, z in spikes.items():
        assert z.sum() > 0, f"{layer} never fires: the test would not see a difference"
        assert torch.equal(spikes2[layer], z), layer
    assert torch.equal(scores2, scores) and torch.equal(logits2, logits)
    assert back.state_dict().keys() == model.state_dict().keys()


@pytest.mark.parametrize("weights", ["int4", "ternary"])
def test_quantized_model_round_trips_with_its_codes_and_membrane_grid(weights, tmp_path):
    from snn5.compress import MembraneQuant, TernaryQuant, WeightQuant, quantize_
    from snn5.nn.quant import MembraneGrid
    torch.manual_seed(0)
    model = build_model(CASES["conv_avgpool_bn_zero_reset"], SHAPE, 10)
    _perturb_batch_norm(model)
    quantize_(model, WeightQuant(bits=4) if weights == "int4" else TernaryQuant())
    quantize_(model, MembraneQuant(bits=4))
    graph = export_nir(model.eval())
    conv = graph.nodes["stem.0"]                                   # conv + folded BatchNorm
    q = conv.metadata[META_KEY]["quantization"]
    assert q["scheme"] == ("WeightQuant" if weights == "int4" else "TernaryQuant")
    assert q["codes"].dtype == np.int8 and np.abs(q["codes"]).max() <= (7 if weights == "int4"
                                                                        else 1)
    shape = (-1,) + (1,) * (q["codes"].ndim - 1)
    np.testing.assert_allclose(q["codes"] * q["folded_scale"].reshape(shape), conv.weight,
                               rtol=1e-6, atol=1e-7)               # node weight = codes x scale
    lif = [n for n in graph.nodes.values() if isinstance(n, nir.LIF)][0]
    assert lif.metadata[META_KEY]["membrane_grid"] == {"bits": 4, "v_range": 1.0}
    assert "quantized membrane" in lif.metadata[META_KEY]["nir_semantics"]
    path = tmp_path / "q.nir"
    nir.write(path, graph)
    back = import_nir(path)
    grids = [m.state_quantizer for m in back.modules() if hasattr(m, "state_quantizer")
             and m.state_quantizer is not None]
    assert grids and all(g == MembraneGrid(4, 1.0) for g in grids)
    x = torch.rand(6, *SHAPE)
    logits, _, spikes = _run(model, x)
    logits2, _, spikes2 = _run(back, x)
    for layer, z in spikes.items():
        assert z.sum() > 0, layer
        assert torch.equal(spikes2[layer], z), layer
    assert torch.equal(logits2, logits)
    for m in back.modules():                                       # the grid matters: without
        if getattr(m, "state_quantizer", None) is not None:         # it the spikes change
            m.state_quantizer = None
    assert not torch.equal(_run(back, x)[0], logits)


def test_round_trip_catches_a_changed_weight(tmp_path):
    """The comparison above can fail: a perturbed import gives other spikes."""
    torch.manual_seed(0)
    model = build_model(CASES["mlp_lif_subtract_batchnorm"], SHAPE, 10)
    _perturb_batch_norm(model)
    back = _round_trip(model, tmp_path)
    with torch.no_grad():
        back.stem[1].weight.mul_(1.5)
    x = torch.rand(6, *SHAPE)
    assert not torch.equal(_run(back, x)[0], _run(model.eval(), x)[0])


def test_parameters_follow_the_exact_discretisation():
    """Simulating the graph from its NIR parameters alone, with the documented zero-order-hold
    update (float64 beta rounded to float32), reproduces snn5 bit for bit (zero reset)."""
    torch.manual_seed(0)
    cfg = SpikingMLPConfig(hidden=(16,), timesteps=8,
                           neuron={"kind": "lif", "tau_mem": 3e-3, "reset": "zero", "v_th": 0.8})
    model = build_model(cfg, SHAPE, 5).eval()
    for m in model.modules():                              # dense products on both sides
        if isinstance(m, nn.Linear):
            m.max_rate = 0.0
    graph = export_nir(model)
    x = torch.rand(3, *SHAPE) * 3
    _, scores, _ = _run(model, x)
    dt = graph.metadata[META_KEY]["dt"]
    h = x.flatten(1)                                       # [B, 64]
    v = {name: None for name in graph.nodes}
    trace = []
    for _ in range(cfg.timesteps):
        y = h
        for name, node in graph.nodes.items():
            if isinstance(node, (nir.Affine, nir.Linear)):
                w = torch.from_numpy(node.weight)
                y = y @ w.T + (torch.from_numpy(node.bias) if isinstance(node, nir.Affine) else 0)
            elif isinstance(node, (nir.LIF, nir.LI)):
                tau = node.tau if isinstance(node, nir.LI) else node.tau
                assert np.all(node.r == 1) and np.all(node.v_leak == 0)
                beta = math.exp(-dt / float(np.unique(tau)[0]))
                state = torch.zeros_like(y) if v[name] is None else v[name]
                state = beta * state + (1.0 - beta) * y
                if isinstance(node, nir.LIF):
                    z = (state >= torch.from_numpy(node.v_threshold).float()).float()
                    state = torch.where(z > 0, torch.from_numpy(node.v_reset).float(), state)
                    y = z
                else:
                    y = state
                v[name] = state
        trace.append(y)
    assert torch.equal(torch.stack(trace), scores)
    lif = next(n for n in graph.nodes.values() if isinstance(n, nir.LIF))
    assert np.all(lif.tau == 3e-3) and np.all(lif.v_threshold == 0.8)
    assert lif.tau.dtype == np.float64                     # the exact float64 tau


def test_batch_norm_is_folded_into_the_nir_weights():
    torch.manual_seed(0)
    model = build_model(CASES["conv_avgpool_bn_zero_reset"], SHAPE, 10).eval()
    _perturb_batch_norm(model)
    graph = export_nir(model)
    conv = graph.nodes["stem.0"]
    assert isinstance(conv, nir.Conv2d) and tuple(conv.input_shape) == (8, 8)
    folded = nn.Conv2d(1, 4, 3, padding=1)
    with torch.no_grad():
        folded.weight.copy_(torch.from_numpy(conv.weight))
        folded.bias.copy_(torch.from_numpy(conv.bias))
    x = torch.rand(5, *SHAPE)
    with torch.no_grad():
        reference = model.stem[1].module(model.stem[0].module(x))
        assert torch.allclose(folded(x), reference, atol=1e-5)
        assert not torch.allclose(model.stem[0].module(x), reference, atol=1e-2)
    assert isinstance(graph.nodes["body.1"], nir.AvgPool2d)


def test_metadata_records_what_nir_cannot_express():
    torch.manual_seed(0)
    graph = export_nir(build_model(CASES["mlp_alif_poisson"], SHAPE, 10))
    g = graph.metadata[META_KEY]
    assert (g["dt"], g["timesteps"], g["encoding"], g["readout"]) == (
        1e-3, 6, "poisson", "mean_membrane")
    assert g["spike_condition"] == "v >= v_threshold"
    alif = graph.nodes["body.0"]
    assert isinstance(alif, nir.LIF) and np.all(alif.v_reset == 0)
    meta = alif.metadata[META_KEY]
    assert meta["kind"] == "alif" and meta["options"]["tau_adapt"] == 30e-3
    assert meta["options"]["reset"] == "subtract" and meta["options"]["surrogate"]["name"]
    assert meta["nir_semantics"] == "subtract reset, adaptive threshold"
    assert isinstance(graph.nodes["readout"], nir.LI)
    assert graph.nodes["readout"].metadata[META_KEY]["readout"] == "mean_membrane"


def test_max_pooling_is_a_named_error_with_the_fix():
    cfg = load_config(CONFIGS / "mnist_conv.yaml")
    model = build_model(cfg.model, (1, 28, 28), 10)
    with pytest.raises(NIRExportError, match=r"MaxPool2d.*model\.pool: avg.*Supported: IF"):
        export_nir(model)
    avg = cfg.model.model_copy(update={"pool": "avg"})
    graph = export_nir(build_model(avg, (1, 28, 28), 10))
    assert sum(isinstance(n, nir.AvgPool2d) for n in graph.nodes.values()) == len(avg.channels)


@pytest.mark.parametrize("cfg, match", [
    (SpikformerConfig(), r"cannot export layer .*Supported: IF"),
    (SpikingMLPConfig(neuron={"kind": "glif"}), r"'body.0' \(GLIF\).*Supported: IF, LIF"),
])
def test_unsupported_layers_are_named(cfg, match):
    with pytest.raises(NIRExportError, match=match):
        export_nir(build_model(cfg, SHAPE, 10))


def _foreign_graph(r: float = 2.0, v_leak: float = 0.1, neuron: str = "lif") -> nir.NIRGraph:
    g = np.random.default_rng(0)
    w1, b1 = g.normal(size=(6, 4)).astype(np.float32), g.normal(size=6).astype(np.float32)
    w2 = g.normal(size=(3, 6)).astype(np.float32)
    if neuron == "lif":
        hidden = nir.LIF(tau=np.full(6, 4e-3), r=np.full(6, r), v_leak=np.full(6, v_leak),
                         v_threshold=np.full(6, 0.5))
    else:
        hidden = nir.CubaLIF(tau_syn=np.full(6, 2e-3), tau_mem=np.full(6, 4e-3), r=np.ones(6),
                             v_leak=np.zeros(6), v_threshold=np.ones(6))
    nodes = {"in": nir.Input(input_type={"input": np.array([4])}),
             "fc1": nir.Affine(weight=w1, bias=b1), "lif": hidden,
             "fc2": nir.Linear(weight=w2),
             "li": nir.LI(tau=np.full(3, 5e-3), r=np.ones(3), v_leak=np.zeros(3)),
             "out": nir.Output(output_type={"output": np.array([3])})}
    names = list(nodes)
    return nir.NIRGraph(nodes=nodes, edges=list(zip(names[:-1], names[1:])))


def test_foreign_graph_imports_with_nir_semantics_and_says_so(tmp_path):
    graph = _foreign_graph()
    nir.write(tmp_path / "other.nir", graph)
    dt = 1e-3
    with pytest.warns(UserWarning, match=r"no 'snn5' metadata.*reset to zero"):
        net = import_nir(tmp_path / "other.nir", dt=dt)
    assert isinstance(net, Sequential) and isinstance(net[1], LIF)
    x = torch.rand(10, 2, 4) * 3                                # [T, B, 4]
    with torch.no_grad():
        out, _ = net(x)
    # NIR's LIF integrated exactly over dt with the input held: v_leak + r I as the drive
    n = graph.nodes
    beta, beta_li = math.exp(-dt / 4e-3), math.exp(-dt / 5e-3)
    v = torch.zeros(2, 6, dtype=torch.float64)
    u = torch.zeros(2, 3, dtype=torch.float64)
    ref = []
    for t in range(10):
        i = x[t].double() @ torch.from_numpy(n["fc1"].weight).double().T + torch.from_numpy(
            n["fc1"].bias).double()
        v = beta * v + (1 - beta) * (2.0 * i + 0.1)
        z = (v >= 0.5).double()
        v = v * (1 - z)
        u = beta_li * u + (1 - beta_li) * (z @ torch.from_numpy(n["fc2"].weight).double().T)
        ref.append(u)
    assert torch.allclose(out.double(), torch.stack(ref), atol=1e-5)
    assert torch.stack(ref).abs().sum() > 0


@pytest.mark.parametrize("graph, kwargs, match", [
    (_foreign_graph(), {}, r"pass import_nir\(graph, dt=\.\.\.\)"),
    (_foreign_graph(neuron="cubalif"), {"dt": 1e-3}, r"CubaLIF.*importable: Input"),
])
def test_foreign_graph_errors_name_the_fix(graph, kwargs, match):
    with pytest.raises(NIRExportError, match=match):
        import_nir(graph, **kwargs)


def test_branching_graph_is_refused():
    graph = _foreign_graph()
    graph.edges.append(("in", "fc2"))
    with pytest.raises(NIRExportError, match="feed-forward chains"):
        import_nir(graph, dt=1e-3)


def test_cli_exports_a_finished_run(tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({
        "data": {"name": "digits", "train_subset": 120},
        "model": {"name": "spiking_mlp", "hidden": [16], "timesteps": 3},
        "train": {"epochs": 1, "batch_size": 40}}))
    run = tmp_path / "run"
    assert main(["-q", "train", str(config), "--out", str(run)]) == 0
    capsys.readouterr()
    out = tmp_path / "model.nir"
    assert main(["-q", "export", str(run), "--to", "nir", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "T=3" in printed
    back = import_nir(out)
    from snn5.runs.run import build_run_models, load_weights
    from snn5.data import load_dataset
    cfg = load_config(run / "config.yaml")
    data = load_dataset(cfg.data)
    model, _ = build_run_models(cfg, data)
    load_weights(model, run / "checkpoints" / "best.safetensors")
    x = data.test.x[:20]
    assert torch.equal(_run(back, x)[0], _run(model.eval(), x)[0])
    assert main(["-q", "export", str(tmp_path), "--out", str(out)]) == 2
    assert "is not a run folder" in capsys.readouterr().err


def test_time_distributed_linear_keeps_its_wrapper(tmp_path):
    torch.manual_seed(0)
    model = build_model(SpikingMLPConfig(hidden=(8,), timesteps=2), SHAPE, 4)
    model.stem[1] = TimeDistributed(nn.Linear(64, 8))
    back = _round_trip(model, tmp_path)
    assert isinstance(back.stem[1], TimeDistributed)
    assert isinstance(back.readout, MembraneReadout)


def _hand_built(conv: nn.Module, norm: nn.Module, pool: nn.Module, features: int,
                input_shape: tuple[int, ...]) -> SpikingClassifier:
    layers = [TimeDistributed(conv), TimeDistributed(norm),
              LIF(tau_mem=3e-3, reset="zero", v_th=0.3), TimeDistributed(pool),
              TimeDistributed(nn.Flatten()), nn.Linear(features, 3)]
    return SpikingClassifier(layers, MembraneReadout(5e-3), timesteps=4, encoding="direct",
                             input_shape=input_shape)


@pytest.mark.parametrize("kind", ["conv1d", "sum_pool"])
def test_conv1d_and_sum_pooling_round_trip(kind, tmp_path):
    torch.manual_seed(0)
    if kind == "conv1d":
        model = _hand_built(nn.Conv1d(2, 4, 3, padding=1), nn.BatchNorm1d(4), nn.Identity(),
                            4 * 6, (2, 6))
        model.body[1] = TimeDistributed(nn.Flatten())       # no pooling over one axis
    else:
        model = _hand_built(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4),
                            nn.AvgPool2d(2, divisor_override=1), 4 * 4 * 4, SHAPE)
    _perturb_batch_norm(model)
    graph = export_nir(model.eval())
    node_type = nir.Conv1d if kind == "conv1d" else nir.SumPool2d
    assert any(isinstance(n, node_type) for n in graph.nodes.values())
    back = _round_trip(model, tmp_path)
    x = torch.rand(5, *model.input_shape)
    logits, _, spikes = _run(model, x)
    logits2, _, spikes2 = _run(back, x)
    assert spikes["body.0"].sum() > 0 and torch.equal(spikes2["body.0"], spikes["body.0"])
    assert torch.equal(logits2, logits)


def test_ceil_mode_pooling_is_refused():
    model = _hand_built(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4),
                        nn.AvgPool2d(3, ceil_mode=True), 4 * 3 * 3, SHAPE)
    with pytest.raises(NIRExportError, match="ceil_mode"):
        export_nir(model)
