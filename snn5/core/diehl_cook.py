"""Diehl & Cook (2015): unsupervised digit recognition with STDP, as pure functions.

P. U. Diehl and M. Cook, "Unsupervised learning of digit recognition using spike-timing-
dependent plasticity", Front. Comput. Neurosci. 9:99 (2015), doi:10.3389/fncom.2015.00099.
Reference code: github.com/peter-u-diehl/stdp-mnist, ``Diehl&Cook_spiking_MNIST.py`` (Brian 1)
and ``Diehl&Cook_MNIST_random_conn_generator.py``; its constants are the defaults of
:class:`DiehlCookParams`, here in SI units (seconds, volts, hertz).

The network: 784 Poisson inputs -> ``n_e`` excitatory neurons (all-to-all, plastic) -> ``n_e``
inhibitory neurons (one-to-one, 10.4) -> every excitatory neuron but the partner (17.0).
Per time step of ``dt`` (Brian's schedule; forward Euler as in the reference code)::

    v_e  += ((v_rest_e - v_e) + ge_e (e_exc - v_e) + gi_e (e_inh_e - v_e)) * dt / tau_e
    v_i  += ((v_rest_i - v_i) + ge_i (e_exc - v_i) + gi_i (e_inh_i - v_i)) * dt / tau_i
    ge   *= 1 - dt / tau_ge;  gi *= 1 - dt / tau_gi;  theta *= 1 - dt / tau_theta (learning)
    spike: v_e > theta - theta_offset + v_thresh_e,  v_i > v_thresh_i  (not refractory)
    ge_e += sum_i W_ji x_i(t - d_ji);  ge_i += w_ei z_e;  gi_e += w_ie (sum(z_i) - z_i)
    STDP pre:  pre = 1 (at emission);  w = clip(w - nu_pre * post1) (when it arrives, d_ji later)
    STDP post: w = clip(w + nu_post * pre(d_ji earlier) * post2 (before this spike)) for every
               input;  post1 = post2 = 1          (clip: to [w_min, w_max] at each update)
    reset: v_e = v_reset_e, theta += theta_plus (learning); v_i = v_reset_i; v held at the
    reset value (no integration, no spike) for refrac_e / refrac_i after a spike.

Within a step every neuron integrates with the previous step's conductances, then thresholds,
then this step's spikes propagate (STDP pre pathway before post pathway), then neurons reset.
The STDP traces are exact exponentials (nearest-spike: set to 1 on a spike). Without learning
(labelling, testing) theta is fixed and STDP is off, as in the reference code's test mode.

While learning, the weights change at every spike event, as in the reference (Brian 1's STDP):
each update is clipped to ``[w_min, w_max]`` at once (a post spike clips the neuron's whole
input column, an arrival its synapse), and the changed weights carry the input's later spikes.
An input spike adds the weight it has when it is emitted (the delay line holds the value, as
Brian 1's delayed connection does); a change while the spike is in flight applies from the
input's next spike on. Learning presents one sample per call.

Differences from the reference code (deliberate; also in ``docs/diehl_cook.md``):

1. Synaptic delays are kept, not dropped: input -> excitatory delays
   ``d_ji`` are drawn uniformly in [0, 10 ms) per synapse and floored to steps, as Brian 1 does,
   and STDP is timed at the synapse as Brian 1's STDP on a delayed connection is (depression when
   the spike arrives, potentiation from the presynaptic trace ``d_ji`` earlier). Without delays
   the inputs reach all excitatory neurons in the same step, dozens of them cross threshold
   together, and the inhibitory volley (``gi = 17 K``) makes forward Euler unstable
   (``dt gi / tau_e > 2``): with 400 neurons the whole layer fired from about sample 300 on.
   Spikes still in flight when a presentation ends are dropped (see 2).
2. The 150 ms rest between samples is replaced by resetting v, ge, gi, the traces and the
   refractory state to rest; theta decays over the rest exactly (``exp(-t_rest / tau_theta)``,
   applied by the trainer). In the reference, v relaxes only part of the way (tau_e = 100 ms).
3. The weights are float32 between presentations (the model's parameter) and float64 during
   one (Brian 1: float64 throughout); they are rounded once at the end of a presentation.
4. A sample whose presentation gives fewer than ``min_spikes`` excitatory spikes is presented
   again with the intensity raised by 1, starting from rest, at most ``max_retries`` times (the
   reference has no limit and continues from the state after the rest).
5. Numbers: the state is float64 (Brian 1 is float64 too); the weights are float32.
6. A classification tie (equal mean responses) goes to the lowest class index (the reference's
   ``argsort`` picks the highest); it only matters for an all-zero response.

The refractory period holds v at the reset value for ``round(refrac / dt)`` steps after the
spike step, and the neuron cannot fire during them: with Brian 1's clamp (``int(refrac/dt) + 1``
steps of the last-spike list, counting the spike step) v is held over the same steps.

Input spikes: each input fires in a step with probability ``rate * dt`` (Brian's
``PoissonGroup``), where ``rate = x * input_rate * intensity`` and ``x`` in [0, 1] is the pixel
(pixel / 255; ``input_rate = 255 / 8`` Hz makes it the reference's ``pixel / 8 * intensity``).
The draws come from a counter-based hash (:func:`poisson_spikes`): bit ``(seed, attempt, step,
input)`` is ``hash32`` of the four, compared with ``floor(p * 2**32)`` in integers, so the fused
kernel (:mod:`snn5.kernels.diehl_cook`) draws exactly the same spikes.

Shapes: ``n_in`` inputs (784), ``n_e`` excitatory = inhibitory neurons, ``B`` independent samples
presented with the same weights; weights ``[n_e, n_in]`` (row = excitatory neuron).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

_MASK32 = 0xFFFFFFFF


# ----------------------------------------------------------------------------- parameters

class DiehlCookParams(NamedTuple):
    """Every constant of the network, in seconds, volts and hertz (reference-code defaults)."""

    dt: float = 0.5e-3                 # s, integration step
    t_present: float = 0.35            # s, presentation of one sample
    t_rest: float = 0.15               # s, rest between samples (theta decays over it)
    # input
    input_rate: float = 255.0 / 8.0    # Hz of an input x = 1 at intensity 1 (pixel / 8)
    intensity: float = 2.0             # starting input intensity
    min_spikes: int = 5                # fewer excitatory spikes: present again, intensity + 1
    max_retries: int = 100             # at most this many repeats (the reference: no limit)
    # excitatory neurons
    tau_e: float = 100e-3              # s, membrane time constant
    v_rest_e: float = -65e-3           # V
    v_reset_e: float = -65e-3          # V
    v_thresh_e: float = -52e-3         # V, threshold is theta - theta_offset + v_thresh_e
    theta_offset: float = 20e-3        # V
    theta_init: float = 20e-3          # V, initial adaptive threshold
    theta_plus: float = 0.05e-3        # V, added per spike while learning
    tau_theta: float = 1e4             # s (1e7 ms)
    refrac_e: float = 5e-3             # s
    e_exc: float = 0.0                 # V, reversal potential of excitatory synapses
    e_inh_e: float = -100e-3           # V, reversal of inhibitory synapses on excitatory cells
    v_init_offset: float = -40e-3      # V, the run's very first presentation starts at rest + this
    # inhibitory neurons
    tau_i: float = 10e-3               # s
    v_rest_i: float = -60e-3           # V
    v_reset_i: float = -45e-3          # V
    v_thresh_i: float = -40e-3         # V
    refrac_i: float = 2e-3             # s
    e_inh_i: float = -85e-3            # V
    # synapses (conductances in units of the leak conductance)
    tau_ge: float = 1e-3               # s
    tau_gi: float = 2e-3               # s
    w_ei: float = 10.4                 # excitatory -> its inhibitory partner (into ge_i)
    w_ie: float = 17.0                 # inhibitory -> every other excitatory neuron (into gi_e)
    # plastic input -> excitatory weights
    w_init_scale: float = 0.3          # initial w = (U[0, 1) + w_init_offset) * w_init_scale
    w_init_offset: float = 0.01
    w_min: float = 0.0
    w_max: float = 1.0
    w_sum: float = 78.0                # each neuron's input weights scaled to this sum per sample
    delay_max: float = 10e-3           # s, input -> excitatory delays drawn in [0, delay_max)
    # STDP (the reference code's rule; nearest-spike traces)
    tau_pre: float = 20e-3             # s
    tau_post1: float = 20e-3           # s
    tau_post2: float = 40e-3           # s
    nu_pre: float = 1e-4               # depression per pre spike, times post1
    nu_post: float = 1e-2              # potentiation per post spike, times pre * post2 (before)


class DiehlCookConstants(NamedTuple):
    """Per-step numbers derived from :class:`DiehlCookParams` (shared by reference and kernel)."""

    steps: int                         # steps per presentation
    delay_slots: int                   # synaptic delays are 0 .. delay_slots - 1 steps
    refrac_e: int                      # steps v is held after an excitatory spike
    refrac_i: int                      # ... after an inhibitory spike
    k_e: float                         # dt / tau_e
    k_i: float                         # dt / tau_i
    ge_decay: float                    # 1 - dt / tau_ge (forward Euler)
    gi_decay: float                    # 1 - dt / tau_gi
    theta_decay: float                 # 1 - dt / tau_theta (forward Euler, while learning)
    pre_decay: float                   # exp(-dt / tau_pre) (traces: exact)
    post1_decay: float
    post2_decay: float
    theta_rest_decay: float            # exp(-t_rest / tau_theta): the rest between samples


_TIMES = ("dt", "t_present", "tau_e", "tau_i", "tau_ge", "tau_gi", "tau_theta", "tau_pre",
          "tau_post1", "tau_post2")


def check_params(p: DiehlCookParams) -> None:
    """Raise ValueError naming the field and the fix if ``p`` cannot be simulated."""
    for name, value in p._asdict().items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise ValueError(f"DiehlCookParams.{name} must be a finite number, got {value!r}")
    for name in _TIMES:
        if getattr(p, name) <= 0:
            raise ValueError(f"DiehlCookParams.{name} must be > 0 s, got {getattr(p, name)}")
    if p.dt > 0.01:
        raise ValueError(f"dt={p.dt} s is longer than 10 ms; times are in seconds. Did you pass "
                         "milliseconds? 0.5 ms is dt=0.5e-3.")
    if abs(p.t_present / p.dt - round(p.t_present / p.dt)) > 1e-6:
        raise ValueError(f"t_present={p.t_present} s is not a whole number of steps of dt={p.dt} "
                         "s; choose a multiple of dt.")
    for name in ("tau_ge", "tau_gi"):
        if getattr(p, name) < p.dt:
            raise ValueError(f"{name}={getattr(p, name)} s is shorter than dt={p.dt} s: forward "
                             f"Euler would flip the sign of the conductance. Use {name} >= dt "
                             "(or a smaller dt).")
    for name in ("t_rest", "refrac_e", "refrac_i", "theta_plus", "nu_pre", "nu_post",
                 "theta_init", "w_sum", "delay_max"):
        if getattr(p, name) < 0:
            raise ValueError(f"DiehlCookParams.{name} must be >= 0, got {getattr(p, name)}")
    for name in ("input_rate", "intensity", "w_init_scale"):
        if getattr(p, name) <= 0:
            raise ValueError(f"DiehlCookParams.{name} must be > 0, got {getattr(p, name)}")
    for name in ("min_spikes", "max_retries"):
        value = getattr(p, name)
        if value != int(value) or value < 0:
            raise ValueError(f"DiehlCookParams.{name} must be a whole number >= 0, got {value}")
    if p.delay_max / p.dt > 256:
        raise ValueError(f"delay_max={p.delay_max} s is more than 256 steps of dt={p.dt} s; "
                         "delays are stored as 8-bit step counts: lower delay_max or raise dt.")
    if p.delay_max > 0.1:
        raise ValueError(f"delay_max={p.delay_max} s is longer than 100 ms; times are in seconds."
                         " Did you pass milliseconds? 10 ms is delay_max=10e-3.")
    if not p.w_min < p.w_max:
        raise ValueError(f"w_min={p.w_min} must be below w_max={p.w_max}")


def derive(p: DiehlCookParams) -> DiehlCookConstants:
    """The per-step constants of ``p`` (checked with :func:`check_params`)."""
    check_params(p)
    return DiehlCookConstants(
        steps=round(p.t_present / p.dt), delay_slots=max(1, math.ceil(p.delay_max / p.dt - 1e-9)),
        refrac_e=round(p.refrac_e / p.dt),
        refrac_i=round(p.refrac_i / p.dt), k_e=p.dt / p.tau_e, k_i=p.dt / p.tau_i,
        ge_decay=1.0 - p.dt / p.tau_ge, gi_decay=1.0 - p.dt / p.tau_gi,
        theta_decay=1.0 - p.dt / p.tau_theta, pre_decay=math.exp(-p.dt / p.tau_pre),
        post1_decay=math.exp(-p.dt / p.tau_post1), post2_decay=math.exp(-p.dt / p.tau_post2),
        theta_rest_decay=math.exp(-p.t_rest / p.tau_theta))


# ----------------------------------------------------------------------------- input spikes

def _mul32(x, c: int):
    """``x * c mod 2**32`` for ``0 <= x < 2**32`` (int or int64 tensor) without overflowing
    int64: ``c`` is split into 16-bit halves."""
    lo, hi = c & 0xFFFF, c >> 16
    return (x * lo + (((x * hi) & 0xFFFF) << 16)) & _MASK32


def hash32(x):
    """A 32-bit integer mixer (C. Wellons' "lowbias32"), on ints or int64 tensors in
    [0, 2**32). The kernel computes the same function on uint32."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def sample_key(seed, attempt: int):
    """The 32-bit stream key of a sample's presentation number ``attempt`` (0 = first)."""
    lo, hi = seed & _MASK32, (seed >> 32) & _MASK32
    return hash32(lo ^ hash32((hi + hash32(attempt)) & _MASK32))


def spike_thresholds(rates: Tensor, intensity: Tensor | float, dt: float) -> Tensor:
    """``floor(rate * intensity * dt * 2**32)`` (at most ``2**32``: always fire) as int64.

    An input fires in a step when its 32-bit draw is below this number, so its probability per
    step is ``rate * intensity * dt`` to within ``2**-32``. ``rates: [B, n_in]`` float64 (Hz at
    intensity 1), ``intensity`` a float or ``[B, 1]``."""
    p = torch.floor(rates * intensity * dt * 4294967296.0)
    return p.clamp(max=4294967296.0).long()


def poisson_spikes(rates: Tensor, seeds: Tensor, p: DiehlCookParams, *, attempt: int = 0
                   ) -> Tensor:
    """Input spike trains of one presentation, drawn by the counter-based hash.

    Input ``i`` of sample ``b`` fires at step ``t`` iff ``u < floor(rate * intensity * dt * 2**32)``
    with ``u = hash32(hash32(k_b + t * 0x9E3779B9) + i * 0x85EBCA6B)`` (mod 2**32),
    ``k_b = sample_key(seeds[b], attempt)`` and ``intensity = p.intensity + attempt``.

    Args:
        rates: ``[B, n_in]`` float64 input rates at intensity 1 (Hz; :func:`input_rates`).
        seeds: ``[B]`` int64, one per sample.
        p: parameters (``dt``, ``t_present``, ``intensity``).
        attempt: presentation number of the sample (the intensity rises by 1 per attempt).

    Returns:
        ``[T, B, n_in]`` bool.
    """
    c = derive(p)
    B, n_in = rates.shape
    thr = spike_thresholds(rates, float(p.intensity + attempt), p.dt)          # [B, n_in]
    key = sample_key(seeds.long(), attempt)                                    # [B]
    t = torch.arange(c.steps, dtype=torch.int64)
    step_key = hash32((key[None, :] + _mul32(t[:, None], 0x9E3779B9)) & _MASK32)   # [T, B]
    offset = _mul32(torch.arange(n_in, dtype=torch.int64), 0x85EBCA6B)          # [n_in]
    u = hash32((step_key[:, :, None] + offset) & _MASK32)                      # [T, B, n_in]
    return u < thr


def input_rates(images: Tensor, p: DiehlCookParams) -> Tensor:
    """Input rates at intensity 1: ``x * input_rate`` Hz for images ``[B, ...]`` in [0, 1]
    (pixel / 255), as float64 ``[B, n_in]``."""
    x = images.detach().reshape(images.shape[0], -1).to(torch.float64)       # [B, n_in]
    lo, hi = torch.aminmax(x) if x.numel() else (torch.zeros(()), torch.zeros(()))
    if not (lo >= 0 and hi <= 1):                                            # also NaN
        raise ValueError(f"Diehl & Cook inputs are pixel intensities in [0, 1], got values in "
                         f"[{lo.item():.3g}, {hi.item():.3g}]; divide 8-bit images by 255.")
    return x * p.input_rate


# ----------------------------------------------------------------------------- network state

class DiehlCookState(NamedTuple):
    """State of ``B`` independent presentations (float64 unless noted); ``D`` delay slots."""

    v_e: Tensor                        # [B, n_e] excitatory membrane (V)
    ge_e: Tensor                       # [B, n_e] excitatory conductance onto them
    ge_pending: Tensor                 # [B, D, n_e] input conductance arriving in 0..D-1 steps
    gi_e: Tensor                       # [B, n_e] inhibitory conductance onto them
    ref_e: Tensor                      # [B, n_e] int64, refractory steps left
    theta: Tensor                      # [B, n_e] adaptive threshold (V)
    v_i: Tensor                        # [B, n_e] inhibitory membrane (V)
    ge_i: Tensor                       # [B, n_e]
    gi_i: Tensor                       # [B, n_e]
    ref_i: Tensor                      # [B, n_e] int64
    pre: Tensor                        # [B, n_in] presynaptic trace (set at emission)
    x_hist: Tensor                     # [B, D, n_in] input spikes of steps t, t-1, .., t-D+1
    pre_hist: Tensor                   # [B, D, n_in] presynaptic trace at those steps
    post1: Tensor                      # [B, n_e] postsynaptic traces
    post2: Tensor                      # [B, n_e]
    weight: Tensor                     # [B, n_e, n_in] working weights ([0] without learning)
    counts: Tensor                     # [B, n_e] int64, excitatory spikes so far


class Synapses(NamedTuple):
    """The input -> excitatory synapses split by delay (:func:`split_synapses`)."""

    weight: Tensor                     # [D, n_e, n_in] float64, the weights of delay d at d
    onehot: Tensor                     # [D, n_e, n_in] float64, 1 where the delay is d


class DiehlCookResult(NamedTuple):
    """What one call presents: responses and, while learning, the plastic changes."""

    counts: Tensor                     # [B, n_e] int64 excitatory spikes of the kept presentation
    dw: Tensor | None                  # [n_e, n_in] float32, weight - the weights before (learning)
    dtheta: Tensor | None              # [n_e] float64, theta at the end - theta (learning)
    attempts: Tensor                   # [B] int64, attempt number of the kept presentation
    weight: Tensor | None = None       # [n_e, n_in] float32, the weights at the end (learning)


def init_state(batch: int, theta: Tensor, n_in: int, p: DiehlCookParams, *, learn: bool,
               v_offset: float = 0.0, weight: Tensor | None = None) -> DiehlCookState:
    """Everything at rest (membranes at ``v_rest + v_offset``, nothing in flight),
    ``theta: [n_e]`` per sample; with ``learn``, ``weight [n_e, n_in]`` starts the working
    weights of every sample (float64)."""
    n_e = theta.shape[0]
    if learn and (weight is None or weight.shape != (n_e, n_in)):
        raise ValueError(f"learning needs the weights [n_e={n_e}, n_in={n_in}] to start from, got "
                         f"{None if weight is None else tuple(weight.shape)}")
    slots = derive(p).delay_slots
    f64 = dict(dtype=torch.float64)
    zeros = torch.zeros(batch, n_e, **f64)
    ref = torch.zeros(batch, n_e, dtype=torch.int64)
    hist = torch.zeros(batch, slots, n_in, **f64)
    return DiehlCookState(
        v_e=torch.full((batch, n_e), p.v_rest_e + v_offset, **f64), ge_e=zeros,
        ge_pending=torch.zeros(batch, slots, n_e, **f64), gi_e=zeros,
        ref_e=ref, theta=theta.to(torch.float64).expand(batch, n_e).clone(),
        v_i=torch.full((batch, n_e), p.v_rest_i + v_offset, **f64), ge_i=zeros, gi_i=zeros,
        ref_i=ref, pre=torch.zeros(batch, n_in, **f64), x_hist=hist, pre_hist=hist,
        post1=zeros, post2=zeros, counts=ref,
        weight=(weight.detach().to(torch.float64).expand(batch, n_e, n_in).clone() if learn
                else torch.zeros(0, **f64)))


def diehl_cook_step(x: Tensor, state: DiehlCookState, synapses: Synapses | Tensor,
                    p: DiehlCookParams, *, learn: bool, c: DiehlCookConstants | None = None
                    ) -> tuple[Tensor, Tensor, DiehlCookState]:
    """One time step of the network (the reference the fused kernel is checked against).

    STDP is measured at the synapse, as Brian 1's STDP on a connection with delays does: a spike
    of input ``i`` reaches neuron ``j`` after ``d_ji`` steps; it is depressed then, by ``post1``
    of that step; a post spike potentiates by the presynaptic trace ``d_ji`` steps earlier
    (``pre`` itself is set when the input fires). Each change is applied at once to the working
    weights ``state.weight`` and clipped to ``[w_min, w_max]``.

    Args:
        x: ``[B, n_in]`` input spikes of this step (bool or 0/1).
        state: the state after the previous step.
        synapses: :func:`split_synapses` of the weights and delays (a ``[n_e, n_in]`` weight
            tensor means no delays). Without learning its weights carry the input; while
            learning, ``state.weight`` does (only the delays are taken from ``synapses``).
        p: parameters; ``c``: their :func:`derive` (computed if not given).
        learn: STDP on ``state.weight`` and adaptive theta.

    Returns:
        ``(z_e [B, n_e] bool, z_i [B, n_e] bool, new state)``.
    """
    c = derive(p) if c is None else c
    syn = synapses if isinstance(synapses, Synapses) else split_synapses(synapses, None, 1)
    s = state
    # 1. integrate every neuron with the previous step's conductances (forward Euler)
    v_e = s.v_e + (((p.v_rest_e - s.v_e) + s.ge_e * (p.e_exc - s.v_e))
                   + s.gi_e * (p.e_inh_e - s.v_e)) * c.k_e
    hold_e = s.ref_e > 0                                        # refractory: v held
    v_e = torch.where(hold_e, s.v_e, v_e)
    v_i = s.v_i + (((p.v_rest_i - s.v_i) + s.ge_i * (p.e_exc - s.v_i))
                   + s.gi_i * (p.e_inh_i - s.v_i)) * c.k_i
    hold_i = s.ref_i > 0
    v_i = torch.where(hold_i, s.v_i, v_i)
    ge_e, gi_e = s.ge_e * c.ge_decay, s.gi_e * c.gi_decay
    ge_i, gi_i = s.ge_i * c.ge_decay, s.gi_i * c.gi_decay
    theta = s.theta * c.theta_decay if learn else s.theta
    pre, post1, post2 = s.pre * c.pre_decay, s.post1 * c.post1_decay, s.post2 * c.post2_decay
    # 2. threshold
    z_e = ~hold_e & (v_e > (theta - p.theta_offset) + p.v_thresh_e)        # [B, n_e]
    z_i = ~hold_i & (v_i > p.v_thresh_i)
    # 3. propagate this step's spikes (each with the weight it has now, into its delay slot)
    xd = x.to(torch.float64)                                               # [B, n_in]
    ze, zi = z_e.to(torch.float64), z_i.to(torch.float64)
    D = s.ge_pending.shape[1]
    onehot = F.pad(syn.onehot, (0, 0, 0, 0, 0, D - syn.onehot.shape[0]))   # [D, n_e, n_in]
    if learn:       # input by input in increasing order, as the kernel sums them
        pending = s.ge_pending.clone()                                     # [B, D, n_e]
        for b, i in x.nonzero().tolist():
            pending[b] += onehot[:, :, i] * s.weight[b, :, i]
    else:           # float32 weights: these float64 sums are exact in any order
        sent = torch.einsum("bi,dji->bdj", xd, syn.weight)                 # [B, D', n_e]
        pending = s.ge_pending + F.pad(sent, (0, 0, 0, D - sent.shape[1]))
    ge_e = ge_e + pending[:, 0]                                            # arriving now
    pending = torch.cat([pending[:, 1:], torch.zeros_like(pending[:, :1])], 1)
    ge_i = ge_i + p.w_ei * ze
    gi_e = gi_e + p.w_ie * (zi.sum(1, keepdim=True) - zi)                  # all but the partner
    w, pre_hist = s.weight, s.pre_hist
    x_hist = torch.cat([xd[:, None], s.x_hist[:, :-1]], 1)                 # slot d: step t - d
    if learn:
        pre = torch.where(x.bool(), 1.0, pre)                              # pre pathway first:
        pre_hist = torch.cat([pre[:, None], s.pre_hist[:, :-1]], 1)
        arriving = torch.einsum("bdi,dji->bji", x_hist, onehot) > 0        # [B, n_e, n_in]
        depressed = (w - (p.nu_pre * post1)[:, :, None]).clamp(p.w_min, p.w_max)   # by post1
        w = torch.where(arriving, depressed, w)
        pre_syn = torch.einsum("bdi,dji->bji", pre_hist, onehot)           # pre, d_ji earlier
        potentiated = (w + (p.nu_post * pre_syn) * post2[:, :, None]).clamp(p.w_min, p.w_max)
        w = torch.where(z_e[:, :, None], potentiated, w)                   # post2 before
        post1 = torch.where(z_e, 1.0, post1)                               # its spike
        post2 = torch.where(z_e, 1.0, post2)
        theta = theta + p.theta_plus * ze
    # 4. reset
    v_e = torch.where(z_e, p.v_reset_e, v_e)
    v_i = torch.where(z_i, p.v_reset_i, v_i)
    ref_e = torch.where(z_e, c.refrac_e, s.ref_e - hold_e.long())
    ref_i = torch.where(z_i, c.refrac_i, s.ref_i - hold_i.long())
    new = DiehlCookState(v_e, ge_e, pending, gi_e, ref_e, theta, v_i, ge_i, gi_i, ref_i, pre,
                         x_hist, pre_hist, post1, post2, w, s.counts + z_e.long())
    return z_e, z_i, new


def diehl_cook_present(spikes: Tensor, weight: Tensor, theta: Tensor, p: DiehlCookParams, *,
                       delays: Tensor | None = None, learn: bool = False, v_offset: float = 0.0
                       ) -> DiehlCookResult:
    """Present given input spike trains once (no retry): :func:`diehl_cook_step` over time.

    Args:
        spikes: ``[T, B, n_in]`` input spikes, ``T = round(t_present / dt)``; ``B = 1`` while
            learning.
        weight: ``[n_e, n_in]`` input -> excitatory weights (read only; learning changes a
            float64 copy).
        theta: ``[n_e]`` adaptive thresholds at the start (V), the same for every sample.
        delays: ``[n_e, n_in]`` synaptic delays in steps (:func:`init_delays`); None: none.
        p: parameters.
        learn: STDP on the weights at every spike event, adaptive theta.
        v_offset: membranes start at ``v_rest + v_offset`` (``p.v_init_offset`` for the run's
            very first presentation in the reference code; 0 otherwise).

    Returns:
        counts ``[B, n_e]``; with ``learn`` the weights at the end (float32 ``[n_e, n_in]``),
        dw = those - ``weight`` (float32) and dtheta ``[n_e]`` (float64, theta at the end minus
        ``theta``).
    """
    c = derive(p)
    if spikes.ndim != 3 or spikes.shape[0] != c.steps or spikes.shape[2] != weight.shape[1]:
        raise ValueError(f"expected input spikes [T={c.steps}, B, n_in={weight.shape[1]}] "
                         f"(T = t_present / dt), got {tuple(spikes.shape)}")
    if learn and spikes.shape[1] != 1:
        raise ValueError(f"learning presents one sample at a time (the weights change at every "
                         f"spike), got B={spikes.shape[1]}; call once per sample")
    state = init_state(spikes.shape[1], theta, weight.shape[1], p, learn=learn,
                       v_offset=v_offset, weight=weight if learn else None)
    syn = split_synapses(weight, delays, c.delay_slots)
    for x in spikes.unbind(0):                                             # x: [B, n_in]
        _, _, state = diehl_cook_step(x, state, syn, p, learn=learn, c=c)
    attempts = torch.zeros(spikes.shape[1], dtype=torch.int64)
    if not learn:
        return DiehlCookResult(state.counts, None, None, attempts)
    dtheta = (state.theta - theta.to(torch.float64)).sum(0)                # [n_e]
    new = state.weight[0].float()                                          # [n_e, n_in]
    return DiehlCookResult(state.counts, new - weight.detach().float(), dtheta, attempts, new)


def diehl_cook_run(rates: Tensor, seeds: Tensor, weight: Tensor, theta: Tensor,
                   p: DiehlCookParams, *, delays: Tensor | None = None, learn: bool = False,
                   attempt: int = 0, retry: bool = True, v_offset: float = 0.0
                   ) -> DiehlCookResult:
    """Present samples with seeded Poisson inputs and the retry rule (the reference of the
    kernel's seeded mode).

    Without learning, a sample whose excitatory layer fires fewer than ``p.min_spikes`` spikes
    is presented again from rest with the next attempt number (intensity + 1), at most
    ``p.max_retries`` times; its counts are those of the last presentation. While learning the
    weights change between attempts, so the caller repeats (one attempt per call).

    Args:
        rates: ``[B, n_in]`` float64 rates at intensity 1 (:func:`input_rates`).
        seeds: ``[B]`` int64 per-sample seeds.
        weight, theta, p, delays, learn, v_offset: as in :func:`diehl_cook_present`
            (``v_offset`` only applies to the first attempt).
        attempt: attempt number of the first presentation (intensity ``p.intensity + attempt``).
        retry: apply the retry rule (ignored while learning).
    """
    if learn or not retry:
        res = diehl_cook_present(poisson_spikes(rates, seeds, p, attempt=attempt), weight, theta,
                                 p, delays=delays, learn=learn, v_offset=v_offset)
        return res._replace(attempts=torch.full_like(res.attempts, attempt))
    B = rates.shape[0]
    counts = torch.zeros(B, theta.shape[0], dtype=torch.int64)
    attempts = torch.full((B,), attempt, dtype=torch.int64)
    todo = torch.arange(B)
    a, offset = attempt, v_offset
    while True:
        res = diehl_cook_present(poisson_spikes(rates[todo], seeds[todo], p, attempt=a), weight,
                                 theta, p, delays=delays, v_offset=offset)
        counts[todo], attempts[todo] = res.counts, a
        low = res.counts.sum(1) < p.min_spikes
        if not bool(low.any()) or a - attempt >= p.max_retries:
            return DiehlCookResult(counts, None, None, attempts)
        todo, a, offset = todo[low], a + 1, 0.0


# ----------------------------------------------------------------------------- weights, labels

def init_weight(n_e: int, n_in: int, p: DiehlCookParams,
                generator: torch.Generator | None = None) -> Tensor:
    """Initial weights ``(U[0, 1) + w_init_offset) * w_init_scale``, ``[n_e, n_in]`` float32."""
    return (torch.rand(n_e, n_in, generator=generator) + p.w_init_offset) * p.w_init_scale


def init_delays(n_e: int, n_in: int, p: DiehlCookParams,
                generator: torch.Generator | None = None) -> Tensor:
    """Input -> excitatory delays in steps, ``floor(U[0, 1) * delay_max / dt)`` as the
    reference code's Brian 1 connection draws and applies them; ``[n_e, n_in]`` uint8."""
    slots = derive(p).delay_slots
    d = torch.rand(n_e, n_in, generator=generator, dtype=torch.float64) * (p.delay_max / p.dt)
    return d.floor().clamp(max=slots - 1).to(torch.uint8)


def split_synapses(weight: Tensor, delays: Tensor | None, slots: int) -> Synapses:
    """The synapses split by delay: slice ``d`` of ``[slots, n_e, n_in]`` holds the weights
    (and ones) of the synapses with a delay of ``d`` steps, zeros elsewhere; without delays,
    one slice."""
    w = weight.detach().to(torch.float64)
    if delays is None:
        return Synapses(w[None], torch.ones_like(w)[None])
    if delays.shape != weight.shape:
        raise ValueError(f"delays must be [n_e, n_in] like the weight {tuple(weight.shape)}, got "
                         f"{tuple(delays.shape)}")
    if int(delays.max()) >= slots:
        raise ValueError(f"delays reach {int(delays.max())} steps, but delay_max / dt allows at "
                         f"most {slots - 1}; draw them with init_delays for these parameters")
    onehot = F.one_hot(delays.long(), slots).permute(2, 0, 1).to(torch.float64)  # [D, n_e, n_in]
    return Synapses(onehot * w, onehot)


def normalize_weight(weight: Tensor, p: DiehlCookParams) -> Tensor:
    """Each neuron's input weights scaled to sum ``w_sum`` (rows of ``[n_e, n_in]``); a row
    that sums to 0 stays 0."""
    total = weight.sum(1, keepdim=True)
    factor = torch.where(total > 0, p.w_sum / total, torch.ones_like(total))
    return weight * factor


def class_sums(counts: Tensor, labels: Tensor, num_classes: int = 10
               ) -> tuple[Tensor, Tensor]:
    """Per class, the summed responses ``[C, n_e]`` (float64) and the number of samples
    ``[C]``; add the results of several batches, then :func:`assign_labels`."""
    sums = torch.zeros(num_classes, counts.shape[1], dtype=torch.float64)
    sums.index_add_(0, labels.long(), counts.to(torch.float64))
    return sums, torch.bincount(labels.long(), minlength=num_classes)


def assign_labels(sums: Tensor, totals: Tensor) -> Tensor:
    """Each neuron's class: the one with the highest mean response per presentation
    (``sums / totals`` from :func:`class_sums`; a neuron that never fired gets class 0, as in
    the reference code). Returns ``[n_e]`` int64."""
    means = sums / totals.clamp(min=1).to(torch.float64)[:, None]           # [C, n_e]
    return means.argmax(0)


def classify(counts: Tensor, assignments: Tensor, num_classes: int = 10) -> Tensor:
    """The class whose assigned neurons have the highest mean spike count, ``[B]`` int64
    (a class without neurons scores 0; ties go to the lowest class)."""
    onehot = F.one_hot(assignments.long(), num_classes).to(torch.float64)
    per_class = counts.to(torch.float64) @ onehot                          # [B, C]
    return (per_class / onehot.sum(0).clamp(min=1)).argmax(1)
