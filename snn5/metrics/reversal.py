"""The time-reversal test: how much a model's answers depend on the order of its input in time.

Each test sample's time axis is reversed (frame ``t`` becomes frame ``T - 1 - t``; nothing else
moves) and the model is evaluated again. A model that only counts events per pixel (a rate
code) scores the same on reversed input; a model that reads temporal order loses accuracy. The
drop ``accuracy - reversed_accuracy`` is reported beside accuracy in ``snn5 bench``.

Only inputs that have a time axis can be reversed: time-first samples ``[T, ...]`` fed one
frame per step (``encoding: events``: event frames, audio spike trains). A static image repeated
or rate-encoded over time has no order to reverse; :func:`time_axis` says None for it and the
test reports "n/a" rather than a meaningless number.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from snn5.metrics.measure import predict
from snn5.nn.encoders import Encoding

__all__ = ["reverse_time", "time_axis", "time_reversal_accuracy"]


def time_axis(model: nn.Module) -> int | None:
    """The batch axis of ``model``'s input that is time, or None for static inputs.

    A model whose ``encoding`` is ``events`` takes ``x: [B, T, ...]`` (axis 1); models that
    declare ``time_axis`` themselves are taken at their word.
    """
    declared = getattr(model, "time_axis", None)
    if isinstance(declared, int):
        return declared
    return 1 if getattr(model, "encoding", None) is Encoding.EVENTS else None


def reverse_time(x: Tensor, axis: int) -> Tensor:
    """``x`` with the order of ``axis`` reversed (a copy; every other axis untouched).

    Args:
        x: a batch, e.g. event frames ``[B, T, C, H, W]``.
        axis: the time axis (1 for time-first samples).
    """
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"time axis {axis} does not exist in a batch of shape "
                         f"{tuple(x.shape)}")
    return x.flip(axis)


def time_reversal_accuracy(model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]], *,
                           axis: int | None = None, device: torch.device | str | None = None
                           ) -> float:
    """Accuracy of ``model`` on ``batches`` with every sample's time axis reversed.

    Args:
        model: a classifier ``[B, ...] -> [B, C]``.
        batches: ``(x, y)`` test batches (not reversed).
        axis: the time axis of ``x``; None takes :func:`time_axis` of the model.
        device: where to run (default: the model's device).

    Raises:
        ValueError: the model's input has no time axis (static input), with the fix.
    """
    axis = time_axis(model) if axis is None else axis
    if axis is None:
        raise ValueError(f"{type(model).__name__} takes static input (encoding "
                         f"{getattr(model, 'encoding', 'unknown')!s}); the time-reversal test "
                         "needs time-first samples fed one frame per step (encoding: events)")
    reversed_batches = ((reverse_time(x, axis), y) for x, y in batches)
    pred, labels = predict(model, reversed_batches, device=device)
    return float((pred == labels).float().mean())
