"""Read an ANN into a conversion-ready ``torch.fx`` graph: trace, check every operation against
what conversion supports, drop what only training needs, fold BatchNorm into the preceding
weight layer.

Supported: Linear, Conv1d/Conv2d (and their ternary twins), BatchNorm1d/2d right after one of
them, ReLU / ReLU6 / Hardtanh(0, m) (clipped ReLU) / QCFS activations, Avg/Max pooling
(adaptive average too), Flatten / view / reshape, residual additions, and Dropout / Identity /
input noise (removed). Anything else fails before any work with the list of offending nodes.
"""

from __future__ import annotations

import copy
import operator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import fx, nn

from snn5.nn.conversion import QCFS
from snn5.nn.ternary import TERNARY_LAYERS, InputNoise

WEIGHT_LAYERS: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d)
NORMS: tuple[type[nn.Module], ...] = (nn.BatchNorm1d, nn.BatchNorm2d)
ACTIVATIONS: tuple[type[nn.Module], ...] = (nn.ReLU, nn.ReLU6, nn.Hardtanh, QCFS)
POOLS: tuple[type[nn.Module], ...] = (nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d,
                                      nn.AdaptiveAvgPool2d, nn.MaxPool1d, nn.MaxPool2d)
SHAPES: tuple[type[nn.Module], ...] = (nn.Flatten,)
REMOVED: tuple[type[nn.Module], ...] = (nn.Dropout, nn.Identity, InputNoise)
SUPPORTED_MODULES = WEIGHT_LAYERS + NORMS + ACTIVATIONS + POOLS + SHAPES + REMOVED
ADD_FUNCTIONS = (operator.add, torch.add)
RELU_FUNCTIONS = (F.relu, torch.relu)
SHAPE_FUNCTIONS = (torch.flatten, torch.reshape)
SHAPE_METHODS = ("view", "reshape", "flatten", "size", "contiguous")


class UnsupportedLayerError(TypeError):
    """The ANN holds operations conversion cannot map to spiking neurons."""


def supported_summary() -> str:
    mods = sorted({m.__name__ for m in SUPPORTED_MODULES + TERNARY_LAYERS})
    return (f"modules: {', '.join(mods)}; functions: +, torch.add, F.relu, torch.relu, "
            f"torch.flatten, torch.reshape; methods: {', '.join(SHAPE_METHODS)}, add, relu")


@dataclass(frozen=True)
class Activation:
    """An activation node of the ingested graph and what it is."""

    node: str                     # fx node name
    kind: str                     # "relu", "clip" or "qcfs"
    clip: float | None            # the clip value (clipped ReLU: m; QCFS: lambda)
    levels: int | None            # QCFS quantization steps


def _is_relu_hardtanh(m: nn.Module) -> bool:
    return isinstance(m, nn.Hardtanh) and not isinstance(m, nn.ReLU6) and m.min_val == 0.0


class _Tracer(fx.Tracer):
    """Keeps the conversion-aware modules (QCFS, ternary layers, input noise) as leaves."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, (QCFS, InputNoise, *TERNARY_LAYERS)) or super().is_leaf_module(m, qualname)


def trace(ann: nn.Module) -> fx.GraphModule:
    """A copy of ``ann`` in eval mode traced by ``torch.fx``, every node checked."""
    if not isinstance(ann, nn.Module):
        raise TypeError(f"conversion takes a torch.nn.Module ANN, got {type(ann).__name__}")
    model = copy.deepcopy(ann).eval()
    try:
        gm = fx.GraphModule(model, _Tracer().trace(model), type(model).__name__)
    except Exception as exc:      # data-dependent control flow and the like
        raise UnsupportedLayerError(
            f"torch.fx could not trace {type(ann).__name__}: {exc}. Conversion needs a "
            "model whose forward is a fixed graph (no data-dependent if/for)") from exc
    bad = []
    for node in gm.graph.nodes:
        if node.op == "call_module":
            m = gm.get_submodule(node.target)
            if isinstance(m, nn.Hardtanh) and not isinstance(m, nn.ReLU6) and not _is_relu_hardtanh(m):
                bad.append(f"{node.target} (Hardtanh with min_val={m.min_val}; only the "
                           "clipped ReLU Hardtanh(0, m) converts)")
            elif not isinstance(m, SUPPORTED_MODULES):
                bad.append(f"{node.target} ({type(m).__name__})")
        elif node.op == "call_function":
            if node.target not in ADD_FUNCTIONS + RELU_FUNCTIONS + SHAPE_FUNCTIONS:
                bad.append(f"{node.name} (function {getattr(node.target, '__name__', node.target)})")
        elif node.op == "call_method":
            if node.target not in SHAPE_METHODS + ("add", "relu"):
                bad.append(f"{node.name} (method .{node.target}())")
    if bad:
        raise UnsupportedLayerError(
            "the ANN holds operations that do not convert to a spiking network:\n  "
            + "\n  ".join(bad) + f"\nSupported: {supported_summary()}.")
    return gm


def _replace(gm: fx.GraphModule, node: fx.Node, by: fx.Node) -> None:
    node.replace_all_uses_with(by)
    gm.graph.erase_node(node)


def _fold_bn(layer: nn.Module, bn: nn.Module) -> None:
    """Fold eval-mode BatchNorm into the weight layer before it, in place:
    ``w' = w * g / s``, ``b' = (b - mean) * g / s + beta`` with ``s = sqrt(var + eps)``."""
    with torch.no_grad():
        std = torch.sqrt(bn.running_var + bn.eps)
        gamma = bn.weight if bn.affine else torch.ones_like(std)
        beta = bn.bias if bn.affine else torch.zeros_like(std)
        scale = gamma / std                                         # [C_out]
        w = layer.weight
        layer.weight.copy_(w * scale.reshape(-1, *([1] * (w.ndim - 1))))
        bias = layer.bias if layer.bias is not None else torch.zeros_like(std)
        new_bias = (bias - bn.running_mean) * scale + beta
        if layer.bias is None:
            layer.bias = nn.Parameter(new_bias.clone())
        else:
            layer.bias.copy_(new_bias)


def ingest(ann: nn.Module) -> tuple[fx.GraphModule, list[Activation]]:
    """Trace ``ann``, drop Dropout/Identity/input noise, fold every BatchNorm into the weight
    layer before it, and list the activations in graph order.

    Returns:
        The folded graph (a new module; ``ann`` is untouched) and its activations.
    """
    gm = trace(ann)
    modules = dict(gm.named_modules())
    for node in list(gm.graph.nodes):
        if node.op == "call_module" and isinstance(modules[node.target], REMOVED):
            _replace(gm, node, node.args[0])
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or not isinstance(modules[node.target], NORMS):
            continue
        prev = node.args[0]
        prev_mod = modules.get(prev.target) if isinstance(prev, fx.Node) and prev.op == "call_module" else None
        if not isinstance(prev_mod, WEIGHT_LAYERS) or len(prev.users) != 1:
            raise UnsupportedLayerError(
                f"BatchNorm '{node.target}' does not directly follow a Linear/Conv layer whose "
                "only use it is; conversion folds BatchNorm into the preceding weight layer. "
                "Move it right after a Linear/Conv.")
        if isinstance(prev_mod, TERNARY_LAYERS):
            raise UnsupportedLayerError(
                f"BatchNorm '{node.target}' follows the ternary layer '{prev.target}'; folding "
                "it would make the weights non-ternary. Train the logic-gated ANN without "
                "BatchNorm after ternary layers (mlp with batch_norm: false).")
        _fold_bn(prev_mod, modules[node.target])
        _replace(gm, node, prev)
    acts = []
    for node in gm.graph.nodes:
        kind = None
        if node.op == "call_module":
            m = modules[node.target]
            if isinstance(m, QCFS):
                acts.append(Activation(node.name, "qcfs", float(m.lam.detach()), m.levels))
            elif isinstance(m, nn.ReLU6):
                acts.append(Activation(node.name, "clip", 6.0, None))
            elif _is_relu_hardtanh(m):
                acts.append(Activation(node.name, "clip", float(m.max_val), None))
            elif isinstance(m, nn.ReLU):
                kind = "relu"
        elif (node.op == "call_function" and node.target in RELU_FUNCTIONS) or \
                (node.op == "call_method" and node.target == "relu"):
            kind = "relu"
        if kind:
            acts.append(Activation(node.name, kind, None, None))
    gm.graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    gm.recompile()
    if not acts:
        raise UnsupportedLayerError("the ANN has no activation to turn into spiking neurons")
    return gm, acts


__all__ = ["Activation", "UnsupportedLayerError", "ingest", "supported_summary", "trace"]
