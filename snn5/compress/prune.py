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

One-shot pruning without retraining (:class:`HessianPrune`) follows SparseGPT (Frantar &
Alistarh, ICML 2023), the optimal-brain-surgeon update of Optimal Brain Compression (Frantar et
al., NeurIPS 2022) made cheap: per layer, ``H = X^T X`` of the layer's inputs on calibration data;
columns are visited in blocks, in each block the weights of smallest ``w^2 / [H^-1]_qq^2`` are
pruned, and each pruned weight's error is spread over the not-yet-visited weights of its row
through the Cholesky factor of ``H^-1``, so the layer's output on the calibration inputs changes
as little as possible. Layers are pruned in order, each calibrated on the outputs of the already
pruned ones.

Spike-activity pruning (:class:`ActivityPrune`) ranks each weight by its magnitude times the
activity of the input it carries, ``|w_ij| * ||x_j||_2`` over calibration data, compared within
each output unit (Wanda: Sun et al., "A Simple and Effective Pruning Approach for Large Language
Models", ICLR 2024). For a layer fed by spikes ``||x_j||_2^2`` is the number of spikes of
presynaptic neuron ``j``, so synapses of silent or rarely firing neurons go first: they cost
nothing in SynOps but keep their weight memory. Structured, it removes whole presynaptic
neurons (Linear input columns, Conv input channels) of smallest ``||x_j|| * ||w_:j||``.

Per-layer budgets (``allocation``): ``"uniform"`` prunes every selected layer to the same
sparsity; ``"erk"`` (Erdos-Renyi-Kernel, Evci et al., "Rigging the Lottery", ICML 2020) keeps a
density proportional to ``sum(weight dims) / prod(weight dims)`` per layer, scaled so that the
selected layers together reach the target sparsity, with layers that would exceed density 1
kept dense. Large layers are pruned harder and small ones (a first conv of 288 weights, the
classifier) stay dense, which is what one-shot pruning of a small SNN needs at high sparsity.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import prune

__all__ = ["ActivityPrune", "HessianPrune", "MagnitudePrune", "is_pruned", "layer_sparsities",
           "prune_", "remove_pruning_", "sparsity"]

FilterFn = Callable[[nn.Module, str], bool]
PRUNABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
ALLOCATIONS = ("uniform", "erk")


def _check_sparsity(sparsity: object) -> None:
    if not (isinstance(sparsity, (int, float)) and 0.0 <= sparsity < 1.0):
        raise ValueError(f"sparsity is the fraction of weights pruned, in [0, 1), got "
                         f"{sparsity!r}; 80 % is sparsity=0.8")


def _check_allocation(allocation: object) -> None:
    if allocation not in ALLOCATIONS:
        raise ValueError(f"allocation must be one of {', '.join(ALLOCATIONS)}, got "
                         f"{allocation!r}")


@dataclass(frozen=True)
class MagnitudePrune:
    """Prune the smallest weights (or units) to a target sparsity.

    Args:
        sparsity: fraction of weights (or output units) set to zero, in [0, 1).
        structured: prune whole output units by their L2 norm instead of single weights.
        scope: ``"layer"`` (each layer to its budget) or ``"global"`` (all selected weights
            ranked together; unstructured only).
        allocation: per-layer budgets with ``scope="layer"``: ``"uniform"`` (every layer at
            ``sparsity``) or ``"erk"`` (see the module docstring; ``sparsity`` is then the
            fraction over all selected layers).
    """

    sparsity: float
    structured: bool = False
    scope: Literal["layer", "global"] = "layer"
    allocation: Literal["uniform", "erk"] = "uniform"

    def __post_init__(self) -> None:
        _check_sparsity(self.sparsity)
        _check_allocation(self.allocation)
        if self.allocation != "uniform" and self.scope == "global":
            raise ValueError("allocation sets per-layer budgets, which a global ranking does "
                             "not have; use scope='layer' with allocation='erk'")
        if self.scope not in ("layer", "global"):
            raise ValueError(f"scope must be 'layer' or 'global', got {self.scope!r}")
        if self.structured and self.scope == "global":
            raise ValueError("structured pruning ranks units within a layer; use scope='layer' "
                             "with structured=True, or structured=False for a global ranking")


@dataclass(frozen=True)
class HessianPrune:
    """One-shot pruning that compensates the kept weights (SparseGPT), no retraining.

    Args:
        sparsity: fraction of each selected layer's weights set to zero, in [0, 1).
        damp: added to the Hessian's diagonal, as a fraction of its mean (numerical safety;
            the paper's 1 %).
        block_size: columns per block of the mask selection (the paper's 128).
        allocation: per-layer budgets, ``"uniform"`` or ``"erk"`` (see the module docstring).
    """

    sparsity: float
    damp: float = 0.01
    block_size: int = 128
    allocation: Literal["uniform", "erk"] = "uniform"

    def __post_init__(self) -> None:
        _check_sparsity(self.sparsity)
        _check_allocation(self.allocation)
        if not (isinstance(self.damp, (int, float)) and self.damp > 0):
            raise ValueError(f"damp must be a positive fraction, got {self.damp!r}")
        if not (isinstance(self.block_size, int) and self.block_size >= 1):
            raise ValueError(f"block_size must be an integer >= 1, got {self.block_size!r}")


@dataclass(frozen=True)
class ActivityPrune:
    """Prune by weight magnitude times input activity on calibration data (Wanda), no retraining.

    Args:
        sparsity: fraction of weights (or, structured, of input units) set to zero, in [0, 1).
        structured: remove whole presynaptic units (Linear input columns, Conv input
            channels) of smallest ``||x_j|| * ||w_:j||`` instead of single weights.
        allocation: per-layer budgets, ``"uniform"`` or ``"erk"`` (see the module docstring).
    """

    sparsity: float
    structured: bool = False
    allocation: Literal["uniform", "erk"] = "uniform"

    def __post_init__(self) -> None:
        _check_sparsity(self.sparsity)
        _check_allocation(self.allocation)


PruneConfig = MagnitudePrune | HessianPrune | ActivityPrune


def layer_sparsities(layers: list[nn.Module], sparsity: float,
                     allocation: str = "uniform") -> list[float]:
    """Per-layer sparsity of ``layers`` for an overall ``sparsity`` under ``allocation``.

    ``"erk"``: density ``d_l = min(1, eps * sum(shape_l) / prod(shape_l))`` with ``eps`` solved
    so that ``sum_l d_l n_l = (1 - sparsity) sum_l n_l`` (layers capped at 1 are removed and
    ``eps`` solved again on the rest, as in RigL).
    """
    _check_sparsity(sparsity)
    _check_allocation(allocation)
    if allocation == "uniform":
        return [float(sparsity)] * len(layers)
    sizes = [m.weight.numel() for m in layers]
    ratio = [sum(m.weight.shape) / m.weight.numel() for m in layers]
    budget = (1.0 - sparsity) * sum(sizes)               # weights kept over all layers
    dense: set[int] = set()
    while True:
        free = [i for i in range(len(layers)) if i not in dense]
        left = budget - sum(sizes[i] for i in dense)
        eps = left / sum(ratio[i] * sizes[i] for i in free)
        capped = {i for i in free if eps * ratio[i] >= 1.0}
        if not capped:
            break
        dense |= capped
        if len(dense) == len(layers):                     # only at sparsity ~0
            return [0.0] * len(layers)
    return [0.0 if i in dense else 1.0 - eps * ratio[i] for i in range(len(layers))]


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


def prune_(model: nn.Module, config: PruneConfig, filter_fn: FilterFn | None = None, *,
           calibration=None) -> nn.Module:
    """Prune ``model`` in place (masks on the selected layers' weights); returns ``model``.

    Args:
        model: any module; its Linear/Conv layers are candidates.
        config: how much and by which criterion.
        filter_fn: ``filter_fn(module, name) -> bool`` picks the layers (default: every
            Linear/Conv layer).
        calibration: for :class:`HessianPrune` and :class:`ActivityPrune`, an iterable of
            input batches ``x`` (or ``(x, y)`` pairs) that ``model(x)`` accepts; it is iterated
            once per layer, the layers being pruned in order.

    Example:
        >>> prune_(model, MagnitudePrune(sparsity=0.8),
        ...        filter_fn=lambda m, name: isinstance(m, nn.Linear))
        >>> remove_pruning_(model)          # the inverse: original weights back
    """
    if not isinstance(config, (MagnitudePrune, HessianPrune, ActivityPrune)):
        raise TypeError(f"config must be a MagnitudePrune, HessianPrune or ActivityPrune, got "
                        f"{type(config).__name__}")
    layers = _selected(model, filter_fn or _default_filter)
    if isinstance(config, (HessianPrune, ActivityPrune)) and calibration is None:
        raise ValueError(f"{type(config).__name__} needs calibration=<batches of inputs> (a few "
                         "hundred samples of training data) to measure each layer's inputs")
    if isinstance(config, (HessianPrune, ActivityPrune)):
        for name, module in layers:
            _check_calibrated_layer(name, module, config)
    for _, module in layers:
        module.register_buffer("weight_unpruned", module.weight.detach().clone())
    if isinstance(config, MagnitudePrune) and config.scope == "global":
        prune.global_unstructured([(m, "weight") for _, m in layers],
                                  pruning_method=prune.L1Unstructured, amount=config.sparsity)
        return model
    budgets = layer_sparsities([m for _, m in layers], config.sparsity, config.allocation)
    for (_, module), amount in zip(layers, budgets):
        if isinstance(config, HessianPrune):
            h = _calibrate(model, module, calibration, lambda r: r.T @ r)      # X^T X
            weight, mask = _sparsegpt(module, h, config, amount)
            prune.custom_from_mask(module, "weight", mask)
            with torch.no_grad():
                module.weight_orig.copy_(weight)
            module.weight = module.weight_orig * module.weight_mask   # as the pre-hook does
        elif isinstance(config, ActivityPrune):
            sq = _calibrate(model, module, calibration, lambda r: r.pow(2).sum(0))  # ||x_j||^2
            prune.custom_from_mask(module, "weight", _activity_mask(module, sq, config, amount))
        elif config.structured:
            prune.ln_structured(module, "weight", amount=amount, n=2, dim=0)
        else:
            prune.l1_unstructured(module, "weight", amount=amount)
    return model


def _activity_mask(module: nn.Module, sq: Tensor, cfg: ActivityPrune, amount: float) -> Tensor:
    """0/1 mask of :class:`ActivityPrune` from the inputs' squared norms ``sq [fan_in]``."""
    w = module.weight.detach()
    rows = w.reshape(w.shape[0], -1)                                # [out, fan_in]
    norm = sq.sqrt().to(rows.dtype)                                 # ||x_j||_2
    if cfg.structured:                                              # whole input units
        units = w.shape[1]                                          # in_features / C_in
        score = (rows.abs().pow(2) * norm.pow(2)).reshape(w.shape[0], units, -1)
        score = score.sum(dim=(0, 2))                               # [units]
        k = int(round(amount * units))
        keep = torch.ones(units, dtype=torch.bool, device=w.device)
        if k > 0:
            keep[torch.topk(score, k, largest=False).indices] = False
        shape = (1, units) + (1,) * (w.dim() - 2)
        return keep.reshape(shape).expand_as(w).to(w.dtype).clone()
    score = rows.abs() * norm[None, :]                              # [out, fan_in]
    k = int(round(amount * rows.shape[1]))                          # per output unit (Wanda)
    mask = torch.ones_like(rows, dtype=torch.bool)
    if k > 0:
        mask.scatter_(1, torch.topk(score, k, dim=1, largest=False).indices, False)
    return mask.reshape(w.shape).to(w.dtype)


def _check_calibrated_layer(name: str, module: nn.Module, config: PruneConfig) -> None:
    if isinstance(module, nn.Linear):
        return
    if isinstance(module, nn.Conv2d) and module.groups == 1 and module.padding_mode == "zeros":
        return
    raise ValueError(f"{type(config).__name__} handles Linear and Conv2d (groups=1, zero "
                     f"padding) layers; '{name}' is {module}; exclude it with filter_fn or use "
                     "MagnitudePrune")


def _rows(module: nn.Module, x: Tensor) -> Tensor:
    """The layer's input as rows of its weight's fan-in: ``[N, in]`` (Conv2d: im2col patches)."""
    if isinstance(module, nn.Linear):
        return x.reshape(-1, x.shape[-1])                                   # [N, in]
    patches = F.unfold(x, module.kernel_size, dilation=module.dilation,
                       padding=module.padding, stride=module.stride)       # [B, C*kh*kw, L]
    return patches.transpose(1, 2).reshape(-1, patches.shape[1])           # [B*L, C*kh*kw]


@torch.no_grad()
def _calibrate(model: nn.Module, module: nn.Module, calibration,
               reduce: Callable[[Tensor], Tensor]) -> Tensor:
    """Mean over the calibration batches' input rows of ``module`` (see :func:`_rows`) of
    ``reduce(rows) / N`` in float64: ``X^T X / N`` or the squared norms ``||x_j||^2 / N``."""
    total: Tensor | float = 0.0
    seen = 0

    def hook(mod: nn.Module, args: tuple) -> None:
        nonlocal total, seen
        rows = _rows(mod, args[0].detach()).to(torch.float64)              # [N, fan_in]
        total = total + reduce(rows)
        seen += rows.shape[0]

    handle = module.register_forward_pre_hook(hook)
    was_training = model.training
    model.eval()
    try:
        for batch in calibration:
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            model(x.to(module.weight.device))
    finally:
        handle.remove()
        model.train(was_training)
    if seen == 0:
        raise ValueError("the calibration batches never reached a selected layer; pass inputs "
                         "that model(x) accepts")
    return total / seen


def _sparsegpt(module: nn.Module, h: Tensor, cfg: HessianPrune,
               amount: float) -> tuple[Tensor, Tensor]:
    """SparseGPT on one layer: ``(new weight, 0/1 mask)`` in the weight's shape and dtype."""
    w = module.weight.detach().reshape(module.weight.shape[0], -1).to(torch.float64).clone()
    rows, cols = w.shape
    h = h.clone()
    dead = torch.diagonal(h) == 0                     # inputs never active in calibration:
    h[dead, dead] = 1.0                               # ranked by |w| alone, not all pruned
    h += cfg.damp * torch.diagonal(h).mean() * torch.eye(cols, dtype=h.dtype, device=h.device)
    hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
    mask = torch.ones_like(w, dtype=torch.bool)
    done = 0                                          # weights pruned in earlier blocks
    for start in range(0, cols, cfg.block_size):
        end = min(start + cfg.block_size, cols)
        block = w[:, start:end].clone()               # [rows, b]
        hb = hinv[start:end, start:end]               # [b, b] upper Cholesky factor of H^-1
        score = block.pow(2) / torch.diagonal(hb).pow(2)[None, :]
        k = round(amount * rows * end) - done        # cumulative: the layer hits its budget
        done += k
        drop = torch.zeros_like(block, dtype=torch.bool)
        if k > 0:
            drop.view(-1)[torch.topk(score.view(-1), k, largest=False).indices] = True
        errors = torch.zeros_like(block)
        for j in range(end - start):
            col = block[:, j]
            kept = torch.where(drop[:, j], torch.zeros_like(col), col)
            err = (col - kept) / hb[j, j]             # [rows]
            block[:, j:] -= err[:, None] * hb[j, j:][None, :]
            block[:, j] = kept
            errors[:, j] = err
        w[:, start:end] = block
        w[:, end:] -= errors @ hinv[start:end, end:]
        mask[:, start:end] = ~drop
    shape, dtype = module.weight.shape, module.weight.dtype
    return (w * mask).reshape(shape).to(dtype), mask.reshape(shape).to(dtype)


def remove_pruning_(model: nn.Module, *, restore: bool = True) -> nn.Module:
    """Take the pruning masks off ``model`` in place; returns ``model``.

    Args:
        model: a model pruned by :func:`prune_`.
        restore: ``True``: the inverse of :func:`prune_`, every weight back to its value
            before ``prune_`` (training since is discarded); ``False``: the current effective
            weights, zeros included, become a plain ``weight``.
    """
    pruned = [m for m in model.modules() if is_pruned(m)]
    if not pruned:
        raise ValueError("remove_pruning_ found no pruned layer in the model; nothing to undo")
    for module in pruned:
        prune.remove(module, "weight")               # weight becomes weight_orig * mask
        original = module._buffers.pop("weight_unpruned", None)
        if restore and original is not None:
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
