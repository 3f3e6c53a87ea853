"""Spike encoders as pure functions. Static input ``x: [B, *F]`` -> ``[T, B, *F]`` sequences.

- direct: the analog value is injected as a current at every step (the first layer encodes).
- Poisson rate: a Bernoulli spike with probability ``x`` at every step (``x`` in [0, 1]).
- latency (time-to-first-spike): one spike per input, earlier for larger values.
- delta: a sequence ``[T, B, *F]`` -> spikes where it changed by at least a threshold.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _check_timesteps(timesteps: int) -> None:
    if not isinstance(timesteps, int) or timesteps < 1:
        raise ValueError(f"timesteps must be a positive int, got {timesteps!r}")


def _check_unit_range(x: Tensor, what: str) -> None:
    lo, hi = torch.aminmax(x.detach())
    if not (lo >= 0 and hi <= 1):                 # also false for NaN
        raise ValueError(f"{what} needs inputs in [0, 1], got values in "
                         f"[{lo.item():.3g}, {hi.item():.3g}]; rescale the data first "
                         "(e.g. pixels / 255).")


def encode_direct(x: Tensor, timesteps: int) -> Tensor:
    """Repeat ``x: [B, *F]`` over time -> ``[T, B, *F]`` (a view; no copy)."""
    _check_timesteps(timesteps)
    return x.unsqueeze(0).expand(timesteps, *x.shape)


def encode_poisson(x: Tensor, timesteps: int, *, max_rate: float = 1.0,
                   generator: torch.Generator | None = None) -> Tensor:
    """Bernoulli (discrete-time Poisson) rate code: ``P(z[t] = 1) = max_rate * x``.

    Args:
        x: intensities in [0, 1], ``[B, *F]``.
        timesteps: T.
        max_rate: spike probability per step of an input of 1.
        generator: optional RNG (the global one otherwise).

    Returns:
        ``[T, B, *F]`` spikes in ``x``'s dtype.
    """
    _check_timesteps(timesteps)
    if not 0.0 < max_rate <= 1.0:
        raise ValueError(f"max_rate is a probability per step in (0, 1], got {max_rate}")
    _check_unit_range(x, "Poisson encoding")
    p = (x * max_rate).unsqueeze(0).expand(timesteps, *x.shape)
    return torch.bernoulli(p, generator=generator).to(x.dtype)


def encode_latency(x: Tensor, timesteps: int, *, threshold: float = 0.0) -> Tensor:
    """Time-to-first-spike code with a linear map: one spike at ``t = round((1 - x) (T - 1))``.

    An input of 1 fires at t = 0, an input just above ``threshold`` near t = T - 1; inputs at or
    below ``threshold`` never fire (they carry no information).

    Returns:
        ``[T, B, *F]`` with at most one spike per input.
    """
    _check_timesteps(timesteps)
    _check_unit_range(x, "latency encoding")
    t_fire = torch.round((1.0 - x) * (timesteps - 1)).long()            # [B, *F]
    steps = torch.arange(timesteps, device=x.device).view(-1, *([1] * x.ndim))
    z = (steps == t_fire.unsqueeze(0)) & (x > threshold).unsqueeze(0)   # [T, B, *F]
    return z.to(x.dtype)


def encode_delta(x_seq: Tensor, threshold: float, *, off_spikes: bool = False,
                 initial: Tensor | None = None) -> Tensor:
    """Delta modulation of a sequence ``[T, B, *F]``: spike where ``x[t] - x[t-1] >= threshold``.

    ``x[-1]`` is ``initial`` (zeros by default, so a large first sample fires). With
    ``off_spikes`` a decrease of at least ``threshold`` gives -1.

    Returns:
        ``[T, B, *F]`` in {0, 1} (or {-1, 0, 1} with ``off_spikes``).
    """
    if threshold <= 0:
        raise ValueError(f"delta threshold must be > 0, got {threshold}")
    if x_seq.ndim < 2:
        raise ValueError(f"expected a sequence [T, B, ...], got shape {tuple(x_seq.shape)}")
    prev = torch.zeros_like(x_seq[:1]) if initial is None else initial.unsqueeze(0)
    d = torch.diff(x_seq, dim=0, prepend=prev)                           # [T, B, *F]
    z = (d >= threshold).to(x_seq.dtype)
    if off_spikes:
        z = z - (d <= -threshold).to(x_seq.dtype)
    return z
