"""More neuron dynamics as pure functions (the surrogate-gradient track of issue 6).

Same conventions as :mod:`snn5.core.neurons`: ``*_step(x, state, p, *, dt, surrogate, width)
-> (out, state)`` on ``x: [B, *F]``, ``*_scan`` on ``x_seq: [T, B, *F]``, every scan a loop over
its step. Learned parameters are stored unconstrained (float32) and mapped into their valid range
(``sigmoid``) inside the step, after being cast to the input's dtype (so a float64 run is a
float64 computation and a bfloat16 run keeps bfloat16).

- GLIF: gated mixture of leak, integration and reset forms (Yao et al., NeurIPS 2022).
- TC-LIF: two compartments, dendrite and soma, with learned coupling (Zhang et al., AAAI 2024).
- EL-LIF: LIF with a learned leak per time step (the evolutionary leak of FEEL-SNN, Xu et al.,
  NeurIPS 2024).
- Integer LIF: integer spikes in training, an exact binary sub-step form for inference.
- Refractory LIF: a LIF that cannot fire for a refractory time growing with recent activity.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from snn5.core.neurons import (
    DEFAULT_SURROGATE, LIFState, Scalar, _as, _scan, decay, reset_membrane,
)
from snn5.core.options import Reset
from snn5.core.surrogate import Surrogate, spike


def _p(x: Tensor, value: Scalar) -> Scalar:
    """A learned (float32) parameter cast to ``x``'s dtype before use; floats stay floats."""
    return _as(x, value)


# ----------------------------------------------------------------------------- GLIF

class GLIFState(NamedTuple):
    v: Tensor                       # [B, *F] membrane U[t] after the charge (before its reset)
    z: Tensor                       # [B, *F] last spike S[t]; its reset is applied at step t+1


class GLIFParams(NamedTuple):
    tau_raw: Tensor                 # lam = sigmoid(tau_raw): exponential decay per step
    leak_gate: Tensor               # alpha = sigmoid(leak_gate): exponential vs linear leak
    integ_gate: Tensor              # beta = sigmoid(integ_gate): plain vs conductance input
    reset_gate: Tensor              # gamma = sigmoid(reset_gate): hard vs soft reset
    linear_leak: Tensor             # E_L = sigmoid(linear_leak): potential lost by the linear leak
    reset_potential: Tensor         # V_R = sigmoid(reset_potential): removed by the soft reset
    conductance: Tensor             # g = sigmoid(conductance): input conductance in (0, 1)
    v_th: Scalar = 1.0
    reset: Reset = Reset.SUBTRACT
    detach_reset: bool = False


def glif_step(x: Tensor, state: GLIFState, p: GLIFParams, *, dt: float = 1e-3,
              surrogate: Surrogate = DEFAULT_SURROGATE, width: Tensor | None = None
              ) -> tuple[Tensor, GLIFState]:
    """Gated LIF (GLIF; Yao et al., "GLIF: A Unified Gated Leaky Integrate-and-Fire Neuron for
    Spiking Neural Networks", NeurIPS 2022), one step.

    Every quantity is the sigmoid of a learned parameter. With ``k = 1 - alpha (1 - lam)`` (the
    leak gate mixing exponential decay ``lam`` with no decay plus a linear leak ``E_L``)::

        U[t] = k U[t-1] (1 - gamma S[t-1]) - (1 - gamma) V_R S[t-1]    # leak + gated reset
               - (1 - alpha) E_L + (1 - beta (1 - g)) x[t]             # linear leak, input
        S[t] = H(U[t] - v_th)

    The reset of a spike is applied at the next step, as in the paper: gamma -> 1 is the hard
    reset (the carried potential is dropped), gamma -> 0 the soft reset by the learned ``V_R``.
    ``p.reset``: SUBTRACT is this gated reset (the paper), ZERO the hard part alone
    (``gamma = 1``), NONE no reset. The input is not scaled by ``1 - lam`` (the paper's
    form, unlike :func:`snn5.core.lif_step`); ``dt`` is unused (``lam`` is a per-step rate, set
    from a physical ``tau_mem`` only at initialisation). Deliberate deviation: the paper's
    conductance ``g`` is one value per time step of a fixed T; here it is one value per layer or
    channel, so the neuron runs any T and streams.
    """
    lam = torch.sigmoid(_p(x, p.tau_raw))
    alpha = torch.sigmoid(_p(x, p.leak_gate))
    beta = torch.sigmoid(_p(x, p.integ_gate))
    gamma = torch.sigmoid(_p(x, p.reset_gate))
    e_l = torch.sigmoid(_p(x, p.linear_leak))
    v_r = torch.sigmoid(_p(x, p.reset_potential))
    g = torch.sigmoid(_p(x, p.conductance))
    v_th = _as(x, p.v_th)
    s = state.z.detach() if p.detach_reset else state.z
    carried = (1.0 - alpha * (1.0 - lam)) * state.v
    if p.reset is Reset.SUBTRACT:
        carried = carried * (1.0 - gamma * s) - (1.0 - gamma) * v_r * s
    elif p.reset is Reset.ZERO:
        carried = carried * (1.0 - s)
    u = carried - (1.0 - alpha) * e_l + (1.0 - beta * (1.0 - g)) * x
    z = spike(u - v_th, surrogate, width)
    return z, GLIFState(u, z)


def glif_scan(x_seq: Tensor, state: GLIFState, p: GLIFParams, **kw) -> tuple[Tensor, GLIFState]:
    """:func:`glif_step` over ``x_seq: [T, B, *F]``."""
    return _scan(glif_step, x_seq, state, p, **kw)


# ----------------------------------------------------------------------------- TC-LIF

class TCLIFState(NamedTuple):
    v_d: Tensor                     # [B, *F] dendritic compartment
    v_s: Tensor                     # [B, *F] somatic compartment


class TCLIFParams(NamedTuple):
    coupling_sd_raw: Tensor         # beta_1 = -sigmoid(raw): soma -> dendrite, in (-1, 0)
    coupling_ds_raw: Tensor         # beta_2 = sigmoid(raw): dendrite -> soma, in (0, 1)
    dendrite_reset: float = 0.5     # gamma: potential removed from the dendrite per spike
    v_th: Scalar = 1.0
    reset: Reset = Reset.SUBTRACT
    detach_reset: bool = False


def tclif_step(x: Tensor, state: TCLIFState, p: TCLIFParams, *, dt: float = 1e-3,
               surrogate: Surrogate = DEFAULT_SURROGATE, width: Tensor | None = None
               ) -> tuple[Tensor, TCLIFState]:
    """Two-compartment LIF (TC-LIF; Zhang et al., "TC-LIF: A Two-Compartment Spiking Neuron
    Model for Long-Term Sequential Modelling", AAAI 2024), one step::

        v_d = v_d + beta_1 * v_s + x            # dendrite integrates the input
        v_s = v_s + beta_2 * v_d                # soma is driven by the (new) dendrite
        z   = H(v_s - v_th)
        SUBTRACT (the paper): v_s = v_s - v_th z,  v_d = v_d - gamma z
        ZERO: v_s = v_s (1 - z), dendrite kept;    NONE: no reset

    ``beta_1 = -sigmoid(coupling_sd_raw)`` (inhibitory feedback) and ``beta_2 =
    sigmoid(coupling_ds_raw)`` are the paper's learned couplings (one pair per layer by
    default). The paper writes the resets as ``-gamma S[t-1]`` and ``-v_th S[t-1]`` terms of the
    next update, the same as resetting right after the spike as here. The compartments have no
    leak of their own. The couplings are per-step rates, so ``dt`` is unused.
    """
    beta1 = -torch.sigmoid(_p(x, p.coupling_sd_raw))
    beta2 = torch.sigmoid(_p(x, p.coupling_ds_raw))
    v_th = _as(x, p.v_th)
    v_d = state.v_d + beta1 * state.v_s + x
    v_s = state.v_s + beta2 * v_d
    z = spike(v_s - v_th, surrogate, width)
    v_s = reset_membrane(v_s, z, v_th, p.reset, detach=p.detach_reset)
    if p.reset is Reset.SUBTRACT:
        v_d = v_d - p.dendrite_reset * (z.detach() if p.detach_reset else z)
    return z, TCLIFState(v_d, v_s)


def tclif_scan(x_seq: Tensor, state: TCLIFState, p: TCLIFParams, **kw
               ) -> tuple[Tensor, TCLIFState]:
    """:func:`tclif_step` over ``x_seq: [T, B, *F]``."""
    return _scan(tclif_step, x_seq, state, p, **kw)


# ----------------------------------------------------------------------------- EL (per-step leak)

class ELLIFState(NamedTuple):
    v: Tensor                       # [B, *F] membrane potential
    step: Tensor                    # [B, *F] index of the leak used at the next step (0, 1, ...)


class ELLIFParams(NamedTuple):
    leak: Tensor                    # [T_leak, *shape] lam_t: the learned leak of step t
    v_th: Scalar = 1.0
    reset: Reset = Reset.ZERO
    detach_reset: bool = False


def el_lif_step(x: Tensor, state: ELLIFState, p: ELLIFParams, *, dt: float = 1e-3,
                surrogate: Surrogate = DEFAULT_SURROGATE, width: Tensor | None = None
                ) -> tuple[Tensor, ELLIFState]:
    """LIF with a learned leak per time step: the evolutionary leak (EL) of FEEL-SNN (Xu et al.,
    "FEEL-SNN: Robust Spiking Neural Networks with Frequency Encoding and Evolutionary Leak
    Factor", NeurIPS 2024), one step::

        v = lam_t * v + x[t]                    # lam_t learned, one per step (and neuron)
        z = H(v - v_th); reset (ZERO, the paper's hard reset, by default)

    ``p.leak[t]`` is used at step ``t`` (counted by ``state.step``); steps at or beyond
    ``T_leak`` reuse the last leak, so ``T_leak = 1`` is one learned leak for all steps. The
    leak is not squashed into (0, 1) and the input is not scaled by ``1 - lam`` (the paper's
    form). The leak does not depend on the input; ``dt`` is unused.
    """
    n = p.leak.shape[0]
    idx = state.step.detach().clamp(0, n - 1).long()                     # [B, *F]
    leak = _p(x, p.leak)
    leak = leak.reshape(n, *([1] * (x.ndim - (leak.ndim - 1))), *leak.shape[1:])
    onehot = idx.unsqueeze(0) == torch.arange(n, device=x.device).view(n, *[1] * x.ndim)
    lam = (leak * onehot.to(x.dtype)).sum(0)                             # [B, *F]
    v_th = _as(x, p.v_th)
    v = lam * state.v + x
    z = spike(v - v_th, surrogate, width)
    step = (state.step.detach() + 1.0).clamp(max=n - 1)
    return z, ELLIFState(reset_membrane(v, z, v_th, p.reset, detach=p.detach_reset), step)


def el_lif_scan(x_seq: Tensor, state: ELLIFState, p: ELLIFParams, **kw
                ) -> tuple[Tensor, ELLIFState]:
    """:func:`el_lif_step` over ``x_seq: [T, B, *F]``."""
    return _scan(el_lif_step, x_seq, state, p, **kw)


# ----------------------------------------------------------------------------- integer spikes

class IntLIFParams(NamedTuple):
    tau_mem: Scalar = 20e-3         # s
    max_spike: int = 4              # D: the largest integer spike
    v_th: Scalar = 1.0
    reset: Reset = Reset.SUBTRACT
    detach_reset: bool = False


def _int_levels(x: Tensor, state: LIFState, p: IntLIFParams, dt: float, surrogate: Surrogate,
                width: Tensor | None) -> tuple[Tensor, LIFState]:
    """Charge, then the D binary level crossings ``b_k = H(v - (k - 1/2) v_th)``: ``[D, B, *F]``."""
    beta = _as(x, decay(p.tau_mem, dt))
    v_th = _as(x, p.v_th)
    v = beta * state.v + (1.0 - beta) * x
    levels = torch.stack([spike(v - (k - 0.5) * v_th, surrogate, width)
                          for k in range(1, p.max_spike + 1)])          # [D, B, *F]
    z = levels.sum(0)                                                   # integer spike
    if p.reset is Reset.ZERO:
        v = reset_membrane(v, levels[0], v_th, Reset.ZERO, detach=p.detach_reset)
    else:
        v = reset_membrane(v, z, v_th, p.reset, detach=p.detach_reset)
    return levels, LIFState(v)


def int_lif_step(x: Tensor, state: LIFState, p: IntLIFParams = IntLIFParams(), *,
                 dt: float = 1e-3, surrogate: Surrogate = DEFAULT_SURROGATE,
                 width: Tensor | None = None) -> tuple[Tensor, LIFState]:
    """Integer-spike LIF ("integer-valued training, spike-driven inference"), one training step.

    The LIF charge ``v = beta v + (1 - beta) x``, then an integer spike::

        z = sum_{k=1..D} H(v - (k - 1/2) v_th) = clamp(floor(v / v_th + 1/2), 0, D)

    i.e. ``clamp(round(v / v_th), 0, D)`` with halves rounded up. Each level is the one spike
    function, so the backward is the sum of D surrogates centred on the level thresholds; with
    ``Rectangle(width=v_th)`` it is the straight-through estimator of the rounding (gradient
    ``1 / v_th`` on ``[0, D v_th]``) used by integer-valued training (Luo et al., "Integer-Valued
    Training and Spike-Driven Inference Spiking Neural Network", ECCV 2024). Reset: SUBTRACT
    removes ``z v_th``, ZERO empties the membrane when ``z >= 1``, NONE keeps it.
    """
    levels, state = _int_levels(x, state, p, dt, surrogate, width)
    return levels.sum(0), state


def int_lif_scan(x_seq: Tensor, state: LIFState, p: IntLIFParams = IntLIFParams(), **kw
                 ) -> tuple[Tensor, LIFState]:
    """:func:`int_lif_step` over ``x_seq: [T, B, *F]``: integer spikes ``[T, B, *F]``."""
    return _scan(int_lif_step, x_seq, state, p, **kw)


def int_lif_binary_step(x: Tensor, state: LIFState, p: IntLIFParams = IntLIFParams(), *,
                        dt: float = 1e-3, surrogate: Surrogate = DEFAULT_SURROGATE,
                        width: Tensor | None = None) -> tuple[Tensor, LIFState]:
    """The spike-driven (inference) form of :func:`int_lif_step`: ``[D, B, *F]`` binary spikes.

    One step becomes D sub-steps; sub-step ``k`` (1-based) carries a spike iff the integer
    spike is at least ``k`` (a thermometer code of the level crossings). So the spike count over
    the D sub-steps equals the training step's integer spike exactly, and the membrane state
    after the step is the same tensor. A layer fed by the sub-steps and summed over them equals
    the layer fed by the integer spike (linearity), with only binary events on the wire.
    """
    return _int_levels(x, state, p, dt, surrogate, width)


def int_lif_binary_scan(x_seq: Tensor, state: LIFState, p: IntLIFParams = IntLIFParams(), **kw
                        ) -> tuple[Tensor, LIFState]:
    """:func:`int_lif_binary_step` over ``x_seq: [T, B, *F]``.

    Returns:
        ``(b_seq [T * D, B, *F], final state)``: binary spikes, the D sub-steps of step ``t`` at
        rows ``t * D ... t * D + D - 1``; ``b_seq.unflatten(0, (T, D)).sum(1)`` equals
        :func:`int_lif_scan`'s output.
    """
    b, state = _scan(int_lif_binary_step, x_seq, state, p, **kw)        # [T, D, B, *F]
    return b.flatten(0, 1), state


# ----------------------------------------------------------------------------- refractory

class RefractoryLIFState(NamedTuple):
    v: Tensor                       # [B, *F] membrane potential
    a: Tensor                       # [B, *F] recent activity (low-pass filtered spikes)
    ref: Tensor                     # [B, *F] refractory steps left (whole numbers, 0: may fire)


class RefractoryLIFParams(NamedTuple):
    tau_mem: Scalar = 20e-3         # s
    t_ref: float = 2e-3             # s, refractory time after a spike at zero activity
    ref_gain: float = 1.0           # relative growth of the refractory time per unit activity
    tau_adapt: float = 100e-3       # s, time constant of the activity trace
    v_th: Scalar = 1.0
    reset: Reset = Reset.SUBTRACT
    detach_reset: bool = False


def refractory_steps(t_ref: float, ref_gain: float, a: Tensor, dt: float) -> Tensor:
    """Whole steps a neuron stays silent after a spike: ``ceil(t_ref / dt * (1 + ref_gain a))``
    (a relative tolerance of 1e-6 keeps ``t_ref = 2 dt`` at exactly 2 steps)."""
    steps = (t_ref / dt) * (1.0 + ref_gain * a.detach().float())
    return torch.ceil(steps * (1.0 - 1e-6)).to(a.dtype)


def refractory_lif_step(x: Tensor, state: RefractoryLIFState,
                        p: RefractoryLIFParams = RefractoryLIFParams(), *, dt: float = 1e-3,
                        surrogate: Surrogate = DEFAULT_SURROGATE, width: Tensor | None = None
                        ) -> tuple[Tensor, RefractoryLIFState]:
    """LIF with a dynamic refractory period, one step (our own formulation)::

        v   = beta v + (1 - beta) x
        z   = H(v - v_th) * [ref == 0]          # no spike while refractory
        v   = reset(v, z)
        a   = rho a + (1 - rho) z               # activity, rho = exp(-dt / tau_adapt)
        ref = ceil(t_ref / dt * (1 + ref_gain a))  if z  else  max(ref - 1, 0)

    After a spike the neuron cannot fire for ``ref`` steps, a count that grows with its recent
    activity: a busy neuron rests longer (``ref_gain = 0`` is the classic absolute refractory
    period). The membrane keeps integrating while refractory. The counter and the activity are
    discrete bookkeeping without gradient; the spike's surrogate gradient is masked by the
    refractory state. Motivated by history-dependent refractory periods in SNNs (Tao et al.,
    "Optimization of Low-Latency Spiking Neural Networks Utilizing Historical Dynamics of
    Refractory Periods", arXiv:2507.02960, 2025); their estimate from the membrane derivative is
    not reproduced here.
    """
    beta = _as(x, decay(p.tau_mem, dt))
    rho = decay(p.tau_adapt, dt)
    v_th = _as(x, p.v_th)
    v = beta * state.v + (1.0 - beta) * x
    free = (state.ref <= 0).to(x.dtype)
    z = spike(v - v_th, surrogate, width) * free
    v = reset_membrane(v, z, v_th, p.reset, detach=p.detach_reset)
    fired = z.detach()
    a = rho * state.a.detach() + (1.0 - rho) * fired
    ref = torch.where(fired > 0, refractory_steps(p.t_ref, p.ref_gain, a, dt),
                      (state.ref.detach() - 1.0).clamp_min(0.0))
    return z, RefractoryLIFState(v, a, ref)


def refractory_lif_scan(x_seq: Tensor, state: RefractoryLIFState,
                        p: RefractoryLIFParams = RefractoryLIFParams(), **kw
                        ) -> tuple[Tensor, RefractoryLIFState]:
    """:func:`refractory_lif_step` over ``x_seq: [T, B, *F]``."""
    return _scan(refractory_lif_step, x_seq, state, p, **kw)


__all__ = [
    "ELLIFParams", "ELLIFState", "GLIFParams", "GLIFState", "IntLIFParams",
    "RefractoryLIFParams", "RefractoryLIFState", "TCLIFParams", "TCLIFState", "el_lif_scan",
    "el_lif_step", "glif_scan", "glif_step", "int_lif_binary_scan", "int_lif_binary_step",
    "int_lif_scan", "int_lif_step",
    "refractory_lif_scan", "refractory_lif_step", "refractory_steps", "tclif_scan", "tclif_step",
]
