"""Local plasticity rules as pure updates: ``rule_step(pre, post, state, ...) -> (dw, state)``.

Conventions shared by every rule (one discrete step of length ``dt``):

- weights are ``w: [out, in]`` (the ``nn.Linear`` layout: row = postsynaptic neuron);
- ``pre: [B, in]`` and ``post: [B, out]`` are the spikes (0/1) of one step, for ``B``
  independent samples that share ``w``;
- every returned ``dw: [out, in]`` is the **sum** over the batch (``B`` samples presented with
  the same weights contribute what ``B`` sequential presentations would, to first order);
- traces first decay over the step, then take this step's spikes, then the update reads them.
  So a pre spike ``k`` steps before a post spike potentiates by ``a_plus * decay**k`` and a pre
  and post spike in the same step count as both orders (``a_plus - a_minus`` for the pair rule).

The rules do not change ``w``: a learner writes ``-dw`` into ``.grad`` so that any
``torch.optim`` optimizer applies it, then applies the constraints (bounds, Dale's law,
normalisation) defined at the end of this module.

References are given per rule; each docstring states the equation it implements.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from snn5.core.options import Option


class TraceMode(Option):
    """How a spike trace takes a spike (Morrison, Diesmann & Gerstner, Biol. Cybern. 2008).

    ALL_TO_ALL: ``x <- x + s`` (every earlier spike of the train counts).
    NEAREST:    ``x <- 1`` on a spike (only the most recent spike counts).
    """

    ALL_TO_ALL = "all_to_all"
    NEAREST = "nearest"


def trace_step(trace: Tensor, spikes: Tensor, decay: float, mode: TraceMode = TraceMode.ALL_TO_ALL
               ) -> Tensor:
    """One step of a spike trace ``dx/dt = -x / tau + sum_f delta(t - t_f)``.

    Args:
        trace: ``[B, N]`` trace before the step.
        spikes: ``[B, N]`` spikes (0/1) of this step.
        decay: ``exp(-dt / tau)``.
        mode: all-to-all (add 1) or nearest-spike (set to 1).
    """
    decayed = trace * decay
    if mode is TraceMode.NEAREST:
        return torch.where(spikes > 0, torch.ones_like(decayed), decayed)
    return decayed + spikes


def trace_scan(spikes: Tensor, trace0: Tensor, decay: float,
               mode: TraceMode = TraceMode.ALL_TO_ALL) -> Tensor:
    """:func:`trace_step` over ``spikes: [T, B, N]`` from ``trace0: [B, N]``; returns the trace
    after every step, ``[T, B, N]``."""
    out = []
    x = trace0
    for s in spikes.unbind(0):                   # s: [B, N]
        x = trace_step(x, s, decay, mode)
        out.append(x)
    return torch.stack(out)


def _check_seq(pre_seq: Tensor, post_seq: Tensor) -> None:
    if (pre_seq.ndim != 3 or post_seq.ndim != 3 or pre_seq.shape[:2] != post_seq.shape[:2]
            or pre_seq.shape[0] == 0):
        raise ValueError(f"expected pre [T, B, in] and post [T, B, out] spike sequences with the "
                         f"same T >= 1 and B, got {tuple(pre_seq.shape)} and "
                         f"{tuple(post_seq.shape)}")


def _check_pair(pre: Tensor, post: Tensor, w: Tensor | None = None) -> None:
    if pre.ndim != 2 or post.ndim != 2 or pre.shape[0] != post.shape[0]:
        raise ValueError(f"expected pre [B, in] and post [B, out] spikes of one step with the "
                         f"same B, got {tuple(pre.shape)} and {tuple(post.shape)}")
    if w is not None and tuple(w.shape) != (post.shape[1], pre.shape[1]):
        raise ValueError(f"weights must be [out, in] = [{post.shape[1]}, {pre.shape[1]}] (the "
                         f"nn.Linear layout) for these spikes, got {tuple(w.shape)}")


def _outer(post: Tensor, pre: Tensor) -> Tensor:
    """``sum_b post[b, o] * pre[b, i]`` -> ``[out, in]``."""
    return post.transpose(0, 1) @ pre


# ----------------------------------------------------------------------------- pair STDP

class STDPParams(NamedTuple):
    """Pair-based STDP with traces. Defaults: Song, Miller & Abbott (Nat. Neurosci. 2000):
    tau 20 ms both sides, ``a_minus / a_plus = 1.05`` (depression slightly dominates)."""

    a_plus: float = 0.01                     # potentiation per pre->post pair (units of w)
    a_minus: float = 0.0105                  # depression per post->pre pair
    tau_plus: float = 20e-3                  # s, presynaptic trace
    tau_minus: float = 20e-3                 # s, postsynaptic trace
    w_min: float = 0.0
    w_max: float = 1.0
    mu: float = 0.0                          # weight dependence: 0 additive, 1 multiplicative
    trace: TraceMode = TraceMode.ALL_TO_ALL


class STDPState(NamedTuple):
    x_pre: Tensor                            # [B, in]  presynaptic trace
    x_post: Tensor                           # [B, out] postsynaptic trace


def stdp_init(pre: Tensor, post: Tensor) -> STDPState:
    """Zero traces shaped like one step's ``pre [B, in]`` and ``post [B, out]``."""
    return STDPState(torch.zeros_like(pre), torch.zeros_like(post))


def weight_dependence(w: Tensor, w_min: float, w_max: float, mu: float) -> tuple[Tensor | float,
                                                                                 Tensor | float]:
    """Factors ``((w_max - w)^mu, (w - w_min)^mu)`` of the power-law rule of Gütig, Aharonov,
    Rotter & Sompolinsky (J. Neurosci. 2003): ``mu = 0`` is the additive rule (Song et al. 2000;
    keep ``w`` in bounds by clipping), ``mu = 1`` the multiplicative rule (van Rossum, Bi &
    Turrigiano 2000; soft bounds). The distances are clamped at 0 outside the bounds."""
    if mu == 0:
        return 1.0, 1.0
    up = (w_max - w).clamp_min(0)
    down = (w - w_min).clamp_min(0)
    if mu == 1:
        return up, down
    return up.pow(mu), down.pow(mu)


def stdp_step(pre: Tensor, post: Tensor, state: STDPState, w: Tensor, p: STDPParams = STDPParams(),
              *, dt: float = 1e-3) -> tuple[Tensor, STDPState]:
    """One step of pair-based STDP (Bi & Poo 1998 window; trace form of Morrison et al. 2008).

    ``x_pre <- trace(x_pre, pre)``, ``x_post <- trace(x_post, post)``, then

        dw = a_plus (w_max - w)^mu * post^T x_pre  -  a_minus (w - w_min)^mu * x_post^T pre

    so a pre spike at ``t`` and a post spike at ``t + k dt`` change ``w`` by
    ``a_plus exp(-k dt / tau_plus)`` (potentiation), the reverse order by
    ``-a_minus exp(-k dt / tau_minus)`` (depression).

    Returns:
        ``(dw [out, in] summed over the batch, new state)``.
    """
    _check_pair(pre, post, w)
    x_pre = trace_step(state.x_pre, pre, math.exp(-dt / p.tau_plus), p.trace)
    x_post = trace_step(state.x_post, post, math.exp(-dt / p.tau_minus), p.trace)
    up, down = weight_dependence(w, p.w_min, p.w_max, p.mu)
    dw = p.a_plus * up * _outer(post, x_pre) - p.a_minus * down * _outer(x_post, pre)
    return dw, STDPState(x_pre, x_post)


def stdp_scan(pre_seq: Tensor, post_seq: Tensor, state: STDPState, w: Tensor,
              p: STDPParams = STDPParams(), *, dt: float = 1e-3) -> tuple[Tensor, STDPState]:
    """:func:`stdp_step` over ``[T, B, *]`` sequences with ``w`` fixed during the sequence: the
    same sum, computed as two matrix products over the ``T * B`` steps and samples instead of
    ``2 T`` small ones. Returns ``(dw [out, in] summed over time and batch, final state)``."""
    _check_seq(pre_seq, post_seq)
    _check_pair(pre_seq[0], post_seq[0], w)
    x_pre = trace_scan(pre_seq, state.x_pre, math.exp(-dt / p.tau_plus), p.trace)
    x_post = trace_scan(post_seq, state.x_post, math.exp(-dt / p.tau_minus), p.trace)
    up, down = weight_dependence(w, p.w_min, p.w_max, p.mu)
    dw = (p.a_plus * up * _outer(post_seq.flatten(0, 1), x_pre.flatten(0, 1))       # [T*B, *]
          - p.a_minus * down * _outer(x_post.flatten(0, 1), pre_seq.flatten(0, 1)))
    return dw, STDPState(x_pre[-1], x_post[-1])


# ----------------------------------------------------------------------------- triplet STDP

class TripletParams(NamedTuple):
    """Triplet STDP (Pfister & Gerstner, J. Neurosci. 2006). Defaults: the visual-cortex
    parameter set of the paper as NEST/NESTML ship it for their triplet synapse."""

    a2_plus: float = 7.5e-10                 # pair potentiation
    a3_plus: float = 9.3e-3                  # triplet potentiation (post-pre-post)
    a2_minus: float = 7e-3                   # pair depression
    a3_minus: float = 2.3e-4                 # triplet depression (pre-post-pre)
    tau_plus: float = 16.8e-3                # s, r1
    tau_x: float = 101e-3                    # s, r2
    tau_minus: float = 33.7e-3               # s, o1
    tau_y: float = 125e-3                    # s, o2
    trace: TraceMode = TraceMode.ALL_TO_ALL


class TripletState(NamedTuple):
    r1: Tensor                               # [B, in]  fast presynaptic trace
    r2: Tensor                               # [B, in]  slow presynaptic trace
    o1: Tensor                               # [B, out] fast postsynaptic trace
    o2: Tensor                               # [B, out] slow postsynaptic trace


def triplet_init(pre: Tensor, post: Tensor) -> TripletState:
    """Zero traces for one step's ``pre [B, in]`` and ``post [B, out]``."""
    return TripletState(torch.zeros_like(pre), torch.zeros_like(pre), torch.zeros_like(post),
                        torch.zeros_like(post))


def triplet_step(pre: Tensor, post: Tensor, state: TripletState,
                 p: TripletParams = TripletParams(), *, dt: float = 1e-3
                 ) -> tuple[Tensor, TripletState]:
    """One step of the triplet rule, Pfister & Gerstner (2006) eqs. 3-4:

        on a post spike:  dw = +r1(t) [a2_plus + a3_plus o2(t - eps)]
        on a pre spike:   dw = -o1(t) [a2_minus + a3_minus r2(t - eps)]

    ``r1, o1`` include this step's spikes (the pair convention of this module); the triplet
    factors ``o2, r2`` are read before this step's increment (the paper's ``t - eps``).

    Returns:
        ``(dw [out, in] summed over the batch, new state)``.
    """
    _check_pair(pre, post)
    r2_old = state.r2 * math.exp(-dt / p.tau_x)
    o2_old = state.o2 * math.exp(-dt / p.tau_y)
    r1 = trace_step(state.r1, pre, math.exp(-dt / p.tau_plus), p.trace)
    o1 = trace_step(state.o1, post, math.exp(-dt / p.tau_minus), p.trace)
    r2 = trace_step(state.r2, pre, math.exp(-dt / p.tau_x), p.trace)
    o2 = trace_step(state.o2, post, math.exp(-dt / p.tau_y), p.trace)
    ltp = _outer(post * (p.a2_plus + p.a3_plus * o2_old), r1)
    ltd = _outer(o1, pre * (p.a2_minus + p.a3_minus * r2_old))
    return ltp - ltd, TripletState(r1, r2, o1, o2)


def triplet_scan(pre_seq: Tensor, post_seq: Tensor, state: TripletState,
                 p: TripletParams = TripletParams(), *, dt: float = 1e-3
                 ) -> tuple[Tensor, TripletState]:
    """:func:`triplet_step` over ``[T, B, *]`` sequences, as two matrix products over the
    ``T * B`` steps and samples. Returns ``(dw [out, in], final state)``."""
    _check_seq(pre_seq, post_seq)
    r1 = trace_scan(pre_seq, state.r1, math.exp(-dt / p.tau_plus), p.trace)
    o1 = trace_scan(post_seq, state.o1, math.exp(-dt / p.tau_minus), p.trace)
    r2 = trace_scan(pre_seq, state.r2, math.exp(-dt / p.tau_x), p.trace)
    o2 = trace_scan(post_seq, state.o2, math.exp(-dt / p.tau_y), p.trace)
    # the triplet factors before this step's increment: the previous step's trace, decayed
    r2_old = torch.cat([state.r2.unsqueeze(0), r2[:-1]]) * math.exp(-dt / p.tau_x)
    o2_old = torch.cat([state.o2.unsqueeze(0), o2[:-1]]) * math.exp(-dt / p.tau_y)
    ltp = _outer((post_seq * (p.a2_plus + p.a3_plus * o2_old)).flatten(0, 1), r1.flatten(0, 1))
    ltd = _outer(o1.flatten(0, 1), (pre_seq * (p.a2_minus + p.a3_minus * r2_old)).flatten(0, 1))
    return ltp - ltd, TripletState(r1[-1], r2[-1], o1[-1], o2[-1])


# ----------------------------------------------------------------------------- three-factor rules

class EligibilityState(NamedTuple):
    stdp: STDPState                          # pair traces
    e: Tensor                                # [B, out, in] eligibility trace per sample


def eligibility_init(pre: Tensor, post: Tensor) -> EligibilityState:
    """Zero traces and eligibility for one step's ``pre [B, in]``, ``post [B, out]``."""
    B, n_in = pre.shape
    return EligibilityState(stdp_init(pre, post), pre.new_zeros(B, post.shape[1], n_in))


def eligibility_step(pre: Tensor, post: Tensor, state: EligibilityState, w: Tensor,
                     p: STDPParams = STDPParams(), *, tau_e: float = 1.0, dt: float = 1e-3
                     ) -> EligibilityState:
    """One step of the synaptic eligibility trace of reward-modulated STDP.

    ``de/dt = -e / tau_e + STDP(pre, post)``: the pair-STDP change of each sample is not applied
    but stored in ``e`` (per sample, ``[B, out, in]``), which decays with ``tau_e``; a reward
    later turns it into a weight change (:func:`reward_modulated`). Izhikevich (Cereb. Cortex
    2007) uses ``tau_e = 1 s`` (his ``c``); Florian (Neural Comput. 2007, MSTDPET) the same form.
    """
    _check_pair(pre, post, w)
    x_pre = trace_step(state.stdp.x_pre, pre, math.exp(-dt / p.tau_plus), p.trace)
    x_post = trace_step(state.stdp.x_post, post, math.exp(-dt / p.tau_minus), p.trace)
    up, down = weight_dependence(w, p.w_min, p.w_max, p.mu)
    # per-sample outer products: [B, out, 1] * [B, 1, in]
    stdp = (p.a_plus * up * (post.unsqueeze(2) * x_pre.unsqueeze(1))
            - p.a_minus * down * (x_post.unsqueeze(2) * pre.unsqueeze(1)))
    e = state.e * math.exp(-dt / tau_e) + stdp
    return EligibilityState(STDPState(x_pre, x_post), e)


def eligibility_scan(pre_seq: Tensor, post_seq: Tensor, state: EligibilityState, w: Tensor,
                     p: STDPParams = STDPParams(), *, tau_e: float = 1.0, dt: float = 1e-3
                     ) -> EligibilityState:
    """:func:`eligibility_step` over ``[T, B, *]`` sequences with ``w`` fixed: the per-sample
    eligibility ``e_T = decay^T e_0 + sum_t decay^(T-1-t) STDP_t`` as two batched matrix
    products."""
    _check_seq(pre_seq, post_seq)
    _check_pair(pre_seq[0], post_seq[0], w)
    T = pre_seq.shape[0]
    x_pre = trace_scan(pre_seq, state.stdp.x_pre, math.exp(-dt / p.tau_plus), p.trace)
    x_post = trace_scan(post_seq, state.stdp.x_post, math.exp(-dt / p.tau_minus), p.trace)
    d = math.exp(-dt / tau_e)
    age = torch.arange(T - 1, -1, -1, dtype=pre_seq.dtype, device=pre_seq.device)
    k = (d ** age).view(T, 1, 1)                                  # [T, 1, 1] decay to the end
    up, down = weight_dependence(w, p.w_min, p.w_max, p.mu)
    ltp = torch.einsum("tbo,tbi->boi", post_seq * k, x_pre)      # [B, out, in]
    ltd = torch.einsum("tbo,tbi->boi", x_post * k, pre_seq)
    e = state.e * d ** T + p.a_plus * up * ltp - p.a_minus * down * ltd
    return EligibilityState(STDPState(x_pre[-1], x_post[-1]), e)


def reward_modulated(e: Tensor, reward: Tensor | float, *, lr: float = 1.0) -> Tensor:
    """Weight change of a three-factor rule: ``dw = lr * sum_b reward_b * e_b``.

    Args:
        e: eligibility ``[B, out, in]`` (or ``[out, in]``).
        reward: a scalar (shared) or ``[B]`` (one reward or dopamine level per sample; a
            negative value is a punishment and reverses the STDP change).
        lr: learning rate (Izhikevich 2007: ``ds/dt = c d``, so ``lr = dt`` integrates it).

    Returns:
        ``dw [out, in]``.
    """
    reward = torch.as_tensor(reward, dtype=e.dtype, device=e.device)
    if e.ndim == 2:
        if reward.ndim != 0:
            raise ValueError("a [out, in] eligibility takes a scalar reward")
        return lr * reward * e
    if reward.ndim == 0:
        return lr * reward * e.sum(0)
    if reward.shape != (e.shape[0],):
        raise ValueError(f"reward must be a scalar or one value per sample [{e.shape[0]}], got "
                         f"shape {tuple(reward.shape)}")
    return lr * torch.einsum("b,boi->oi", reward, e)


class FirstSpikeRSTDPParams(NamedTuple):
    """Reward-modulated STDP of a first-spike decision layer (Mozafari et al., IEEE TNNLS 2018;
    Pattern Recognit. 2019). Defaults: the decision layer of their MNIST network as the authors'
    SpykeTorch reimplementation sets it (reward: +0.004 / -0.003, punishment: -0.004 / +0.0005,
    additive, weights clipped to ``[0.2, 0.8]``)."""

    a_r_plus: float = 0.004                  # reward, pre fired at or before the winner
    a_r_minus: float = 0.003                 # reward, pre fired later or not at all (subtracted)
    a_p_minus: float = 0.004                 # punishment, pre at or before (subtracted)
    a_p_plus: float = 0.0005                 # punishment, pre later or silent (added)


def first_spike_rstdp(pre_time: Tensor, winner: Tensor, winner_time: Tensor, correct: Tensor,
                      n_out: int, p: FirstSpikeRSTDPParams = FirstSpikeRSTDPParams(), *,
                      reward_scale: float = 1.0, punish_scale: float = 1.0) -> Tensor:
    """Weight change of the first-spike R-STDP rule; only the winner's afferents change.

    For a sample whose winning neuron ``j`` (the first to fire) fired at step ``t_j``:

        rewarded (decision correct):  dw_ji = +a_r_plus  if t_i <= t_j  else  -a_r_minus
        punished (decision wrong):    dw_ji = -a_p_minus if t_i <= t_j  else  +a_p_plus

    (``t_i`` the first spike step of input ``i``, ``inf`` if it stayed silent). Mozafari et al.
    scale the reward rates by the recent miss rate and the punishment rates by the hit rate
    (``reward_scale``, ``punish_scale``) so that learning slows as the layer gets it right.

    Args:
        pre_time: ``[B, in]`` first spike step of each input (``inf``: no spike).
        winner: ``[B]`` index of the winning neuron, ``-1`` when no neuron fired (no update).
        winner_time: ``[B]`` its first spike step.
        correct: ``[B]`` bool, whether the winner's class is the label.
        n_out: number of decision neurons.

    Returns:
        ``dw [n_out, in]`` summed over the batch.
    """
    if pre_time.ndim != 2 or winner.shape != (pre_time.shape[0],):
        raise ValueError(f"expected pre_time [B, in] and winner [B], got {tuple(pre_time.shape)} "
                         f"and {tuple(winner.shape)}")
    causal = (pre_time <= winner_time.unsqueeze(1).to(pre_time.dtype)).to(pre_time.dtype)
    rewarded = (p.a_r_plus * causal - p.a_r_minus * (1 - causal)) * reward_scale    # [B, in]
    punished = (p.a_p_plus * (1 - causal) - p.a_p_minus * causal) * punish_scale
    rate = torch.where(correct.unsqueeze(1), rewarded, punished)
    fired = winner >= 0
    dw = pre_time.new_zeros(n_out, pre_time.shape[1])
    return dw.index_add_(0, winner[fired], rate[fired])


# ----------------------------------------------------------------------------- rate-based rules

class BCMParams(NamedTuple):
    """BCM (Bienenstock, Cooper & Munro, J. Neurosci. 1982) with the sliding threshold of
    Intrator & Cooper (1992): ``theta`` tracks ``E[y^2] / y0``."""

    eta: float = 1e-3                        # learning rate
    tau_theta: float = 1.0                   # s, time constant of the sliding threshold
    y0: float = 1.0                          # rate scale of the threshold


def bcm_step(x: Tensor, y: Tensor, theta: Tensor, p: BCMParams = BCMParams(), *, dt: float = 1e-3
             ) -> tuple[Tensor, Tensor]:
    """One step of BCM: ``dw = eta * sum_b y (y - theta) x^T``;
    ``theta <- theta + dt / tau_theta * (mean_b y^2 / y0 - theta)``.

    Args:
        x: presynaptic activity ``[B, in]`` (spikes or rates).
        y: postsynaptic activity ``[B, out]``.
        theta: sliding modification threshold ``[out]``.

    Returns:
        ``(dw [out, in], new theta [out])``: potentiation where ``y > theta``, depression where
        ``0 < y < theta``.
    """
    _check_pair(x, y)
    if theta.shape != (y.shape[1],):
        raise ValueError(f"theta must have one entry per postsynaptic neuron [{y.shape[1]}], got "
                         f"{tuple(theta.shape)}")
    dw = p.eta * _outer(y * (y - theta), x)
    theta = theta + (dt / p.tau_theta) * ((y * y).mean(0) / p.y0 - theta)
    return dw, theta


def hebbian_decay(pre: Tensor, post: Tensor, w: Tensor, *, eta: float, beta: float) -> Tensor:
    """Hebbian learning with weight decay (Oja-style forgetting without the post factor):

        dw_ij = eta * sum_b (s_i s_j - beta w_ij) = eta * (post^T pre - B beta w)

    ``i`` postsynaptic, ``j`` presynaptic. Weights settle where coincidences balance decay:
    ``w* = E[s_i s_j] / beta``.
    """
    _check_pair(pre, post, w)
    return eta * (_outer(post, pre) - pre.shape[0] * beta * w)


class BCPNNState(NamedTuple):
    p_pre: Tensor                            # [in]  estimated firing probability per step
    p_post: Tensor                           # [out]
    p_joint: Tensor                          # [out, in] estimated co-activation probability


def bcpnn_init(n_in: int, n_out: int, *, p0: float = 0.01, dtype: torch.dtype = torch.float32,
               device: torch.device | str | None = None) -> BCPNNState:
    """Priors: independent units firing with probability ``p0`` per step."""
    kw = {"dtype": dtype, "device": device}
    return BCPNNState(torch.full((n_in,), p0, **kw), torch.full((n_out,), p0, **kw),
                      torch.full((n_out, n_in), p0 * p0, **kw))


def bcpnn_step(pre: Tensor, post: Tensor, state: BCPNNState, *, tau_p: float = 1.0,
               dt: float = 1e-3) -> BCPNNState:
    """Probabilistic (Bayesian-Hebbian) learning, BCPNN (Lansner & Ekeberg 1989; spiking
    form: Tully, Hennig & Lansner, Front. Synaptic Neurosci. 2014, its ``p`` traces).

    Exponential moving estimates, over time and the batch, of the firing probabilities:
    ``p <- p + k (mean_b s - p)`` with ``k = dt / tau_p``, for ``p_pre``, ``p_post`` and the joint
    ``p_joint``. Weights follow from them (:func:`bcpnn_weights`). This implements the ``p``
    level of Tully et al.; their faster ``z``/``e`` traces are left out.
    """
    _check_pair(pre, post)
    k = dt / tau_p
    if not 0 < k <= 1:
        raise ValueError(f"dt / tau_p must be in (0, 1], got {k:g}; use tau_p >= dt")
    B = pre.shape[0]
    return BCPNNState(state.p_pre + k * (pre.mean(0) - state.p_pre),
                      state.p_post + k * (post.mean(0) - state.p_post),
                      state.p_joint + k * (_outer(post, pre) / B - state.p_joint))


def bcpnn_weights(state: BCPNNState, *, eps: float = 1e-4) -> tuple[Tensor, Tensor]:
    """Weights and biases from BCPNN probabilities:
    ``w_ij = log((p_ij + eps^2) / ((p_i + eps)(p_j + eps)))`` (positive for units that fire
    together more often than chance, negative for less), ``b_i = log(p_i + eps)``.

    Returns:
        ``(w [out, in], bias [out])``.
    """
    w = torch.log((state.p_joint + eps * eps)
                  / ((state.p_post + eps).unsqueeze(1) * (state.p_pre + eps).unsqueeze(0)))
    return w, torch.log(state.p_post + eps)


# ----------------------------------------------------------------------------- homeostasis

def adaptive_threshold_step(theta: Tensor, z: Tensor, *, theta_plus: float, decay: float) -> Tensor:
    """Adaptive threshold of Diehl & Cook (2015): ``theta <- decay * theta + theta_plus * n``
    with ``n`` the neuron's spikes this step summed over the batch (``z: [B, out]``), so a
    neuron that fires often becomes harder to fire and others get their turn."""
    if z.ndim != 2 or z.shape[1:] != theta.shape:
        raise ValueError(f"expected spikes [B, {theta.shape[0]}] for theta {tuple(theta.shape)}, "
                         f"got {tuple(z.shape)}")
    return theta * decay + theta_plus * z.sum(0)


def rate_homeostasis(theta: Tensor, rate: Tensor, *, target: float, eta: float) -> Tensor:
    """Threshold homeostasis toward a target rate: ``theta <- theta + eta (rate - target)``
    (intrinsic plasticity; rates in spikes per step). Above target the threshold rises."""
    if rate.shape != theta.shape:
        raise ValueError(f"rate {tuple(rate.shape)} must match theta {tuple(theta.shape)}")
    return theta + eta * (rate - target)


# ----------------------------------------------------------------------------- competition

def winner_take_all(z: Tensor, v: Tensor, *, k: int = 1) -> Tensor:
    """Keep at most ``k`` spikes per sample: among the neurons that spiked (``z: [B, out]``),
    those with the highest membrane ``v``. Returns the new spikes."""
    if z.shape != v.shape or z.ndim != 2:
        raise ValueError(f"z and v must both be [B, out], got {tuple(z.shape)}, {tuple(v.shape)}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if k >= z.shape[1]:
        return z
    score = torch.where(z > 0, v, torch.full_like(v, -math.inf))
    top = score.topk(k, dim=1, sorted=False).indices
    keep = torch.zeros_like(z).scatter_(1, top, 1.0)
    return z * keep


def lateral_inhibition(z: Tensor, *, strength: float) -> Tensor:
    """Input current from all-to-all lateral inhibition without self-connection:
    ``I_i = -strength * sum_{j != i} z_j`` for spikes ``z: [B, out]``."""
    return -strength * (z.sum(1, keepdim=True) - z)


# ----------------------------------------------------------------------------- constraints

def clip_weights(w: Tensor, w_min: float, w_max: float) -> Tensor:
    """Hard weight bounds ``w_min <= w <= w_max``."""
    if not w_min < w_max:
        raise ValueError(f"need w_min < w_max, got {w_min} and {w_max}")
    return w.clamp(w_min, w_max)


def normalize_weights(w: Tensor, total: float, *, eps: float = 1e-12) -> Tensor:
    """Synaptic scaling: each postsynaptic neuron's afferent weights (a row of ``[out, in]``)
    scaled to sum to ``total`` (Diehl & Cook 2015: 78 over 784 inputs). Rows summing to zero
    are left unchanged."""
    if not total > 0:
        raise ValueError(f"total must be positive, got {total}")
    s = w.sum(1, keepdim=True)
    return torch.where(s.abs() > eps, w * (total / s.where(s.abs() > eps, torch.ones_like(s))), w)


def dale_signs(n_exc: int, n_inh: int, *, dtype: torch.dtype = torch.float32) -> Tensor:
    """Sign of every presynaptic population member: ``+1`` for the ``n_exc`` excitatory neurons
    (first), ``-1`` for the ``n_inh`` inhibitory ones. Shape ``[n_exc + n_inh]``."""
    if n_exc < 0 or n_inh < 0 or n_exc + n_inh == 0:
        raise ValueError(f"need n_exc, n_inh >= 0 and a non-empty population, got {n_exc}, {n_inh}")
    return torch.cat([torch.ones(n_exc, dtype=dtype), -torch.ones(n_inh, dtype=dtype)])


def apply_dale(w: Tensor, signs: Tensor) -> Tensor:
    """Dale's law as a projection: a presynaptic neuron's outgoing weights (a column of
    ``[out, in]``) keep its sign; a weight that crossed zero is set to zero."""
    if signs.shape != (w.shape[1],):
        raise ValueError(f"signs must have one entry per presynaptic neuron [{w.shape[1]}], got "
                         f"{tuple(signs.shape)}")
    s = signs.to(w.dtype)
    return s * (s * w).clamp_min(0)


def dale_violations(w: Tensor, signs: Tensor) -> int:
    """Number of weights whose sign contradicts their presynaptic neuron's (0 when Dale's law
    holds)."""
    return int(((signs.to(w.dtype) * w) < 0).sum())
