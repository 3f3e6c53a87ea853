"""Export a trained :class:`~snn5.models.SpikingClassifier` to NIR (Pedersen et al., "Neuromorphic
intermediate representation: a unified instruction set for interoperable brain-inspired
computing", Nature Communications 2024), with the exact discretisation of snn5 at the run's dt.

Discretisation (what a simulator of the exported graph must do at step ``dt``)
------------------------------------------------------------------------------
Every spiking layer of snn5 integrates exactly over a step with the input held constant
(zero-order hold). NIR's LIF is ``tau dv/dt = (v_leak - v) + r I``; its exact solution over one
step of constant input ``I = x[t]`` is::

    v[t] = v_leak + (v[t-1] - v_leak) exp(-dt/tau) + (1 - exp(-dt/tau)) r x[t]

With ``tau = tau_mem``, ``r = 1``, ``v_leak = 0`` this is snn5's update
``v[t] = beta v[t-1] + (1 - beta) x[t]``, ``beta = exp(-dt/tau_mem)``, term for term. To be
bit-for-bit in float32, compute ``beta = math.exp(-dt / tau)`` in float64 from the float64
``tau`` stored in the graph, round ``beta`` and ``1 - beta`` (both computed in float64) to
float32, and evaluate ``beta * v + (1 - beta) * x`` in float32, as :func:`snn5.core.lif_step`.

=====================  ===========================================================  ==========
snn5 layer             NIR node and parameters                                      exact
=====================  ===========================================================  ==========
``LIF``                ``LIF(tau=tau_mem, r=1, v_leak=0, v_threshold=v_th,          yes
                       v_reset=0)``
``PLIF``               ``LIF`` with ``tau = dt / sigmoid(tau_raw)`` (per neuron)    [1]
``ALIF``               ``LIF`` with the baseline threshold ``v_th``                 no [2]
``IntLIF``             ``LIF`` (binary spike at ``v >= v_th``)                      no [2]
``IF``                 ``IF(r=1, v_threshold=v_th, v_reset=0)``: ``v += r x[t]``    yes
                       once per step (x is the charge per step, as Norse's NIR
                       import reads an IF: its IAF cell adds the input per step)
``MembraneReadout``    ``LI(tau=tau_mem, r=1, v_leak=0)``, then ``Output``          yes
``nn.Linear``          ``Affine(weight, bias)``; ``Linear(weight)`` without bias    yes
``nn.Conv1d/2d``       ``Conv1d/Conv2d`` (bias zeros when the layer has none)       yes
``Conv/Linear + BN``   the eval-mode BatchNorm folded into the weight layer:       [3]
                       ``s = gamma / sqrt(var + eps)``, ``W' = s W``,
                       ``b' = s (b - mean) + beta`` (float64, then float32)
``nn.AvgPool2d``       ``AvgPool2d``; with ``divisor_override=1``: ``SumPool2d``    yes
``nn.Flatten``         ``Flatten`` with NIR's batch-free dims (torch dim - 1)       yes
``nn.Dropout``         nothing (identity at inference)                              yes
=====================  ===========================================================  ==========

``exact``: NIR's own semantics reproduce snn5, except two points every row shares: snn5 fires at
``v >= v_th`` where NIR writes ``v > v_threshold`` (they differ only when ``v`` hits the
threshold exactly), and a ``SUBTRACT`` reset (``v <- v - v_th``, snn5's default) or no reset,
which NIR cannot express (its nodes reset to ``v_reset``). [1] PLIF's ``beta`` is
``exp(-sigmoid(tau_raw))`` in float32, equal to the graph's ``tau`` up to rounding. [2] NIR has
no adaptive threshold or integer spike: the node alone drops them. [3] mathematically exact;
the folded product rounds differently in float32 from convolution then BatchNorm.

Metadata extension
------------------
What NIR cannot express is written into the ``metadata`` dicts under the key ``"snn5"``
(:data:`META_KEY`), never dropped; :func:`snn5.export.import_nir` reads it back to rebuild the
same model. Graph: ``format``, ``snn5_version``, ``dt``, ``timesteps``, ``encoding``,
``encoder_options``, ``input_shape``, ``readout`` (``spike_count``, ``first_spike`` (score =
minus the step of the output neuron's first spike), ``mean_membrane`` or
``max_membrane``: the reduction over time), ``spike_condition`` (``"v >= v_threshold"``).
Neuron nodes: ``kind`` (the ``snn5.nn.NEURONS`` name), ``options`` (constructor arguments: dt,
v_th, reset, surrogate, detach_reset, tau_adapt, max_spike, ...), ``parameters`` (learned
tensors: ``tau_raw``, ``v_th_log``, ``surrogate_log_width``) and ``nir_semantics`` (``"exact"``
or what NIR alone misses, e.g. ``"subtract reset"``). Weight nodes: ``module``
(``Linear``/``EventLinear``/``Conv2d``...), ``time_distributed``, ``max_rate``, and for a folded
BatchNorm the unfolded ``weight``/``bias`` and the BatchNorm's parameters and buffers. Any node:
``dropout_before`` (the dropout probabilities of identity layers removed in front of it).

Quantization (``snn5.compress.quantize_``): the NIR weights are the quantized values themselves
(``codes * scale``), so any NIR simulator runs the quantized network. A weight node of a
quantized layer adds ``quantization``: ``scheme`` (``WeightQuant``/``TernaryQuant``),
``config`` (bits, per_channel, ...), ``codes`` (int8, the weight's shape) and ``scale`` (one
per output channel, or one per layer); with a BatchNorm folded in, ``folded_scale`` (per output
channel) gives the node's weight as ``codes * folded_scale`` (the exact product, before float32
rounding). A neuron with a quantized membrane adds ``membrane_grid`` (``bits``, ``v_range``;
see :class:`snn5.nn.quant.MembraneGrid`) and ``"quantized membrane"`` in ``nir_semantics``;
:func:`snn5.export.import_nir` puts the grid back on the neuron. The imported weights are plain
float weights equal to the quantized values (apply ``quantize_`` again to go on training).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import nir
import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from snn5._version import __version__
from snn5.models.classifier import SpikingClassifier
from snn5.nn.encoders import Encoding
from snn5.nn.event import EventLinear
from snn5.nn.layers import Sequential, TimeDistributed
from snn5.nn.neurons import ALIF, IF, LIF, PLIF, NeuronBase
from snn5.nn.neurons_ext import IntLIF
from snn5.nn.quant import MembraneGrid
from snn5.nn.readout import FirstSpike, MembraneReadout, SpikeCount

META_KEY = "snn5"
FORMAT = 1
SPIKE_CONDITION = "v >= v_threshold"

# neuron kinds (snn5.nn.NEURONS names) the exporter writes, and the NIR node each becomes
NEURON_KINDS = {IF: "if", LIF: "lif", PLIF: "plif", ALIF: "alif", IntLIF: "int_lif"}
SUPPORTED = ("IF", "LIF", "PLIF", "ALIF", "IntLIF", "MembraneReadout (LI)", "SpikeCount",
             "FirstSpike",
             "nn.Linear", "EventLinear", "nn.Conv1d", "nn.Conv2d", "nn.BatchNorm1d/2d after a "
             "conv or linear layer", "nn.AvgPool2d", "nn.Flatten", "nn.Dropout")


class NIRExportError(ValueError):
    """A model (or graph) holds something NIR or this exporter cannot express; the message
    names the layer, the supported types and the fix."""


def _unsupported(name: str, module: nn.Module, fix: str = "") -> NIRExportError:
    hint = {nn.MaxPool2d: "max pooling has no NIR node; build the model with average pooling "
                          "(conv_snn: `model.pool: avg`) and retrain"}.get(type(module), fix)
    return NIRExportError(f"cannot export layer '{name}' ({type(module).__name__}) to NIR: "
                          f"{hint or 'no NIR mapping'}. Supported: {', '.join(SUPPORTED)}.")


def _array(t: Tensor | float, shape: tuple[int, ...] | None = None,
           dtype: Any = np.float64) -> np.ndarray:
    """A numpy copy (optionally broadcast to ``shape``) in ``dtype``."""
    a = t.detach().cpu().numpy() if isinstance(t, Tensor) else np.asarray(t)
    a = a.astype(dtype)
    return np.ascontiguousarray(np.broadcast_to(a, shape)) if shape is not None else a


def _number(v: Tensor | float) -> float:
    """A Python float of a float or a (learned, one-element) tensor."""
    return float(v.detach()) if isinstance(v, Tensor) else float(v)


def _tensors(state: dict[str, Tensor]) -> dict[str, Any]:
    """A state dict for metadata: arrays in the tensors' dtypes, 0-d ones as Python numbers
    (h5py cannot compress scalar datasets)."""
    out: dict[str, Any] = {}
    for k, v in state.items():
        a = v.detach().cpu().numpy()
        out[k] = a.item() if a.ndim == 0 else np.ascontiguousarray(a)
    return out


def _layers(model: SpikingClassifier) -> Iterator[tuple[str, nn.Module]]:
    """``(name, layer)`` of the stem and the body in order; nested Sequentials are refused."""
    for prefix, seq in (("stem", model.stem), ("body", model.body)):
        for i, layer in enumerate(seq):
            name = f"{prefix}.{i}"
            if isinstance(layer, (Sequential, nn.Sequential)):
                raise _unsupported(name, layer, "nested Sequentials (residual or branching "
                                   "blocks) are not a chain of NIR nodes")
            yield name, layer


def _step_shape(model: SpikingClassifier) -> tuple[int, ...]:
    """Per-sample shape of one step's input to the stem."""
    if model.encoding is Encoding.EVENTS:
        return tuple(model.input_shape[1:])
    return tuple(model.encoder.out_shape(model.input_shape))


def _neuron_meta(layer: NeuronBase) -> dict[str, Any]:
    kind = NEURON_KINDS[type(layer)]
    options: dict[str, Any] = {
        "dt": layer.dt, "v_th": _number(layer.v_th), "reset": layer.reset.value,
        "surrogate": layer.surrogate.to_dict(), "detach_reset": layer.detach_reset,
        "learn_v_th": layer.v_th_log is not None, "backend": layer.backend.value}
    if kind in ("lif", "alif", "int_lif"):
        options["tau_mem"] = layer.tau_mem
    if kind == "plif":
        options["tau_mem"] = float(layer.tau_mem.mean())     # any valid start; tau_raw loads
        options["shape"] = np.array(layer.tau_raw.shape, dtype=np.int64)
    if kind == "alif":
        options.update(tau_adapt=layer.tau_adapt, beta_adapt=layer.beta_adapt)
    if kind == "int_lif":
        options.update(max_spike=layer.max_spike, spike_driven=layer.spike_driven)
    grid = layer.state_quantizer
    if grid is not None and not isinstance(grid, MembraneGrid):
        raise NIRExportError(f"cannot export the state_quantizer {grid!r} of a "
                             f"{type(layer).__name__}: only snn5.nn.quant.MembraneGrid (from "
                             "snn5.compress.MembraneQuant) has a metadata form; remove it or "
                             "use quantize_(model, MembraneQuant(bits))")
    missing = [m for m, bad in (("subtract reset", layer.reset.value == "subtract"),
                                ("no reset", layer.reset.value == "none"),
                                ("adaptive threshold", kind == "alif"),
                                ("integer spikes", kind == "int_lif"),
                                ("quantized membrane", grid is not None)) if bad]
    meta = {"kind": kind, "options": options,
            "parameters": _tensors(layer.state_dict()),
            "nir_semantics": ", ".join(missing) if missing else "exact"}
    if grid is not None:
        meta["membrane_grid"] = {"bits": grid.bits, "v_range": grid.v_range}
    return meta


def _quant_meta(name: str, layer: nn.Module,
                bn_scale: Tensor | None) -> dict[str, Any] | None:
    """The ``quantization`` metadata of a layer quantized by ``snn5.compress.quantize_``
    (None for a plain weight). ``bn_scale``: the per-channel factor of a folded BatchNorm."""
    if not parametrize.is_parametrized(layer, "weight"):
        return None
    quantizers = list(layer.parametrizations.weight)
    q = quantizers[0]
    cfg = getattr(q, "cfg", None)
    if len(quantizers) != 1 or not hasattr(q, "codes") or not dataclasses.is_dataclass(cfg):
        raise _unsupported(name, layer, "its weight carries a parametrization that is not an "
                           "snn5 quantizer; remove it (torch.nn.utils.parametrize."
                           "remove_parametrizations) or bake it into the weight")
    codes, scale = q.codes(layer.parametrizations.weight.original)
    meta: dict[str, Any] = {"scheme": type(cfg).__name__, "config": dataclasses.asdict(cfg),
                            "codes": _array(codes, dtype=np.int8),
                            "scale": _array(scale.reshape(-1), dtype=np.float32)}  # [C] or [1]
    if bn_scale is not None:
        per_channel = scale.detach().double().reshape(-1) * bn_scale    # [C_out] (broadcast)
        meta["folded_scale"] = _array(per_channel.expand(codes.shape[0]), dtype=np.float64)
    return meta


def _neuron_node(layer: NeuronBase, shape: tuple[int, ...]) -> nir.NIRNode:
    """The NIR node of a spiking layer on features of ``shape``."""
    ones, zeros = np.ones(shape), np.zeros(shape)
    v_th = _array(layer.v_th, shape)
    meta = {META_KEY: _neuron_meta(layer)}
    if isinstance(layer, IF):
        return nir.IF(r=ones, v_threshold=v_th, v_reset=zeros, metadata=meta)
    tau = _array(layer.tau_mem, shape)
    return nir.LIF(tau=tau, r=ones, v_leak=zeros, v_threshold=v_th, v_reset=zeros, metadata=meta)


def _bn_scale(bn: nn.modules.batchnorm._BatchNorm) -> Tensor:
    """``gamma / sqrt(var + eps)`` per channel, float64."""
    var = bn.running_var.double()
    gamma = bn.weight.detach().double() if bn.affine else torch.ones_like(var)
    return gamma / torch.sqrt(var + bn.eps)


def _fold(w: Tensor, b: Tensor | None, bn: nn.modules.batchnorm._BatchNorm
          ) -> tuple[np.ndarray, np.ndarray]:
    """Eval-mode BatchNorm folded into the preceding weights: ``s = gamma / sqrt(var + eps)``,
    ``W' = s W`` (per output channel), ``b' = s (b - mean) + beta``; float64, then float32."""
    mean = bn.running_mean.double()
    beta = bn.bias.detach().double() if bn.affine else torch.zeros_like(mean)
    s = _bn_scale(bn)                                                  # [C_out]
    b64 = b.detach().double() if b is not None else torch.zeros_like(mean)
    w_folded = w.detach().double() * s.reshape(-1, *([1] * (w.ndim - 1)))   # [C_out, ...]
    return (_array(w_folded, dtype=np.float32),
            _array(s * (b64 - mean) + beta, dtype=np.float32))


def _bn_meta(name: str, layer: nn.Module, bn: nn.Module, n_out: int) -> dict[str, Any]:
    if bn.running_mean is None:
        raise NIRExportError(f"cannot fold {type(bn).__name__} after '{name}': it keeps no "
                             "running statistics (track_running_stats=False); build it with "
                             "running statistics or remove it")
    if bn.num_features != n_out:
        raise NIRExportError(f"{type(bn).__name__} after '{name}' has {bn.num_features} "
                             f"features but the layer gives {n_out}")
    meta = {"module": type(bn).__name__, "eps": bn.eps, "affine": bn.affine,
            "state": _tensors(bn.state_dict())}
    if bn.momentum is not None:                  # None (cumulative average) is left out
        meta["momentum"] = bn.momentum
    return meta


def _weight_node(name: str, layer: nn.Module, bn: nn.Module | None,
                 in_shape: tuple[int, ...]) -> nir.NIRNode:
    """Affine/Linear/Conv node of ``layer`` (with ``bn`` folded in)."""
    meta: dict[str, Any] = {"module": type(layer).__name__}
    w, b = layer.weight, layer.bias
    if isinstance(layer, EventLinear):
        meta["max_rate"] = layer.max_rate
    if bn is not None:
        meta["batch_norm"] = _bn_meta(name, layer, bn, w.shape[0])
        meta["weight"] = _array(w, dtype=np.float32)
        if b is not None:
            meta["bias"] = _array(b, dtype=np.float32)
        weight, bias = _fold(w, b, bn)
    else:
        weight = _array(w, dtype=np.float32)
        bias = _array(b, dtype=np.float32) if b is not None else None
    meta["has_bias"] = b is not None
    quant = _quant_meta(name, layer, None if bn is None else _bn_scale(bn))
    if quant is not None:
        meta["quantization"] = quant
    metadata = {META_KEY: meta}
    if isinstance(layer, nn.Linear):
        if bias is None:
            return nir.Linear(weight=weight, metadata=metadata)
        return nir.Affine(weight=weight, bias=bias, metadata=metadata)
    if layer.padding_mode != "zeros":
        raise _unsupported(name, layer, f"padding_mode '{layer.padding_mode}' has no NIR form; "
                           "use padding_mode='zeros'")
    bias = bias if bias is not None else np.zeros(w.shape[0], dtype=np.float32)
    if isinstance(layer, nn.Conv1d):
        padding = layer.padding if isinstance(layer.padding, str) else layer.padding[0]
        return nir.Conv1d(input_shape=in_shape[1], weight=weight, stride=layer.stride[0],
                          padding=padding, dilation=layer.dilation[0], groups=layer.groups,
                          bias=bias, metadata=metadata)
    return nir.Conv2d(input_shape=tuple(in_shape[1:]), weight=weight, stride=layer.stride,
                      padding=layer.padding, dilation=layer.dilation, groups=layer.groups,
                      bias=bias, metadata=metadata)


def _pair(v: int | tuple[int, ...]) -> np.ndarray:
    return np.array(v if isinstance(v, (tuple, list)) else (v, v), dtype=np.int64)


def _pool_node(name: str, layer: nn.AvgPool2d) -> nir.NIRNode:
    if layer.ceil_mode or (not layer.count_include_pad and np.any(_pair(layer.padding))):
        raise _unsupported(name, layer, "NIR pooling has no ceil_mode or count_include_pad="
                           "False; use the defaults")
    if layer.divisor_override not in (None, 1):
        raise _unsupported(name, layer, "only divisor_override=1 (sum pooling) has a NIR node")
    stride = layer.stride if layer.stride is not None else layer.kernel_size
    pool = nir.SumPool2d if layer.divisor_override == 1 else nir.AvgPool2d
    return pool(kernel_size=_pair(layer.kernel_size), stride=_pair(stride),
                padding=_pair(layer.padding), metadata={META_KEY: {"module": "AvgPool2d"}})


def _flatten_node(layer: nn.Flatten, in_shape: tuple[int, ...]) -> nir.NIRNode:
    """NIR's Flatten counts dims without the batch: torch ``start_dim=1`` is NIR's 0."""
    def batch_free(d: int) -> int:
        return d - 1 if d > 0 else d
    return nir.Flatten(input_type={"input": np.array(in_shape)},
                       start_dim=batch_free(layer.start_dim), end_dim=batch_free(layer.end_dim),
                       metadata={META_KEY: {"module": "Flatten"}})


def _readout(model: SpikingClassifier) -> tuple[str, MembraneReadout | None]:
    r = model.readout
    if isinstance(r, SpikeCount):
        return "spike_count", None
    if isinstance(r, FirstSpike):           # the output spikes; the time of the first one is
        return "first_spike", None          # the class score (metadata), a reduction like a count
    if isinstance(r, MembraneReadout):
        return ("mean_membrane" if r.reduce == "mean" else "max_membrane"), r
    raise _unsupported("readout", r, "the readout must be SpikeCount, FirstSpike or "
                       "MembraneReadout")


def _nodes(model: SpikingClassifier, shape: tuple[int, ...]
           ) -> tuple[dict[str, nir.NIRNode], list[float], tuple[int, ...]]:
    """The chain of NIR nodes of the stem and body for per-sample input ``shape``, the dropout
    probabilities after the last node, and the body's per-sample output shape."""
    nodes: dict[str, nir.NIRNode] = {}
    layers = list(_layers(model))
    dropouts: list[float] = []
    x = torch.zeros(1, 1, *shape)                                    # [T=1, B=1, *shape]
    i = 0
    while i < len(layers):
        name, layer = layers[i]
        inner = layer.module if isinstance(layer, TimeDistributed) else layer
        meta_extra = {"time_distributed": isinstance(layer, TimeDistributed)}
        bn = None
        if isinstance(inner, (nn.Linear, nn.Conv1d, nn.Conv2d)) and i + 1 < len(layers):
            nxt = layers[i + 1][1]
            nxt = nxt.module if isinstance(nxt, TimeDistributed) else nxt
            if isinstance(nxt, (nn.BatchNorm1d, nn.BatchNorm2d)):
                bn = nxt
        in_shape = tuple(x.shape[2:])
        if isinstance(inner, nn.Dropout):
            dropouts.append(inner.p)
            i += 1
            continue
        if isinstance(inner, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            node = _weight_node(name, inner, bn, in_shape)
        elif isinstance(inner, nn.AvgPool2d):
            node = _pool_node(name, inner)
        elif isinstance(inner, nn.Flatten):
            node = _flatten_node(inner, in_shape)
        elif type(inner) in NEURON_KINDS:
            node = None
        elif isinstance(inner, (nn.BatchNorm1d, nn.BatchNorm2d)):
            raise _unsupported(name, inner, "a BatchNorm must follow a conv or linear layer to "
                               "be folded into it")
        else:
            raise _unsupported(name, inner)
        with torch.no_grad():
            x = layer(x)[0] if getattr(layer, "stateful", False) else layer(x)
            if bn is not None:
                x = layers[i + 1][1](x)
        if node is None:
            node = _neuron_node(inner, tuple(x.shape[2:]))
        node.metadata[META_KEY].update(meta_extra)
        if dropouts:
            node.metadata[META_KEY]["dropout_before"] = np.array(dropouts)
            dropouts = []
        nodes[name] = node
        i += 2 if bn is not None else 1
    return nodes, dropouts, tuple(x.shape[2:])


def export_nir(model: SpikingClassifier) -> nir.NIRGraph:
    """A trained classifier as a NIR graph ``input -> stem -> body -> (LI readout) -> output``.

    Each layer becomes one node named like its module (``stem.0``, ``body.3``, ``readout``) in a
    chain of edges. Parameters are continuous-time and exact for the neurons' ``dt`` (see the
    module docstring for the formulas); what NIR cannot express goes into the ``"snn5"``
    metadata of the graph and nodes, so :func:`snn5.export.import_nir` rebuilds the same model.
    Inference semantics are exported: BatchNorm uses its running statistics, dropout is left out.

    Args:
        model: a :class:`snn5.models.SpikingClassifier` made of the layers in the table of the
            module docstring.

    Returns:
        The graph; write it with ``nir.write(path, graph)``.

    Raises:
        NIRExportError: a layer NIR cannot express (e.g. ``nn.MaxPool2d``: use ``pool: avg``),
            naming the layer, the supported types and the fix.

    Example:
        >>> graph = export_nir(model.eval())
        >>> nir.write("model.nir", graph)
    """
    if not isinstance(model, SpikingClassifier):
        raise TypeError(f"export_nir takes a snn5.models.SpikingClassifier, got "
                        f"{type(model).__name__}; build the model with snn5.models.build_model")
    neurons = [m for m in model.modules() if isinstance(m, NeuronBase)]
    dts = sorted({m.dt for m in neurons})
    if len(dts) != 1:
        raise NIRExportError(f"the neurons of the model use different steps dt={dts}; NIR "
                             "export needs one dt for the whole network")
    dt = dts[0]
    shape = _step_shape(model)
    nodes = {"input": nir.Input(input_type={"input": np.array(shape)})}
    body, trailing, out_shape = _nodes(model, shape)                  # out_shape: (C,)
    nodes.update(body)
    readout, li = _readout(model)
    if li is not None:
        tail_meta: dict[str, Any] = {"readout": readout, "time_distributed": False}
        nodes["readout"] = nir.LI(tau=_array(li.li.tau_mem, out_shape), r=np.ones(out_shape),
                                  v_leak=np.zeros(out_shape), metadata={META_KEY: tail_meta})
    nodes["output"] = nir.Output(output_type={"output": np.array(out_shape)})
    if trailing:
        last = nodes["readout"] if li is not None else nodes["output"]
        last.metadata.setdefault(META_KEY, {})["dropout_before"] = np.array(trailing)
    names = list(nodes)
    meta = {"format": FORMAT, "snn5_version": __version__, "dt": dt,
            "timesteps": model.timesteps, "encoding": model.encoding.value,
            "encoder_options": _encoder_options(model), "readout": readout,
            "input_shape": np.array(model.input_shape, dtype=np.int64),
            "spike_condition": SPIKE_CONDITION}
    return nir.NIRGraph(nodes=nodes, edges=list(zip(names[:-1], names[1:])),
                        metadata={META_KEY: meta})


def _encoder_options(model: SpikingClassifier) -> dict[str, Any]:
    """The encoder's constructor options (the attributes its ``__init__`` sets)."""
    enc = model.encoder
    return {k: v for k, v in vars(enc).items()
            if not k.startswith("_") and k not in ("training", "timesteps")
            and isinstance(v, (bool, int, float, str))}


def plain(value: Any) -> Any:
    """Metadata as read back from a NIR file, with numpy scalars, 0-d arrays and bytes turned
    into Python values (h5py returns ``np.bool_``, ``np.float64``, ``bytes``)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, bytes):
        return value.decode("utf8")
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, np.generic):
        return value.item()
    return value

