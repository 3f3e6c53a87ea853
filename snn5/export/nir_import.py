"""Import a NIR graph as a snn5 model: the exact model back from snn5's own graphs, NIR's own
semantics for graphs written by other tools. The discretisation is the one documented in
:mod:`snn5.export.nir`."""

from __future__ import annotations

import os
import warnings
from typing import Any

import nir
import numpy as np
import torch
from torch import nn

from snn5.core.options import Reset
from snn5.export.nir import META_KEY, NIRExportError, plain
from snn5.models.classifier import SpikingClassifier
from snn5.models.spec import parse_surrogate
from snn5.nn.event import EventLinear
from snn5.nn.layers import Sequential, TimeDistributed
from snn5.nn.neurons import IF, LI, LIF, NEURONS
from snn5.nn.quant import MembraneGrid
from snn5.nn.readout import FirstSpike, MembraneReadout, SpikeCount

IMPORTABLE = ("Input", "Output", "Affine", "Linear", "Conv1d", "Conv2d", "AvgPool2d", "SumPool2d",
              "Flatten", "IF", "LIF", "LI")
WEIGHTED = (nir.Affine, nir.Linear, nir.Conv1d, nir.Conv2d)


def _load(graph_or_path: nir.NIRGraph | str | os.PathLike) -> nir.NIRGraph:
    if isinstance(graph_or_path, nir.NIRGraph):
        return graph_or_path
    if isinstance(graph_or_path, (str, os.PathLike)):
        if not os.path.isfile(graph_or_path):
            raise FileNotFoundError(f"no NIR file at {os.fspath(graph_or_path)}; pass the path "
                                    "written by nir.write or `snn5 export`")
        return nir.read(graph_or_path)
    raise TypeError(f"import_nir takes a nir.NIRGraph or the path of a .nir file, got "
                    f"{type(graph_or_path).__name__}")


def _chain(graph: nir.NIRGraph) -> list[str]:
    """Node names from the one Input to the Output along the edges (a feed-forward chain)."""
    succ: dict[str, list[str]] = {}
    pred: dict[str, int] = {}
    for a, b in graph.edges:
        succ.setdefault(a, []).append(b)
        pred[b] = pred.get(b, 0) + 1
    inputs = [k for k, n in graph.nodes.items() if isinstance(n, nir.Input)]
    fix = "import_nir reads feed-forward chains (Input -> ... -> Output) only"
    if len(inputs) != 1:
        raise NIRExportError(f"the graph has {len(inputs)} Input nodes; {fix}")
    order = [inputs[0]]
    while succ.get(order[-1]):
        nxt = succ[order[-1]]
        if len(nxt) != 1 or pred.get(nxt[0], 0) != 1 or nxt[0] in order:
            raise NIRExportError(f"node '{order[-1]}' branches, merges or loops back (edges to "
                                 f"{nxt}); {fix}")
        order.append(nxt[0])
    if len(order) != len(graph.nodes) or not isinstance(graph.nodes[order[-1]], nir.Output):
        raise NIRExportError(f"the edges from '{inputs[0]}' reach {len(order)} of the "
                             f"{len(graph.nodes)} nodes and end at '{order[-1]}'; {fix}")
    return order


def _tensor(a: Any) -> torch.Tensor:
    return torch.from_numpy(np.array(a, dtype=np.float32))


def _weight_module(node: nir.NIRNode, meta: dict[str, Any]) -> nn.Module:
    """Linear/EventLinear/Conv from a node; with snn5 metadata the unfolded weights."""
    folded = "batch_norm" in meta
    weight = np.asarray(meta["weight"] if folded else node.weight)
    has_bias = meta.get("has_bias", True)
    bias = (meta.get("bias") if folded else getattr(node, "bias", None)) if has_bias else None
    if isinstance(node, (nir.Affine, nir.Linear)):
        out_f, in_f = weight.shape[-2:]
        if meta.get("module") == "EventLinear":
            layer: nn.Module = EventLinear(in_f, out_f, bias=has_bias, max_rate=meta["max_rate"])
        else:
            layer = nn.Linear(in_f, out_f, bias=has_bias)
    else:
        conv = nn.Conv1d if isinstance(node, nir.Conv1d) else nn.Conv2d
        layer = conv(weight.shape[1] * node.groups, weight.shape[0], tuple(weight.shape[2:]),
                     stride=_ints(node.stride), padding=_ints(node.padding),
                     dilation=_ints(node.dilation), groups=node.groups, bias=has_bias)
    with torch.no_grad():
        layer.weight.copy_(_tensor(weight))
        if has_bias:
            layer.bias.copy_(_tensor(bias if bias is not None else np.zeros(weight.shape[0])))
    return layer


def _ints(v: Any) -> Any:
    """NIR stride/padding/dilation (numpy ints, arrays, or 'same'/'valid') as torch takes it."""
    if isinstance(v, (str, bytes)):
        return plain(v)
    arr = np.atleast_1d(np.asarray(v)).astype(int)
    return tuple(int(i) for i in arr) if arr.size > 1 else int(arr[0])


def _batch_norm(meta: dict[str, Any]) -> nn.Module:
    cls = {"BatchNorm1d": nn.BatchNorm1d, "BatchNorm2d": nn.BatchNorm2d}[meta["module"]]
    bn = cls(np.asarray(meta["state"]["running_mean"]).size, eps=meta["eps"],
             momentum=meta.get("momentum"), affine=meta["affine"])
    bn.load_state_dict({k: torch.as_tensor(v) for k, v in meta["state"].items()})
    return bn


def _structural(node: nir.NIRNode) -> nn.Module | None:
    """Pooling and Flatten modules (None for other nodes)."""
    if isinstance(node, (nir.AvgPool2d, nir.SumPool2d)):
        return nn.AvgPool2d(_ints(node.kernel_size), _ints(node.stride), _ints(node.padding),
                            divisor_override=1 if isinstance(node, nir.SumPool2d) else None)
    if isinstance(node, nir.Flatten):              # NIR's dims leave the batch out
        start, end = int(node.start_dim), int(node.end_dim)
        return nn.Flatten(start + 1 if start >= 0 else start, end + 1 if end >= 0 else end)
    return None


def _snn5_neuron(meta: dict[str, Any]) -> nn.Module:
    options = dict(meta["options"])
    options["surrogate"] = parse_surrogate(options["surrogate"])
    if "shape" in options:
        options["shape"] = tuple(int(i) for i in np.atleast_1d(options["shape"]))
    neuron = NEURONS.get(meta["kind"])(**options)
    neuron.load_state_dict({k: torch.as_tensor(v) for k, v in meta.get("parameters", {}).items()})
    if "membrane_grid" in meta:                      # quantized membrane (stateful QAT)
        grid = meta["membrane_grid"]
        neuron.state_quantizer = MembraneGrid(int(grid["bits"]), float(grid["v_range"]))
    return neuron


def _node_meta(node: nir.NIRNode) -> dict[str, Any]:
    return plain(node.metadata.get(META_KEY, {}))


def _from_snn5(graph: nir.NIRGraph, order: list[str]) -> SpikingClassifier:
    """The exact model behind a graph written by :func:`snn5.export.export_nir`."""
    g = plain(graph.metadata[META_KEY])
    layers: list[nn.Module] = []
    readout: nn.Module = SpikeCount()
    for name in order[1:]:
        node, meta = graph.nodes[name], _node_meta(graph.nodes[name])
        layers += [nn.Dropout(float(p)) for p in np.atleast_1d(meta.get("dropout_before", []))]
        if isinstance(node, nir.Output):
            break
        if isinstance(node, nir.LI) and "readout" in meta:
            tau = np.unique(node.tau)
            readout = MembraneReadout(float(tau[0]), dt=g["dt"],
                                      reduce="mean" if meta["readout"] == "mean_membrane"
                                      else "max")
            continue
        if isinstance(node, WEIGHTED):
            module: nn.Module | None = _weight_module(node, meta)
        elif isinstance(node, (nir.IF, nir.LIF)):
            module = _snn5_neuron(meta)
        else:
            module = _structural(node)
        if module is None:
            raise NIRExportError(f"node '{name}' ({type(node).__name__}) carries snn5 metadata "
                                 f"but no snn5 layer; importable: {', '.join(IMPORTABLE)}")
        layers.append(TimeDistributed(module) if meta.get("time_distributed") else module)
        if "batch_norm" in meta:
            layers.append(TimeDistributed(_batch_norm(meta["batch_norm"])))
    if g.get("readout") == "first_spike":          # output spikes reduced by their first time
        readout = FirstSpike()
    options = g.get("encoder_options", {})
    model = SpikingClassifier(layers, readout, timesteps=int(g["timesteps"]),
                              encoding=g["encoding"], encoder_options=options,
                              input_shape=tuple(int(i) for i in np.atleast_1d(g["input_shape"])))
    return model.eval()


def _uniform(name: str, field: str, values: np.ndarray) -> float:
    u = np.unique(values)
    if u.size != 1:
        raise NIRExportError(f"node '{name}' has {u.size} different {field} values; snn5's "
                             f"neurons hold one {field} per layer. Give the layer one value.")
    return float(u[0])


def _fold_input_scale(name: str, layers: list[nn.Module], r: np.ndarray, v_leak: np.ndarray
                      ) -> None:
    """``tau dv/dt = (v_leak - v) + r I`` equals snn5's ``r = 1, v_leak = 0`` neuron driven by
    ``r I + v_leak``: fold ``r`` and ``v_leak`` into the preceding weight layer."""
    if np.all(r == 1) and np.all(v_leak == 0):
        return
    prev = layers[-1].module if layers and isinstance(layers[-1], TimeDistributed) else (
        layers[-1] if layers else None)
    if not isinstance(prev, (nn.Linear, nn.Conv1d, nn.Conv2d)):
        raise NIRExportError(f"node '{name}' has r != 1 or v_leak != 0 and no weight layer right "
                             "before it to fold them into; insert an Affine node before it")
    n_out = prev.weight.shape[0]
    per_channel = []
    for field, a in (("r", r), ("v_leak", v_leak)):
        a = np.asarray(a, dtype=np.float64).reshape(n_out, -1)           # [C_out, positions]
        if not np.all(a == a[:, :1]):
            raise NIRExportError(f"node '{name}': {field} varies within a channel; only one "
                                 "value per output channel folds into the weights before it")
        per_channel.append(torch.from_numpy(a[:, 0]))
    scale, shift = per_channel
    with torch.no_grad():
        shape = (-1, *([1] * (prev.weight.ndim - 1)))
        prev.weight.copy_((prev.weight.double() * scale.reshape(shape)).float())
        prev.bias.copy_((prev.bias.double() * scale + shift).float())


def _from_nir(graph: nir.NIRGraph, order: list[str], dt: float | None) -> Sequential:
    """A graph of another tool, with NIR's semantics: exact integration, zero reset."""
    nodes = [(name, graph.nodes[name]) for name in order[1:-1]]
    if dt is None and any(isinstance(n, (nir.LIF, nir.LI)) for _, n in nodes):
        raise NIRExportError("this graph has no snn5 metadata and its LIF/LI time constants "
                             "need a step: pass import_nir(graph, dt=...) in seconds (the step "
                             "the graph was made for, e.g. 1e-3)")
    step = 1e-3 if dt is None else dt
    layers: list[nn.Module] = []
    for name, node in nodes:
        if isinstance(node, (nir.IF, nir.LIF)) and np.any(node.v_reset != 0):
            raise NIRExportError(f"node '{name}' resets to v_reset != 0; snn5 resets to 0. "
                                 "Shift v_threshold and v_leak by -v_reset in the graph")
        if isinstance(node, WEIGHTED):
            layer = _weight_module(node, {"has_bias": True})
            layers.append(layer if isinstance(layer, nn.Linear) else TimeDistributed(layer))
        elif isinstance(node, nir.IF):
            _fold_input_scale(name, layers, node.r, np.zeros_like(node.r))
            layers.append(IF(v_th=_uniform(name, "v_threshold", node.v_threshold),
                             reset=Reset.ZERO, dt=step))
        elif isinstance(node, nir.LIF):
            _fold_input_scale(name, layers, node.r, node.v_leak)
            layers.append(LIF(_uniform(name, "tau", node.tau), dt=step, reset=Reset.ZERO,
                              v_th=_uniform(name, "v_threshold", node.v_threshold)))
        elif isinstance(node, nir.LI):
            _fold_input_scale(name, layers, node.r, node.v_leak)
            layers.append(LI(_uniform(name, "tau", node.tau), dt=step))
        elif (module := _structural(node)) is not None:
            layers.append(TimeDistributed(module))
        else:
            raise NIRExportError(f"node '{name}' is a {type(node).__name__}, which import_nir "
                                 f"cannot build; importable: {', '.join(IMPORTABLE)}")
    warnings.warn(f"the NIR graph has no '{META_KEY}' metadata (another tool wrote it): imported "
                  f"with NIR's semantics at dt={step:g} s (exact exponential integration with "
                  "the input held over each step, reset to zero, r and v_leak folded into the "
                  "weights before); snn5 fires at v >= v_threshold where NIR says v > "
                  "v_threshold", UserWarning, stacklevel=3)
    return Sequential(*layers).eval()


def import_nir(graph_or_path: nir.NIRGraph | str | os.PathLike, *, dt: float | None = None
               ) -> SpikingClassifier | Sequential:
    """A NIR graph (or ``.nir`` file) as a snn5 model in eval mode.

    A graph written by :func:`snn5.export.export_nir` carries ``"snn5"`` metadata; it comes
    back as the same :class:`~snn5.models.SpikingClassifier` (encoder, BatchNorm unfolded,
    reset mode, surrogate, learned parameters, readout), which gives identical spikes and
    logits. A graph written by another tool comes back as a :class:`snn5.nn.Sequential` of
    ``[T, B, ...]`` layers with NIR's semantics (see :mod:`snn5.export.nir`: ``tau dv/dt =
    (v_leak - v) + r I`` integrated exactly over ``dt`` with the input held, reset to zero);
    a ``UserWarning`` says so.

    Args:
        graph_or_path: a ``nir.NIRGraph`` or the path of a file written by ``nir.write``.
        dt: step in seconds for graphs without snn5 metadata (needed when they have LIF or LI
            nodes); snn5 graphs carry their own.

    Returns:
        ``SpikingClassifier`` (``x [B, *input_shape] -> logits [B, C]``) for snn5 graphs,
        ``Sequential`` (``x [T, B, *F] -> (out [T, B, *F'], state)``) for the others.

    Raises:
        NIRExportError: a node snn5 cannot build (CubaLIF, recurrent or branching graphs, ...),
            with the importable types.
    """
    graph = _load(graph_or_path)
    order = _chain(graph)
    if META_KEY in (graph.metadata or {}):
        if dt is not None and dt != plain(graph.metadata[META_KEY])["dt"]:
            raise NIRExportError(f"dt={dt} differs from the graph's own step "
                                 f"{plain(graph.metadata[META_KEY])['dt']}; snn5 graphs are "
                                 "exact for their step: leave dt out")
        return _from_snn5(graph, order)
    return _from_nir(graph, order, dt)
