"""SHD, the Spiking Heidelberg Digits (Cramer, Stradmann, Schemmel & Zenke, IEEE TNNLS 2020):
spoken digits 0-9 in English and German (20 classes) turned into spikes of 700 channels by a
model of the inner ear; 10,420 recordings of up to about 1.4 s in an official train / test split
(test speakers include two not heard in training).

Files: ``<root>/shd/shd_train.h5`` and ``shd_test.h5``, as published. Each HDF5 file holds
``spikes/times`` (per recording, a float array of spike times in seconds), ``spikes/units``
(per recording, the channel 0..699 of each spike), ``labels`` (0..19) and ``extra/`` (speaker,
keys, meta data). ``download=True`` fetches ``shd_{train,test}.h5.zip`` from
https://zenkelab.org/datasets/ (the archives and md5s Tonic's ``tonic.datasets.SHD`` uses),
checks the md5 and unpacks the ``.h5`` file. License CC BY 4.0.

Binning: a spike at time ``t`` seconds of channel ``u`` counts in frame
``k = floor(floor(t * 1e6) / w)`` with ``w`` the window in microseconds (times to whole
microseconds as Tonic reads them), channel ``u * channels // 700``; spikes at or after
``steps * time_window`` are dropped. The whole file is binned at once with ``np.bincount``
(equal to Tonic's ``ToFrame`` per recording, much faster); the frames are cached on disk (see
:mod:`snn5.data.cache`).
"""

from __future__ import annotations

import logging
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator

from snn5.data import download as _download
from snn5.data.base import ArrayDataset, DatasetFileError, SplitData, stratified_split
from snn5.data.cache import cached_tensors, files_checksum
from snn5.data.root import DATA_ENV_VAR

__all__ = ["SHD_ARCHIVES", "SHD_URL", "SHDOptions", "bin_shd_spikes", "download_shd",
           "load_shd", "read_shd"]

logger = logging.getLogger(__name__)

CHANNELS = 700
NUM_CLASSES = 20
SHD_URL = "https://zenkelab.org/datasets/"
"""Base URL of the archives (Tonic's ``HSD.base_url``)."""
SHD_ARCHIVES: dict[str, str] = {
    "shd_train.h5.zip": "f3252aeb598ac776c1b526422d90eecb",
    "shd_test.h5.zip": "1503a5064faa34311c398fb0a1ed0a6f",
}
"""Archive -> md5, as ``tonic.datasets.SHD`` records them (``train_md5`` / ``test_md5``)."""
_SPLITS = {"train": "shd_train.h5", "test": "shd_test.h5"}


class SHDOptions(BaseModel):
    """Binning of SHD (``data.options`` in YAML).

    Args:
        time_window: Frame length, seconds (a whole number of microseconds).
        steps: Number of frames ``T``; ``steps * time_window`` seconds are kept.
        channels: Input channels after pooling neighbouring ones; must divide 700.
        cache: Keep the binned frames on disk (see :mod:`snn5.data.cache`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    time_window: float = Field(default=10e-3, gt=0.0, le=10.0)
    steps: int = Field(default=100, ge=1, le=100_000)
    channels: int = Field(default=CHANNELS, ge=1, le=CHANNELS)
    cache: bool = True

    @field_validator("time_window")
    @classmethod
    def _whole_microseconds(cls, value: float) -> float:
        if abs(value * 1e6 - round(value * 1e6)) > 1e-6:
            raise ValueError(f"time_window must be a whole number of microseconds, got {value} s;"
                             " e.g. 10 ms is 10e-3")
        return value

    @field_validator("channels")
    @classmethod
    def _divides(cls, value: int) -> int:
        if CHANNELS % value:
            raise ValueError(f"channels must divide 700 (e.g. 700, 350, 140, 100, 70), "
                             f"got {value}")
        return value


def _fix(directory: Path) -> str:
    return (f"To fix: put shd_train.h5 and shd_test.h5 (unpacked from the official "
            f"shd_train.h5.zip / .h5.gz) in {directory}, or point {DATA_ENV_VAR} / --data-dir at "
            "the folder that contains shd/, or fetch them with download=True "
            "(DataConfig(download=True); a few hundred MB).")


def download_shd(root: Path) -> None:
    """Fetch the SHD archives into ``<root>/shd/`` (md5-checked), unpacking each ``.h5``.

    Raises:
        DatasetFileError: An archive could not be fetched intact or holds no ``.h5`` file.
    """
    directory = Path(root) / "shd"
    for archive, md5 in SHD_ARCHIVES.items():
        target = directory / archive.removesuffix(".zip")
        if target.is_file():
            continue
        path = _download.download_file(archive, directory, md5=md5, mirrors=[SHD_URL],
                                       fix=_fix(directory))
        _unpack(path, target)
        path.unlink()


def _unpack(archive: Path, target: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            names = [n for n in zf.namelist() if Path(n).name == target.name]
            if not names:
                raise DatasetFileError(f"{archive} holds no {target.name}; it holds "
                                       f"{zf.namelist()[:5]}. {_fix(target.parent)}",
                                       paths=[archive])
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part",
                                       dir=target.parent)
            try:
                with os.fdopen(fd, "wb") as out, zf.open(names[0]) as src:
                    while chunk := src.read(1 << 20):
                        out.write(chunk)
                os.replace(tmp, target)
            finally:
                Path(tmp).unlink(missing_ok=True)
    except (zipfile.BadZipFile, OSError) as exc:
        if isinstance(exc, DatasetFileError):
            raise
        raise DatasetFileError(f"{archive} cannot be unpacked ({type(exc).__name__}: {exc}). "
                               f"{_fix(target.parent)}", paths=[archive]) from exc


def read_shd(path: str | Path) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """Spike times (seconds), channels and labels of one SHD HDF5 file, checked.

    Returns:
        ``(times, units, labels)``: per recording a float64 array of times and an int64 array
        of channels of the same length; int64 labels ``[N]``.

    Raises:
        DatasetFileError: The file is missing, not HDF5, lacks ``spikes/times``,
            ``spikes/units`` or ``labels``, or holds values out of range.
        ImportError: h5py is not installed (the message gives the pip command).
    """
    try:
        import h5py
    except ImportError as exc:
        raise ImportError("SHD is stored as HDF5, read with h5py, which is not installed: "
                          "pip install 'snn5[events]' (or pip install h5py)") from exc
    path = Path(path)
    directory = path.parent
    if not path.is_file():
        raise DatasetFileError(f"SHD: {path} is missing. {_fix(directory)}", paths=[path])
    try:
        with h5py.File(path, "r") as f:
            times = [np.asarray(t, dtype=np.float64) for t in f["spikes/times"][()]]
            units = [np.asarray(u, dtype=np.int64) for u in f["spikes/units"][()]]
            labels = np.asarray(f["labels"][()], dtype=np.int64)
    except (OSError, KeyError, TypeError, ValueError) as exc:
        raise DatasetFileError(f"SHD: {path} is not a readable SHD HDF5 file "
                               f"({type(exc).__name__}: {exc}); expected datasets spikes/times, "
                               f"spikes/units and labels. Replace it with an intact copy. "
                               f"{_fix(directory)}", paths=[path]) from exc
    problems = []
    if not len(times) == len(units) == len(labels):
        problems.append(f"{len(times)} time arrays, {len(units)} unit arrays, "
                        f"{len(labels)} labels")
    elif any(len(t) != len(u) for t, u in zip(times, units, strict=True)):
        problems.append("a recording has different numbers of times and units")
    if len(labels) and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        problems.append(f"labels span {labels.min()}..{labels.max()}, expected 0..19")
    bad_u = [u for u in units if len(u) and (u.min() < 0 or u.max() >= CHANNELS)]
    bad_t = [t for t in times if len(t) and not (np.isfinite(t).all() and t.min() >= 0)]
    if bad_u:
        problems.append(f"{len(bad_u)} recording(s) with channels outside 0..699")
    if bad_t:
        problems.append(f"{len(bad_t)} recording(s) with negative or non-finite times")
    if problems:
        raise DatasetFileError(f"SHD: {path} is malformed: {'; '.join(problems)}. Replace it "
                               f"with an intact copy. {_fix(directory)}", paths=[path])
    return times, units, labels


def bin_shd_spikes(times: list[np.ndarray], units: list[np.ndarray], *, time_window: float,
                   steps: int, channels: int = CHANNELS) -> torch.Tensor:
    """Spike counts ``[N, T, channels]`` (see the module docstring for the rule)."""
    n = len(times)
    window_us = int(round(time_window * 1e6))
    lengths = np.array([len(t) for t in times], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)])
    t_us = np.floor(np.concatenate(times or [np.zeros(0)]) * 1e6).astype(np.int64)
    k = t_us // window_us                                                   # frame index
    c = np.concatenate(units or [np.zeros(0, np.int64)]) * channels // CHANNELS
    frames = torch.zeros(n, steps, channels)                                # [N, T, C]
    chunk = max(1, 2**24 // (steps * channels))           # recordings per bincount (~64 MB)
    for a in range(0, n, chunk):
        b = min(n, a + chunk)
        lo, hi = starts[a], starts[b]
        sample = np.repeat(np.arange(b - a), lengths[a:b])
        keep = k[lo:hi] < steps
        flat = (sample[keep] * steps + k[lo:hi][keep]) * channels + c[lo:hi][keep]
        counts = np.bincount(flat, minlength=(b - a) * steps * channels)
        frames[a:b] = torch.from_numpy(counts.reshape(b - a, steps, channels).astype(np.float32))
    return frames


def load_shd(root: Path, *, val_fraction: float = 0.1, split_seed: int = 0,
             download: bool = False, time_window: float = 10e-3, steps: int = 100,
             channels: int = CHANNELS, cache: bool = True) -> SplitData:
    """Load SHD as spike-count frames, split train / val / test.

    Args:
        root: Data root; the files are read from ``<root>/shd/``.
        val_fraction: Share of the training recordings held out for validation (stratified by
            class; speakers are not kept apart).
        split_seed: Seed of the validation split.
        download: Fetch missing files first (needs internet).
        time_window, steps, channels, cache: See :class:`SHDOptions`.

    Returns:
        ``x``: float32 spike counts ``[N, T, channels]``; ``y``: int64 class 0..19 (English
        0-9, German 0-9). The test set is the official one. With the defaults the inputs are
        ``[100, 700]`` (10 ms frames over 1 s; about 2.3 GB for the training set).

    Raises:
        DatasetFileError: A file is missing or malformed; the message names it and the fix.
    """
    opts = SHDOptions(time_window=time_window, steps=steps, channels=channels, cache=cache)
    root = Path(root)
    directory = root / "shd"
    if download and not all((directory / name).is_file() for name in _SPLITS.values()):
        download_shd(root)
    paths = {split: directory / name for split, name in _SPLITS.items()}
    missing = [p for p in paths.values() if not p.is_file()]
    if missing:
        raise DatasetFileError(f"SHD: {', '.join(map(str, missing))} "
                               f"{'is' if len(missing) == 1 else 'are'} missing. "
                               f"{_fix(directory)}", paths=missing)
    checksum = files_checksum(paths.values(), directory)

    def build() -> dict[str, torch.Tensor]:
        out = {}
        for split, path in paths.items():
            times, units, labels = read_shd(path)
            out[f"{split}_x"] = bin_shd_spikes(times, units, time_window=opts.time_window,
                                               steps=opts.steps, channels=opts.channels)
            out[f"{split}_y"] = torch.from_numpy(labels)
        return out

    params = opts.model_dump(exclude={"cache"})
    t = cached_tensors("shd", checksum, params, build, root=root, enabled=opts.cache)
    keep, held = stratified_split(t["train_y"].numpy(), val_fraction, split_seed)
    keep_t, held_t = torch.from_numpy(keep), torch.from_numpy(held)
    train = ArrayDataset(t["train_x"][keep_t], t["train_y"][keep_t])
    val = ArrayDataset(t["train_x"][held_t], t["train_y"][held_t])
    test = ArrayDataset(t["test_x"], t["test_y"])
    description = (f"SHD (Spiking Heidelberg Digits, 20 classes, {opts.steps} frames of "
                   f"{opts.time_window * 1e3:g} ms x {opts.channels} channels): "
                   f"train {len(train)} / val {len(val)} / test {len(test)}")
    logger.debug("loaded shd: %s", description)
    return SplitData(name="shd", train=train, val=val, test=test,
                     input_shape=(opts.steps, opts.channels), num_classes=NUM_CLASSES,
                     checksum=checksum, description=description)

