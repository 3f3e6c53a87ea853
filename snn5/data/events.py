"""Event-camera recordings -> frames, through Tonic (shared by the event datasets)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["bin_events", "tonic"]


def tonic() -> Any:
    """The ``tonic`` package with its ``io`` and ``transforms``, or an ImportError naming the
    pip command."""
    try:
        import tonic as _tonic
        import tonic.io
        import tonic.transforms
    except ImportError as exc:
        raise ImportError("event datasets (N-MNIST, POKER-DVS) are read through Tonic, which is "
                          "not installed: pip install 'snn5[events]' (or pip install tonic)"
                          ) from exc
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
    end_us = steps * time_window * 1e6
    events = events[events["t"] < end_us]
    events = events[np.argsort(events["t"], kind="stable")]
    frames = torch.zeros(steps, sensor[2], sensor[1], sensor[0])           # [T, P, H, W]
    if len(events):
        to_frame = tonic().transforms.ToFrame(sensor_size=sensor, time_window=time_window * 1e6,
                                              start_time=0, end_time=end_us)
        f = torch.from_numpy(to_frame(events).astype(np.float32))          # [T', P, H, W]
        frames[:min(steps, f.shape[0])] = f[:steps]
    return frames
