"""Readouts: reduce a network's output sequence ``[T, B, C]`` to class scores ``[B, C]``.

Every readout is split in two so that training objectives can see the time axis:

* ``steps(x_seq, state=None) -> (scores [T, B, C], state)``: the per-step class scores (the
  quantity the readout reduces) and the readout's own state, so a sequence can be run in
  chunks (truncated BPTT) and give the same scores as one pass;
* ``reduce_steps(scores) -> [B, C]``: the reduction over time;
  ``forward(x) = reduce_steps(steps(x)[0])``.

``time_mean`` says whether ``reduce_steps`` is the time mean, i.e. whether the logits are the
mean of the per-step scores (the assumption of per-step losses such as TET, Deng et al. ICLR
2022).

=================  =============================  ==================  =========
readout            per-step scores                reduce_steps        time_mean
=================  =============================  ==================  =========
``TimeMean``       the input ``x[t]``             mean over t         yes
``MEAN_MEMBRANE``  LI membrane ``v[t]``           mean over t         yes
``MAX_MEMBRANE``   LI membrane ``v[t]``           max over t          no
``SPIKE_COUNT``    output spikes ``z[t]`` (0/1)   sum over t (= T x   no
                                                  the time mean)
``FIRST_SPIKE``    output spikes ``z[t]`` (0/1)   minus the first-    no
                                                  spike time
=================  =============================  ==================  =========

For the max-membrane readout the per-step scores are the membrane trace the maximum is taken
from; for spike counts they are the spikes, whose time mean is the count divided by T (the
same class ranking). A per-step cross-entropy on 0/1 spikes can separate the classes by at most
one logit per step, so per-step losses are weak with a spike-count readout; prefer
``mean_membrane`` for them (the same holds for the first-spike readout).

Every reduction applies to any prefix ``scores[:t + 1]``: the logits the model would give had it
stopped after step ``t``, which :meth:`snn5.models.SpikingClassifier.stream` and early exit
(:mod:`snn5.metrics.early_exit`) use.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from snn5.core.options import Option
from snn5.nn.neurons import LI


class Readout(Option):
    """How class scores are read from the last layer.

    SPIKE_COUNT:   spikes of a spiking output layer summed over time.
    MEAN_MEMBRANE: a non-spiking leaky integrator (LI) driven by the last layer; mean over time.
    MAX_MEMBRANE:  the same integrator; maximum over time (Norse's readout).
    FIRST_SPIKE:   time-to-first-spike of a spiking output layer: the class whose neuron fires
                   first wins (:class:`FirstSpike`).
    """

    SPIKE_COUNT = "spike_count"
    MEAN_MEMBRANE = "mean_membrane"
    MAX_MEMBRANE = "max_membrane"
    FIRST_SPIKE = "first_spike"


class SpikeCount(nn.Module):
    """``[T, B, C] -> [B, C]``: number of spikes per output neuron.

    Per-step scores: the spikes ``z[t]`` themselves (stateless).
    """

    time_mean = False

    def steps(self, z_seq: Tensor, state: None = None) -> tuple[Tensor, None]:
        """The spikes ``[T, B, C]`` (no state)."""
        return z_seq, None

    def reduce_steps(self, scores: Tensor) -> Tensor:
        """``[T, B, C] -> [B, C]`` spike counts."""
        return scores.sum(0)

    def forward(self, z_seq: Tensor) -> Tensor:
        return self.reduce_steps(z_seq)


class _FirstSpikeTime(torch.autograd.Function):
    """``z [T, B, C] -> t_first [B, C]``: the step of each neuron's first spike, ``T`` if silent.

    Backward: the sign estimator of snnTorch's ``SpikeTime.FirstSpike`` (Eshraghian et al.,
    "Training spiking neural networks using lessons from deep learning", Proc. IEEE 2023): the
    step index is piecewise constant in the spikes, so its gradient is linearised as ``-1`` at the
    first spike (a spike there, made stronger, would be the same or an earlier one) and 0
    elsewhere; a silent neuron gets it at the last step ``T - 1``, its earliest chance to fire.
    The gradient then flows into the membrane through the spike's surrogate.
    """

    @staticmethod
    def forward(ctx, z_seq: Tensor) -> Tensor:
        T = z_seq.shape[0]
        fired = z_seq > 0                                              # [T, B, C]
        first = fired.to(torch.uint8).argmax(0)                        # [B, C] first True or 0
        silent = ~fired.any(0)                                         # [B, C]
        ctx.save_for_backward(first.masked_fill(silent, T - 1))
        ctx.T = T
        return first.masked_fill(silent, T).to(z_seq.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (at,) = ctx.saved_tensors                                      # [B, C] step of the spike
        grad_z = grad.new_zeros((ctx.T, *grad.shape))                  # [T, B, C]
        grad_z.scatter_(0, at.unsqueeze(0), -grad.unsqueeze(0))
        return grad_z


def first_spike_time(z_seq: Tensor) -> Tensor:
    """The step (0-based) of each neuron's first spike in ``z_seq: [T, B, C]``, ``T`` for a
    neuron that stayed silent; differentiable through the spikes (see :class:`FirstSpike`).

    Shape:
        ``[T, B, C] -> [B, C]``, the dtype of ``z_seq``.
    """
    if z_seq.ndim < 2 or z_seq.shape[0] == 0:
        raise ValueError(f"first_spike_time needs spikes [T, B, ...] with T >= 1, got shape "
                         f"{tuple(z_seq.shape)}")
    return _FirstSpikeTime.apply(z_seq)


class FirstSpike(nn.Module):
    """Time-to-first-spike readout: ``[T, B, C]`` output spikes -> class scores ``-t_first``.

    The score of class ``c`` is minus the step of its output neuron's first spike, so the
    earliest neuron wins and a cross-entropy on the scores is snnTorch's ``ce_temporal_loss``
    (Eshraghian et al., Proc. IEEE 2023, the temporal-coding section): the correct neuron is
    pushed to fire first, the others later. A neuron silent through the ``T`` steps scores
    ``-T`` (one step after the window; snnTorch's ``-(T - 1)`` would tie it with a neuron firing
    at the last step), so firing, however late, beats silence. Ties (neurons firing at the same
    step) go to the lower class index, as ``argmax`` does.

    On a prefix of ``t + 1`` steps the silent score is ``-(t + 1)``: once any output neuron has
    fired, the arg-max of the prefix is the arg-max of the full sequence, so the decision is
    known at the first output spike (:attr:`snn5.metrics.ExitRule.FIRST_SPIKE`).

    Per-step scores: the spikes ``z[t]`` themselves (stateless).
    """

    time_mean = False

    def steps(self, z_seq: Tensor, state: None = None) -> tuple[Tensor, None]:
        """The spikes ``[T, B, C]`` (no state)."""
        return z_seq, None

    def reduce_steps(self, scores: Tensor) -> Tensor:
        """``[T, B, C] -> [B, C]``: minus the first-spike step (``-T`` when silent)."""
        return -first_spike_time(scores)

    def forward(self, z_seq: Tensor) -> Tensor:
        return self.reduce_steps(z_seq)


class MembraneReadout(nn.Module):
    """Leaky-integrator readout: ``[T, B, C]`` currents -> LI membrane -> mean or max over time.

    ``v[t] = beta v[t-1] + (1 - beta) x[t]`` with ``beta = exp(-dt / tau_mem)``; the per-step
    scores are ``v[t]`` and the logits their mean or maximum over time.

    Args:
        tau_mem: time constant of the integrator in seconds.
        dt: step in seconds.
        reduce: ``"mean"`` or ``"max"`` over time.
    """

    def __init__(self, tau_mem: float = 20e-3, *, dt: float = 1e-3, reduce: str = "mean") -> None:
        super().__init__()
        if reduce not in ("mean", "max"):
            raise ValueError(f"reduce must be 'mean' or 'max', got {reduce!r}")
        self.li = LI(tau_mem, dt=dt)
        self.reduce = reduce

    @property
    def time_mean(self) -> bool:
        return self.reduce == "mean"

    def steps(self, x_seq: Tensor, state: NamedTuple | None = None) -> tuple[Tensor, NamedTuple]:
        """The membrane trace ``[T, B, C]`` and the integrator's final state (pass it back to
        continue the sequence)."""
        return self.li(x_seq, state)              # ([T, B, C], LIState)

    def reduce_steps(self, v_seq: Tensor) -> Tensor:
        """``[T, B, C] -> [B, C]``: mean or maximum of the membrane over time."""
        return v_seq.mean(0) if self.reduce == "mean" else v_seq.amax(0)

    def forward(self, x_seq: Tensor) -> Tensor:
        v_seq, _ = self.steps(x_seq)              # [T, B, C]
        return self.reduce_steps(v_seq)

    def extra_repr(self) -> str:
        return f"reduce={self.reduce}"


class TimeMean(nn.Module):
    """``[T, B, C] -> [B, C]`` mean over time; the readout of an ANN run with T = 1.

    Per-step scores: the input ``x[t]`` itself (stateless).
    """

    time_mean = True

    def steps(self, x_seq: Tensor, state: None = None) -> tuple[Tensor, None]:
        """The input ``[T, B, C]`` (no state)."""
        return x_seq, None

    def reduce_steps(self, scores: Tensor) -> Tensor:
        """``[T, B, C] -> [B, C]`` mean over time."""
        return scores.mean(0)

    def forward(self, x_seq: Tensor) -> Tensor:
        return self.reduce_steps(x_seq)


def build_readout(kind: Readout, *, tau_mem: float, dt: float) -> nn.Module:
    """The readout module for ``kind``."""
    kind = Readout.parse(kind)
    if kind is Readout.SPIKE_COUNT:
        return SpikeCount()
    if kind is Readout.FIRST_SPIKE:
        return FirstSpike()
    reduce = "mean" if kind is Readout.MEAN_MEMBRANE else "max"
    return MembraneReadout(tau_mem, dt=dt, reduce=reduce)


def readout_is_spiking(kind: Readout) -> bool:
    """Whether the last layer before this readout must spike."""
    return Readout.parse(kind) in (Readout.SPIKE_COUNT, Readout.FIRST_SPIKE)


__all__ = ["FirstSpike", "MembraneReadout", "Readout", "SpikeCount", "TimeMean", "build_readout",
           "first_spike_time", "readout_is_spiking"]
