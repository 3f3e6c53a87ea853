"""Firing rates of spiking layers, accumulated over many batches."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor


class FiringRates:
    """Accumulate per-layer spike counts over batches of recorded spikes.

    Feed it :attr:`snn5.nn.SpikeRecorder.spikes` after every forward pass. For a layer with
    output ``z: [T, B, *F]`` over all batches:

        rate = spikes / (T * B * prod(F))           (spikes per neuron per step)
        mean = sum of spikes over layers / sum of neuron-steps over layers

    so ``mean`` weighs layers by their size (it is not the mean of the layer rates). A spike is
    counted by its magnitude (``|z|``), so signed spikes count once each.

    Example:
        >>> rates = FiringRates()
        >>> for x, _ in batches:
        ...     with SpikeRecorder(model) as rec:
        ...         model(x)
        ...     rates.update(rec.spikes)
        >>> rates.mean, rates.per_layer
    """

    def __init__(self) -> None:
        self.spikes: dict[str, float] = {}        # total spikes per layer
        self.neuron_steps: dict[str, int] = {}    # total T * B * neurons per layer
        self.samples: dict[str, int] = {}         # total B per layer

    def update(self, spikes: Mapping[str, Tensor]) -> None:
        """Add one forward pass: ``{layer name: z [T, B, *F]}``."""
        for name, z in spikes.items():
            if z.ndim < 2:
                raise ValueError(f"spikes of layer '{name}' must be [T, B, *F], got shape "
                                 f"{tuple(z.shape)}")
            T, B = z.shape[:2]
            with torch.no_grad():
                count = z.detach().abs().sum(dtype=torch.float64).item()
            self.spikes[name] = self.spikes.get(name, 0.0) + count
            self.neuron_steps[name] = self.neuron_steps.get(name, 0) + z.numel()
            self.samples[name] = self.samples.get(name, 0) + B

    def reset(self) -> None:
        """Forget everything seen so far."""
        self.spikes.clear()
        self.neuron_steps.clear()
        self.samples.clear()

    @property
    def per_layer(self) -> dict[str, float]:
        """Spikes per neuron per step of each layer."""
        return {name: self.spikes[name] / steps if steps else 0.0
                for name, steps in self.neuron_steps.items()}

    @property
    def mean(self) -> float:
        """Spikes per neuron per step over all layers together; NaN before any update."""
        steps = sum(self.neuron_steps.values())
        return sum(self.spikes.values()) / steps if steps else math.nan

    @property
    def spikes_per_sample(self) -> dict[str, float]:
        """Spikes per sample (over all T steps and neurons) of each layer."""
        return {name: self.spikes[name] / b if b else 0.0 for name, b in self.samples.items()}


__all__ = ["FiringRates"]
