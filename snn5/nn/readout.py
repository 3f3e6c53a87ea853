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
=================  =============================  ==================  =========

For the max-membrane readout the per-step scores are the membrane trace the maximum is taken
from; for spike counts they are the spikes, whose time mean is the count divided by T (the
same class ranking). A per-step cross-entropy on 0/1 spikes can separate the classes by at most
one logit per step, so per-step losses are weak with a spike-count readout; prefer
``mean_membrane`` for them.
"""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor, nn

from snn5.core.options import Option
from snn5.nn.neurons import LI


class Readout(Option):
    """How class scores are read from the last layer.

    SPIKE_COUNT:   spikes of a spiking output layer summed over time.
    MEAN_MEMBRANE: a non-spiking leaky integrator (LI) driven by the last layer; mean over time.
    MAX_MEMBRANE:  the same integrator; maximum over time (Norse's readout).
    """

    SPIKE_COUNT = "spike_count"
    MEAN_MEMBRANE = "mean_membrane"
    MAX_MEMBRANE = "max_membrane"


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
    return MembraneReadout(tau_mem, dt=dt, reduce="mean" if kind is Readout.MEAN_MEMBRANE else "max")


def readout_is_spiking(kind: Readout) -> bool:
    """Whether the last layer before this readout must spike."""
    return Readout.parse(kind) is Readout.SPIKE_COUNT


__all__ = ["MembraneReadout", "Readout", "SpikeCount", "TimeMean", "build_readout",
           "readout_is_spiking"]
