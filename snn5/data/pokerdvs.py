"""POKER-DVS (Serrano-Gotarredona & Linares-Barranco, Front. Neurosci. 2015): card-pip symbols
(club, heart, diamond, spade) flashed past a 128x128 DVS, cropped to 35x35; 48 training and 20
test recordings of about 10-30 ms, binned into frames.

The files are Tonic's two tarballs, ``<root>/poker-dvs/pips_{train,test}.tar.gz``, holding
``pips_<split>/<cl|he|di|sp>/<n>.npy`` arrays of uint64 events with columns (t [us], x, y, p).
Each tarball is checked against the md5 Tonic checks; the arrays are read straight from the
tarballs (nothing is extracted) and binned with ``tonic.transforms.ToFrame``. Class indices
follow Tonic's ``POKERDVS.classes``: club 0, heart 1, diamond 2, spade 3.
"""

from __future__ import annotations

import io
import logging
import tarfile
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from snn5.data import download as _download
from snn5.data.base import ArrayDataset, DatasetFileError, SplitData, stratified_split
from snn5.data.cache import cached_tensors
from snn5.data.events import bin_events, tonic
from snn5.data.root import DATA_ENV_VAR

__all__ = ["POKERDVS_ARCHIVES", "POKERDVS_CLASSES", "POKERDVSOptions", "load_pokerdvs",
           "pokerdvs_frames"]

logger = logging.getLogger(__name__)

SENSOR = (35, 35, 2)  # x, y, polarity (Tonic's sensor_size order)
POKERDVS_CLASSES = ("cl", "he", "di", "sp")
"""Folder names in class-index order (Tonic's ``POKERDVS.classes``)."""

_SOURCE = ("https://github.com/cargonriv/dvs/raw/6025d1c189a47ef17ae459d95ce0a59447d9b9fa/"
           "data/POKERDVS/")
POKERDVS_ARCHIVES: dict[str, tuple[str, int]] = {
    "pips_train.tar.gz": ("412bcfb96826e4fcb290558e8c150aae", 48),
    "pips_test.tar.gz": ("eef2bf7d0d3defae89a6fa98b07c17af", 20),
}
"""Tarball -> (md5 as Tonic checks it, number of recordings)."""


class POKERDVSOptions(BaseModel):
    """Binning of POKER-DVS (``data.options`` in YAML).

    Args:
        time_window: Frame length, seconds.
        duration: Seconds kept per recording, a whole number of ``time_window``.
        cache: Keep the binned frames on disk (see :mod:`snn5.data.cache`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    time_window: float = Field(default=2e-3, gt=0.0, allow_inf_nan=False)
    duration: float = Field(default=30e-3, gt=0.0, allow_inf_nan=False)
    cache: bool = True

    @model_validator(mode="after")
    def _whole_frames(self) -> POKERDVSOptions:
        steps = int(round(self.duration / self.time_window))
        if steps < 1 or abs(steps * self.time_window - self.duration) > 1e-9:
            raise ValueError(f"duration={self.duration} s must be a whole number of "
                             f"time_window={self.time_window} s frames")
        return self


def _fix(directory: Path) -> str:
    return (f"To fix: put pips_train.tar.gz and pips_test.tar.gz (Tonic's POKER-DVS tarballs) in "
            f"{directory}, or point {DATA_ENV_VAR} / --data-dir at the folder that contains "
            "poker-dvs/, or fetch them with download=True (DataConfig(download=True), 1 MB).")


def pokerdvs_frames(events: np.ndarray, *, time_window: float, steps: int) -> torch.Tensor:
    """Bin one recording ``[N, 4]`` (t [us], x, y, p) into ``[T, 2, 35, 35]`` event counts with
    Tonic's ``ToFrame`` (windows of ``time_window`` seconds from t = 0; events at or after
    ``steps * time_window`` dropped); ``frames[k, p, y, x]``."""
    rec = np.zeros(len(events), dtype=[("t", np.int64), ("x", np.int64), ("y", np.int64),
                                       ("p", np.int64)])
    for i, name in enumerate(("t", "x", "y", "p")):
        rec[name] = events[:, i].astype(np.int64)
    return bin_events(rec, SENSOR, time_window=time_window, steps=steps)


def _read_archive(path: Path, expected: int) -> tuple[list[np.ndarray], list[int]]:
    """The recordings and labels of one tarball, in sorted member order."""
    try:
        with tarfile.open(path, "r:gz") as tar:
            members = sorted((m for m in tar.getmembers() if m.isfile()
                              and m.name.endswith(".npy")), key=lambda m: m.name)
            events, labels = [], []
            for m in members:
                folder = Path(m.name).parent.name
                if folder not in POKERDVS_CLASSES:
                    raise DatasetFileError(f"{path}: member {m.name} is not in a class folder "
                                           f"{POKERDVS_CLASSES}", paths=[path])
                a = np.load(io.BytesIO(tar.extractfile(m).read()), allow_pickle=False)
                if a.ndim != 2 or a.shape[1] != 4:
                    raise DatasetFileError(f"{path}: {m.name} holds shape {a.shape}, expected "
                                           "[events, 4] (t, x, y, p)", paths=[path])
                events.append(a)
                labels.append(POKERDVS_CLASSES.index(folder))
    except (tarfile.TarError, OSError, ValueError) as exc:
        raise DatasetFileError(f"{path} is unreadable ({type(exc).__name__}: {exc}); replace it "
                               f"with an intact copy. {_fix(path.parent)}", paths=[path]) from exc
    if len(events) != expected:
        raise DatasetFileError(f"{path} holds {len(events)} recordings, expected {expected}. "
                               f"{_fix(path.parent)}", paths=[path])
    return events, labels


def load_pokerdvs(root: Path, *, val_fraction: float = 0.1, split_seed: int = 0,
                  download: bool = False, time_window: float = 2e-3,
                  duration: float = 30e-3, cache: bool = True) -> SplitData:
    """Load POKER-DVS as event frames, split train / val / test.

    Args:
        root: Data root (see :func:`snn5.data.resolve_data_dir`); the tarballs are read from
            ``<root>/poker-dvs/``.
        val_fraction: Share of the 48 training recordings held out for validation (stratified).
        split_seed: Seed of the validation split.
        download: Fetch missing tarballs first (needs internet).
        time_window: Frame length, seconds (2 ms).
        duration: Seconds kept per recording (the longest shipped one lasts 29.9 ms).
        cache: Keep the binned frames on disk, keyed by the tarballs' md5 and the binning
            parameters (:mod:`snn5.data.cache`).

    Returns:
        ``x``: float32 event counts ``[N, T, 2, 35, 35]`` with ``T = duration / time_window``;
        ``y``: int64 class 0..3. With the defaults: 43 train / 5 val / 20 test, ``[15, 2, 35, 35]``.

    Raises:
        DatasetFileError: A tarball is missing, corrupt or fails its md5; the message names it
            and the fix.
        ImportError: Tonic is not installed (the message gives the pip command).
    """
    opts = POKERDVSOptions(time_window=time_window, duration=duration, cache=cache)
    steps = int(round(duration / time_window))
    tonic()
    directory = Path(root) / "poker-dvs"
    data: dict[str, tuple[list[np.ndarray], list[int]]] = {}
    for name, (md5, count) in POKERDVS_ARCHIVES.items():
        path = directory / name
        if not path.is_file() and download:
            _download.download_file(name, directory, md5=md5, mirrors=[_SOURCE],
                                    fix=_fix(directory))
        if not path.is_file():
            raise DatasetFileError(f"POKER-DVS: {path} is missing. {_fix(directory)}",
                                   paths=[path])
        got = _download.file_md5(path)
        if got != md5:
            raise DatasetFileError(f"POKER-DVS: {path} has md5 {got}, expected {md5} (the file "
                                   f"Tonic checks); it is corrupt or another version. "
                                   f"{_fix(directory)}", paths=[path])
        data[name] = _read_archive(path, count)
    checksum = "+".join(md5 for md5, _ in POKERDVS_ARCHIVES.values())

    def build() -> dict[str, torch.Tensor]:
        return {f"{split}_x": torch.stack([pokerdvs_frames(e, time_window=time_window,
                                                           steps=steps)
                                           for e in data[f"pips_{split}.tar.gz"][0]])
                for split in ("train", "test")}                             # [N, T, P, H, W]

    frames = cached_tensors("pokerdvs", checksum, opts.model_dump(exclude={"cache"}), build,
                            root=root, enabled=opts.cache)
    train_x, train_y = frames["train_x"], data["pips_train.tar.gz"][1]
    test_x, test_y = frames["test_x"], data["pips_test.tar.gz"][1]
    train_y_t = torch.tensor(train_y, dtype=torch.int64)
    keep, held = stratified_split(train_y_t.numpy(), val_fraction, split_seed)

    def subset(x: torch.Tensor, y: torch.Tensor, idx: np.ndarray) -> ArrayDataset:
        index = torch.from_numpy(idx.astype(np.int64))
        return ArrayDataset(x[index], y[index])

    train, val = subset(train_x, train_y_t, keep), subset(train_x, train_y_t, held)
    test = ArrayDataset(test_x, torch.tensor(test_y, dtype=torch.int64))
    description = (f"POKER-DVS (4 card pips, DVS 35x35 crops binned by Tonic into {steps} frames "
                   f"of {time_window * 1e3:g} ms): train {len(train)} / val {len(val)} / "
                   f"test {len(test)}")
    logger.debug("loaded pokerdvs: %s", description)
    return SplitData(name="pokerdvs", train=train, val=val, test=test,
                     input_shape=(steps, SENSOR[2], SENSOR[1], SENSOR[0]), num_classes=4,
                     checksum=checksum, description=description)
