"""Training-time augmentation of image and event-frame batches, reproducible and resumable.

An :class:`Augment` is a frozen description (the ``data.augment`` section of a run's YAML) whose
``__call__(x, generator)`` returns an augmented copy of a batch ``x: [B, *sample_shape]``. The
random draws come only from the generator that :class:`snn5.data.BatchLoader` seeds from
``(seed, epoch, batch)``, so a resumed run sees exactly the augmented batches of an
uninterrupted one, and the global RNG is not touched.

Operations (applied in this order, each per sample):

- ``time_shift`` (event data, first sample axis = time): shift the frames by an integer in
  ``[-k, k]`` steps, zero-filled (the recording starts earlier or later in the window).
- ``event_drop``: drop each event independently with probability ``p`` (frames hold event
  counts ``n``: ``n -> Binomial(n, 1 - p)``), the "drop event" augmentation of event-camera
  training (Gu et al., "EventDrop", IJCAI 2021; random drop by event).
- ``shift``: translate the last two axes (height, width) by integers in ``[-s, s]`` each,
  zero-filled; the same translation for every frame of a sample (the standard MNIST/CIFAR
  random-crop-with-padding, and spatial jitter for event frames).
- ``hflip``: mirror the width axis with probability 1/2 (not for data whose classes differ by
  handedness).
- ``cutout``: zero a ``c x c`` square at a random centre, clipped at the borders (DeVries &
  Taylor 2017), the same square for every frame.
"""

from __future__ import annotations

import math

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

__all__ = ["Augment"]


class Augment(BaseModel):
    """Random training-time augmentation (all off by default).

    Args:
        shift: largest translation in pixels along height and width (0: off).
        hflip: mirror the width axis with probability 1/2.
        cutout: side of the zeroed square in pixels (0: off).
        event_drop: probability of dropping each event of count frames (0: off).
        time_shift: largest shift of the time axis (the first per-sample axis) in steps.

    Shape:
        ``x: [B, *sample_shape]``; ``shift``/``hflip``/``cutout`` act on the last two axes and
        need samples of at least 2 axes; ``time_shift`` needs time-first samples ``[T, ...]``.

    Example:
        >>> aug = Augment(shift=2)
        >>> x_aug = aug(torch.rand(8, 1, 28, 28), torch.Generator().manual_seed(0))
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    shift: int = Field(0, ge=0)
    hflip: bool = False
    cutout: int = Field(0, ge=0)
    event_drop: float = Field(0.0, ge=0.0, lt=1.0)
    time_shift: int = Field(0, ge=0)

    @property
    def active(self) -> bool:
        """Whether any operation is switched on."""
        return bool(self.shift or self.hflip or self.cutout or self.event_drop or self.time_shift)

    def check_sample_shape(self, shape: tuple[int, ...]) -> None:
        """Fail early (before training) if the operations cannot act on samples of ``shape``."""
        spatial = [name for name, on in (("shift", self.shift), ("hflip", self.hflip),
                                         ("cutout", self.cutout)) if on]
        if spatial and len(shape) < 2:
            raise ValueError(f"data.augment.{spatial[0]} acts on the last two axes (height, "
                             f"width) but samples have shape {list(shape)}; switch it off for "
                             "this dataset")
        if self.time_shift and (len(shape) < 2 or shape[0] < 2):
            raise ValueError(f"data.augment.time_shift shifts the first sample axis (time) but "
                             f"samples have shape {list(shape)}; it is meant for time-first "
                             "event frames [T, C, H, W]; set it to 0")

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """The augmented batch (a new tensor; ``x`` is not modified)."""
        if not self.active:
            return x
        self.check_sample_shape(tuple(x.shape[1:]))
        if self.time_shift:
            x = _time_shift(x, self.time_shift, generator)
        if self.event_drop:
            x = _event_drop(x, self.event_drop, generator)
        if self.shift:
            x = _translate(x, self.shift, generator)
        if self.hflip:
            flip = torch.rand(x.shape[0], generator=generator) < 0.5          # [B]
            x = torch.where(_per_sample(flip, x).to(x.device), x.flip(-1), x)
        if self.cutout:
            x = _cutout(x, self.cutout, generator)
        return x


def _per_sample(values: Tensor, x: Tensor) -> Tensor:
    """``values: [B]`` viewed as ``[B, 1, ..., 1]`` to broadcast against ``x``."""
    return values.view(-1, *([1] * (x.ndim - 1)))


def _offsets(n: int, k: int, generator: torch.Generator) -> Tensor:
    """``n`` integers uniform in ``[-k, k]``."""
    return torch.randint(-k, k + 1, (n,), generator=generator)


def _time_shift(x: Tensor, k: int, generator: torch.Generator) -> Tensor:
    B, T = x.shape[:2]
    d = _offsets(B, k, generator).to(x.device)                              # [B]
    src = torch.arange(T, device=x.device)[None, :] - d[:, None]            # [B, T] source step
    valid = (src >= 0) & (src < T)
    out = x[torch.arange(B, device=x.device)[:, None], src.clamp(0, T - 1)]  # [B, T, ...]
    return out * valid.view(B, T, *([1] * (x.ndim - 2))).to(x.dtype)


def _event_drop(x: Tensor, p: float, generator: torch.Generator) -> Tensor:
    if (x.is_floating_point() and not torch.equal(x, x.round())) or (x < 0).any():
        raise ValueError("data.augment.event_drop needs event-count frames (non-negative whole "
                         "numbers); this dataset's samples are not counts; set it to 0")
    counts = x.detach().to("cpu", torch.float32)
    kept = torch.binomial(counts, torch.full_like(counts, 1.0 - p), generator=generator)
    return kept.to(x.device, x.dtype)


def _translate(x: Tensor, s: int, generator: torch.Generator) -> Tensor:
    B, H, W = x.shape[0], x.shape[-2], x.shape[-1]
    lead = x.shape[1:-2]
    dy, dx = _offsets(B, s, generator).to(x.device), _offsets(B, s, generator).to(x.device)
    flat = x.reshape(B, -1, H, W)                                           # [B, L, H, W]
    padded = torch.nn.functional.pad(flat, (s, s, s, s))                   # [B, L, H+2s, W+2s]
    rows = torch.arange(H, device=x.device)[None, :] + s - dy[:, None]      # [B, H]
    cols = torch.arange(W, device=x.device)[None, :] + s - dx[:, None]      # [B, W]
    out = padded[torch.arange(B, device=x.device)[:, None, None, None],
                 torch.arange(flat.shape[1], device=x.device)[None, :, None, None],
                 rows[:, None, :, None], cols[:, None, None, :]]            # [B, L, H, W]
    return out.reshape(B, *lead, H, W)


def _cutout(x: Tensor, c: int, generator: torch.Generator) -> Tensor:
    B, H, W = x.shape[0], x.shape[-2], x.shape[-1]
    cy = torch.randint(0, H, (B,), generator=generator).to(x.device)
    cx = torch.randint(0, W, (B,), generator=generator).to(x.device)
    lo = math.floor(c / 2)
    r = torch.arange(H, device=x.device)[None, :] - (cy[:, None] - lo)     # [B, H]
    q = torch.arange(W, device=x.device)[None, :] - (cx[:, None] - lo)     # [B, W]
    inside = ((r >= 0) & (r < c))[:, :, None] & ((q >= 0) & (q < c))[:, None, :]  # [B, H, W]
    keep = (~inside).view(B, *([1] * (x.ndim - 3)), H, W)
    return x * keep.to(x.dtype)
