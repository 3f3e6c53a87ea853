"""Training objectives: cross-entropy on the readout and the spike-rate penalty."""

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
