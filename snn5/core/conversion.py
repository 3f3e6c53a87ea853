"""Pure functions of ANN-to-SNN conversion: the activations an ANN is trained with, the neurons
its SNN runs with, and the ternary weights of the logic-gated SNN.

- :func:`qcfs`: the quantization-clip-floor-shift activation of Bu et al., "Optimal ANN-SNN
  conversion for high-accuracy and low-latency spiking neural networks", ICLR 2022, eq. 11:
  ``h(x) = lambda / L * clip(floor(x * L / lambda + phi), 0, L)`` with the shift ``phi = 1/2``;
  the floor passes the gradient straight through and ``lambda`` is learned, as in the authors'
  code (github.com/putshua/SNN_conversion_QCFS).
- :func:`multithreshold_step`: the integrate-and-fire neuron of converted SNNs with the soft
  reset (reset by subtraction, Rueckauer et al. 2017), an optional leak, and ``levels`` spikes
  at most per step. ``levels = 1`` is the ordinary IF neuron; ``levels = N`` at ``T = 1`` is the
  multi-threshold neuron (MTN) of Chen, Yang, Meng & Ma, "One-timestep is enough: achieving
  high-performance ANN-to-SNN conversion via scale-and-fire neurons" (arXiv:2510.23383, 2025):
  ``o = theta * clip(floor(h / theta), 0, N)``, which equals ``N`` steps of an IF neuron with
  threshold ``N * theta`` collapsed into one (their temporal-to-spatial equivalence).
- :func:`ternarize`: BitNet b1.58's absmean quantization (Ma et al., "The era of 1-bit LLMs",
  2024): ``gamma = mean |W|``, ``W_t = clip(round(W / gamma), -1, 1)``; the forward uses
  ``gamma * W_t``, the backward is straight-through.
- :func:`replace_noise`: the input corruption of hyper-robust training: a fraction ``p`` of each
  sample's entries replaced by uniform noise.

Conversion runs without gradients through time, so the neuron step has no surrogate.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

Scalar = float | Tensor


# ----------------------------------------------------------------------------- QCFS

class _QCFS(torch.autograd.Function):
    """Forward ``lambda * clip(floor(x / lambda * L + phi), 0, L) / L``; backward as the
    authors' code differentiates ``lambda * floor_ste(clip(x / lambda, 0, 1) * L + phi) / L``
    (straight-through floor): ``dh/dx = 1`` for ``0 <= x <= lambda`` else 0; ``dh/dlambda =
    h / lambda - x / lambda`` inside, 1 above, 0 below."""

    @staticmethod
    def forward(ctx, x: Tensor, lam: Tensor, levels: int, shift: float) -> Tensor:
        r = x / lam                                                # [B, *F] in units of lambda
        qn = torch.clamp(torch.floor(r * levels + shift), 0, levels) / levels
        ctx.save_for_backward(r, qn)
        return qn * lam

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
        r, qn = ctx.saved_tensors
        inside = (r >= 0) & (r <= 1)
        gx = grad * inside.to(grad.dtype) if ctx.needs_input_grad[0] else None
        glam = None
        if ctx.needs_input_grad[1]:
            dlam = torch.where(inside, qn - r, (r > 1).to(r.dtype))
            glam = (grad * dlam).sum().reshape(1)
        return gx, glam, None, None


def qcfs(x: Tensor, lam: Tensor, levels: int, shift: float = 0.5) -> Tensor:
    """Quantization-clip-floor-shift activation (Bu et al. 2022), ``levels`` = L steps of
    ``lambda / L`` between 0 and ``lambda``.

    Args:
        x: pre-activation ``[B, *F]``.
        lam: the learned clip ``lambda`` (a one-element tensor, > 0).
        levels: L >= 1.
        shift: phi; 0.5 minimises the expected conversion error (the paper's Theorem 2).
    """
    if levels < 1:
        raise ValueError(f"QCFS needs levels >= 1, got {levels}")
    return _QCFS.apply(x, lam.reshape(1), int(levels), float(shift))


# ----------------------------------------------------------------------------- neuron

class MTState(NamedTuple):
    v: Tensor                                     # [B, *F] membrane potential


class MTParams(NamedTuple):
    v_th: Scalar = 1.0                            # threshold (per layer, or broadcastable)
    leak: Scalar = 1.0                            # v <- leak * v + x (1: no leak)
    levels: int = 1                               # spikes at most per step (1: IF)


def multithreshold_step(x: Tensor, state: MTState, p: MTParams = MTParams()
                        ) -> tuple[Tensor, MTState]:
    """One step of the conversion neuron: ``v = leak * v + x``; it emits
    ``n = clip(floor(v / v_th), 0, levels)`` spikes (for ``levels = 1``: ``H(v - v_th)``, firing
    at ``v >= v_th``) and subtracts ``n * v_th`` (soft reset).

    Returns ``(n, state)``: the spike count of the step ``[B, *F]`` in ``x``'s dtype.
    """
    v = (state.v if isinstance(p.leak, float) and p.leak == 1.0 else state.v * p.leak) + x
    if p.levels == 1:
        n = (v >= p.v_th).to(x.dtype)
    else:
        n = torch.clamp(torch.floor(v / p.v_th), 0, p.levels)
    return n, MTState(v - n * p.v_th)


def multithreshold_scan(x_seq: Tensor, state: MTState, p: MTParams = MTParams()
                        ) -> tuple[Tensor, MTState]:
    """:func:`multithreshold_step` over ``x_seq: [T, B, *F]`` -> ``(n_seq [T, B, *F], state)``."""
    if x_seq.ndim < 2 or x_seq.shape[0] == 0:
        raise ValueError(f"expected a time-major sequence [T, B, ...] with T >= 1, got shape "
                         f"{tuple(x_seq.shape)}")
    outs = []
    for x in x_seq.unbind(0):                     # x: [B, *F]
        n, state = multithreshold_step(x, state, p)
        outs.append(n)
    return torch.stack(outs), state


# ----------------------------------------------------------------------------- ternary

class _Ternary(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w: Tensor, eps: float) -> Tensor:
        gamma = w.abs().mean().clamp_min(eps)
        return torch.clamp(torch.round(w / gamma), -1, 1) * gamma

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        return grad, None                          # straight-through estimator


def ternary_scale(w: Tensor, eps: float = 1e-8) -> Tensor:
    """``gamma = mean |W|`` (absmean, BitNet b1.58), at least ``eps``."""
    return w.detach().abs().mean().clamp_min(eps)


def ternary_codes(w: Tensor, eps: float = 1e-8) -> Tensor:
    """The ternary codes ``clip(round(W / gamma), -1, 1)`` as int8."""
    return torch.clamp(torch.round(w.detach() / ternary_scale(w, eps)), -1, 1).to(torch.int8)


def ternarize(w: Tensor, eps: float = 1e-8) -> Tensor:
    """``gamma * clip(round(W / gamma), -1, 1)`` with a straight-through gradient to ``W``."""
    return _Ternary.apply(w, eps)


# ----------------------------------------------------------------------------- input noise

def replace_noise(x: Tensor, fraction: Tensor, generator: torch.Generator | None = None,
                  low: float = 0.0, high: float = 1.0) -> Tensor:
    """Replace a ``fraction [B]`` of each sample's entries of ``x [B, *F]`` by noise drawn
    uniformly from ``[low, high)``; each entry is replaced independently with probability
    ``fraction[b]``."""
    if fraction.shape != x.shape[:1]:
        raise ValueError(f"fraction must have one entry per sample, shape {tuple(x.shape[:1])}, "
                         f"got {tuple(fraction.shape)}")
    if ((fraction < 0) | (fraction > 1)).any():
        raise ValueError("noise fractions must lie in [0, 1]")
    p = fraction.reshape(-1, *([1] * (x.ndim - 1))).to(x.dtype)     # [B, 1, ...]
    hit = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) < p
    noise = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return torch.where(hit, low + (high - low) * noise, x)


__all__ = ["MTParams", "MTState", "multithreshold_scan", "multithreshold_step", "qcfs",
           "replace_noise", "ternarize", "ternary_codes", "ternary_scale"]
