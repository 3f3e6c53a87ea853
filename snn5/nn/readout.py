"""Readouts: reduce a network's output sequence ``[T, B, C]`` to class scores ``[B, C]``."""

from __future__ import annotations

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
    """``[T, B, C] -> [B, C]``: number of spikes per output neuron."""

    def forward(self, z_seq: Tensor) -> Tensor:
        return z_seq.sum(0)


class MembraneReadout(nn.Module):
    """Leaky-integrator readout: ``[T, B, C]`` currents -> LI membrane -> mean or max over time.

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

    def forward(self, x_seq: Tensor) -> Tensor:
        v_seq, _ = self.li(x_seq)                 # [T, B, C]
        return v_seq.mean(0) if self.reduce == "mean" else v_seq.amax(0)

    def extra_repr(self) -> str:
        return f"reduce={self.reduce}"


class TimeMean(nn.Module):
    """``[T, B, C] -> [B, C]`` mean over time; the readout of an ANN run with T = 1."""

    def forward(self, x_seq: Tensor) -> Tensor:
        return x_seq.mean(0)


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
