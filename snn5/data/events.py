"""Event-camera recordings -> frames, through Tonic (shared by the event datasets)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["CameraFrameOptions", "bin_events", "camera_frames", "tonic"]


def tonic() -> Any:
    """The ``tonic`` package with its ``io`` and ``transforms``, or an ImportError naming the
    pip command."""
    try:
        import tonic as _tonic
        import tonic.io
        import tonic.transforms
    except ImportError as exc:
        raise ImportError("event datasets (N-MNIST, POKER-DVS, DVS128 Gesture, CIFAR10-DVS) are "
                          "binned through Tonic, which is not installed: pip install "
                          "'snn5[events]' (or pip install tonic)") from exc
    return _tonic


def bin_events(events: np.ndarray, sensor: tuple[int, int, int], *, time_window: float,
               steps: int) -> torch.Tensor:
    """Frames of event counts ``[T, P, H, W]`` with Tonic's ``ToFrame``: windows of
    ``time_window`` seconds from t = 0, ``T = steps``; events at or after ``steps *
    time_window`` are dropped, the others time-sorted first (ToFrame needs time order).

    Args:
        events: structured array with fields ``t`` (microseconds), ``x``, ``y``, ``p``.
        sensor: Tonic's ``sensor_size`` ``(W, H, P)``.
        time_window: frame length, seconds.
        steps: number of frames.
    """
    return _bin_us(events, sensor, window_us=time_window * 1e6, steps=steps)


def _bin_us(events: np.ndarray, sensor: tuple[int, int, int], *, window_us: float,
            steps: int) -> torch.Tensor:
    end_us = steps * window_us
    events = events[events["t"] < end_us]
    events = events[np.argsort(events["t"], kind="stable")]
    frames = torch.zeros(steps, sensor[2], sensor[1], sensor[0])           # [T, P, H, W]
    if len(events):
        to_frame = tonic().transforms.ToFrame(sensor_size=sensor, time_window=window_us,
                                              start_time=0, end_time=end_us)
        f = torch.from_numpy(to_frame(events).astype(np.float32))          # [T', P, H, W]
        frames[:min(steps, f.shape[0])] = f[:steps]
    return frames


def camera_frames(events: np.ndarray, sensor: tuple[int, int], *, steps: int,
                  time_window: float | None, size: int) -> torch.Tensor:
    """Frames ``[T, 2, size, size]`` of one event-camera recording, times taken from its first
    event.

    Space: pixel ``(x, y)`` goes to ``(x * size // W, y * size // H)`` (what Tonic's
    ``Downsample`` does, in exact integer arithmetic), so each output pixel sums a block of
    sensor pixels. Time: with ``time_window=None`` the recording's span (first to last event,
    ``S`` microseconds) is cut into ``T`` windows of ``ceil((S + 1) / T)`` microseconds, so every
    event is kept; with a ``time_window`` in seconds, windows of that length and the events at
    or after ``T * time_window`` are dropped. Binning is Tonic's ``ToFrame``.

    Args:
        events: Structured array with fields ``t`` (microseconds), ``x``, ``y``, ``p`` (0/1).
        sensor: ``(W, H)`` of the sensor; ``size`` must divide both.
        steps: Number of frames ``T``.
        time_window: Frame length in seconds, or ``None`` for ``T`` windows over the recording.
        size: Output width and height.

    Returns:
        float32 event counts; ``frames[k, p, y', x']``.
    """
    width, height = sensor
    rec = np.empty(len(events), dtype=[("t", np.int64), ("x", np.int64), ("y", np.int64),
                                       ("p", np.int64)])
    t0 = int(events["t"].min()) if len(events) else 0
    rec["t"] = events["t"].astype(np.int64) - t0
    rec["x"], rec["y"], rec["p"] = events["x"], events["y"], events["p"]
    if size != width or size != height:
        rec["x"] = rec["x"] * size // width
        rec["y"] = rec["y"] * size // height
    if time_window is None:
        span = int(rec["t"].max()) if len(rec) else 0
        window_us = float(-(-(span + 1) // steps))                          # ceil((S + 1) / T)
    else:
        window_us = time_window * 1e6
    return _bin_us(rec, (size, size, 2), window_us=window_us, steps=steps)


class CameraFrameOptions(BaseModel):
    """How a 128x128 event-camera dataset is binned (``data.options`` in YAML).

    Args:
        steps: Number of frames ``T``.
        time_window: Frame length in seconds, counted from each recording's first event
            (events at or after ``steps * time_window`` are dropped); ``None`` cuts each
            recording into ``steps`` equal windows over its whole span.
        size: Output height and width; must divide 128 (128, 64, 32, 16, ...).
        cache: Keep the binned frames on disk (see :mod:`snn5.data.cache`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    steps: int = Field(default=16, ge=1, le=10_000)
    time_window: float | None = Field(default=None, gt=0.0, le=60.0)
    size: int = Field(default=32, ge=1, le=128)
    cache: bool = True

    @field_validator("size")
    @classmethod
    def _size_divides_sensor(cls, value: int) -> int:
        if 128 % value:
            raise ValueError(f"size must divide the 128x128 sensor (128, 64, 32, 16, 8, ...), "
                             f"got {value}")
        return value
