"""Counting synaptic operations (SynOps), multiply-accumulates (MACs), neuron updates and spikes
with forward hooks.

Every ``nn.Linear`` and ``nn.Conv1d/2d/3d`` of a model is counted at each call, wherever it sits
(inside :class:`snn5.nn.TimeDistributed`, a Sequential, a custom module):

- input made only of values in {-1, 0, 1} (spikes, signed spikes included): **SynOps**, the
  accumulates the nonzero inputs actually trigger. Linear: ``nnz(x) * out_features``. Conv: for
  every active input, the number of (output position, output channel) pairs its kernel window
  reaches, honouring stride, padding, dilation and groups. A synapse whose weight is exactly
  zero (pruned, or a zero code) triggers nothing: with zeros in the weight only the nonzero
  synapses of each active input count.
- input made only of integers in [-MAX_SPIKES_PER_STEP, MAX_SPIKES_PER_STEP] (multi-spike or
  multi-threshold neurons emitting n spikes in one step, e.g. scale-and-fire): **SynOps**, each
  of the n spikes triggering its accumulates, so an input n counts ``|n|`` times the above.
  (The cap, 15 = a 4-bit count, keeps raw integer data such as 0-255 pixels out: they are
  analog input and count as MACs.)
- any other input (the analog first layer of a direct-encoded network): dense **MACs**,
  ``output elements * fan_in`` with ``fan_in = in_features`` or ``C_in / groups * prod(kernel)``.

The add-only layers of a logic-gated SNN (:data:`snn5.nn.ternary.ADD_ONLY_LAYERS`) are counted
too: their own count of additions (active inputs x fan-out, plus unfolded bias additions) as
SynOps, or dense MACs with ``dense=True``.

Operations between activations that sit in their own modules are counted too:

- :class:`snn5.nn.attention.SpikeMatmul` ``a @ b`` (``a: [..., N, M]``, ``b: [..., M, P]``;
  attention products of spiking transformers): both operands spikes / spike counts: SynOps,
  one addition per pair of active entries that meet, ``sum_m |a|[:, m].sum() * |b|[m, :].sum()``;
  one operand spikes: each active entry adds a row or column of the other (``|a|.sum() * P``
  or ``|b|.sum() * N``); neither: ``N * M * P`` MACs.
- :class:`snn5.nn.attention.MaskedTokenSum` ``SUM_c(K ⊗ V)`` (SDSA): with spikes, one addition
  per entry where both fire; otherwise one MAC per product.
- :class:`snn5.nn.ssm.DiagonalSSM` (``u: [T, B, H]``, N complex modes): the input into the
  modes and the skip term, ``2N + 1`` accumulates per active input (SynOps, ``|u|`` times for
  counts) or per input (MACs, analog input); the complex decay and readout of the modes,
  ``6N`` MACs per channel and step (4 real products for ``Ā x``, 2 for ``Re(C x)``), always.

A Linear/Conv layer with the attribute ``dense_only = True`` (the ANN head of a hybrid
SNN-ANN, :mod:`snn5.models.hybrid`) always counts dense MACs: it runs on dense hardware, even
when its input happens to be all zeros or integers.

The scale and softmax-free normalisation of the attention (a constant folded into the next
neuron's threshold), the Hadamard masks, and the attention modules' weighting of currents are
elementwise and not counted.

Every counted synaptic layer also records its **dense MACs**, the MACs of the same call run
densely (``output elements * fan_in`` for Linear/Conv, the ``dense=True`` count of the others)
whatever its input: what a GPU computes, spikes or not.

Every neuron, i.e. every module that holds a membrane (the sequence neurons and Cells of
:mod:`snn5.nn.neurons` and :mod:`snn5.nn.neurons_ext`, the LI readout included, and the
:class:`snn5.nn.conversion.ConvertedNeuron` of a converted SNN), records at each call:

- **neuron updates**: one per neuron and step, the number of elements of its output
  (``T * B * prod(F)`` for a sequence ``[T, B, *F]``; ``B * prod(F)`` per Cell call; a
  spike-driven :class:`snn5.nn.IntLIF` updates at each of its ``T * D`` binary sub-steps);
- **spikes** emitted: ``sum |z|`` (a multi-spike output ``n`` counts n; a converted neuron's
  output ``n * spike_value`` counts n); 0 for a non-spiking LI;
- its size ``prod(F)``, the neurons per sample.

Biases, normalisation, pooling and functional calls (``F.linear`` on a bare weight) are not
counted. A layer whose input is all zeros counts as spiking (0 SynOps).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from snn5.metrics.energy import COUNT_KEYS
from snn5.nn.attention import MaskedTokenSum, SpikeMatmul
from snn5.nn.conversion import ConvertedNeuron
from snn5.nn.neurons import Neuron, NeuronBase
from snn5.nn.ssm import DiagonalSSM
from snn5.nn.ternary import ADD_ONLY_LAYERS

_CONVS: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONV_FN = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_ACTIVATION_OPS: tuple[type[nn.Module], ...] = (SpikeMatmul, MaskedTokenSum, DiagonalSSM)
_SYNAPTIC: tuple[type[nn.Module], ...] = (nn.Linear, *_CONVS, *ADD_ONLY_LAYERS, *_ACTIVATION_OPS)
_NEURONS: tuple[type[nn.Module], ...] = (NeuronBase, ConvertedNeuron)


def counted_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The modules of ``model`` that :class:`OpCounter` counts, by name, in model order: the
    synaptic ones (Linear, Conv1d/2d/3d, add-only, spike-product, SSM) and the neurons."""
    return {name: m for name, m in model.named_modules() if isinstance(m, (*_SYNAPTIC, *_NEURONS))}


def is_neuron(module: nn.Module) -> bool:
    """True for a module whose calls :class:`OpCounter` counts as neuron updates and spikes."""
    return isinstance(module, _NEURONS)


MAX_SPIKES_PER_STEP = 15
"""The largest spike count per input and step that :class:`OpCounter` counts as spikes."""


def is_spike_tensor(x: Tensor) -> bool:
    """True when every entry of ``x`` is -1, 0 or 1 (binary or signed spikes)."""
    return bool(((x == 0) | (x.abs() == 1)).all())


def is_spike_count_tensor(x: Tensor) -> bool:
    """True when every entry of ``x`` is an integer spike count with ``|n| <=``
    :data:`MAX_SPIKES_PER_STEP` (binary and signed spikes included)."""
    a = x.abs()
    return bool(((a == torch.round(a)) & (a <= MAX_SPIKES_PER_STEP)).all())


def _fan_in(layer: nn.Module) -> int:
    """Multiplies per output element of a dense pass."""
    if isinstance(layer, nn.Linear):
        return layer.in_features
    return layer.in_channels // layer.groups * math.prod(layer.kernel_size)


def dense_macs(layer: nn.Module, output: Tensor) -> int:
    """``output elements * fan_in``: MACs of one dense call of a Linear/Conv layer."""
    if isinstance(layer, ADD_ONLY_LAYERS):
        return output.numel() * layer.codes[0].numel()
    return output.numel() * _fan_in(layer)


def linear_synops(layer: nn.Linear, x: Tensor) -> int:
    """Accumulates triggered by the spikes of ``x: [..., in_features]``: every nonzero entry,
    ``|n|`` times for a count ``n`` of spikes, along every nonzero synapse of its input
    (``out_features`` of them unless the weight has zeros, e.g. after pruning)."""
    per_input = x.abs().reshape(-1, x.shape[-1]).sum(0, dtype=torch.float64)   # [in]
    fan_out = (layer.weight != 0).sum(0, dtype=torch.float64)                  # [in]
    return int((per_input @ fan_out).round().item())


def conv_synops(layer: nn.Conv1d | nn.Conv2d | nn.Conv3d, x: Tensor) -> int:
    """Accumulates triggered by the spikes of ``x: [N, C_in, *S]`` (or ``[C_in, *S]``): every
    nonzero entry, ``|n|`` times for a count ``n`` of spikes.

    The activity map (0/1, or the spike counts ``|n|``) is convolved with an all-ones kernel
    ``[groups, C_in/groups, *k]`` (same stride, padding, dilation, groups and padding mode as
    ``layer``): each output entry
    ``[n, g, *o]`` is the number of active inputs of group ``g`` in the window of position ``o``.
    Their sum counts (active input, output position) pairs; each pair feeds ``C_out / groups``
    output channels. A weight with zeros (pruned) is counted through its nonzero pattern
    ``[C_out, C_in/groups, *k]`` instead, so only (spike, output) pairs joined by a nonzero
    synapse count.
    """
    nd = len(layer.kernel_size)
    if x.ndim == nd + 1:                               # unbatched [C_in, *S]
        x = x.unsqueeze(0)                             # [1, C_in, *S]
    active = x.abs().to(torch.float32)                 # [N, C_in, *S] spike counts >= 0
    pruned = bool((layer.weight == 0).any())
    if pruned:                                         # [C_out, C_in/g, *k] nonzero pattern
        ones = (layer.weight != 0).to(torch.float32)
    else:                                              # every synapse: one kernel per group
        ones = torch.ones(layer.groups, layer.in_channels // layer.groups, *layer.kernel_size,
                          dtype=torch.float32, device=x.device)
    padding: Any = layer.padding
    if layer.padding_mode != "zeros":                  # as nn.Conv*._conv_forward does
        active = F.pad(active, layer._reversed_padding_repeated_twice, mode=layer.padding_mode)
        padding = 0
    no_autocast = (torch.autocast(x.device.type, enabled=False)     # fp16/bf16 would round
                   if torch.is_autocast_enabled(x.device.type) else nullcontext())
    with no_autocast:
        hits = _CONV_FN[nd](active, ones, None, layer.stride, padding, layer.dilation,
                            layer.groups)              # [N, groups, *O], exact small integers
    pairs = int(round(hits.sum(dtype=torch.float64).item()))
    return pairs if pruned else pairs * (layer.out_channels // layer.groups)


def _count(x: Tensor) -> Tensor:
    """``|x|`` in float64: the number of spikes each entry of a spike (count) tensor stands for."""
    return x.detach().abs().to(torch.float64)


def matmul_ops(a: Tensor, b: Tensor, *, dense: bool = False) -> tuple[int, int]:
    """``(synops, macs)`` of ``a @ b`` with ``a: [..., N, M]``, ``b: [..., M, P]`` (see the
    module docstring); ``dense=True``: all MACs."""
    n, m, p = a.shape[-2], a.shape[-1], b.shape[-1]
    batch = math.prod(torch.broadcast_shapes(a.shape[:-2], b.shape[:-2]))
    spikes_a = not dense and is_spike_count_tensor(a)
    spikes_b = not dense and is_spike_count_tensor(b)
    if spikes_a and spikes_b:                    # pairs (a[i, m], b[m, p]) both active
        meets = _count(a).sum(-2) * _count(b).sum(-1)            # [..., M] broadcast batch
        return int(meets.sum().round().item()), 0
    if spikes_a:                                 # each active a[i, m] adds row b[m, :]
        return int(_count(a).sum().round().item()) * p * (batch // math.prod(a.shape[:-2])), 0
    if spikes_b:                                 # each active b[m, p] adds column a[:, m]
        return int(_count(b).sum().round().item()) * n * (batch // math.prod(b.shape[:-2])), 0
    return 0, batch * n * m * p


def masked_sum_ops(k: Tensor, v: Tensor, *, dense: bool = False) -> tuple[int, int]:
    """``(synops, macs)`` of ``SUM_c(K ⊗ V)``: one addition per entry where both spike."""
    if not dense and is_spike_count_tensor(k) and is_spike_count_tensor(v):
        return int((_count(k) * _count(v)).sum().round().item()), 0
    return 0, torch.broadcast_shapes(k.shape, v.shape).numel()


def ssm_ops(layer: DiagonalSSM, u: Tensor, *, dense: bool = False) -> tuple[int, int]:
    """``(synops, macs)`` of a :class:`DiagonalSSM` call on ``u: [T, B, H]`` (see the module
    docstring)."""
    modes = layer.modes
    macs = u.numel() * 6 * modes                      # decay + readout of every mode, every step
    if not dense and is_spike_count_tensor(u):
        return int(_count(u).sum().round().item()) * (2 * modes + 1), macs
    return 0, macs + u.numel() * (2 * modes + 1)


def neuron_ops(layer: nn.Module, x: Tensor, output: Any) -> tuple[int, int, int]:
    """``(neurons, neuron updates, spikes)`` of one call of a neuron module (see the module
    docstring) on input ``x``: ``[T, B, *F]`` (sequence neuron), ``[B, *F]`` (Cell) or
    ``[T*B, *F]`` (time-folded :class:`ConvertedNeuron`)."""
    if isinstance(layer, ConvertedNeuron):
        n = output.detach().abs() / layer.spike_value.to(output.dtype).abs()    # [T*B, *F]
        spikes = int(n.sum(dtype=torch.float64).round().item())
        return math.prod(x.shape[1:]), output.numel(), spikes
    z = output[0].detach()                  # [T, B, *F] / [B, *F] (spike-driven: T*D, D steps)
    neurons = math.prod(x.shape[2:] if isinstance(layer, Neuron) else x.shape[1:])
    spikes = int(z.abs().sum(dtype=torch.float64).round().item()) if layer.spiking else 0
    return neurons, z.numel(), spikes


def _activation_ops(layer: nn.Module, args: tuple, dense: bool) -> tuple[int, int]:
    if isinstance(layer, SpikeMatmul):
        return matmul_ops(args[0].detach(), args[1].detach(), dense=dense)
    if isinstance(layer, MaskedTokenSum):
        return masked_sum_ops(args[0].detach(), args[1].detach(), dense=dense)
    return ssm_ops(layer, args[0].detach(), dense=dense)


@dataclass
class LayerOps:
    """Running totals of one counted layer and the number of calls seen.

    A synaptic layer counts ``synops``, ``macs`` and ``dense_macs``; a neuron (``neuron=True``)
    counts ``neuron_updates`` and ``spikes`` and keeps its size ``neurons`` (per sample).
    """

    synops: int = 0
    macs: int = 0
    dense_macs: int = 0
    neuron_updates: int = 0
    spikes: int = 0
    neurons: int = 0
    neuron: bool = False
    calls: int = 0

    def counts(self) -> dict[str, int]:
        """The totals under :data:`snn5.metrics.energy.COUNT_KEYS`."""
        return {key: getattr(self, key) for key in COUNT_KEYS}


def _first_tensor(args: tuple, kwargs: dict[str, Any]) -> Tensor | None:
    for value in (*args, *kwargs.values()):
        if isinstance(value, Tensor):
            return value
    return None


class OpCounter:
    """Count SynOps, MACs and dense MACs of every Linear/Conv layer (and spike product / SSM
    module), and neuron updates and spikes of every neuron, of ``model`` during forward passes.

    The hooks only read: outputs, gradients and the autograd graph are unchanged, no tensor is
    kept, and the hooks are removed on exit. Counts accumulate over calls and over repeated
    ``with`` blocks until :meth:`reset`.

    Args:
        model: the network; layers are named by their qualified name in it.
        dense: count every call as dense MACs whatever its input (the ANN view).
        infer_samples: add the first dimension of the model's input (``x: [B, ...]``) to
            :attr:`samples` at every call of ``model``; with False, call :meth:`add_samples`.

    Example:
        >>> with OpCounter(snn) as ops:
        ...     logits = snn(x)                      # x: [B, *input_shape]
        >>> ops.synops_per_sample, ops.synops_per_layer["features.3.module"]
        >>> ops.counts_per_layer["features.4"]["neuron_updates"]     # per sample
    """

    def __init__(self, model: nn.Module, *, dense: bool = False, infer_samples: bool = True
                 ) -> None:
        self.model = model
        self.dense = bool(dense)
        self.infer_samples = bool(infer_samples)
        self.layers: dict[str, LayerOps] = {name: LayerOps(neuron=is_neuron(m))
                                            for name, m in counted_layers(model).items()}
        self.samples = 0
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._additions: dict[str, int] = {}            # add-only layers: count before a call

    # ------------------------------------------------------------------ hooks

    def __enter__(self) -> OpCounter:
        if self._handles:
            raise RuntimeError("this OpCounter is already active; leave its `with` block first")
        try:
            for name, layer in counted_layers(self.model).items():
                self.layers.setdefault(name, LayerOps(neuron=is_neuron(layer)))
                if isinstance(layer, ADD_ONLY_LAYERS):
                    self._handles.append(layer.register_forward_pre_hook(self._before(name)))
                self._handles.append(layer.register_forward_hook(self._hook(name),
                                                                 with_kwargs=True))
            if self.infer_samples:
                self._handles.append(self.model.register_forward_pre_hook(self._count_samples,
                                                                          with_kwargs=True))
        except BaseException:
            self._remove()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._remove()

    def _remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _count_samples(self, module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        x = _first_tensor(args, kwargs)
        if x is not None and x.ndim > 0:
            self.samples += x.shape[0]

    def _before(self, name: str):
        def hook(layer: nn.Module, args: tuple) -> None:
            self._additions[name] = layer.op_counts.additions
        return hook

    def _hook(self, name: str):
        def hook(layer: nn.Module, args: tuple, kwargs: dict[str, Any], output: Any) -> None:
            ops = self.layers[name]
            if isinstance(layer, _NEURONS):
                x = _first_tensor(args, kwargs)
                if x is None:
                    return
                ops.calls += 1
                with torch.no_grad():
                    ops.neurons, updates, spikes = neuron_ops(layer, x, output)
                ops.neuron_updates += updates
                ops.spikes += spikes
                return
            if isinstance(layer, _ACTIVATION_OPS):
                ops.calls += 1
                with torch.no_grad():
                    synops, macs = _activation_ops(layer, args, self.dense)
                    ops.dense_macs += macs if self.dense else _activation_ops(layer, args, True)[1]
                ops.synops += synops
                ops.macs += macs
                return
            x = args[0] if args else kwargs.get("input")
            if not isinstance(x, Tensor):
                return
            ops.calls += 1
            with torch.no_grad():
                x = x.detach()
                ops.dense_macs += dense_macs(layer, output)
                if isinstance(layer, ADD_ONLY_LAYERS) and not self.dense:
                    ops.synops += layer.op_counts.additions - self._additions.pop(name)
                elif (self.dense or getattr(layer, "dense_only", False)
                      or not is_spike_count_tensor(x)):
                    ops.macs += dense_macs(layer, output)
                elif isinstance(layer, nn.Linear):
                    ops.synops += linear_synops(layer, x)
                else:
                    ops.synops += conv_synops(layer, x)
        return hook

    # ------------------------------------------------------------------ results

    def add_samples(self, n: int) -> None:
        """Tell the counter that ``n`` more samples went through the model."""
        if not isinstance(n, int) or n < 0:
            raise ValueError(f"n must be an int >= 0, got {n!r}")
        self.samples += n

    def reset(self) -> None:
        """Zero all counts and the number of samples."""
        self.layers = {name: LayerOps(neuron=ops.neuron) for name, ops in self.layers.items()}
        self.samples = 0

    @property
    def synops(self) -> int:
        """Total SynOps over all layers and calls."""
        return sum(ops.synops for ops in self.layers.values())

    @property
    def macs(self) -> int:
        """Total dense MACs over all layers and calls."""
        return sum(ops.macs for ops in self.layers.values())

    def _per_sample(self, count: int) -> float:
        if self.samples <= 0:
            raise RuntimeError("no samples were counted: run the model inside the `with` block "
                               "(with infer_samples=True) or call add_samples(batch_size)")
        return count / self.samples

    @property
    def synops_per_sample(self) -> float:
        """Total SynOps divided by the number of samples."""
        return self._per_sample(self.synops)

    @property
    def macs_per_sample(self) -> float:
        """Total MACs divided by the number of samples."""
        return self._per_sample(self.macs)

    @property
    def synops_per_layer(self) -> dict[str, float]:
        """SynOps per sample of each synaptic layer, by qualified name."""
        return {name: self._per_sample(ops.synops) for name, ops in self.layers.items()
                if not ops.neuron}

    @property
    def macs_per_layer(self) -> dict[str, float]:
        """MACs per sample of each synaptic layer, by qualified name."""
        return {name: self._per_sample(ops.macs) for name, ops in self.layers.items()
                if not ops.neuron}

    @property
    def counts_per_layer(self) -> dict[str, dict[str, float]]:
        """Per sample, ``{layer: {"synops", "macs", "dense_macs", "neuron_updates",
        "spikes"}}`` of every counted layer in model order: the input of
        :func:`snn5.metrics.energy_breakdown`."""
        return {name: {key: self._per_sample(n) for key, n in ops.counts().items()}
                for name, ops in self.layers.items()}

    @property
    def neurons_per_layer(self) -> dict[str, int]:
        """Neurons per sample (``prod(F)``) of each neuron layer seen in a call."""
        return {name: ops.neurons for name, ops in self.layers.items()
                if ops.neuron and ops.calls}


@contextmanager
def eval_mode(*models: nn.Module) -> Iterator[None]:
    """Put ``models`` in eval mode and restore every submodule's own ``training`` flag after."""
    saved = [(m, m.training) for model in models for m in model.modules()]
    try:
        for model in models:
            model.eval()
        yield
    finally:
        for m, training in saved:
            m.training = training


def count_macs(model: nn.Module, x: Tensor) -> float:
    """Dense MACs per sample of one forward of ``model`` on ``x: [B, *input_shape]``.

    Every Linear/Conv call is counted as dense, whatever its input: the cost of the same-size
    ANN. The forward runs in eval mode under ``torch.inference_mode()`` (batch-norm statistics
    are not touched) and the modes are restored afterwards.
    """
    if x.ndim == 0 or x.shape[0] == 0:
        raise ValueError(f"x must be a batch [B, ...] with B >= 1, got shape {tuple(x.shape)}")
    counter = OpCounter(model, dense=True, infer_samples=False)
    with eval_mode(model), torch.inference_mode(), counter:
        model(x)
    counter.add_samples(x.shape[0])
    return counter.macs_per_sample


__all__ = ["LayerOps", "MAX_SPIKES_PER_STEP", "OpCounter", "conv_synops", "count_macs",
           "counted_layers", "dense_macs", "eval_mode", "is_neuron", "is_spike_count_tensor",
           "is_spike_tensor", "linear_synops", "masked_sum_ops", "matmul_ops", "neuron_ops",
           "ssm_ops"]
