"""Modules of ANN-to-SNN conversion: the QCFS activation an ANN is trained with, and the pieces
a converted SNN is made of.

A converted SNN runs its graph **time-folded**: every tensor between layers is
``[T*B, ...]`` (time folded into the batch, the ``TimeDistributed`` layout), so Linear, Conv,
pooling, Flatten and residual adds run once over all steps unchanged. Only the neurons
(:class:`ConvertedNeuron`) look across time: they unfold ``[T*B, ...] -> [T, B, ...]``, scan,
and fold back. :class:`RepeatTime` turns a static ``[B, ...]`` value (the direct-encoded input,
or layers computed from it before the first neuron) into ``[T*B, ...]``. Both read the number of
steps from their ``timesteps`` attribute, which the owning model sets before each call.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from snn5.core.conversion import MTParams, MTState, multithreshold_scan, qcfs


def _positive(name: str, value: float) -> float:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


class QCFS(nn.Module):
    """Quantization-clip-floor-shift activation (Bu et al., ICLR 2022) for training an ANN that
    converts to an IF-neuron SNN with little error at ``T`` close to ``levels``.

    Args:
        levels: quantization steps L (the paper uses 4 to 16; T = L makes the expected
            conversion error zero).
        init_lambda: initial clip ``lambda`` (learned; the authors start at 8).
        shift: phi (0.5).
    """

    def __init__(self, levels: int = 8, init_lambda: float = 8.0, shift: float = 0.5) -> None:
        super().__init__()
        if not isinstance(levels, int) or levels < 1:
            raise ValueError(f"QCFS levels must be an integer >= 1, got {levels!r}")
        self.levels = levels
        self.shift = float(shift)
        self.lam = nn.Parameter(torch.tensor([_positive("init_lambda", init_lambda)]))

    def forward(self, x: Tensor) -> Tensor:
        if not bool(self.lam.detach() > 0):
            raise FloatingPointError(f"QCFS lambda became {float(self.lam):g} (must stay > 0); "
                                     "lower the learning rate or the weight decay on lambda")
        return qcfs(x, self.lam, self.levels, self.shift)

    def extra_repr(self) -> str:
        return f"levels={self.levels}, lambda={float(self.lam.detach()):.4g}, shift={self.shift:g}"


class RepeatTime(nn.Module):
    """``[B, ...] -> [T*B, ...]``: the same value at every step (time folded into the batch)."""

    def __init__(self) -> None:
        super().__init__()
        self.emit_counts = False
        self.timesteps = 1

    def forward(self, x: Tensor) -> Tensor:
        T = self.timesteps
        return x.unsqueeze(0).expand(T, *x.shape).reshape(T * x.shape[0], *x.shape[1:])


class ConvertedNeuron(nn.Module):
    """The neuron replacing an ANN activation: integrate-and-fire with soft reset (optionally
    leaky and multi-level, :func:`snn5.core.conversion.multithreshold_step`), on time-folded
    ``[T*B, ...]`` input.

    The output is ``n * spike_value`` where ``n`` is the spike count of the step. By default
    ``spike_value = v_th``: the layer passes what the ANN activation would (rate x threshold),
    so the next layer's weights need no change. The conversion sets ``spike_value = 1`` (binary
    spikes travel) after moving the value into the weights of the layers the neuron feeds.

    Args:
        v_th: threshold, a number or a tensor broadcastable to one step's ``[B, *F]`` (per
            channel: ``[C, 1, 1]``).
        v_init: initial membrane as a fraction of ``v_th`` (0.5 for QCFS, whose shift it mirrors).
        leak: ``v <- leak * v + x`` (1: IF).
        levels: spikes at most per step (1: binary spikes; N: the multi-threshold neuron).
        spike_value: what one spike carries (None: ``v_th``).
        name: the ANN activation this neuron replaces (for reports).

    ``input_offset`` (None, or a tensor broadcastable to one step, e.g. ``[C]`` or
    ``[C, 1, 1]``) is added to the input at every step: the bias of an add-only ternary layer
    folded into the neuron (:func:`snn5.train.conversion.convert.gate_ternary_layers`).

    ``unit`` keeps what one spike means in the ANN's units (the initial ``v_th``): the rate of
    the neuron times ``unit`` approximates the ANN activation, whatever later tuning does to
    ``v_th`` and ``spike_value``.
    """

    def __init__(self, v_th: float | Tensor, *, v_init: float = 0.0, leak: float = 1.0,
                 levels: int = 1, spike_value: float | Tensor | None = None, name: str = "") -> None:
        super().__init__()
        v_th = torch.as_tensor(v_th, dtype=torch.float32).clone()
        if not (torch.isfinite(v_th).all() and (v_th > 0).all()):
            raise ValueError(f"v_th must be positive and finite, got {v_th}")
        if not isinstance(levels, int) or levels < 1:
            raise ValueError(f"levels must be an integer >= 1, got {levels!r}")
        if not 0.0 < float(leak) <= 1.0:
            raise ValueError(f"leak must lie in (0, 1], got {leak!r}")
        self.register_buffer("v_th", v_th)
        self.register_buffer("v_init", torch.tensor(float(v_init)))
        self.register_buffer("leak", torch.tensor(float(leak)))
        value = v_th if spike_value is None else torch.as_tensor(spike_value, dtype=torch.float32)
        self.register_buffer("spike_value", value.clone())
        self.register_buffer("unit", v_th.clone())      # one spike in the ANN's units
        self.register_buffer("input_offset", None)      # added to the input at every step
        self.levels = levels
        self.name = name
        self.timesteps = 1

    def counts(self, x: Tensor) -> Tensor:
        """Spike counts ``[T*B, ...]`` of the time-folded input ``x [T*B, ...]``."""
        T = self.timesteps
        if x.shape[0] % T:
            raise ValueError(f"{type(self).__name__} '{self.name}' got a batch of {x.shape[0]} "
                             f"rows, not a multiple of T={T}; its input must be time-folded "
                             "[T*B, ...]")
        if self.input_offset is not None:
            x = x + self.input_offset.to(x.dtype)                       # additions only
        x_seq = x.unflatten(0, (T, x.shape[0] // T))                 # [T, B, ...]
        v_th = self.v_th.to(x.dtype)
        v0 = torch.zeros_like(x_seq[0]) + self.v_init.to(x.dtype) * v_th
        leak = float(self.leak)
        n_seq, _ = multithreshold_scan(x_seq, MTState(v0), MTParams(v_th, leak, self.levels))
        return n_seq.flatten(0, 1)                                     # [T*B, ...]

    def forward(self, x: Tensor) -> Tensor:
        n = self.counts(x)
        if self.spike_value.numel() == 1 and float(self.spike_value) == 1.0:
            return n
        return n * self.spike_value.to(x.dtype)

    def extra_repr(self) -> str:
        def show(t: Tensor) -> str:
            return f"{float(t):.4g}" if t.numel() == 1 else f"per-channel{tuple(t.shape)}"
        return (f"name={self.name!r}, v_th={show(self.v_th)}, v_init={float(self.v_init):g}*v_th, "
                f"leak={float(self.leak):g}, levels={self.levels}, "
                f"spike_value={show(self.spike_value)}")


__all__ = ["ConvertedNeuron", "QCFS", "RepeatTime"]
