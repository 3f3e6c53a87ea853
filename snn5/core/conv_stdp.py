"""Pure functions of the STDP-trained convolutional spiking networks of Kheradpisheh et al. (2018)
and Mozafari et al. (2019): one spike per neuron, spike times instead of rasters.

Kheradpisheh, Ganjtabesh, Thorpe & Masquelier, "STDP-based spiking deep convolutional neural
networks for object recognition", Neural Networks 99, 2018; Mozafari, Ganjtabesh,
Nowzari-Dalini, Thorpe & Masquelier, "Bio-inspired digit recognition using reward-modulated
spike-timing-dependent plasticity in deep convolutional networks", Pattern Recognit. 94, 2019.

Every neuron fires at most once, so a layer's output is a map of first-spike steps
``[B, C, H, W]`` (``inf``: silent). A convolutional layer of non-leaky integrate-and-fire
neurons integrates its inputs' cumulative spike waves, ``V_j(t) = sum_{i: t_i <= t} w_ji``,
and fires the first step its potential exceeds the threshold. During learning, pointwise
(columnar) inhibition leaves one feature per position, k winners are chosen
(earliest first, ties by potential) with a feature- and neighbourhood-wide inhibition, and only
the winners' kernels learn by the simplified STDP rule with its soft bound:

    dw = +a_plus  (w - w_min) (w_max - w)   if t_pre <= t_post   (pre before or with post)
    dw = -a_minus (w - w_min) (w_max - w)   otherwise            (later or no pre spike)

torch only; no state.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

INF = math.inf


def _check_times(times: Tensor, what: str = "spike times") -> None:
    if times.ndim != 4:
        raise ValueError(f"expected {what} [B, C, H, W], got shape {tuple(times.shape)}")


def pad_times(times: Tensor, padding: int) -> Tensor:
    """Pad a spike-time map ``[B, C, H, W]`` with silent (``inf``) neurons."""
    if padding == 0:
        return times
    return F.pad(times, (padding,) * 4, value=INF)


def conv_potentials(in_times: Tensor, weight: Tensor, timesteps: int, *, padding: int = 0
                    ) -> Tensor:
    """Membrane potential of a non-leaky IF convolutional layer at every step.

    ``V[t] = conv2d(z[t], weight)`` with ``z[t] = 1{t_in <= t}`` the cumulative input wave
    (each input spikes once and stays counted).

    Args:
        in_times: first-spike steps of the inputs ``[B, C_in, H, W]`` (``inf``: silent).
        weight: ``[C_out, C_in, k, k]``.
        timesteps: T.
        padding: silent border added on each side before the (stride 1) convolution.

    Returns:
        ``[T, B, C_out, H', W']``.
    """
    _check_times(in_times, "input spike times")
    T, B = timesteps, in_times.shape[0]
    steps = torch.arange(T, dtype=in_times.dtype, device=in_times.device)
    wave = (pad_times(in_times, padding).unsqueeze(0) <= steps.view(T, 1, 1, 1, 1))  # [T,B,C,H,W]
    v = F.conv2d(wave.to(weight.dtype).flatten(0, 1), weight)      # [T*B, C_out, H', W']
    return v.unflatten(0, (T, B))                                  # [T, B, C_out, H', W']


def fire_first(potentials: Tensor, threshold: float) -> tuple[Tensor, Tensor]:
    """First step each neuron's potential exceeds ``threshold`` and its potential then.

    Args:
        potentials: ``[T, B, *F]``.

    Returns:
        ``(times [B, *F], v [B, *F])``: the step (``inf`` if it never fires) and the potential
        at that step (0 if silent).
    """
    crossed = (potentials > threshold).to(torch.uint8)             # [T, B, *F]
    fired, first = crossed.max(0)                                  # index of the first max
    fired = fired.bool()
    v = potentials.gather(0, first.unsqueeze(0)).squeeze(0)
    times = torch.where(fired, first.to(potentials.dtype), torch.full_like(v, INF))
    return times, torch.where(fired, v, torch.zeros_like(v))


def pool_times(times: Tensor, kernel: int, stride: int | None = None, padding: int = 0) -> Tensor:
    """Spike-time max pooling: each output fires with the earliest spike of its window
    (max pooling of spike waves). ``[B, C, H, W] -> [B, C, H', W']``."""
    _check_times(times)
    return -F.max_pool2d(-times, kernel, stride or kernel, padding)


def _winner_key(times: Tensor, v: Tensor) -> Tensor:
    """A float64 score ordering neurons by earliest spike, then largest potential at it;
    ``-inf`` for silent neurons."""
    v64 = v.double()
    scale = 2.0 * v64.abs().amax().clamp_min(1.0) + 1.0
    key = -times.double() * scale + v64
    return torch.where(torch.isfinite(times), key, torch.full_like(key, -INF))


def pointwise_inhibition(times: Tensor, v: Tensor) -> Tensor:
    """Columnar inhibition: at each position only the earliest feature (ties: the largest
    potential at its spike) keeps its spike; the others are silenced.

    Args:
        times, v: ``[B, C, H, W]`` from :func:`fire_first`.

    Returns:
        Spike times ``[B, C, H, W]`` with at most one finite entry per ``(b, h, w)``.
    """
    _check_times(times)
    key = _winner_key(times, v)
    best = key.argmax(1, keepdim=True)                             # [B, 1, H, W]
    keep = torch.zeros_like(times, dtype=torch.bool).scatter_(1, best, True)
    return torch.where(keep, times, torch.full_like(times, INF))


def conv_kwta(times: Tensor, v: Tensor, k: int, radius: int) -> Tensor:
    """k-winners-take-all of a convolutional layer, batched over samples.

    Winners are picked one after another: the neuron with the earliest spike (ties: the
    largest potential at it) wins; its whole feature map and every feature within
    ``radius`` (Chebyshev distance) of its position are then excluded from later picks, so
    each feature wins at most once per sample and winners are spread out.

    Args:
        times, v: ``[B, C, H, W]`` spike times and potentials at them.
        k: winners per sample.
        radius: lateral-inhibition radius in positions (0: only the feature is excluded).

    Returns:
        ``[B, k, 3]`` long ``(feature, row, col)``, rows of ``-1`` where fewer than ``k``
        neurons fired.
    """
    _check_times(times)
    if k < 1 or radius < 0:
        raise ValueError(f"need k >= 1 and radius >= 0, got k={k}, radius={radius}")
    B, C, H, W = times.shape
    key = _winner_key(times, v)                                    # [B, C, H, W]
    chans, rows, cols = (torch.arange(n, device=times.device) for n in (C, H, W))
    winners = torch.full((B, k, 3), -1, dtype=torch.long, device=times.device)
    for i in range(k):                                             # k <= ~10 picks
        best_key, best = key.flatten(1).max(1)                     # [B]
        ok = torch.isfinite(best_key)
        f, r, c = best // (H * W), (best // W) % H, best % W
        winners[:, i] = torch.where(ok.unsqueeze(1), torch.stack([f, r, c], 1),
                                    torch.full_like(winners[:, i], -1))
        same_f = (chans.view(1, C) == f.view(B, 1)).view(B, C, 1, 1)
        near = (((rows.view(1, H) - r.view(B, 1)).abs() <= radius).view(B, 1, H, 1)
                & ((cols.view(1, W) - c.view(B, 1)).abs() <= radius).view(B, 1, 1, W))
        key = key.masked_fill((same_f | near) & ok.view(B, 1, 1, 1), -INF)
    return winners


class ConvSTDPParams(NamedTuple):
    """Simplified STDP of Kheradpisheh et al. (2018), magnitudes (the depression is
    subtracted). Defaults: the initial rates of SpykeTorch's MNIST network."""

    a_plus: float = 0.004
    a_minus: float = 0.003
    w_min: float = 0.0
    w_max: float = 1.0


def conv_stdp(in_times: Tensor, winners: Tensor, winner_times: Tensor, weight: Tensor,
              p: ConvSTDPParams = ConvSTDPParams(), *, padding: int = 0) -> Tensor:
    """Weight change of the winners' kernels (only the winners learn).

    For a winner of feature ``f`` at ``(r, c)`` that fired at ``t_post``, every synapse of its
    receptive field ``in[:, r:r+k, c:c+k]`` (after padding) changes by
    ``+a_plus (w - w_min)(w_max - w)`` if its input fired at ``t_pre <= t_post``, by
    ``-a_minus (w - w_min)(w_max - w)`` otherwise (a later or no input spike). Updates of all
    winners and samples are summed (at most one winner per feature and sample).

    Args:
        in_times: the layer's input spike times ``[B, C_in, H, W]`` (before padding).
        winners: ``[B, k, 3]`` from :func:`conv_kwta` (rows of ``-1``: no winner).
        winner_times: ``[B, k]`` spike step of each winner.
        weight: ``[C_out, C_in, kh, kw]``.

    Returns:
        ``dw`` with ``weight``'s shape.
    """
    _check_times(in_times, "input spike times")
    if winners.ndim != 3 or winners.shape[2] != 3 or winner_times.shape != winners.shape[:2]:
        raise ValueError(f"expected winners [B, k, 3] and winner_times [B, k], got "
                         f"{tuple(winners.shape)} and {tuple(winner_times.shape)}")
    x = pad_times(in_times, padding)
    kh, kw = weight.shape[-2:]
    valid = winners[..., 0] >= 0                                   # [B, k]
    b = torch.arange(x.shape[0], device=x.device).view(-1, 1).expand_as(valid)[valid]   # [N]
    f, r, c = winners[valid].unbind(1)                             # [N] each
    rows = (r.view(-1, 1) + torch.arange(kh, device=x.device)).view(-1, 1, kh, 1)
    cols = (c.view(-1, 1) + torch.arange(kw, device=x.device)).view(-1, 1, 1, kw)
    chan = torch.arange(x.shape[1], device=x.device).view(1, -1, 1, 1)
    t_pre = x[b.view(-1, 1, 1, 1), chan, rows, cols]               # [N, C_in, kh, kw]
    t_post = winner_times[valid].view(-1, 1, 1, 1).to(t_pre.dtype)
    w = weight[f]                                                  # [N, C_in, kh, kw]
    soft = (w - p.w_min) * (p.w_max - w)
    rate = torch.where(t_pre <= t_post, torch.full_like(w, p.a_plus),
                       torch.full_like(w, -p.a_minus))
    return torch.zeros_like(weight).index_add_(0, f, rate * soft)
