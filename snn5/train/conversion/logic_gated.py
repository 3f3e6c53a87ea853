"""The logic-gated SNN: swap trained ternary layers for their add-only twins, count what they
compute, and measure robustness to input noise.

Train an ANN with :class:`~snn5.nn.ternary.TernaryLinear` / :class:`~snn5.nn.ternary.
TernaryConv2d` layers (and :class:`~snn5.nn.ternary.InputNoise` in front for hyper-robust
training), convert it to an SNN whose neurons emit binary spikes, then call
:func:`to_add_only_` on the SNN: every ternary layer fed by spikes becomes an add-only layer
(additions of ±1 codes, no multiplication; see :mod:`snn5.nn.ternary` for what remains and how
``gamma`` and the bias fold into the next neuron). :func:`add_only_counts` sums the operations
they performed.

Example:
    >>> snn = convert(ann, ...)                                    # binary-spike neurons
    >>> to_add_only_(snn, filter_fn=lambda m, name: name != "features.0")  # analog 1st layer
    >>> reset_counts(snn); snn(x); add_only_counts(snn)
    OpCounts(additions=..., multiplications=...)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping

import torch
from torch import Tensor, nn
from torch.fx import GraphModule, Tracer

from snn5.core.conversion import replace_noise, ternarize
from snn5.nn.ternary import (
    ADD_ONLY_LAYERS, TERNARY_LAYERS, AddOnlyConv2d, AddOnlyLinear, InputNoise, OpCounts,
    TernaryConv2d, TernaryLinear,
)

FilterFn = Callable[[nn.Module, str], bool]


# ----------------------------------------------------------------------------- tracing

def is_logic_gated_leaf(module: nn.Module) -> bool:
    """True for the modules a ``torch.fx`` tracer must keep whole (not trace into): ternary and
    add-only layers (so :func:`to_add_only_` can find and swap them) and :class:`InputNoise`
    (whose train/eval branch would be frozen at trace time). Use it in a custom tracer's
    ``is_leaf_module``."""
    return isinstance(module, TERNARY_LAYERS + ADD_ONLY_LAYERS + (InputNoise,))


class LogicGatedTracer(Tracer):
    """``torch.fx.Tracer`` that keeps :func:`is_logic_gated_leaf` modules as ``call_module``
    nodes (the default tracer records a ternary layer as ``ternarize`` + ``linear`` calls)."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return is_logic_gated_leaf(m) or super().is_leaf_module(m, module_qualified_name)


def trace_logic_gated(module: nn.Module) -> GraphModule:
    """``torch.fx.symbolic_trace`` with :class:`LogicGatedTracer`."""
    tracer = LogicGatedTracer()
    graph = tracer.trace(module)
    return GraphModule(tracer.root, graph, type(module).__name__)


# ----------------------------------------------------------------------------- the swap

def to_add_only_(module: nn.Module, *, fold_scale: bool = False,
                 input_scales: Mapping[str, float] | None = None,
                 filter_fn: FilterFn | None = None) -> dict[str, nn.Module]:
    """Replace, in place, every :class:`TernaryLinear` / :class:`TernaryConv2d` submodule by its
    add-only twin (:class:`AddOnlyLinear` / :class:`AddOnlyConv2d`, built by ``from_ternary``).

    Works on any module tree, ``nn.Sequential`` and ``torch.fx.GraphModule`` included (a
    GraphModule must have been traced with the ternary layers as leaves,
    :func:`trace_logic_gated`). The swap keeps the codes, ``gamma`` and the bias and drops the
    latent float weights, so it has no inverse: keep the ANN (conversion returns a new model).

    Args:
        module: the SNN whose ternary layers receive binary spikes.
        fold_scale: build the add-only layers with ``fold_scale`` (they return the integer
            accumulation; the caller folds ``gamma`` and the bias into the next neuron).
        input_scales: ``{name: amplitude}`` of one input spike, for layers fed by neurons that
            were emitting ``n * v_th`` (their ``gamma`` becomes ``gamma * amplitude``).
        filter_fn: ``filter_fn(layer, name) -> bool``; only layers for which it is true are
            swapped (leave out a first layer that sees analog input).

    Returns:
        ``{name: new layer}`` for every layer swapped.
    """
    if isinstance(module, TERNARY_LAYERS):
        raise TypeError(f"to_add_only_ swaps submodules in place and cannot replace the module "
                        f"it is given ({type(module).__name__}); use "
                        f"AddOnly{type(module).__name__[len('Ternary'):]}.from_ternary(layer)")
    if isinstance(module, GraphModule):
        inlined = [n.name for n in module.graph.nodes
                   if n.op == "call_function" and n.target is ternarize]
        if inlined:
            raise ValueError(f"this GraphModule was traced through its ternary layers (nodes "
                             f"{inlined} call ternarize), so there is no layer to swap. Trace "
                             "with snn5.train.conversion.logic_gated.trace_logic_gated(model), "
                             "or a tracer whose is_leaf_module returns True for "
                             "is_logic_gated_leaf(m).")
    targets = [(name, layer) for name, layer in module.named_modules()
               if isinstance(layer, TERNARY_LAYERS)
               and (filter_fn is None or filter_fn(layer, name))]
    scales = dict(input_scales or {})
    unknown = sorted(set(scales) - {name for name, _ in targets})
    if unknown:
        raise ValueError(f"input_scales names {unknown} are not ternary layers being swapped; "
                         f"those are {[name for name, _ in targets]}")
    swapped: dict[str, nn.Module] = {}
    for name, layer in targets:
        scale = float(scales.get(name, 1.0))
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"input_scales[{name!r}] must be a positive number, got {scale!r}")
        twin: nn.Module
        if isinstance(layer, TernaryLinear):
            twin = AddOnlyLinear.from_ternary(layer, fold_scale=fold_scale, input_scale=scale)
        elif isinstance(layer, TernaryConv2d):
            twin = AddOnlyConv2d.from_ternary(layer, fold_scale=fold_scale, input_scale=scale)
        parent_name, _, child = name.rpartition(".")
        setattr(module.get_submodule(parent_name), child, twin)
        swapped[name] = twin
    return swapped


def add_only_counts(module: nn.Module) -> OpCounts:
    """The operations performed by all add-only layers of ``module`` since their last reset."""
    total = OpCounts()
    for layer in module.modules():
        if isinstance(layer, ADD_ONLY_LAYERS):
            total = total + layer.op_counts
    return total


def reset_counts(module: nn.Module) -> None:
    """Zero the ``op_counts`` of every add-only layer of ``module``."""
    for layer in module.modules():
        if isinstance(layer, ADD_ONLY_LAYERS):
            layer.op_counts.reset()


# ----------------------------------------------------------------------------- robustness

def noise_robustness(predict_fn: Callable[[Tensor], Tensor], x: Tensor, y: Tensor,
                     fractions: Iterable[float] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5), seed: int = 0,
                     batch_size: int = 256) -> dict[float, float]:
    """Accuracy of ``predict_fn`` on ``x`` with a fraction of every sample's entries replaced by
    uniform noise in [0, 1) (:func:`snn5.core.conversion.replace_noise`), per fraction.

    Each fraction draws its corruption from a generator seeded with ``seed`` and goes through
    the batches in order, so the result is reproducible for the same ``seed`` and
    ``batch_size``, and the entries corrupted at one fraction are a subset of those corrupted at
    any larger one (the same draws are compared with a larger threshold). Runs under
    ``torch.no_grad()``; put the model in ``eval()`` mode yourself.

    Args:
        predict_fn: ``x_batch [b, *F] -> logits [b, classes]``.
        x: float inputs ``[N, *F]`` (in [0, 1], like the noise).
        y: integer labels ``[N]``.
        fractions: noise fractions in [0, 1].
        seed: seed of the corruption.
        batch_size: samples per call of ``predict_fn``.

    Returns:
        ``{fraction: accuracy}`` in the order given.
    """
    fractions = [float(f) for f in fractions]
    bad = [f for f in fractions if not 0.0 <= f <= 1.0]
    if bad:
        raise ValueError(f"noise fractions must lie in [0, 1], got {bad} (10 % is 0.1)")
    if not x.is_floating_point() or x.ndim < 1:
        raise ValueError(f"x must be float inputs [N, ...], got {x.dtype} of shape "
                         f"{tuple(x.shape)}; convert images with x.float() / 255")
    if y.shape != x.shape[:1]:
        raise ValueError(f"y must hold one label per sample, shape {tuple(x.shape[:1])}, got "
                         f"{tuple(y.shape)}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    N = x.shape[0]
    if N == 0:
        raise ValueError("noise_robustness needs at least one sample")
    results: dict[float, float] = {}
    with torch.no_grad():
        for fraction in fractions:
            generator = torch.Generator(device=x.device).manual_seed(seed)
            correct = 0
            for start in range(0, N, batch_size):
                xb, yb = x[start:start + batch_size], y[start:start + batch_size]  # [b, *F]
                if fraction > 0:
                    p = torch.full(xb.shape[:1], fraction, dtype=x.dtype, device=x.device)
                    xb = replace_noise(xb, p, generator)
                logits = predict_fn(xb)
                if logits.ndim != 2 or logits.shape[0] != xb.shape[0]:
                    raise ValueError(f"predict_fn must return logits [batch, classes], got shape "
                                     f"{tuple(logits.shape)} for a batch of {xb.shape[0]}")
                correct += int((logits.argmax(dim=1) == yb.to(logits.device)).sum())
            results[fraction] = correct / N
    return results


__all__ = ["LogicGatedTracer", "add_only_counts", "is_logic_gated_leaf", "noise_robustness",
           "reset_counts", "to_add_only_", "trace_logic_gated"]
