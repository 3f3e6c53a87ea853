"""In-place pruning of Linear and Conv weights, with its inverse.

``prune_(model, MagnitudePrune(sparsity=0.8), filter_fn)`` attaches a fixed 0/1 mask to the
``weight`` of every selected layer through ``torch.nn.utils.prune`` (PyTorch's own mechanism:
the layer keeps ``weight_orig`` as its parameter and recomputes ``weight = weight_orig * mask``
before each forward), so the pruned entries stay zero through any further training: their
gradient is zero and the optimizer never revives them. ``remove_pruning_`` undoes it: with
``restore=True`` (the inverse) every layer gets back a plain ``weight`` holding ``weight_orig``
(the pruned entries as they were when pruned); with ``restore=False`` the zeros are baked into a
plain ``weight`` (a smaller, permanent model).

Magnitude criteria (Han et al., "Learning both Weights and Connections for Efficient Neural
Networks", NeurIPS 2015): unstructured pruning zeroes the entries of smallest ``|w|``; structured
pruning zeroes whole output units (Linear rows, Conv filters) of smallest L2 norm (Li et al.,
"Pruning Filters for Efficient ConvNets", ICLR 2017). ``scope="layer"`` prunes each layer to the
sparsity, ``scope="global"`` ranks all selected weights together (unstructured only).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torch.nn.utils import prune

__all__ = ["MagnitudePrune", "is_pruned", "prune_", "remove_pruning_", "sparsity"]

FilterFn = Callable[[nn.Module, str], bool]
PRUNABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclass(frozen=True)
class MagnitudePrune:
    """Prune the smallest weights (or units) to a target sparsity.

    Args:
        sparsity: fraction of weights (or output units) set to zero, in [0, 1).
        structured: prune whole output units by their L2 norm instead of single weights.
        scope: ``"layer"`` (each layer to ``sparsity``) or ``"global"`` (all selected weights
            ranked together; unstructured only).
    """

    sparsity: float
    structured: bool = False
    scope: Literal["layer", "global"] = "layer"

    def __post_init__(self) -> None:
        if not (isinstance(self.sparsity, (int, float)) and 0.0 <= self.sparsity < 1.0):
            raise ValueError(f"sparsity is the fraction of weights pruned, in [0, 1), got "
                             f"{self.sparsity!r}; 80 % is sparsity=0.8")
        if self.scope not in ("layer", "global"):
            raise ValueError(f"scope must be 'layer' or 'global', got {self.scope!r}")
        if self.structured and self.scope == "global":
            raise ValueError("structured pruning ranks units within a layer; use scope='layer' "
                             "with structured=True, or structured=False for a global ranking")


def _default_filter(module: nn.Module, name: str) -> bool:
    return isinstance(module, PRUNABLE)


def is_pruned(module: nn.Module) -> bool:
    """Whether ``module.weight`` carries a pruning mask."""
    return hasattr(module, "weight_mask") and hasattr(module, "weight_orig")


def _selected(model: nn.Module, filter_fn: FilterFn) -> list[tuple[str, nn.Module]]:
    layers = [(n, m) for n, m in model.named_modules()
              if isinstance(m, PRUNABLE) and filter_fn(m, n)]
    if not layers:
        raise ValueError("prune_ found no layer to prune: filter_fn selected no Linear/Conv "
                         "layer of the model; check the filter (it is called as "
                         "filter_fn(module, name))")
    twice = [n for n, m in layers if is_pruned(m)]
    if twice:
        raise ValueError(f"layer(s) {', '.join(twice)} are already pruned; call "
                         "remove_pruning_(model) first, or prune once at the final sparsity")
    return layers


def prune_(model: nn.Module, config: MagnitudePrune,
           filter_fn: FilterFn | None = None) -> nn.Module:
    """Prune ``model`` in place (masks on the selected layers' weights); returns ``model``.

    Args:
        model: any module; its Linear/Conv layers are candidates.
        config: how much and by which criterion.
        filter_fn: ``filter_fn(module, name) -> bool`` picks the layers (default: every
            Linear/Conv layer).

    Example:
        >>> prune_(model, MagnitudePrune(sparsity=0.8),
        ...        filter_fn=lambda m, name: isinstance(m, nn.Linear))
        >>> remove_pruning_(model)          # the inverse: original weights back
    """
    if not isinstance(config, MagnitudePrune):
        raise TypeError(f"config must be a MagnitudePrune, got {type(config).__name__}")
    layers = _selected(model, filter_fn or _default_filter)
    if config.scope == "global":
        prune.global_unstructured([(m, "weight") for _, m in layers],
                                  pruning_method=prune.L1Unstructured, amount=config.sparsity)
        return model
    for _, module in layers:
        if config.structured:
            prune.ln_structured(module, "weight", amount=config.sparsity, n=2, dim=0)
        else:
            prune.l1_unstructured(module, "weight", amount=config.sparsity)
    return model


def remove_pruning_(model: nn.Module, *, restore: bool = True) -> nn.Module:
    """Take the pruning masks off ``model`` in place; returns ``model``.

    Args:
        model: a model pruned by :func:`prune_`.
        restore: ``True``: the inverse of :func:`prune_`, each weight back to ``weight_orig``
            (pruned entries at the values they had when pruned, or as trained since, which
            leaves them unchanged); ``False``: keep the zeros in a plain ``weight``.
    """
    pruned = [m for m in model.modules() if is_pruned(m)]
    if not pruned:
        raise ValueError("remove_pruning_ found no pruned layer in the model; nothing to undo")
    for module in pruned:
        original = module.weight_orig.detach().clone()
        prune.remove(module, "weight")               # weight becomes weight_orig * mask
        if restore:
            with torch.no_grad():
                module.weight.copy_(original)
    return model


def sparsity(model: nn.Module, filter_fn: FilterFn | None = None) -> float:
    """Fraction of zero entries over the selected layers' (effective) weights."""
    filter_fn = filter_fn or _default_filter
    zeros = total = 0
    for name, module in model.named_modules():
        if isinstance(module, PRUNABLE) and filter_fn(module, name):
            w = module.weight
            zeros += int((w == 0).sum())
            total += w.numel()
    if total == 0:
        raise ValueError("sparsity: filter_fn selected no Linear/Conv layer")
    return zeros / total
