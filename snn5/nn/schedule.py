"""Surrogate gradients sharpened on a schedule during training.

A wide surrogate passes gradient to many neurons far from threshold (easy optimisation early on,
but a biased estimate of the spiking network's gradient); a sharp one is closer to the Heaviside
step the forward pass uses but passes gradient to few neurons. Sharpening the surrogate as
training proceeds trades the first for the second over time; this motivates adaptive and
scheduled surrogate shapes, e.g. Wang et al., "Adaptive Smoothing Gradient Learning for Spiking
Neural Networks" (ICML 2023) and Chen et al., "Efficient Surrogate Gradients for Training
Spiking Neural Networks" (2023, a schedule of the surrogate width driven by the fraction of
non-zero gradients). Learnable widths (LSG, ``learnable=True``) are the other route; the two are
not combined: :func:`anneal_surrogates` refuses learnable-width neurons.

Example:
    >>> schedule = SurrogateSchedule(start=1.0, end=8.0, kind=ScheduleKind.COSINE)
    >>> for epoch in range(epochs):
    ...     anneal_surrogates(model, epoch / max(epochs - 1, 1), schedule)
    ...     train_one_epoch(model)
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from torch import nn

from snn5.core.options import Option
from snn5.nn.neurons import NeuronBase


class ScheduleKind(Option):
    """How a value moves from ``start`` to ``end`` as progress goes from 0 to 1.

    LINEAR: ``start + (end - start) p``. EXPONENTIAL: geometric, ``start (end / start)^p``
    (equal ratios per equal progress; natural for sharpness). COSINE: ``end + (start - end)
    (1 + cos(pi p)) / 2`` (slow at both ends).
    """

    LINEAR = "linear"
    EXPONENTIAL = "exponential"
    COSINE = "cosine"


@dataclass(frozen=True)
class SurrogateSchedule:
    """The surrogate shape parameter over training: ``start`` at progress 0, ``end`` at 1.

    The value is the surrogate's own parameter (``alpha`` of ATan/Sigmoid/FastSigmoid: larger
    is sharper; ``width`` of Triangle/Rectangle: smaller is sharper), so sharpening means
    ``end > start`` for an ``alpha`` and ``end < start`` for a ``width``.

    Args:
        start: value at the beginning of training (> 0).
        end: value at the end of training (> 0).
        kind: the interpolation (a :class:`ScheduleKind` or its name).
    """

    start: float
    end: float
    kind: ScheduleKind = ScheduleKind.LINEAR

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value) or value <= 0:
                raise ValueError(f"SurrogateSchedule.{name} is a surrogate parameter and must be "
                                 f"a positive number, got {value!r}")
        object.__setattr__(self, "kind", ScheduleKind.parse(self.kind))

    def value(self, progress: float) -> float:
        """The parameter at ``progress`` in [0, 1] (fraction of training done)."""
        if isinstance(progress, bool) or not isinstance(progress, (int, float)) \
                or not 0.0 <= progress <= 1.0:
            raise ValueError(f"progress is the fraction of training done, in [0, 1], got "
                             f"{progress!r}; pass e.g. epoch / (epochs - 1)")
        p = float(progress)
        if self.kind is ScheduleKind.LINEAR:
            return self.start + (self.end - self.start) * p
        if self.kind is ScheduleKind.EXPONENTIAL:
            return self.start * (self.end / self.start) ** p
        return self.end + (self.start - self.end) * 0.5 * (1.0 + math.cos(math.pi * p))


def anneal_surrogates(model: nn.Module, progress: float, schedule: SurrogateSchedule) -> int:
    """Set the surrogate parameter of every spiking neuron in ``model`` to ``schedule``'s value.

    Each neuron's frozen surrogate is replaced by a copy with the new parameter
    (``dataclasses.replace``); the surrogate family stays the neuron's own. Forward spikes do not
    change, only the gradient of the next backward passes.

    Args:
        model: any module; every :class:`snn5.nn.NeuronBase` inside that spikes is updated.
        progress: fraction of training done, in [0, 1].
        schedule: start, end and interpolation of the parameter.

    Returns:
        The number of neurons updated.

    Raises:
        ValueError: a neuron learns its surrogate width (``learnable=True``; its width is an
            ``nn.Parameter`` the optimiser owns), or progress is outside [0, 1].
    """
    value = schedule.value(progress)
    neurons = [(name, m) for name, m in model.named_modules()
               if isinstance(m, NeuronBase) and m.spiking]
    learned = [name or type(m).__name__ for name, m in neurons if m.surrogate.learnable]
    if learned:
        raise ValueError(f"neurons {', '.join(learned)} learn their surrogate width "
                         "(learnable=True), which a schedule would fight; use a fixed surrogate "
                         "(learnable: false) to anneal, or keep the learned width without a "
                         "schedule")
    for _, m in neurons:
        m.surrogate = dataclasses.replace(m.surrogate, **{m.surrogate.param: value})
    return len(neurons)


__all__ = ["ScheduleKind", "SurrogateSchedule", "anneal_surrogates"]
