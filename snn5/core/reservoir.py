"""A recurrent spiking E/I reservoir (liquid) as pure functions: step, scan and state features.

The liquid follows the liquid state machine of Maass, Natschläger & Markram (Neural Comput. 14,
2531-2560, 2002): leaky integrate-and-fire neurons, 80 % excitatory and 20 % inhibitory (Dale's
law: a neuron's outgoing weights all have its sign), sparse random recurrent connections, current
synapses that decay with ``tau_syn_exc`` = 3 ms / ``tau_syn_inh`` = 6 ms, ``tau_mem`` = 30 ms and
an absolute refractory period; a memoryless readout sees low-pass filtered spike trains.
Unlike the paper, synapses are static (no Markram depression/facilitation), every connection has
a delay of one step ``dt``, and there is no noise.

Units: the membrane is measured in units of the threshold distance (``v_th = 1`` by default, the
paper's 15 mV above rest), currents in the same units (``R = 1``), times in seconds. With
``neurons 0 .. n_exc - 1`` excitatory and the rest inhibitory, one step of length ``dt`` is
(exact integration of the currents and of the membrane over the step, input held constant):

    i_exc <- exp(-dt / tau_syn_exc) i_exc + drive + W[:, :n_exc] z_exc      (W >= 0 there)
    i_inh <- exp(-dt / tau_syn_inh) i_inh + W[:, n_exc:] z_inh              (W <= 0 there)
    v     <- beta v + (1 - beta) (i_exc + i_inh + bias),  beta = exp(-dt / tau_mem)
    z      = H(v - v_th), except during the refractory period
    v     <- v_reset where z; refractory <- t_ref where z

``z`` reaches its targets on the next step (a one-step synaptic delay). Refractory neurons keep
``v = v_reset`` and do not fire. The reservoir is not trained by gradients, so the spike is a
plain Heaviside (no surrogate).

Tensors are time-major: ``drive: [B, N]`` per step, ``drive_seq: [T, B, N]``; weights are
``w_rec: [N, N]`` in the ``nn.Linear`` layout (row = postsynaptic neuron).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

__all__ = [
    "ReservoirOutput", "ReservoirParams", "ReservoirState", "reservoir_features",
    "reservoir_init", "reservoir_scan", "reservoir_step",
]

Scalar = float | Tensor


class ReservoirParams(NamedTuple):
    """Neuron and synapse constants (defaults: Maass et al. 2002, in units of the threshold).

    ``tau_mem``, ``t_ref`` and ``bias`` may be tensors ``[N]`` (one value per neuron, e.g. the
    paper's 3 ms refractory period for excitatory and 2 ms for inhibitory neurons).
    """

    tau_mem: Scalar = 30e-3                  # s
    tau_syn_exc: float = 3e-3                # s, excitatory synaptic current (and the input)
    tau_syn_inh: float = 6e-3                # s, inhibitory synaptic current
    t_ref: Scalar = 2e-3                     # s, absolute refractory period
    v_th: float = 1.0                        # threshold
    v_reset: float = 0.0                     # membrane after a spike
    bias: Scalar = 0.0                       # constant background current


class ReservoirState(NamedTuple):
    v: Tensor                                # [B, N] membrane potential
    i_exc: Tensor                            # [B, N] excitatory synaptic current (input included)
    i_inh: Tensor                            # [B, N] inhibitory synaptic current (<= 0)
    refractory: Tensor                       # [B, N] refractory time left, s
    z: Tensor                                # [B, N] spikes of the last step (arrive next step)


class ReservoirOutput(NamedTuple):
    features: Tensor                         # [B, K, N] bin means of the filtered spike trains
    counts: Tensor                           # [B, N] spikes per neuron over the sequence
    state: ReservoirState                    # final state


def reservoir_init(batch: int, n: int, *, dtype: torch.dtype = torch.float32,
                   device: torch.device | str | None = None) -> ReservoirState:
    """The resting state: every variable zero, no spike in flight."""
    zero = torch.zeros(batch, n, dtype=dtype, device=device)
    return ReservoirState(zero, zero, zero, zero, zero)


def _check(drive: Tensor, state: ReservoirState, w_rec: Tensor, n_exc: int, dt: float,
           p: ReservoirParams) -> None:
    n = w_rec.shape[0]
    if w_rec.ndim != 2 or w_rec.shape[1] != n:
        raise ValueError(f"w_rec must be square [N, N], got {tuple(w_rec.shape)}")
    if drive.shape[-2:] != state.v.shape or state.v.shape[-1] != n:
        raise ValueError(f"drive [..., B, N] and state [B, N] must match w_rec [N={n}, N]; got "
                         f"drive {tuple(drive.shape)}, state.v {tuple(state.v.shape)}")
    if not (drive.dtype == state.v.dtype == w_rec.dtype):
        raise ValueError(f"drive ({drive.dtype}), state ({state.v.dtype}) and w_rec "
                         f"({w_rec.dtype}) must share one dtype; cast them, e.g. w_rec.to(drive)")
    if not 0 <= n_exc <= n:
        raise ValueError(f"n_exc must lie in 0..N={n}, got {n_exc}")
    if not (isinstance(dt, (int, float)) and dt > 0):
        raise ValueError(f"dt must be a positive number of seconds, got {dt!r}")
    for name in ("tau_syn_exc", "tau_syn_inh"):
        if not getattr(p, name) > 0:
            raise ValueError(f"{name} must be > 0 s, got {getattr(p, name)}")
    tau = torch.as_tensor(p.tau_mem)
    if not bool((tau > 0).all()):
        raise ValueError(f"tau_mem must be > 0 s, got {tau}. Did you pass milliseconds? "
                         "30 ms is 30e-3.")


def _decay(tau: Scalar, dt: float, like: Tensor) -> Scalar:
    if isinstance(tau, Tensor):
        return torch.exp(-dt / tau).to(like)
    return math.exp(-dt / tau)


def reservoir_step(drive: Tensor, state: ReservoirState, w_rec: Tensor,
                   p: ReservoirParams = ReservoirParams(), *, n_exc: int, dt: float = 1e-3
                   ) -> tuple[Tensor, ReservoirState]:
    """One step of the liquid (the equations of the module docstring).

    Args:
        drive: ``[B, N]`` input current added to ``i_exc`` this step (e.g. ``x @ w_in.T``).
        state: The state before the step.
        w_rec: ``[N, N]`` recurrent weights (row = postsynaptic); columns ``< n_exc`` are the
            excitatory presynaptic neurons (``>= 0`` under Dale's law), the rest inhibitory.
        p: Constants.
        n_exc: Number of excitatory neurons (the first ``n_exc``).
        dt: Step, seconds.

    Returns:
        ``(z [B, N], new state)``.
    """
    z_prev = state.z
    i_exc = _decay(p.tau_syn_exc, dt, drive) * state.i_exc + drive
    i_inh = _decay(p.tau_syn_inh, dt, drive) * state.i_inh
    if n_exc > 0:
        i_exc = i_exc + z_prev[:, :n_exc] @ w_rec[:, :n_exc].T               # [B, N]
    if n_exc < w_rec.shape[0]:
        i_inh = i_inh + z_prev[:, n_exc:] @ w_rec[:, n_exc:].T               # [B, N]
    beta = _decay(p.tau_mem, dt, drive)
    free = state.refractory <= 0.5 * dt                                      # not refractory
    v = torch.where(free, beta * state.v + (1.0 - beta) * (i_exc + i_inh + p.bias), state.v)
    fire = free & (v >= p.v_th)
    z = fire.to(drive.dtype)
    v = torch.where(fire, torch.full_like(v, p.v_reset), v)
    t_ref = p.t_ref.to(drive) if isinstance(p.t_ref, Tensor) else p.t_ref
    refractory = torch.where(fire, torch.zeros_like(v) + t_ref,
                             (state.refractory - dt).clamp_min(0.0))
    return z, ReservoirState(v, i_exc, i_inh, refractory, z)


def reservoir_scan(drive_seq: Tensor, state: ReservoirState, w_rec: Tensor,
                   p: ReservoirParams = ReservoirParams(), *, n_exc: int, dt: float = 1e-3
                   ) -> tuple[Tensor, ReservoirState]:
    """:func:`reservoir_step` over ``drive_seq: [T, B, N]``.

    Returns:
        ``(z_seq [T, B, N], final state)``.
    """
    if drive_seq.ndim != 3 or drive_seq.shape[0] == 0:
        raise ValueError(f"expected a time-major drive [T, B, N] with T >= 1, got "
                         f"{tuple(drive_seq.shape)}")
    _check(drive_seq, state, w_rec, n_exc, dt, p)
    out = []
    for drive in drive_seq.unbind(0):                                        # [B, N]
        z, state = reservoir_step(drive, state, w_rec, p, n_exc=n_exc, dt=dt)
        out.append(z)
    return torch.stack(out), state


def bin_index(steps: int, bins: int) -> Tensor:
    """Bin of every step when ``steps`` steps are cut into ``bins`` near-equal bins:
    ``floor(t * bins / steps)``. Shape ``[steps]``."""
    if not 1 <= bins <= steps:
        raise ValueError(f"need 1 <= bins <= steps, got bins={bins} for {steps} steps")
    return torch.arange(steps) * bins // steps


def reservoir_features(drive_seq: Tensor, state: ReservoirState, w_rec: Tensor,
                       p: ReservoirParams = ReservoirParams(), *, n_exc: int, dt: float = 1e-3,
                       hold: int = 1, bins: int = 1, tau_readout: float = 30e-3
                       ) -> ReservoirOutput:
    """Run the liquid and return what a readout sees, without storing the spikes.

    Each row of ``drive_seq`` is applied for ``hold`` consecutive steps (an input step of
    ``hold * dt`` seconds). The spikes are low-pass filtered, ``r <- exp(-dt / tau_readout) r + z``
    (Maass et al. 2002: the readout sees spike trains filtered with a 30 ms exponential), and the
    filtered trains are averaged over ``bins`` near-equal time bins (see :func:`bin_index`).

    Args:
        drive_seq: ``[T_in, B, N]`` input current per step.
        state, w_rec, p, n_exc, dt: As for :func:`reservoir_step`.
        hold: Steps per row of ``drive_seq`` (the simulation runs ``T_in * hold`` steps).
        bins: Number of time bins ``K``.
        tau_readout: Time constant of the readout filter, seconds.

    Returns:
        :class:`ReservoirOutput`: ``features [B, K, N]``, spike ``counts [B, N]``, final state.
    """
    if drive_seq.ndim != 3 or drive_seq.shape[0] == 0:
        raise ValueError(f"expected a time-major drive [T, B, N] with T >= 1, got "
                         f"{tuple(drive_seq.shape)}")
    if not (isinstance(hold, int) and hold >= 1):
        raise ValueError(f"hold must be an int >= 1 (steps per input row), got {hold!r}")
    if not tau_readout > 0:
        raise ValueError(f"tau_readout must be > 0 s, got {tau_readout}")
    _check(drive_seq, state, w_rec, n_exc, dt, p)
    steps = drive_seq.shape[0] * hold
    which = bin_index(steps, bins).tolist()
    width = torch.bincount(torch.tensor(which), minlength=bins).tolist()     # steps per bin
    decay = math.exp(-dt / tau_readout)
    B, N = state.v.shape
    features = drive_seq.new_zeros(B, bins, N)
    counts = drive_seq.new_zeros(B, N)
    trace = drive_seq.new_zeros(B, N)
    t = 0
    for drive in drive_seq.unbind(0):                                        # [B, N]
        for _ in range(hold):
            z, state = reservoir_step(drive, state, w_rec, p, n_exc=n_exc, dt=dt)
            trace = decay * trace + z
            counts += z
            k = which[t]
            features[:, k] += trace / width[k]
            t += 1
    return ReservoirOutput(features, counts, state)
