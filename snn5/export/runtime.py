"""Event-driven runtime for NIR graphs: spikes as a queue of events, counted one by one.

:class:`EventRuntime` executes a ``nir.NIRGraph`` (Pedersen et al., "Neuromorphic intermediate
representation: a unified instruction set for interoperable brain-inspired computing", Nature
Communications 2024) the way neuromorphic hardware does, in discrete steps of ``dt``:

1. every spike emitted at step ``t`` is an event ``(sample, neuron j)``; it fans out along
   the synapses of ``j`` only (Linear/Affine: column ``j`` of ``W``; Conv: the kernel window
   that position reaches; pooling and flatten: index maps that re-address the event), and its
   weights are accumulated into the targets' input current of step ``t``
   (:mod:`snn5.export.event_ops`, vectorised with ``index_add_`` over the events of a step);
2. every neuron then updates once with that current and emits the next events.

No dense matrix product of a spike vector is ever formed. Analog data (direct encoding, the
image itself) enters as a dense current injection at the first layers, counted as MACs; a
static input ``[B, *F]`` with ``steps=T`` runs those stateless layers once, as
:class:`snn5.models.SpikingClassifier` does.

Discretisation (the one of :mod:`snn5.core.neurons`, exact for a current held over each step):

    LIF:     v <- beta v + (1 - beta)(v_leak + r I),   beta = exp(-dt / tau)
    LI:      the same without spikes; its output is v (a readout trace)
    IF:      v <- v + r I                      (I is the charge per step, as in snn5)
    CubaLIF: i <- alpha i + (1 - alpha) w_in I,   alpha = exp(-dt / tau_syn), then the LIF
             update with tau_mem and the current i of the same step
    fire:    z = H(v - v_threshold); reset v <- v_reset (NIR) where z = 1

NIR fires on ``v > v_threshold`` and resets to ``v_reset``. A node carrying the ``"snn5"``
metadata of :mod:`snn5.export.nir` fires on ``v >= v_threshold`` as snn5 does and follows its
reset (subtract, zero or none).

Counts per node, in the per-layer format of the energy helpers:
``{node: {"synops": accumulates triggered by events, "macs": dense multiply-accumulates of
analog input, "dense_macs": the MACs of the same calls run densely whatever the input (what a
GPU computes), "neuron_updates": neuron state updates (every neuron, every step), "spikes":
spikes emitted}}``, ready for :func:`snn5.metrics.energy_breakdown`. Biases, pooling and
flatten are not counted (as in :class:`snn5.metrics.OpCounter`); an event reaching a synapse
counts ``|n|`` spikes for a count ``n``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import nir
import torch
from torch import Tensor

from snn5.export.event_nodes import (
    NEURON_NODES, SYNAPSE_NODES, NeuronNode, Signal, dense_sum, merge,
)
from snn5.export.event_ops import Events
from snn5.export.nir import META_KEY, SPIKE_CONDITION, plain

COUNT_KEYS = ("synops", "macs", "dense_macs", "neuron_updates", "spikes")
"""The per-node counts, the keys of :data:`snn5.metrics.energy.COUNT_KEYS`."""
MAX_INPUT_SPIKES = 15
"""Largest integer per entry and step that counts as a number of input spikes (a 4-bit count,
the convention of :data:`snn5.metrics.ops.MAX_SPIKES_PER_STEP`); other input is analog."""


# ----------------------------------------------------------------------------- graph

SUPPORTED_NODES = ("Input", "Output", *(t.__name__ for t in SYNAPSE_NODES),
                   *(t.__name__ for t in NEURON_NODES))


@dataclass(frozen=True)
class EventRunResult:
    """What :meth:`EventRuntime.run` returns.

    Attributes:
        outputs: per Output node, what reached it at each step ``[T, B, *F]`` (the readout's
            membrane trace after an LI node, the spikes after a spiking node).
        spikes: per spiking node, its spikes ``[T, B, *F]`` (with ``record=True``).
        membranes: per neuron node, its membrane after the step's reset ``[T, B, *F]``
            (with ``record=True``).
        counts: per computing node ``{"synops", "macs", "neuron_updates", "spikes"}``, totals
            over the batch and the steps.
        steps: T.
    """

    outputs: dict[str, Tensor]
    spikes: dict[str, Tensor]
    membranes: dict[str, Tensor]
    counts: dict[str, dict[str, int]]
    steps: int

    def total(self, key: str) -> int:
        """One count (``"synops"``, ``"macs"``, ...) summed over the nodes."""
        if key not in COUNT_KEYS:
            raise KeyError(f"unknown count '{key}'; valid: {', '.join(COUNT_KEYS)}")
        return sum(c[key] for c in self.counts.values())


def _order(graph: nir.NIRGraph) -> list[str]:
    """Nodes in an order where every node comes after its predecessors (Kahn)."""
    preds = {n: 0 for n in graph.nodes}
    for src, dst in graph.edges:
        preds[dst] += 1
    ready = [n for n, k in preds.items() if k == 0]
    order = []
    while ready:
        n = ready.pop(0)
        order.append(n)
        for src, dst in graph.edges:
            if src == n:
                preds[dst] -= 1
                if preds[dst] == 0:
                    ready.append(dst)
    if len(order) != len(graph.nodes):
        cyclic = sorted(set(graph.nodes) - set(order))
        raise ValueError(f"the graph has a cycle through {cyclic}; the event runtime runs "
                         "feed-forward graphs: unroll the recurrent connection or run it in "
                         "snn5 (import_nir)")
    return order


class EventRuntime:
    """Run a ``nir.NIRGraph`` event by event (see the module docstring).

    Args:
        graph: the graph (e.g. :func:`snn5.export.export_nir`'s, or ``nir.read(path)``); one
            Input node, feed-forward edges, nodes of the types in :data:`SUPPORTED_NODES`.
        dt: step in seconds; None: the graph's ``"snn5"`` metadata ``dt``.
        dtype: floating dtype of weights and states.

    Example:
        >>> rt = EventRuntime(export_nir(model.eval()))
        >>> res = rt.run(images, steps=model.timesteps)     # images: [B, C, H, W], direct input
        >>> res.outputs["output"].shape, res.total("synops")
    """

    def __init__(self, graph: nir.NIRGraph, *, dt: float | None = None,
                 dtype: torch.dtype = torch.float32) -> None:
        meta = plain(graph.metadata or {}).get(META_KEY, {})
        dt = meta.get("dt") if dt is None else dt
        if dt is None or not (isinstance(dt, (int, float)) and math.isfinite(dt) and dt > 0):
            raise ValueError(f"dt must be a positive step in seconds, got {dt!r}; pass "
                             "EventRuntime(graph, dt=1e-3) for a graph without snn5 metadata")
        self.dt, self.dtype = float(dt), dtype
        self.default_steps = meta.get("timesteps")
        inclusive = meta.get("spike_condition") == SPIKE_CONDITION
        self.order = _order(graph)
        self.preds = {n: [s for s, d in graph.edges if d == n] for n in graph.nodes}
        self.inputs = [n for n, node in graph.nodes.items() if isinstance(node, nir.Input)]
        if len(self.inputs) != 1:
            raise ValueError(f"the event runtime needs exactly one Input node, the graph has "
                             f"{self.inputs}; merge the inputs into one")
        self.outputs = [n for n, node in graph.nodes.items() if isinstance(node, nir.Output)]
        shape = graph.nodes[self.inputs[0]].input_type["input"]
        self.input_shape = None if shape is None else tuple(int(s) for s in shape)
        self.nodes: dict[str, Any] = {}
        for name, node in graph.nodes.items():
            if isinstance(node, (nir.Input, nir.Output)):
                continue
            if isinstance(node, NEURON_NODES):
                self.nodes[name] = NeuronNode(node, name, dtype, self.dt, inclusive)
            elif type(node) in SYNAPSE_NODES:
                self.nodes[name] = SYNAPSE_NODES[type(node)](node, name, dtype)
            else:
                raise ValueError(f"node '{name}' is a {type(node).__name__}, which the event "
                                 f"runtime does not run; supported: {', '.join(SUPPORTED_NODES)}")

    def _input_signal(self, x: Tensor, spikes: bool | None) -> Signal:
        if spikes is None:
            ints = x == torch.round(x)
            spikes = bool((ints & (x.abs() <= MAX_INPUT_SPIKES)).all())
        return Events.from_dense(x) if spikes else x

    def run(self, x: Tensor, *, steps: int | None = None, spikes: bool | None = None,
            record: bool = True) -> EventRunResult:
        """Run the graph on one batch.

        Args:
            x: time-major input ``[T, B, *input_shape]``; or a static input
                ``[B, *input_shape]`` (direct encoding) repeated for ``steps`` steps, the
                stateless nodes it feeds computed once.
            steps: T for a static input; None: the graph's ``timesteps`` metadata.
            spikes: treat the input as spike events (True) or as analog current (False);
                None: events when every entry is an integer with ``|n| <= 15``.
            record: keep every neuron node's spikes and membrane per step.

        Returns:
            :class:`EventRunResult`.

        Shape:
            ``outputs[name]``: ``[T, B, *F]`` of the Output node.
        """
        x = x.to(self.dtype)
        static = self.input_shape is not None and tuple(x.shape[1:]) == self.input_shape
        if static:
            steps = self.default_steps if steps is None else steps
            if not (isinstance(steps, int) and steps >= 1):
                raise ValueError(f"a static input [B, *input_shape] needs steps >= 1, got "
                                 f"{steps!r}; pass run(x, steps=T) or a sequence [T, B, ...]")
        elif self.input_shape is not None and tuple(x.shape[2:]) != self.input_shape:
            raise ValueError(f"expected input [T, B, {', '.join(map(str, self.input_shape))}] "
                             f"or [B, ...] of the graph's input shape, got {list(x.shape)}")
        else:
            steps = x.shape[0]
        batch = x.shape[0] if static else x.shape[1]
        counts = {n: dict.fromkeys(COUNT_KEYS, 0) for n in self.nodes}
        for node in self.nodes.values():
            if node.stateful:
                node.start(batch, x.device)
        fixed = self._static_nodes() if static else set()
        cache: dict[str, Signal] = {}
        outs: dict[str, list[Tensor]] = {n: [] for n in self.outputs}
        rec_z: dict[str, list[Tensor]] = {}
        rec_v: dict[str, list[Tensor]] = {}
        for t in range(steps):
            values: dict[str, Signal] = {}
            for name in self.order:
                if name in cache:
                    values[name] = cache[name]
                    continue
                if name == self.inputs[0]:
                    values[name] = self._input_signal(x if static else x[t], spikes)
                elif name in outs:
                    y = dense_sum([values[p] for p in self.preds[name]], self.dtype)
                    outs[name].append(y)
                    continue
                else:
                    node = self.nodes[name]
                    inp = [values[p] for p in self.preds[name]]
                    if not inp:
                        raise ValueError(f"node '{name}' has no incoming edge; connect it")
                    sig = dense_sum(inp, self.dtype) if node.stateful else merge(inp, self.dtype)
                    values[name] = node.step(sig, counts[name])
                    if record and node.stateful:
                        if node.spiking:
                            rec_z.setdefault(name, []).append(values[name].to_dense(self.dtype))
                        rec_v.setdefault(name, []).append(node.v)
                if name in fixed:
                    cache[name] = values[name]
        stack = {n: torch.stack(v) for n, v in outs.items() if v}     # [T, B, *F]
        return EventRunResult(stack, {n: torch.stack(v) for n, v in rec_z.items()},
                              {n: torch.stack(v) for n, v in rec_v.items()}, counts, steps)

    def _static_nodes(self) -> set[str]:
        """The input and the stateless nodes fed only by static nodes (computed once)."""
        fixed = {self.inputs[0]}
        for name in self.order:
            node = self.nodes.get(name)
            if (node is not None and not node.stateful and self.preds[name]
                    and all(p in fixed for p in self.preds[name])):
                fixed.add(name)
        return fixed


def run_events(graph: nir.NIRGraph, x: Tensor, *, dt: float | None = None,
               steps: int | None = None, spikes: bool | None = None) -> EventRunResult:
    """``EventRuntime(graph, dt=dt).run(x, steps=steps, spikes=spikes)`` in one call."""
    return EventRuntime(graph, dt=dt).run(x, steps=steps, spikes=spikes)


__all__ = ["COUNT_KEYS", "EventRunResult", "EventRuntime", "SUPPORTED_NODES", "run_events"]
