"""The node executors of :mod:`snn5.export.runtime`: one class per NIR node kind, each with
``step(signal, counts) -> signal`` for one step of the batch.

A signal on an edge is either :class:`~snn5.export.event_ops.Events` (spikes) or a dense
``[B, *F]`` tensor (analog currents, membranes). Weight nodes fan events out sparsely and count
SynOps, or multiply dense input and count MACs; pooling and flatten re-address events; neuron
nodes integrate the summed current, fire, reset and count updates and spikes (discretisation
in :mod:`snn5.export.runtime`).
"""

from __future__ import annotations

import math
from typing import Any

import nir
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from snn5.core.options import Reset
from snn5.export.event_ops import (
    Events, WindowGeometry, conv_fanout, conv_synapses, linear_fanout, linear_synapses, pool_route,
)
from snn5.export.nir import META_KEY, plain

Signal = Events | Tensor                   # one step on an edge: events, or a dense [B, *F]


def _tensor(a: Any, dtype: torch.dtype) -> Tensor:
    return torch.from_numpy(np.array(a, dtype=np.float64)).to(dtype)


def dense_sum(signals: list[Signal], dtype: torch.dtype) -> Tensor:
    """The sum of the incoming signals as one dense ``[B, *F]`` current."""
    parts = [s.to_dense(dtype) if isinstance(s, Events) else s for s in signals]
    out = parts[0]
    for p in parts[1:]:
        out = out + p
    return out


def merge(signals: list[Signal], dtype: torch.dtype) -> Signal:
    """Events of all predecessors in one list if all are events of one shape, else dense."""
    if all(isinstance(s, Events) for s in signals) and len({s.shape for s in signals}) == 1:
        return signals[0] if len(signals) == 1 else Events.concat(signals)
    return dense_sum(signals, dtype)


def _shape(signal: Signal) -> tuple[int, ...]:
    return signal.shape if isinstance(signal, Events) else tuple(signal.shape[1:])


def _pairs(value: Any, nd: int, what: str) -> tuple[int, ...]:
    arr = np.atleast_1d(np.asarray(value)).astype(np.int64)
    if arr.size == 1:
        arr = np.repeat(arr, nd)
    if arr.size != nd:
        raise ValueError(f"{what} has {arr.size} entries for a {nd}-d window; give one per "
                         "spatial dimension")
    return tuple(int(v) for v in arr)


# ----------------------------------------------------------------------------- synapses

class WeightNode:
    """Linear / Affine: ``y = W x (+ b)``."""

    stateful = False

    def __init__(self, node: nir.Linear | nir.Affine, name: str, dtype: torch.dtype) -> None:
        w = np.asarray(node.weight)
        if w.ndim != 2:
            raise ValueError(f"node '{name}': the runtime runs 2-d Linear/Affine weights "
                             f"[out, in], got shape {w.shape}; reshape the weight to 2-d")
        self.weight = _tensor(w, dtype)                                  # [out, in]
        self.weight_t = self.weight.t().contiguous()                     # [in, out]
        self.synapses = linear_synapses(self.weight_t)                   # [in] nonzero fan-out
        bias = getattr(node, "bias", None)
        self.bias = None if bias is None else _tensor(bias, dtype).reshape(-1)

    def step(self, x: Signal, c: dict[str, int]) -> Signal:
        if _shape(x) != (self.weight.shape[1],):
            raise ValueError(f"Linear/Affine expects {self.weight.shape[1]} input features, "
                             f"got shape {_shape(x)}; add a Flatten node before it")
        if isinstance(x, Events):
            y, synops = linear_fanout(x, self.weight_t, self.synapses)   # [B, out]
            c["synops"] += synops
        else:
            y = x @ self.weight_t                                        # [B, out] dense
            c["macs"] += y.numel() * self.weight.shape[1]
        c["dense_macs"] += y.numel() * self.weight.shape[1]
        return y if self.bias is None else y + self.bias


class ConvNode:
    """Conv1d / Conv2d, zero padding (int, per-dimension, ``"same"`` or ``"valid"``)."""

    stateful = False

    def __init__(self, node: nir.Conv1d | nir.Conv2d, name: str, dtype: torch.dtype) -> None:
        self.weight = _tensor(node.weight, dtype)                        # [C_out, C_in/g, *k]
        self.nd = self.weight.ndim - 2
        self.kernel = tuple(self.weight.shape[2:])
        self.bias = None if node.bias is None else _tensor(node.bias, dtype).reshape(-1)
        self.stride = _pairs(node.stride, self.nd, f"node '{name}' stride")
        self.dilation = _pairs(node.dilation, self.nd, f"node '{name}' dilation")
        self.groups = int(node.groups)
        self.synapses = conv_synapses(self.weight, self.groups)         # [g, C_in/g, *k]
        if isinstance(node.padding, str):
            if node.padding == "same" and any(s != 1 for s in self.stride):
                raise ValueError(f"node '{name}': padding 'same' needs stride 1, got "
                                 f"{self.stride}; give the padding as integers")
            total = [d * (k - 1) for d, k in zip(self.dilation, self.kernel)]
            # torch pads 'same' with total // 2 before and the rest after
            self.pad_lo = tuple(t // 2 if node.padding == "same" else 0 for t in total)
            self.pad_hi = tuple(t - lo if node.padding == "same" else 0
                                for t, lo in zip(total, self.pad_lo))
        else:
            self.pad_lo = self.pad_hi = _pairs(node.padding, self.nd, f"node '{name}' padding")
        self.name = name

    def geometry(self, shape: tuple[int, ...]) -> WindowGeometry:
        c_in = self.weight.shape[1] * self.groups
        if len(shape) != self.nd + 1 or shape[0] != c_in:
            raise ValueError(f"node '{self.name}' expects input (C_in={c_in}, {self.nd} spatial "
                             f"dims), got shape {shape}; check the edge into it (a Flatten "
                             "too early?)")
        out = tuple((n + lo + hi - d * (k - 1) - 1) // s + 1 for n, lo, hi, d, k, s in
                    zip(shape[1:], self.pad_lo, self.pad_hi, self.dilation, self.kernel,
                        self.stride))
        return WindowGeometry(shape[1:], out, self.kernel, self.stride, self.pad_lo,
                              self.dilation)

    def step(self, x: Signal, c: dict[str, int]) -> Signal:
        geom = self.geometry(_shape(x))
        if isinstance(x, Events):
            y, synops = conv_fanout(x, self.weight, self.groups, geom,
                                    self.synapses)                       # [B, C_out, *O]
            c["synops"] += synops
        else:
            pad = [p for lo, hi in zip(reversed(self.pad_lo), reversed(self.pad_hi))
                   for p in (lo, hi)]
            conv = F.conv1d if self.nd == 1 else F.conv2d
            y = conv(F.pad(x, pad), self.weight, None, self.stride, 0, self.dilation,
                     self.groups)                                        # [B, C_out, *O]
            c["macs"] += y.numel() * self.weight.shape[1] * math.prod(self.kernel)
        c["dense_macs"] += y.numel() * self.weight.shape[1] * math.prod(self.kernel)
        if self.bias is None:
            return y
        return y + self.bias.view(-1, *([1] * self.nd))


class PoolNode:
    """SumPool2d / AvgPool2d (average: divisor ``prod(kernel)``, padding counted)."""

    stateful = False

    def __init__(self, node: nir.SumPool2d | nir.AvgPool2d, name: str, dtype: torch.dtype
                 ) -> None:
        self.kernel = _pairs(node.kernel_size, 2, f"node '{name}' kernel_size")
        self.stride = _pairs(node.stride, 2, f"node '{name}' stride")
        self.padding = _pairs(node.padding, 2, f"node '{name}' padding")
        self.average = isinstance(node, nir.AvgPool2d)
        self.scale = 1.0 / math.prod(self.kernel) if self.average else 1.0
        self.name = name

    def step(self, x: Signal, c: dict[str, int]) -> Signal:
        shape = _shape(x)
        if len(shape) != 3:
            raise ValueError(f"pooling node '{self.name}' expects input (C, H, W), got shape "
                             f"{shape}; pool before the Flatten node")
        if isinstance(x, Events):
            out = tuple((n + 2 * p - k) // s + 1 for n, p, k, s in
                        zip(shape[1:], self.padding, self.kernel, self.stride))
            return pool_route(x, WindowGeometry(shape[1:], out, self.kernel, self.stride,
                                                self.padding, (1, 1)), self.scale)
        return F.avg_pool2d(x, self.kernel, self.stride, self.padding,
                            divisor_override=None if self.average else 1)


class FlattenNode:
    """Flatten: a new per-sample shape; C-order flat indices (and events) are unchanged."""

    stateful = False

    def __init__(self, node: nir.Flatten, name: str, dtype: torch.dtype) -> None:
        out = node.output_type.get("output")
        self.out = None if out is None else tuple(int(v) for v in np.atleast_1d(out))
        self.start, self.end = int(node.start_dim), int(node.end_dim)

    def out_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        if self.out is not None and math.prod(self.out) == math.prod(shape):
            return self.out
        # no usable output_type: torch.nn.Flatten's convention (dims count the batch)
        return tuple(torch.empty(1, *shape, device="meta").flatten(self.start, self.end)
                     .shape[1:])

    def step(self, x: Signal, c: dict[str, int]) -> Signal:
        shape = self.out_shape(_shape(x))
        if isinstance(x, Events):
            return x.reshaped(shape)
        return x.reshape(x.shape[0], *shape)                             # [B, *F'] same order


# ----------------------------------------------------------------------------- neurons

def _snn5_meta(node: nir.NIRNode) -> dict[str, Any]:
    return plain(getattr(node, "metadata", {}) or {}).get(META_KEY, {})


class NeuronNode:
    """LIF / IF / LI / CubaLIF with the discretisation of the module docstring."""

    stateful = True

    def __init__(self, node: nir.NIRNode, name: str, dtype: torch.dtype, dt: float,
                 inclusive: bool) -> None:
        meta = _snn5_meta(node)
        lost = [m for m in ("adaptive threshold", "integer spikes")
                if m in str(meta.get("nir_semantics", ""))]
        if lost:
            raise ValueError(f"node '{name}' is an snn5 '{meta.get('kind')}' neuron whose "
                             f"{' and '.join(lost)} NIR cannot express, so the runtime would "
                             "not reproduce it; export a model with LIF/IF neurons, or drop "
                             "the node's 'snn5' metadata to run NIR's plain LIF semantics")
        self.kind = type(node).__name__
        self.spiking = not isinstance(node, nir.LI)
        self.inclusive = inclusive and bool(meta)          # snn5's v >= v_th only with its meta
        reset = meta.get("options", {}).get("reset")
        self.reset = Reset.parse(reset) if reset is not None else None   # None: to v_reset
        fields = ("r", "tau", "tau_mem", "tau_syn", "v_leak", "v_threshold", "v_reset", "w_in")
        # () for a node with scalar parameters (e.g. Norse's export): it takes the input's shape
        self.shape = tuple(np.broadcast_shapes(*(np.shape(getattr(node, f)) for f in fields
                                                 if getattr(node, f, None) is not None)))

        def t(a: Any) -> Tensor:
            return _tensor(np.broadcast_to(np.asarray(a, dtype=np.float64), self.shape), dtype)

        def decay(tau: Any) -> tuple[Tensor, Tensor]:
            tau64 = np.broadcast_to(np.asarray(tau, dtype=np.float64), self.shape)
            if not (tau64 > 0).all():
                raise ValueError(f"node '{name}' has a time constant <= 0; NIR time constants "
                                 "are positive seconds")
            beta = np.exp(-dt / tau64)                    # float64, then rounded (snn5's lif_step)
            return _tensor(beta, dtype), _tensor(1.0 - beta, dtype)

        self.r = t(node.r)
        self.v_leak = t(getattr(node, "v_leak", 0.0))
        if self.spiking:
            self.v_th, self.v_reset = t(node.v_threshold), t(node.v_reset)
        if isinstance(node, nir.IF):
            self.beta = None
        else:
            self.beta, self.gain = decay(node.tau_mem if isinstance(node, nir.CubaLIF)
                                         else node.tau)
        self.syn = decay(node.tau_syn) if isinstance(node, nir.CubaLIF) else None
        self.w_in = t(node.w_in) if isinstance(node, nir.CubaLIF) else None

    def start(self, batch: int, device: torch.device) -> None:
        self.v = self.i = None                  # zeros of the first input's shape [B, *F]

    def step(self, x: Tensor, c: dict[str, int]) -> Signal:
        if self.shape and tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"{self.kind} node of shape {self.shape} got input of shape "
                             f"{tuple(x.shape[1:])}; check the edges into it")
        if self.v is None:
            self.v = torch.zeros_like(x)
            self.i = torch.zeros_like(x) if self.syn is not None else None
        if self.syn is not None:                                          # CubaLIF synapse
            alpha, one_minus_alpha = self.syn
            self.i = alpha * self.i + one_minus_alpha * (self.w_in * x)
            x = self.i
        drive = self.r * x + self.v_leak
        if self.beta is None:                                             # IF: v += r I
            v = self.v + drive
        else:
            v = self.beta * self.v + self.gain * drive
        c["neuron_updates"] += v.numel()
        if not self.spiking:
            self.v = v
            return v
        z = (v >= self.v_th if self.inclusive else v > self.v_th).to(v.dtype)
        if self.reset is None:
            v = torch.where(z > 0, self.v_reset, v)
        else:
            v = _reset_membrane(v, z, self.v_th, self.reset)
        self.v = v
        events = Events.from_dense(z)
        c["spikes"] += events.total_count
        return events


def _reset_membrane(v: Tensor, z: Tensor, v_th: Tensor, mode: Reset) -> Tensor:
    """snn5's reset (:func:`snn5.core.neurons.reset_membrane`, same float operations)."""
    if mode is Reset.SUBTRACT:
        return v - z * v_th
    if mode is Reset.ZERO:
        return v * (1.0 - z)
    return v


SYNAPSE_NODES: dict[type, type] = {
    nir.Linear: WeightNode, nir.Affine: WeightNode, nir.Conv1d: ConvNode, nir.Conv2d: ConvNode,
    nir.SumPool2d: PoolNode, nir.AvgPool2d: PoolNode, nir.Flatten: FlattenNode}
NEURON_NODES = (nir.LIF, nir.IF, nir.LI, nir.CubaLIF)

__all__ = ["ConvNode", "FlattenNode", "NEURON_NODES", "NeuronNode", "PoolNode", "SYNAPSE_NODES",
           "Signal", "WeightNode", "dense_sum", "merge"]
