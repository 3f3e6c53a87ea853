"""More neuron dynamics as pure functions (the surrogate-gradient track of issue 6).

Same conventions as :mod:`snn5.core.neurons`: ``*_step(x, state, p, *, dt, surrogate, width)
-> (out, state)`` on ``x: [B, *F]``, ``*_scan`` on ``x_seq: [T, B, *F]``, every scan a loop over
its step. Learned parameters are stored unconstrained (float32) and mapped into their valid range
(``sigmoid``) inside the step, after being cast to the input's dtype (so a float64 run is a
float64 computation and a bfloat16 run keeps bfloat16).

- GLIF: gated mixture of leak, integration and reset forms (Yao et al., NeurIPS 2022).
- TC-LIF: two compartments, dendrite and soma, with learned coupling (Zhang et al., AAAI 2024).
- EL-LIF: LIF whose per-step decay is a learned function of the input (the evolutionary leak of
  FEEL-SNN, Xu et al., NeurIPS 2024, in the input-dependent form asked for by issue 6).
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

class GLIFParams(NamedTuple):
    tau_raw: Tensor                 # tau_mem = dt / sigmoid(tau_raw) (the PLIF reparameterisation)
    leak_gate: Tensor               # alpha = sigmoid(leak_gate): exponential vs linear leak
    integ_gate: Tensor              # beta_g = sigmoid(integ_gate): plain vs conductance input
    reset_gate: Tensor              # gamma = sigmoid(reset_gate): configured vs hard reset
    linear_leak: Tensor             # E_L: potential lost per step by the linear leak
    conductance: Tensor             # g = sigmoid(conductance): input conductance in (0, 1)
    v_th: Scalar = 1.0
    reset: Reset = Reset.SUBTRACT
    detach_reset: bool = False


def glif_step(x: Tensor, state: LIFState, p: GLIFParams, *, dt: float = 1e-3,
              surrogate: Surrogate = DEFAULT_SURROGATE, width: Tensor | None = None
              ) -> tuple[Tensor, LIFState]:
    """Gated LIF (GLIF; Yao et al., "GLIF: A Unified Gated Leaky Integrate-and-Fire Neuron for
    Spiking Neural Networks", NeurIPS 2022), one step.

    Three gates in (0, 1), each the sigmoid of a learned parameter, mix two forms of each part
    of the LIF update (the paper's membrane equation, leak / integration / reset terms)::

        beta  = exp(-sigmoid(tau_raw))                          # exponential decay, tau > dt
        v'    = alpha * beta * v + (1 - alpha) * (v - E_L)      # leak: exponential | linear
              + (1 - beta) * (1 - beta_g * (1 - g)) * x         # integration: x | g * x
        z     = H(v' - v_th)
        v_new = gamma * reset(v', z) + (1 - gamma) * v' * (1 - z)   # reset: configured | hard

    Deliberate deviations: (1) the input is scaled by ``1 - beta`` as in every snn5 neuron (the
    exact zero-order-hold integration of ``tau dv/dt = -v + x``), so saturated gates
    (alpha, gamma -> 1, beta_g -> 0) give exactly :func:`snn5.core.lif_step`; (2) the paper's
    conductance is one value per time step of a fixed T; here it is one value per channel (or
    layer), so the neuron runs any T and streams; (3) the soft reset subtracts ``v_th`` (no
    separate learned reset voltage), and the reset gate mixes the configured reset
    (``p.reset``; SUBTRACT gives the paper's soft/hard mixture) with the hard reset.
    """
    beta = torch.exp(-torch.sigmoid(_p(x, p.tau_raw)))
    alpha = torch.sigmoid(_p(x, p.leak_gate))
    beta_g = torch.sigmoid(_p(x, p.integ_gate))
    gamma = torch.sigmoid(_p(x, p.reset_gate))
    g = torch.sigmoid(_p(x, p.conductance))
    v_th = _as(x, p.v_th)
    v = state.v
    v = alpha * beta * v + (1.0 - alpha) * (v - _p(x, p.linear_leak)) \
        + (1.0 - beta) * (1.0 - beta_g * (1.0 - g)) * x
    z = spike(v - v_th, surrogate, width)
    soft = reset_membrane(v, z, v_th, p.reset, detach=p.detach_reset)
    hard = reset_membrane(v, z, v_th, Reset.ZERO, detach=p.detach_reset)
    return z, LIFState(gamma * soft + (1.0 - gamma) * hard)


def glif_scan(x_seq: Tensor, state: LIFState, p: GLIFParams, **kw) -> tuple[Tensor, LIFState]:
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
        v_s = v_s + beta_2 * v_d                # soma is driven by the dendrite
        z   = H(v_s - v_th)
        v_s = reset(v_s, z)                     # subtract v_th (the paper) / zero / none
        v_d = v_d - gamma * z                   # the spike also resets the dendrite

    ``beta_1 = -sigmoid(coupling_sd_raw)`` (inhibitory feedback) and ``beta_2 =
    sigmoid(coupling_ds_raw)`` are the paper's learned couplings; the paper writes the resets as
    ``-gamma S[t-1]`` and ``-v_th S[t-1]`` terms of the next update, which is the same as
    resetting right after the spike as here. The coupled compartments have no leak of their
    own: the update matrix has determinant 1 (the paper's long memory), so only the resets
    damp it. The couplings are per-step rates, so ``dt`` is accepted for a uniform signature
    and unused.
    """
    beta1 = -torch.sigmoid(_p(x, p.coupling_sd_raw))
    beta2 = torch.sigmoid(_p(x, p.coupling_ds_raw))
    v_th = _as(x, p.v_th)
    v_d = state.v_d + beta1 * state.v_s + x
    v_s = state.v_s + beta2 * v_d
    z = spike(v_s - v_th, surrogate, width)
    v_s = reset_membrane(v_s, z, v_th, p.reset, detach=p.detach_reset)
    v_d = v_d - p.dendrite_reset * (z.detach() if p.detach_reset else z)
    return z, TCLIFState(v_d, v_s)


def tclif_scan(x_seq: Tensor, state: TCLIFState, p: TCLIFParams, **kw
               ) -> tuple[Tensor, TCLIFState]:
    """:func:`tclif_step` over ``x_seq: [T, B, *F]``."""
    return _scan(tclif_step, x_seq, state, p, **kw)


# ----------------------------------------------------------------------------- EL (input leak)

class ELLIFParams(NamedTuple):
    leak_weight: Tensor             # w: how the input moves the decay
    leak_bias: Tensor               # b: the decay at zero input is sigmoid(b)
    v_th: Scalar = 1.0
    reset: Reset = Reset.SUBTRACT
    detach_reset: bool = False


def el_leak_bias(tau_mem: float, dt: float) -> Tensor:
    """The bias ``b`` that makes the decay at zero input ``exp(-dt / tau_mem)``."""
    beta = torch.as_tensor(decay(tau_mem, dt), dtype=torch.float64)
    return torch.logit(beta).to(torch.float32)


def el_lif_step(x: Tensor, state: LIFState, p: ELLIFParams, *, dt: float = 1e-3,
                surrogate: Surrogate = DEFAULT_SURROGATE, width: Tensor | None = None
                ) -> tuple[Tensor, LIFState]:
    """LIF with an input-dependent, learned decay: the evolutionary leak (EL) of FEEL-SNN
    (Xu et al., "FEEL-SNN: Robust Spiking Neural Networks with Frequency Encoding and
    Evolutionary Leak Factor", NeurIPS 2024), one step::

        lam = sigmoid(w * x + b)                # decay in (0, 1), evolves with the input
        v   = lam * v + (1 - lam) * x
        z   = H(v - v_th); reset

    ``w`` and ``b`` are learned (per layer or channel); ``b`` starts at ``logit(exp(-dt /
    tau_mem))`` and ``w`` at 0, so the neuron starts as a LIF. Note: issue 6 specifies the decay
    as a learned function of the input; we could not check the paper's own equations here
    (the paper's leak may instead be learned per time step), so this is the issue's form.
    """
    lam = torch.sigmoid(_p(x, p.leak_weight) * x + _p(x, p.leak_bias))
    v_th = _as(x, p.v_th)
    v = lam * state.v + (1.0 - lam) * x
    z = spike(v - v_th, surrogate, width)
    return z, LIFState(reset_membrane(v, z, v_th, p.reset, detach=p.detach_reset))


def el_lif_scan(x_seq: Tensor, state: LIFState, p: ELLIFParams, **kw) -> tuple[Tensor, LIFState]:
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
    "ELLIFParams", "GLIFParams", "IntLIFParams", "RefractoryLIFParams", "RefractoryLIFState",
    "TCLIFParams", "TCLIFState", "el_leak_bias", "el_lif_scan", "el_lif_step", "glif_scan",
    "glif_step", "int_lif_binary_scan", "int_lif_binary_step", "int_lif_scan", "int_lif_step",
    "refractory_lif_scan", "refractory_lif_step", "refractory_steps", "tclif_scan", "tclif_step",
]
