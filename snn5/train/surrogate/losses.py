"""Training objectives: cross-entropy on the readout, the spike-rate penalty, and the TET loss
(per-step cross-entropy, Deng et al. ICLR 2022)."""

from __future__ import annotations

import torch
from torch import Tensor

from snn5.train.surrogate.config import RatePenaltyConfig


def layer_rates(spikes: dict[str, Tensor]) -> dict[str, Tensor]:
    """Mean spikes per neuron per step of each layer (``z: [T, B, *F]``)."""
    return {name: z.float().mean() for name, z in spikes.items()}


def mean_rate(spikes: dict[str, Tensor]) -> float:
    """Total spikes / total neuron-steps over all layers (a float; for logging)."""
    if not spikes:
        return 0.0
    total = sum(float(z.detach().float().sum()) for z in spikes.values())
    return total / sum(z.numel() for z in spikes.values())


def rate_penalty(spikes: dict[str, Tensor], cfg: RatePenaltyConfig) -> Tensor | None:
    """``weight * sum_l max(0, rate_l - target)``, or None when the weight is 0."""
    if cfg.weight == 0 or not spikes:
        return None
    rates = torch.stack(list(layer_rates(spikes).values()))
    return cfg.weight * (rates - cfg.target).clamp_min(0).sum()


def tet_loss(outputs: Tensor, y: Tensor, *, lam: float = 1e-3, phi: float = 1.0,
             label_smoothing: float = 0.0) -> Tensor:
    """Temporal efficient training loss (Deng, Li, Zhang & Gu, ICLR 2022, Eq. 8-10).

    ``(1 - lam) * mean_t CE(O(t), y) + lam * mean((O - phi)^2)``: the cross-entropy is taken
    at every step's output instead of on the time-averaged output, and the MSE term pulls the
    outputs towards ``phi``. Defaults as the authors' code (``lamb = 1e-3``, ``means = 1.0``).

    Args:
        outputs: per-step logits ``[T, B, C]``.
        y: labels ``[B]``.
        lam: weight of the MSE regulariser, in [0, 1].
        phi: its target value.
        label_smoothing: as in ``F.cross_entropy``.
    """
    if outputs.ndim != 3:
        raise ValueError(f"tet_loss needs per-step outputs [T, B, C], got shape "
                         f"{tuple(outputs.shape)}; pass the readout's input, not its mean")
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must lie in [0, 1], got {lam}")
    T, B, C = outputs.shape
    if y.shape != (B,):
        raise ValueError(f"labels must be [B] = [{B}], got shape {tuple(y.shape)}")
    ce = torch.nn.functional.cross_entropy(outputs.reshape(T * B, C).float(), y.repeat(T),
                                           label_smoothing=label_smoothing)  # mean over t and b
    if lam == 0:
        return ce
    mse = (outputs.float() - phi).pow(2).mean()
    return (1.0 - lam) * ce + lam * mse
