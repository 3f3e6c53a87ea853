"""Neuron dynamics as pure functions: ``*_step(x, state, p) -> (out, state)`` and ``*_scan``.

All neurons integrate exactly over a step of length ``dt`` (zero-order hold on the input), so
``tau_mem`` is a physical time constant in seconds and the per-step decay is derived:

    beta = exp(-dt / tau_mem)
    v[t] = beta * v[t-1] + (1 - beta) * x[t]          (charge; NIR's LIF with R = 1, v_leak = 0)
    z[t] = H(v[t] - v_th)                             (fire, surrogate gradient in backward)
    v[t] <- reset(v[t], z[t])                         (subtract v_th / to zero / none)

Tensors are time-major: a step takes ``x: [B, *F]``, a scan ``x_seq: [T, B, *F]``. Every scan is
a loop over its step (the reference that fused kernels are checked against). The loop iterates
``x_seq.unbind(0)``: indexing ``x_seq[t]`` on a tensor that needs grad would make each step's
backward write a full ``[T, B, *F]`` zero gradient (O(T^2) traffic).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple, TypeVar

import torch
from torch import Tensor

from snn5.core.options import Reset
from snn5.core.surrogate import ATan, Surrogate, spike

DEFAULT_SURROGATE = ATan()
Scalar = float | Tensor
S = TypeVar("S", bound=tuple)


# ----------------------------------------------------------------------------- helpers

def decay(tau: Scalar, dt: float) -> Scalar:
    """Per-step decay factor ``exp(-dt / tau)`` of a time constant ``tau`` (seconds)."""
    if isinstance(tau, Tensor):
        return torch.exp(-dt / tau)
    return math.exp(-dt / tau)


def _as(x: Tensor, value: Scalar) -> Scalar:
    """A parameter in ``x``'s dtype (python floats already keep it)."""
    return value.to(dtype=x.dtype) if isinstance(value, Tensor) else value


def reset_membrane(v: Tensor, z: Tensor, v_th: Scalar, mode: Reset, *,
                   detach: bool = False) -> Tensor:
    """Apply the reset after spikes ``z`` (``detach`` stops the gradient through the reset)."""
    if detach:
        z = z.detach()
    if mode is Reset.SUBTRACT:
        return v - z * v_th
    if mode is Reset.ZERO:
        return v * (1.0 - z)
    return v


def _scan(step: Callable, x_seq: Tensor, state: S, p: tuple, **kw) -> tuple[Tensor, S]:
    if x_seq.ndim < 2 or x_seq.shape[0] == 0:
        raise ValueError(f"expected a time-major sequence [T, B, ...] with T >= 1, "
                         f"got shape {tuple(x_seq.shape)}")
    outs = []
    for x in x_seq.unbind(0):                    # x: [B, *F]
        out, state = step(x, state, p, **kw)
        outs.append(out)
    return torch.stack(outs), state              # [T, B, *F]


# ----------------------------------------------------------------------------- IF

class IFState(NamedTuple):
    v: Tensor                                    # [B, *F] membrane potential


class IFParams(NamedTuple):
    v_th: Scalar = 1.0
    reset: Reset = Reset.SUBTRACT
    detach_reset: bool = False


def if_step(x: Tensor, state: IFState, p: IFParams = IFParams(), *, dt: float = 1e-3,
            surrogate: Surrogate = DEFAULT_SURROGATE, width: Tensor | None = None
            ) -> tuple[Tensor, IFState]:
    """Integrate-and-fire: ``v = v + x``; fire at ``v_th``. ``x`` is the charge per step
    (``dt`` is accepted for a uniform signature and unused)."""
    v_th = _as(x, p.v_th)
    v = state.v + x
    z = spike(v - v_th, surrogate, width)
    return z, IFState(reset_membrane(v, z, v_th, p.reset, detach=p.detach_reset))


def if_scan(x_seq: Tensor, state: IFState, p: IFParams = IFParams(), **kw
            ) -> tuple[Tensor, IFState]:
    """:func:`if_step` over ``x_seq: [T, B, *F]``. Returns ``(z_seq [T, B, *F], final state)``."""
    return _scan(if_step, x_seq, state, p, **kw)


# ----------------------------------------------------------------------------- LIF

class LIFState(NamedTuple):
    v: Tensor                                    # [B, *F] membrane potential


class LIFParams(NamedTuple):
    tau_mem: Scalar = 20e-3                      # s
    v_th: Scalar = 1.0
    reset: Reset = Reset.SUBTRACT
    detach_reset: bool = False


def lif_step(x: Tensor, state: LIFState, p: LIFParams = LIFParams(), *, dt: float = 1e-3,
             surrogate: Surrogate = DEFAULT_SURROGATE, width: Tensor | None = None
             ) -> tuple[Tensor, LIFState]:
    """Leaky integrate-and-fire, one step of ``tau_mem dv/dt = -v + x``.

    ``v = beta v + (1 - beta) x`` with ``beta = exp(-dt / tau_mem)``; ``z = H(v - v_th)``; reset.
    """
    return _leaky_fire(x, state, _as(x, decay(p.tau_mem, dt)), p, surrogate, width)


def _leaky_fire(x: Tensor, state: LIFState, beta: Scalar, p: LIFParams | PLIFParams,
                surrogate: Surrogate, width: Tensor | None) -> tuple[Tensor, LIFState]:
    """Charge with decay ``beta``, fire, reset: the LIF update shared with PLIF."""
    v_th = _as(x, p.v_th)
    v = beta * state.v + (1.0 - beta) * x
    z = spike(v - v_th, surrogate, width)
    return z, LIFState(reset_membrane(v, z, v_th, p.reset, detach=p.detach_reset))


def lif_scan(x_seq: Tensor, state: LIFState, p: LIFParams = LIFParams(), **kw
             ) -> tuple[Tensor, LIFState]:
    """:func:`lif_step` over ``x_seq: [T, B, *F]``. Returns ``(z_seq [T, B, *F], final state)``."""
    return _scan(lif_step, x_seq, state, p, **kw)


# ----------------------------------------------------------------------------- PLIF

class PLIFParams(NamedTuple):
    tau_raw: Tensor                              # tau_mem = dt / sigmoid(tau_raw), always > dt
    v_th: Scalar = 1.0
    reset: Reset = Reset.SUBTRACT
    detach_reset: bool = False


def plif_tau(tau_raw: Tensor, dt: float) -> Tensor:
    """Membrane time constant (s) of a PLIF parameter: ``dt / sigmoid(tau_raw)`` (> dt)."""
    return dt / torch.sigmoid(tau_raw)


def plif_raw(tau_mem: Scalar, dt: float) -> Tensor:
    """Inverse of :func:`plif_tau`: the raw parameter for ``tau_mem`` (needs ``tau_mem > dt``)."""
    r = torch.as_tensor(dt / tau_mem, dtype=torch.float64)
    return torch.logit(r).to(torch.float32)


def plif_step(x: Tensor, state: LIFState, p: PLIFParams, *, dt: float = 1e-3,
              surrogate: Surrogate = DEFAULT_SURROGATE, width: Tensor | None = None
              ) -> tuple[Tensor, LIFState]:
    """Parametric LIF (Fang et al., ICCV 2021) with a learnable time constant.

    The LIF step with ``tau_mem = dt / sigmoid(tau_raw)``, so ``beta = exp(-sigmoid(tau_raw))``
    and ``tau_mem > dt`` whatever the optimiser does.
    """
    beta = torch.exp(-torch.sigmoid(p.tau_raw)).to(x.dtype)
    return _leaky_fire(x, state, beta, p, surrogate, width)


def plif_scan(x_seq: Tensor, state: LIFState, p: PLIFParams, **kw) -> tuple[Tensor, LIFState]:
    """:func:`plif_step` over ``x_seq: [T, B, *F]``."""
    return _scan(plif_step, x_seq, state, p, **kw)


# ----------------------------------------------------------------------------- ALIF

class ALIFState(NamedTuple):
    v: Tensor                                    # [B, *F] membrane potential
    a: Tensor                                    # [B, *F] threshold adaptation (filtered spikes)


class ALIFParams(NamedTuple):
    tau_mem: Scalar = 20e-3                      # s
    tau_adapt: Scalar = 200e-3                   # s
    beta_adapt: Scalar = 1.8                     # threshold increase per unit of ``a``
    v_th: Scalar = 1.0                           # baseline threshold b0
    reset: Reset = Reset.SUBTRACT
    detach_reset: bool = False


def alif_step(x: Tensor, state: ALIFState, p: ALIFParams = ALIFParams(), *, dt: float = 1e-3,
              surrogate: Surrogate = DEFAULT_SURROGATE, width: Tensor | None = None
              ) -> tuple[Tensor, ALIFState]:
    """Adaptive LIF of the LSNN (Bellec et al., NeurIPS 2018).

    ``A = v_th + beta_adapt * a``; ``z = H(v - A)``; the reset subtracts ``A``;
    ``a <- rho a + (1 - rho) z`` with ``rho = exp(-dt / tau_adapt)``, so ``a`` is a low-pass
    filtered firing rate (spikes per step) and the threshold grows with recent activity.
    """
    beta = _as(x, decay(p.tau_mem, dt))
    rho = _as(x, decay(p.tau_adapt, dt))
    v = beta * state.v + (1.0 - beta) * x
    threshold = _as(x, p.v_th) + _as(x, p.beta_adapt) * state.a
    z = spike(v - threshold, surrogate, width)
    v = reset_membrane(v, z, threshold, p.reset, detach=p.detach_reset)
    a = rho * state.a + (1.0 - rho) * z
    return z, ALIFState(v, a)


def alif_scan(x_seq: Tensor, state: ALIFState, p: ALIFParams = ALIFParams(), **kw
              ) -> tuple[Tensor, ALIFState]:
    """:func:`alif_step` over ``x_seq: [T, B, *F]``."""
    return _scan(alif_step, x_seq, state, p, **kw)


# ----------------------------------------------------------------------------- LI (readout)

class LIState(NamedTuple):
    v: Tensor                                    # [B, *F] membrane potential


class LIParams(NamedTuple):
    tau_mem: Scalar = 20e-3                      # s


def li_step(x: Tensor, state: LIState, p: LIParams = LIParams(), *, dt: float = 1e-3,
            **_: object) -> tuple[Tensor, LIState]:
    """Leaky integrator without spikes (a readout): ``v = beta v + (1 - beta) x``; returns v."""
    beta = _as(x, decay(p.tau_mem, dt))
    v = beta * state.v + (1.0 - beta) * x
    return v, LIState(v)


def li_scan(x_seq: Tensor, state: LIState, p: LIParams = LIParams(), **kw
            ) -> tuple[Tensor, LIState]:
    """:func:`li_step` over ``x_seq: [T, B, *F]``. Returns ``(v_seq [T, B, *F], final state)``."""
    return _scan(li_step, x_seq, state, p, **kw)
