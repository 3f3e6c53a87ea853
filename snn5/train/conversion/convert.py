"""ANN -> SNN conversion: replace each activation of an ingested ANN by an integrate-and-fire
neuron whose threshold comes from the method, and run the graph over time.

Methods (``ConversionMethod``):

- ``threshold_balancing``: thresholds from the ANN's activations on calibration data, the
  maximum ("max norm", Diehl et al. IJCNN 2015) or a high percentile ("robust norm", Rueckauer
  et al., Front. Neurosci. 2017, 99.9-99.999 %); the membrane starts at 0 and resets by
  subtraction (Rueckauer's reset, which keeps the residual charge).
- ``qcfs``: for an ANN trained with QCFS activations (Bu et al. ICLR 2022): threshold =
  the learned clip lambda, membrane initialised at lambda / 2, soft reset.
- ``scale_and_fire``: one timestep with multi-threshold neurons (Chen et al. 2025,
  arXiv:2510.23383): a neuron emits up to N spikes of value lambda / N at once; from a QCFS ANN
  with L levels and N = L it reproduces the ANN exactly.
- ``logic_gated``: ``qcfs`` on an ANN whose hidden weight layers are ternary; the converted
  ternary layers run with additions only (:mod:`snn5.train.conversion.logic_gated`).

Thresholds are per layer (one number). The SNN's output is the time average of the last
layer's output, i.e. the membrane of a non-spiking integrator divided by T.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, fx, nn

from snn5.nn.conversion import ConvertedNeuron, RepeatTime
from snn5.nn.ternary import AddOnlyConv2d
from snn5.train.conversion.ingest import (
    POOLS, SHAPE_FUNCTIONS, SHAPE_METHODS, TERNARY_LAYERS, WEIGHT_LAYERS, Activation, ingest,
)

log = logging.getLogger(__name__)

Method = Literal["threshold_balancing", "qcfs", "scale_and_fire", "logic_gated"]
Encoding = Literal["direct", "poisson"]


class ConvertedSNN(nn.Module):
    """A converted SNN: ``x [B, *input_shape] -> logits [B, C]`` over ``timesteps`` steps.

    Its graph runs time-folded (see :mod:`snn5.nn.conversion`): with ``direct`` encoding the
    layers before the first neuron run once on ``[B, ...]`` and their output is repeated over
    the steps; with ``poisson`` encoding each step sees Bernoulli spikes of the input (values in
    [0, 1]).

    Args:
        graph: the converted ``torch.fx`` graph (input ``[B, ...]``, output ``[T*B, C]``).
        timesteps: default T of :meth:`forward`.
        encoding: ``direct`` or ``poisson``.
        method: the conversion method (for reports).
    """

    def __init__(self, graph: fx.GraphModule, *, timesteps: int, encoding: Encoding = "direct",
                 method: str = "") -> None:
        super().__init__()
        if timesteps < 1:
            raise ValueError(f"timesteps must be >= 1, got {timesteps}")
        if encoding not in ("direct", "poisson"):
            raise ValueError(f"encoding must be 'direct' or 'poisson', got {encoding!r}")
        self.graph_module = graph
        self.timesteps = int(timesteps)
        self.encoding = encoding
        self.method = method

    def neurons(self) -> dict[str, ConvertedNeuron]:
        """The spiking neurons, by qualified name, in graph order."""
        return {n: m for n, m in self.named_modules() if isinstance(m, ConvertedNeuron)}

    def _set_steps(self, T: int) -> None:
        for m in self.modules():
            if isinstance(m, (ConvertedNeuron, RepeatTime)):
                m.timesteps = T

    def sequence(self, x: Tensor, timesteps: int | None = None,
                 generator: torch.Generator | None = None) -> Tensor:
        """The output layer's value at every step, ``[T, B, C]``."""
        T = self.timesteps if timesteps is None else int(timesteps)
        if T < 1:
            raise ValueError(f"timesteps must be >= 1, got {T}")
        self._set_steps(T)
        B = x.shape[0]
        if self.encoding == "poisson":
            if x.min() < 0 or x.max() > 1:
                raise ValueError("poisson encoding needs inputs in [0, 1]; scale the data or "
                                 "use encoding: direct")
            p = x.unsqueeze(0).expand(T, *x.shape)                     # [T, B, ...]
            x = (torch.rand(p.shape, generator=generator, dtype=x.dtype, device=x.device) < p)
            x = x.to(p.dtype).flatten(0, 1)                            # [T*B, ...]
        out = self.graph_module(x)                                     # [T*B, C]
        if out.shape[0] != T * B:
            raise RuntimeError(f"the converted graph returned {out.shape[0]} rows for T={T}, "
                               f"B={B}; its output must be time-folded")
        return out.unflatten(0, (T, B))                                # [T, B, C]

    def forward(self, x: Tensor, timesteps: int | None = None) -> Tensor:
        with torch.no_grad():                    # inference only: no gradient through time
            return self.sequence(x, timesteps).mean(0)                 # [B, C]

    def extra_repr(self) -> str:
        return f"method={self.method!r}, timesteps={self.timesteps}, encoding={self.encoding}"


# ----------------------------------------------------------------------------- thresholds

def activation_stats(gm: fx.GraphModule, acts: Sequence[Activation], x: Tensor, *,
                     percentile: float, batch_size: int = 256) -> dict[str, float]:
    """The ``percentile`` (0-100; 100 = max) of each activation's output over inputs ``x``,
    positive values only (zeros would pull the percentile of sparse layers to 0)."""
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must lie in (0, 100], got {percentile}")
    names = {a.node for a in acts}
    values: dict[str, list[Tensor]] = {n: [] for n in names}

    class Recorder(fx.Interpreter):
        def run_node(self, n: fx.Node):
            out = super().run_node(n)
            if n.name in names:
                flat = out.detach().flatten()
                values[n.name].append(flat[flat > 0].float())
            return out

    rec = Recorder(gm)
    with torch.inference_mode():
        for start in range(0, x.shape[0], batch_size):
            rec.run(x[start:start + batch_size])
    result = {}
    for name, chunks in values.items():
        v = torch.cat(chunks) if chunks else torch.zeros(0)
        if v.numel() == 0:
            log.warning("activation %s never exceeds 0 on the calibration data; threshold 1",
                        name)
            result[name] = 1.0
            continue
        if percentile >= 100:
            result[name] = float(v.max())
        else:
            k = max(1, min(v.numel(), math.ceil(percentile / 100 * v.numel())))
            result[name] = float(torch.kthvalue(v.cpu(), k).values)
    return result


@dataclass(frozen=True)
class NeuronPlan:
    """How one activation becomes a neuron."""

    v_th: float
    v_init: float
    levels: int = 1
    leak: float = 1.0


def plan_neurons(method: Method, acts: Sequence[Activation], gm: fx.GraphModule,
                 calibration: Tensor | None, *, percentile: float = 99.99,
                 levels: int | None = None, v_init: float | None = None
                 ) -> dict[str, NeuronPlan]:
    """Threshold, initial membrane and levels of each activation's neuron under ``method``."""
    if method in ("qcfs", "logic_gated"):
        plain = [a.node for a in acts if a.kind != "qcfs"]
        if plain:
            raise ValueError(f"method '{method}' needs an ANN trained with QCFS activations "
                             f"(activation: qcfs); these are not QCFS: {', '.join(plain)}. Use "
                             "threshold_balancing for a ReLU ANN")
    stats: dict[str, float] = {}
    needs_stats = [a for a in acts if a.kind == "relu"]
    if needs_stats:
        if calibration is None:
            raise ValueError("the ANN has plain ReLU activations, whose thresholds are measured "
                             "on calibration data; pass calibration inputs")
        stats = activation_stats(gm, needs_stats, calibration, percentile=percentile)
    plans = {}
    for a in acts:
        lam = stats[a.node] if a.kind == "relu" else float(a.clip)
        if method == "scale_and_fire":
            n = levels if levels is not None else (a.levels or 8)
            plans[a.node] = NeuronPlan(v_th=lam / n, v_init=0.5 if v_init is None else v_init,
                                       levels=n)
        elif method == "threshold_balancing":
            plans[a.node] = NeuronPlan(v_th=lam, v_init=0.0 if v_init is None else v_init)
        else:
            plans[a.node] = NeuronPlan(v_th=lam, v_init=0.5 if v_init is None else v_init)
    return plans


# ----------------------------------------------------------------------------- graph

def _neuronize(gm: fx.GraphModule, acts: Sequence[Activation], plans: dict[str, NeuronPlan]
               ) -> None:
    """Replace every activation node by a call of a new :class:`ConvertedNeuron`."""
    by_name = {a.node: a for a in acts}
    count = 0
    for node in list(gm.graph.nodes):
        if node.name not in by_name:
            continue
        plan = plans[node.name]
        target, count = f"neuron_{count}", count + 1
        gm.add_submodule(target, ConvertedNeuron(plan.v_th, v_init=plan.v_init, leak=plan.leak,
                                                 levels=plan.levels, name=node.name))
        with gm.graph.inserting_after(node):
            new = gm.graph.call_module(target, (node.args[0],))
        node.replace_all_uses_with(new)
        gm.graph.erase_node(node)


def _is_neuron(gm: fx.GraphModule, node: fx.Node) -> bool:
    return node.op == "call_module" and isinstance(gm.get_submodule(node.target), ConvertedNeuron)


def _insert_repeat(gm: fx.GraphModule, *, static_prefix: bool) -> None:
    """Make every value time-folded: after the last node computed from the input alone (or right
    after the input, ``static_prefix=False``) insert :class:`RepeatTime`."""
    static: set[fx.Node] = set()
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            static.add(node)
        elif static_prefix and node.op != "output" and not _is_neuron(gm, node) and all(
                a in static for a in node.all_input_nodes):
            static.add(node)
    gm.add_submodule("repeat_time", RepeatTime())
    for node in list(gm.graph.nodes):
        if node not in static:
            continue
        dynamic_users = [u for u in node.users if u not in static]
        if not dynamic_users:
            continue
        with gm.graph.inserting_after(node):
            rep = gm.graph.call_module("repeat_time", (node,))
        for u in dynamic_users:
            u.replace_input_with(node, rep)


def _passes_through(gm: fx.GraphModule, node: fx.Node) -> bool:
    """Nodes a spike value flows through linearly without mixing with other values."""
    if node.op == "call_module":          # pooling commutes with a positive scale
        return isinstance(gm.get_submodule(node.target), (nn.Flatten, *POOLS))
    if node.op == "call_function":
        return node.target in SHAPE_FUNCTIONS
    if node.op == "call_method":
        return node.target in SHAPE_METHODS and node.target != "size"
    return False


def _consumers(gm: fx.GraphModule, node: fx.Node) -> list[fx.Node] | None:
    """The weight-layer nodes that ``node``'s value reaches through pass-through nodes, or None
    when it also reaches anything else (an add, the output, a second use of a size)."""
    found: list[fx.Node] = []
    for user in node.users:
        if user.op == "call_method" and user.target == "size":
            continue
        if user.op == "call_module" and isinstance(gm.get_submodule(user.target), WEIGHT_LAYERS):
            if user.args[0] is not node:
                return None
            found.append(user)
        elif _passes_through(gm, user) and user.args[0] is node:
            deeper = _consumers(gm, user)
            if deeper is None:
                return None
            found += deeper
        else:
            return None
    return found


def fold_spike_values(gm: fx.GraphModule) -> list[str]:
    """Move each neuron's spike value into the weights of the layers it feeds, so that binary
    spikes (or spike counts) travel; a neuron whose output also reaches a residual addition, the
    output or a ternary layer keeps its value. Returns the neurons folded."""
    folded = []
    calls: dict[str, int] = {}
    for node in gm.graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    for node in gm.graph.nodes:
        if not _is_neuron(gm, node):
            continue
        neuron: ConvertedNeuron = gm.get_submodule(node.target)
        if neuron.spike_value.numel() != 1:
            continue
        consumers = _consumers(gm, node)
        if not consumers or any(calls[c.target] != 1 or isinstance(
                gm.get_submodule(c.target), TERNARY_LAYERS) for c in consumers):
            continue
        value = neuron.spike_value.clone()
        with torch.no_grad():
            for c in consumers:
                gm.get_submodule(c.target).weight.mul_(value)
        neuron.spike_value.fill_(1.0)
        folded.append(neuron.name)
    return folded


def convert(ann: nn.Module, method: Method = "qcfs", *, calibration: Tensor | None = None,
            timesteps: int = 4, encoding: Encoding = "direct", percentile: float = 99.99,
            levels: int | None = None, v_init: float | None = None,
            fold_values: bool = True) -> ConvertedSNN:
    """Convert ``ann`` into a :class:`ConvertedSNN` (a new model; ``ann`` is untouched).

    Args:
        ann: a ``torch.nn.Module`` of supported layers (see :mod:`snn5.train.conversion.ingest`).
        method: ``threshold_balancing``, ``qcfs``, ``scale_and_fire`` or ``logic_gated``.
        calibration: inputs ``[N, ...]`` for measuring ReLU activations (threshold balancing).
        timesteps: default T (``scale_and_fire`` runs with 1).
        encoding: ``direct`` (the analog input every step) or ``poisson``.
        percentile: threshold balancing's percentile of positive activations (100: max norm).
        levels: spikes per step of the scale-and-fire neuron (default: the QCFS levels, or 8).
        v_init: initial membrane as a fraction of the threshold (default: 0 for threshold
            balancing, 0.5 otherwise).
        fold_values: move spike values into the next weights so that binary spikes travel.
    """
    if method not in ("threshold_balancing", "qcfs", "scale_and_fire", "logic_gated"):
        raise ValueError(f"unknown conversion method {method!r}; valid: threshold_balancing, "
                         "qcfs, scale_and_fire, logic_gated")
    gm, acts = ingest(ann)
    ternary = [n for n, m in gm.named_modules() if isinstance(m, TERNARY_LAYERS)]
    if ternary and method != "logic_gated":
        raise ValueError(f"the ANN has ternary layers ({', '.join(ternary)}); convert it with "
                         "method: logic_gated")
    plans = plan_neurons(method, acts, gm, calibration, percentile=percentile, levels=levels,
                         v_init=v_init)
    _neuronize(gm, acts, plans)
    gm.graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    _insert_repeat(gm, static_prefix=encoding == "direct")
    if fold_values:
        fold_spike_values(gm)
    gm.graph.lint()
    gm.recompile()
    T = 1 if method == "scale_and_fire" else timesteps
    snn = ConvertedSNN(gm, timesteps=T, encoding=encoding, method=method)
    if method == "logic_gated":
        gate_ternary_layers(gm)
        gm.recompile()
    return snn.eval()


def _source_neuron(gm: fx.GraphModule, node: fx.Node) -> fx.Node | None:
    """The neuron whose output reaches ``node``'s input through pass-through nodes."""
    prev = node.args[0]
    while isinstance(prev, fx.Node):
        if _is_neuron(gm, prev):
            return prev
        if not _passes_through(gm, prev):
            return None
        prev = prev.args[0]
    return None


def gate_ternary_layers(gm: fx.GraphModule) -> list[str]:
    """Run the ternary layers of a converted graph with additions only (the logic-gated SNN).

    For a ternary layer ``L`` between neurons ``A`` (feeding it, spike value ``a``) and ``B``
    (its only user): ``A`` emits binary spikes (value 1); ``L`` becomes an add-only layer that
    returns the integer accumulation ``acc`` of its +1/-1 codes over active inputs; ``B``'s
    membrane, threshold and reset are divided by ``k = gamma * a`` (``gamma``: L's absmean
    scale), so it integrates ``acc + bias / k`` against ``v_th / k`` and fires exactly when the
    unscaled neuron would. The multiplications by ``gamma`` and ``a`` disappear; the bias
    becomes one addition per output and step. Returns the layers gated.
    """
    from snn5.train.conversion.logic_gated import to_add_only_

    gated = []
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or not isinstance(gm.get_submodule(node.target), TERNARY_LAYERS):
            continue
        src = _source_neuron(gm, node)
        users = list(node.users)
        if src is None or len(users) != 1 or not _is_neuron(gm, users[0]):
            raise ValueError(f"the ternary layer '{node.target}' must sit between two neurons "
                             "(spikes in, a neuron as its only user) to run with additions "
                             "only; make the first and the last weight layer float")
        consumers = _consumers(gm, src) or []
        if any(not isinstance(gm.get_submodule(c.target), TERNARY_LAYERS) for c in consumers) \
                or not consumers:
            raise ValueError(f"the neuron feeding '{node.target}' also feeds other layers; the "
                             "logic-gated SNN needs it to feed ternary layers only")
        a: ConvertedNeuron = gm.get_submodule(src.target)
        b: ConvertedNeuron = gm.get_submodule(users[0].target)
        scale = float(a.spike_value) if a.spike_value.numel() == 1 else None
        if scale is None or a.levels != 1:
            raise ValueError(f"the neuron feeding '{node.target}' must emit binary spikes of one "
                             "value per layer")
        twin = to_add_only_(gm, fold_scale=True, input_scales={node.target: scale},
                            filter_fn=lambda m, name, t=node.target: name == t)[node.target]
        fold = twin.folded(b.v_th)
        b.v_th = fold.v_th.to(torch.float32).clone()
        if fold.offset is not None:
            offset = fold.offset.to(torch.float32)
            if isinstance(twin, AddOnlyConv2d):
                offset = offset.reshape(-1, 1, 1)                      # [C, 1, 1]
            b.input_offset = offset.clone()
        a.spike_value = torch.ones_like(a.spike_value)
        gated.append(node.target)
    return gated


# ----------------------------------------------------------------------------- evaluation

def accuracy_by_timesteps(model: ConvertedSNN, batches: Iterable[tuple[Tensor, Tensor]],
                          timesteps: Sequence[int], *, seed: int = 0) -> dict[int, float]:
    """Accuracy at each T of ``timesteps`` from one run of ``max(timesteps)`` steps: the
    prediction at T is the arg-max of the mean output over the first T steps (neurons are
    causal, so this equals a run of T steps)."""
    steps = sorted({int(t) for t in timesteps})
    if not steps or steps[0] < 1:
        raise ValueError(f"timesteps must be integers >= 1, got {list(timesteps)}")
    T = steps[-1]
    correct = dict.fromkeys(steps, 0)
    total = 0
    g = torch.Generator().manual_seed(seed)
    model.eval()
    with torch.inference_mode():
        for x, y in batches:
            seq = model.sequence(x, T, generator=g)                   # [T, B, C]
            cum = seq.cumsum(0)                                        # [T, B, C]
            for t in steps:
                correct[t] += int((cum[t - 1].argmax(-1) == y).sum())
            total += y.shape[0]
    if total == 0:
        raise ValueError("batches is empty; pass at least one (x, y) batch")
    return {t: correct[t] / total for t in steps}


__all__ = ["ConvertedSNN", "Encoding", "Method", "NeuronPlan", "accuracy_by_timesteps",
           "activation_stats", "convert", "fold_spike_values", "plan_neurons"]
