"""Fused CPU kernel of the Diehl & Cook (2015) network: one call presents whole samples.

``snn5::diehl_cook_present`` runs the time loop of :func:`snn5.core.diehl_cook.diehl_cook_step`
inside C++ (``csrc/diehl_cook_cpu.cpp``) for ``B`` samples: event-driven input (an input spike
adds one contiguous row of the input-major weight ``W^T [n_in, n_e]`` to ge, each weight in the
step its synaptic delay brings it), STDP traces kept as spike steps and timed at the synapse.
While learning, the weights change at every spike event (clipped to ``[w_min, w_max]`` at each
update) in a float64 working copy of the rows of the inputs that fire, so later input spikes
carry the changed weights; the call returns the weights at the end (float32) and leaves its
inputs unchanged. Inputs are either

- seeded: ``rates [B, n_in]`` (Hz at intensity 1) and ``seeds [B]``; the spikes are drawn inside
  by the counter-based hash of :func:`snn5.core.diehl_cook.poisson_spikes`, so the reference can
  draw the very same ones, and without learning each sample applies the retry rule itself; or
- given: ``spikes [T, B, n_in]`` (one attempt, no retry): what the parity tests use.

Without learning the samples run in parallel (``at::parallel_for``); learning presents one
sample per call.

:func:`present_diehl_cook` is the entry point: it checks its inputs, runs the kernel, and falls
back to the core reference (one logged warning) where the kernels are not built. Both give the
same spike counts, and the same weights and theta at the end, bit for bit.
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor

from snn5.core.diehl_cook import (
    DiehlCookParams, DiehlCookResult, derive, diehl_cook_present, diehl_cook_run,
)
from snn5.kernels.build import kernel_error, load_cpu_kernels
from snn5.kernels.dispatch import Backend

log = logging.getLogger(__name__)

CONSTS = ("k_e", "v_rest_e", "v_reset_e", "v_thresh_e", "theta_offset", "e_exc", "e_inh_e",
          "k_i", "v_rest_i", "v_reset_i", "v_thresh_i", "e_inh_i", "ge_decay", "gi_decay", "w_ei",
          "w_ie", "theta_plus", "theta_decay", "nu_pre", "nu_post", "pre_decay", "post1_decay",
          "post2_decay", "dt", "intensity", "w_min", "w_max")
"""The float constants handed to the kernel, in the order of its ``Consts`` struct."""
SIZES = ("steps", "delay_slots", "refrac_e", "refrac_i", "min_spikes", "max_retries", "attempt")
"""The integers handed to the kernel, in the order of its ``Sizes`` struct."""

_LIB = torch.library.Library("snn5", "FRAGMENT")
_LIB.define("diehl_cook_present(Tensor weight_t, Tensor theta, Tensor rates, Tensor seeds, "
            "Tensor? spikes, Tensor? delays_t, float[] consts, int[] sizes, bool learn, "
            "bool retry, float v_offset) -> (Tensor, Tensor, Tensor, Tensor)")

diehl_cook_op = torch.ops.snn5.diehl_cook_present.default
"""``(weight_t [n_in, n_e] f32, theta [n_e] f64, rates [B, n_in] f64, seeds [B] i64,
spikes [T, B, n_in] bool or None, delays_t [n_in, n_e] u8 or None, consts, sizes, learn, retry,
v_offset) -> (counts [B, n_e]
i64, the weights at the end w_t [n_in, n_e] f32 or empty, dtheta [n_e] f64 or empty,
attempts [B] i64)``; learning needs B = 1."""


def _cpu(weight_t, theta, rates, seeds, spikes, delays_t, consts, sizes, learn, retry, v_offset):
    if load_cpu_kernels() is None:
        raise RuntimeError(f"the snn5 CPU kernels are not available ({kernel_error('cpu')}); "
                           "use present_diehl_cook(..., backend='reference')")
    return torch.ops.snn5_cpu.diehl_cook_present(weight_t, theta, rates, seeds, spikes, delays_t,
                                                 consts, sizes, learn, retry, v_offset)


_LIB.impl("diehl_cook_present", _cpu, "CPU")


@torch.library.register_fake("snn5::diehl_cook_present", lib=_LIB)
def _(weight_t, theta, rates, seeds, spikes, delays_t, consts, sizes, learn, retry, v_offset):
    n_in, n_e = weight_t.shape
    B = spikes.shape[1] if spikes is not None else rates.shape[0]
    counts = weight_t.new_empty(B, n_e, dtype=torch.int64)
    attempts = weight_t.new_empty(B, dtype=torch.int64)
    if learn:
        return counts, weight_t.new_empty(n_in, n_e), theta.new_empty(n_e), attempts
    return counts, weight_t.new_empty(0), theta.new_empty(0), attempts


def kernel_arguments(p: DiehlCookParams, attempt: int) -> tuple[list[float], list[int]]:
    """The ``consts`` and ``sizes`` lists of the op for parameters ``p``."""
    c = derive(p)
    values = {**p._asdict(), **c._asdict(), "attempt": attempt}   # c's refrac_* are steps
    return ([float(values[k]) for k in CONSTS], [int(values[k]) for k in SIZES])


_warned = False


def _fallback_warning() -> None:
    global _warned
    if not _warned:
        _warned = True
        log.warning("snn5: the fused Diehl & Cook kernel is not available (%s); using the "
                    "reference PyTorch loop, which is much slower. `python -m snn5.kernels build "
                    "--verbose` shows why.", kernel_error("cpu") or "not built")


def _check(weight: Tensor, theta: Tensor, rates: Tensor | None, seeds: Tensor | None,
           spikes: Tensor | None, delays: Tensor | None, steps: int, attempt: int,
           learn: bool) -> None:
    if weight.ndim != 2:
        raise ValueError(f"weight must be [n_e, n_in], got shape {tuple(weight.shape)}")
    n_e, n_in = weight.shape
    for name, t in (("weight", weight), ("theta", theta), ("rates", rates), ("seeds", seeds),
                    ("spikes", spikes), ("delays", delays)):
        if t is not None and t.device.type != "cpu":
            raise ValueError(f"{name} is on {t.device}; the Diehl & Cook network runs on the CPU: "
                             "move the model and inputs with .cpu()")
    if theta.shape != (n_e,):
        raise ValueError(f"theta must be [n_e={n_e}] (one threshold per excitatory neuron), got "
                         f"shape {tuple(theta.shape)}")
    if not torch.isfinite(theta).all():
        raise ValueError("theta holds NaN/Inf; reinitialise the model or load a good checkpoint")
    if attempt < 0:
        raise ValueError(f"attempt must be >= 0, got {attempt}")
    if delays is not None and (delays.shape != weight.shape or delays.dtype != torch.uint8):
        raise ValueError(f"delays must be uint8 steps [n_e={n_e}, n_in={n_in}] like the weight, "
                         f"got {delays.dtype} {tuple(delays.shape)}; draw them with "
                         "snn5.core.diehl_cook.init_delays")
    if spikes is not None:
        if rates is not None or seeds is not None:
            raise ValueError("pass either spikes (given trains) or rates and seeds (drawn "
                             "inside), not both")
        if spikes.ndim != 3 or spikes.shape[0] != steps or spikes.shape[2] != n_in:
            raise ValueError(f"spikes must be [T={steps}, B, n_in={n_in}] (T = t_present / dt), "
                             f"got shape {tuple(spikes.shape)}")
        if spikes.dtype != torch.bool and not ((spikes == 0) | (spikes == 1)).all():
            raise ValueError("spikes must hold 0 and 1 only (or be a bool tensor)")
        _check_one(spikes.shape[1], learn)
        return
    if rates is None or seeds is None:
        raise ValueError("pass rates [B, n_in] and seeds [B] (or given spike trains as spikes=)")
    if rates.ndim != 2 or rates.shape[1] != n_in:
        raise ValueError(f"rates must be [B, n_in={n_in}], got shape {tuple(rates.shape)}; "
                         "snn5.core.diehl_cook.input_rates makes them from images")
    if seeds.shape != (rates.shape[0],) or seeds.dtype != torch.int64:
        raise ValueError(f"seeds must be int64 [B={rates.shape[0]}], got {seeds.dtype} "
                         f"{tuple(seeds.shape)}")
    if not (torch.isfinite(rates).all() and (rates >= 0).all()):
        raise ValueError("rates must be finite and >= 0 (Hz)")
    _check_one(rates.shape[0], learn)


def _check_one(batch: int, learn: bool) -> None:
    if learn and batch != 1:
        raise ValueError(f"learning presents one sample at a time (the weights change at every "
                         f"spike), got B={batch}; call once per sample")


def present_diehl_cook(weight: Tensor, theta: Tensor, p: DiehlCookParams, *,
                       rates: Tensor | None = None, seeds: Tensor | None = None,
                       spikes: Tensor | None = None, delays: Tensor | None = None,
                       learn: bool = False, attempt: int = 0,
                       retry: bool = True, v_offset: float = 0.0,
                       backend: Backend | str = Backend.AUTO) -> DiehlCookResult:
    """Present ``B`` samples to the network (fused kernel, or the core reference).

    Args:
        weight: ``[n_e, n_in]`` input -> excitatory weights (read only).
        theta: ``[n_e]`` adaptive thresholds (V); float64 is kept, other dtypes are converted.
        p: parameters.
        rates: ``[B, n_in]`` rates at intensity 1 (Hz, :func:`snn5.core.diehl_cook.input_rates`)
            with ``seeds: [B]`` int64: input spikes drawn inside.
        spikes: ``[T, B, n_in]`` given input spike trains instead (one attempt, no retry).
        delays: ``[n_e, n_in]`` uint8 input -> excitatory delays in steps
            (:func:`snn5.core.diehl_cook.init_delays`); None: no delays.
        learn: STDP at every spike event and adaptive theta (one sample, ``B = 1``).
        attempt: presentation number of the first attempt (intensity ``p.intensity + attempt``).
        retry: without learning, repeat samples with fewer than ``p.min_spikes`` excitatory
            spikes (next attempt, from rest), at most ``p.max_retries`` times.
        v_offset: membranes of the first attempt start at ``v_rest + v_offset``.
        backend: ``auto`` (kernel if built, else reference), ``cpu`` or ``reference``.

    Returns:
        :class:`~snn5.core.diehl_cook.DiehlCookResult`: counts ``[B, n_e]``; with ``learn``,
        the weights at the end ``[n_e, n_in]`` (float32), dw = those - ``weight`` (float32;
        from the kernel both are transposed views of input-major ``[n_in, n_e]`` tensors, the
        layout of the model's weight) and dtheta ``[n_e]`` (float64); attempts ``[B]``.
    """
    backend = Backend.parse(backend)
    if backend is Backend.TRITON:
        raise ValueError("the Diehl & Cook network has no Triton kernel; use backend='auto', "
                         "'cpu' or 'reference'")
    c = derive(p)
    _check(weight, theta, rates, seeds, spikes, delays, c.steps, attempt, learn)
    theta64 = theta.detach().to(torch.float64).contiguous()
    use_kernel = backend is Backend.CPU or (backend is Backend.AUTO
                                            and load_cpu_kernels() is not None)
    if not use_kernel:
        if backend is Backend.AUTO:
            _fallback_warning()
        w = weight.detach()
        if spikes is not None:
            res = diehl_cook_present(spikes, w, theta64, p, delays=delays, learn=learn,
                                     v_offset=v_offset)
            return res._replace(attempts=res.attempts + attempt)
        return diehl_cook_run(rates.to(torch.float64), seeds, w, theta64, p, delays=delays,
                              learn=learn, attempt=attempt, retry=retry, v_offset=v_offset)
    consts, sizes = kernel_arguments(p, attempt)
    weight_t = weight.detach().to(torch.float32).t().contiguous()  # [n_in, n_e]; no copy for
                                                                   # an input-major weight
    delays_t = None if delays is None else delays.t().contiguous()        # [n_in, n_e]
    if spikes is not None:
        z = spikes if spikes.dtype == torch.bool else spikes.to(torch.bool)
        empty = weight_t.new_empty(0)
        counts, w_new, dtheta, attempts = diehl_cook_op(
            weight_t, theta64, empty.double(), empty.long(), z.contiguous(), delays_t, consts,
            sizes, learn, False, float(v_offset))
    else:
        counts, w_new, dtheta, attempts = diehl_cook_op(
            weight_t, theta64, rates.to(torch.float64).contiguous(), seeds.contiguous(), None,
            delays_t, consts, sizes, learn, retry, float(v_offset))
    if not learn:
        return DiehlCookResult(counts, None, None, attempts)
    dw_t = w_new - weight_t                                             # [n_in, n_e]
    return DiehlCookResult(counts, dw_t.t(), dtheta, attempts, w_new.t())   # [n_e, n_in] views


__all__ = ["CONSTS", "SIZES", "diehl_cook_op", "kernel_arguments", "present_diehl_cook"]
