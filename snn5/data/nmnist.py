"""N-MNIST (Orchard, Jayawant, Cohen & Thakor, Front. Neurosci. 2015): MNIST digits recorded by an
ATIS event camera on three saccades (~300 ms, 34x34 pixels, ON/OFF polarity), binned into frames.

Files are the original ``.bin`` recordings (40 bits per event), read with Tonic
(``tonic.io.read_mnist_file``) and binned with ``tonic.transforms.ToFrame`` (install the
``events`` extra: ``pip install 'snn5[events]'``). Two layouts are recognised under the data root:

- ``<root>/nmnist/{Train,Test}/<label>/<index>.bin``: the full set (60,000 / 10,000), as the
  official ``train.zip`` / ``test.zip`` unpack (:func:`download_nmnist` fetches them);
- ``<root>/nmnist-subset/``: the subset shipped for tests and CI (the first 1,000 training and
  100 test recordings in MNIST order, same layout plus ``labels.csv``), checked against
  :data:`NMNIST_SUBSET_SHA256`.

The full set is used when present, else the subset. Note the full set binned at the defaults
holds 70,000 x 15 x 2 x 34 x 34 floats (about 10 GB); use ``spatial_factor`` or a longer
``time_window`` there.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import math
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from snn5.data import download as _download
from snn5.data.base import ArrayDataset, DatasetFileError, SplitData, stratified_split
from snn5.data.cache import cached_tensors
from snn5.data.events import bin_events, tonic
from snn5.data.root import DATA_ENV_VAR

__all__ = ["NMNIST_ARCHIVES", "NMNIST_SUBSET_SHA256", "NMNISTOptions", "download_nmnist",
           "events_to_frames", "load_nmnist", "read_nmnist_events"]

logger = logging.getLogger(__name__)

SENSOR = (34, 34, 2)  # x, y, polarity (Tonic's sensor_size order)

NMNIST_ARCHIVES: dict[str, tuple[str, str]] = {
    "train.zip": ("https://data.mendeley.com/public-files/datasets/468j46mzdv/files/"
                  "39c25547-014b-4137-a934-9d29fa53c7a0/file_downloaded",
                  "20959b8e626244a1b502305a9e6e2031"),
    "test.zip": ("https://data.mendeley.com/public-files/datasets/468j46mzdv/files/"
                 "05a4d654-7e03-4c15-bdfa-9bb2bcbea494/file_downloaded",
                 "69ca8762b2fe404d9b9bad1103e97832"),
}
"""The official archives (Mendeley Data 468j46mzdv, the URLs and md5s Tonic uses): name ->
(URL, md5). They unpack to ``Train/`` and ``Test/``."""

NMNIST_SUBSET_SHA256 = "374f76b079b922378624621efb492b03b481c2311f5bd1c3b52c4fbbbfbee622"
"""sha256 of the lines ``"<split>/<label>/<file> <sha256 of the file>\\n"`` of the 1,100
recordings of the shipped subset, sorted by path."""

_FULL_COUNTS = {"Train": 60_000, "Test": 10_000}


class NMNISTOptions(BaseModel):
    """Binning of N-MNIST (``data.options`` in YAML).

    Args:
        time_window: Frame length, seconds.
        duration: Seconds kept per recording, a whole number of ``time_window``.
        spatial_factor: Sensor scale in (0, 1] (Tonic's ``Downsample``).
        cache: Keep the binned frames on disk (see :mod:`snn5.data.cache`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    time_window: float = Field(default=20e-3, gt=0.0, allow_inf_nan=False)
    duration: float = Field(default=0.3, gt=0.0, allow_inf_nan=False)
    spatial_factor: float = Field(default=1.0, gt=0.0, le=1.0)
    cache: bool = True

    @model_validator(mode="after")
    def _whole_frames(self) -> NMNISTOptions:
        steps = int(round(self.duration / self.time_window))
        if steps < 1 or abs(steps * self.time_window - self.duration) > 1e-9:
            raise ValueError(f"duration={self.duration} s must be a whole number of "
                             f"time_window={self.time_window} s frames")
        return self

    @property
    def steps(self) -> int:
        """Number of frames ``T = duration / time_window``."""
        return int(round(self.duration / self.time_window))
_SUBSET_COUNTS = {"Train": 1_000, "Test": 100}


def _fix(root: Path) -> str:
    return (f"To fix: put the N-MNIST .bin files under {root / 'nmnist'}/{{Train,Test}}/<label>/ "
            f"(the unpacked official train.zip / test.zip; or the 1,000 + 100 subset with its "
            f"labels.csv under {root / 'nmnist-subset'}), or point {DATA_ENV_VAR} / --data-dir at "
            "the folder that contains them, or fetch the full set with download=True "
            "(DataConfig(download=True), about 1 GB).")


def read_nmnist_events(path: str | Path) -> np.ndarray:
    """Events of one N-MNIST ``.bin`` file, read with ``tonic.io.read_mnist_file``.

    The format: 5 bytes per event; byte 0 = x, byte 1 = y, bit 7 of byte 2 = polarity, the
    other 23 bits (big-endian) = time in microseconds (records with y = 240 mark a timestamp
    overflow and are consumed by the reader).

    Returns:
        A structured array with integer fields ``x, y, t, p`` (Tonic's ``xytp`` order).

    Raises:
        DatasetFileError: The file is missing, empty, not a whole number of 5-byte events, or
            holds an event outside the 34x34 sensor.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise DatasetFileError(f"{path} cannot be read ({type(exc).__name__}: {exc})",
                               paths=[path]) from exc
    if size == 0 or size % 5:
        raise DatasetFileError(f"{path} holds {size} bytes; an N-MNIST recording is a non-empty "
                               "whole number of 5-byte events. The file is truncated or not an "
                               "N-MNIST .bin; replace it with an intact copy.", paths=[path])
    dtype = np.dtype([("x", int), ("y", int), ("t", int), ("p", int)])
    events = tonic().io.read_mnist_file(str(path), dtype=dtype)
    if len(events) and (events["x"].max() >= SENSOR[0] or events["y"].max() >= SENSOR[1]):
        raise DatasetFileError(f"{path} holds events outside the 34x34 sensor (x up to "
                               f"{events['x'].max()}, y up to {events['y'].max()}): not an "
                               "N-MNIST recording; replace it with an intact copy.", paths=[path])
    return events


def events_to_frames(events: np.ndarray, *, time_window: float, steps: int,
                     spatial_factor: float = 1.0) -> torch.Tensor:
    """Bin N-MNIST events into frames with Tonic: ``Downsample`` (if ``spatial_factor < 1``),
    then ``ToFrame`` with windows of ``time_window`` seconds from t = 0; events at or after
    ``steps * time_window`` are dropped.

    Args:
        events: Structured array with fields ``x, y, t`` (microseconds), ``p``.
        time_window: Frame length, seconds.
        steps: Number of frames ``T``.
        spatial_factor: Sensor scale in (0, 1].

    Returns:
        ``[T, 2, H, W]`` float32 event counts; ``frames[k, p, y, x]`` counts the events of
        polarity ``p`` at pixel ``(x, y)`` with ``k * time_window <= t < (k + 1) * time_window``.
    """
    sensor = SENSOR
    if spatial_factor != 1:
        events = tonic().transforms.Downsample(spatial_factor=spatial_factor)(events)
        sensor = (math.ceil(SENSOR[0] * spatial_factor), math.ceil(SENSOR[1] * spatial_factor), 2)
    return bin_events(events, sensor, time_window=time_window, steps=steps)


def _listing(paths: list[Path], limit: int = 10) -> str:
    lines = [f"  - {p}" for p in paths[:limit]]
    if len(paths) > limit:
        lines.append(f"  ... and {len(paths) - limit} more")
    return "\n".join(lines)


def _subset_files(directory: Path, root: Path) -> list[tuple[str, int]]:
    """``(relative path, label)`` of every recording listed in the subset's ``labels.csv``."""
    labels = directory / "labels.csv"
    try:
        with labels.open(newline="") as f:
            rows = list(csv.DictReader(f))
        files = [(row["file"], int(row["label"])) for row in rows]
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise DatasetFileError(f"{labels} is missing or malformed ({type(exc).__name__}: {exc}); "
                               "expected a CSV with columns split,file,label,mnist_index_1based. "
                               f"{_fix(root)}", paths=[labels]) from exc
    for rel, label in files:
        split, folder = Path(rel).parts[:2]
        if folder != str(label) or split not in _SUBSET_COUNTS or not 0 <= label <= 9:
            raise DatasetFileError(f"{labels}: the row for {rel} says label {label}, which does "
                                   f"not match its folder. {_fix(root)}", paths=[labels])
    return files


def _full_files(directory: Path) -> list[tuple[str, int]]:
    return [(f"{split}/{label}/{path.name}", label)
            for split in _FULL_COUNTS for label in range(10)
            for path in sorted((directory / split / str(label)).glob("*.bin"))]


def download_nmnist(root: Path) -> None:
    """Download and unpack the full N-MNIST into ``<root>/nmnist/`` (about 1 GB).

    Each archive of :data:`NMNIST_ARCHIVES` is fetched to a temp file, checked by md5, renamed
    into place and unpacked (an intact archive already there is reused).

    Raises:
        DatasetFileError: An archive could not be fetched intact.
    """
    directory = Path(root) / "nmnist"
    directory.mkdir(parents=True, exist_ok=True)
    for name, (url, md5) in NMNIST_ARCHIVES.items():
        archive = directory / name
        if not (archive.is_file() and _download.file_md5(archive) == md5):
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=directory)
            try:
                with os.fdopen(fd, "wb") as out:
                    _download.fetch_url(url, out)
                found = _download.file_md5(tmp)
                if found != md5:
                    raise DatasetFileError(f"{url} gave md5 {found}, expected {md5}. "
                                           f"{_fix(Path(root))}", paths=[archive])
                os.replace(tmp, archive)
            except OSError as exc:
                if isinstance(exc, DatasetFileError):
                    raise
                raise DatasetFileError(f"could not download {url} -> {archive} "
                                       f"({type(exc).__name__}: {exc}). {_fix(Path(root))}",
                                       paths=[archive]) from exc
            finally:
                Path(tmp).unlink(missing_ok=True)
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(directory)


def _locate(root: Path, download: bool) -> tuple[Path, list[tuple[str, int]], bool]:
    full = root / "nmnist"
    if download:
        download_nmnist(root)
    if (full / "Train").is_dir() and (full / "Test").is_dir():
        files = _full_files(full)
        counts = {s: sum(1 for rel, _ in files if rel.startswith(s + "/")) for s in _FULL_COUNTS}
        if counts != _FULL_COUNTS:
            raise DatasetFileError(f"N-MNIST in {full} has {counts['Train']} train and "
                                   f"{counts['Test']} test recordings, expected 60000 and 10000."
                                   f" {_fix(root)}", paths=[full])
        return full, files, False
    subset = root / "nmnist-subset"
    if subset.is_dir():
        return subset, _subset_files(subset, root), True
    raise DatasetFileError(f"N-MNIST not found: neither {full} nor {subset} exists. "
                           f"{_fix(root)}", paths=[full, subset])


def load_nmnist(root: Path, *, val_fraction: float = 0.1, split_seed: int = 0,
                download: bool = False, time_window: float = 20e-3, duration: float = 0.3,
                spatial_factor: float = 1.0, cache: bool = True) -> SplitData:
    """Load N-MNIST (full set or the shipped subset) as event frames, split train / val / test.

    Each recording's events in ``[0, duration)`` are binned with Tonic's ``ToFrame`` into
    ``T = round(duration / time_window)`` frames of event counts per polarity and pixel.
    The test set is the official one; the validation set is a stratified ``val_fraction`` of the
    training recordings drawn with ``split_seed``.

    Args:
        root: Data root (see :func:`snn5.data.resolve_data_dir`).
        val_fraction: Share of the training recordings used for validation, ``0 < v < 1``.
        split_seed: Seed of the validation split.
        download: Fetch the full set first (needs internet, about 1 GB).
        time_window: Frame length, seconds (20 ms).
        duration: Seconds kept per recording (the three saccades take about 0.3 s).
        spatial_factor: Scale of the sensor (Tonic's ``Downsample``); 0.5 gives 17x17 frames.
        cache: Keep the binned frames on disk, keyed by the files' checksum and the binning
            parameters (:mod:`snn5.data.cache`).

    Returns:
        The split dataset. ``x``: float32 event counts ``[N, T, 2, H, W]`` (polarity channel
        = the event's polarity bit; ``H, W = 34, 34`` at ``spatial_factor=1``, row = y,
        column = x); ``y``: int64 digits 0..9. The subset with the defaults: 900 train /
        100 val / 100 test of shape ``[15, 2, 34, 34]``.

    Raises:
        DatasetFileError: A file is missing or malformed, or the subset does not match its
            checksum; the message names the file(s) and the fix.
        ImportError: Tonic is not installed (the message gives the pip command).
    """
    opts = NMNISTOptions(time_window=time_window, duration=duration,
                         spatial_factor=spatial_factor, cache=cache)
    steps = opts.steps
    tonic()
    root = Path(root)
    directory, files, is_subset = _locate(root, download)
    paths = [directory / rel for rel, _ in files]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise DatasetFileError(f"N-MNIST: {len(missing)} of {len(paths)} recordings missing:\n"
                               f"{_listing(missing)}\n{_fix(root)}", paths=missing)

    short = [(p, p.stat().st_size) for p in paths if p.stat().st_size % 5 or not p.stat().st_size]
    if short:
        text = "\n".join(f"  - {p}: {size} bytes" for p, size in short[:10])
        raise DatasetFileError(f"N-MNIST: {len(short)} recording(s) are not a non-empty whole "
                               f"number of 5-byte events (truncated or not N-MNIST .bin):\n"
                               f"{text}\nReplace them with intact copies. {_fix(root)}",
                               paths=[p for p, _ in short])
    lines = sorted(f"{rel} {hashlib.sha256(path.read_bytes()).hexdigest()}\n"
                   for (rel, _), path in zip(files, paths, strict=True))
    digest = hashlib.sha256("".join(lines).encode()).hexdigest()
    if is_subset and digest != NMNIST_SUBSET_SHA256:
        raise DatasetFileError(f"the N-MNIST subset in {directory} does not match its checksum "
                               f"(set sha256 {digest}, expected {NMNIST_SUBSET_SHA256}): a "
                               "recording was changed; compare the files with its MANIFEST.tsv "
                               f"and replace the corrupt one. {_fix(root)}", paths=[directory])

    def build() -> dict[str, torch.Tensor]:
        frames = None
        for i, path in enumerate(paths):
            f = events_to_frames(read_nmnist_events(path), time_window=time_window, steps=steps,
                                 spatial_factor=spatial_factor)              # [T, P, H, W]
            if frames is None:
                frames = f.new_zeros(len(paths), *f.shape)                   # [N, T, P, H, W]
            frames[i] = f
        return {"x": frames}

    params = opts.model_dump(exclude={"cache"})
    frames = cached_tensors("nmnist", digest, params, build, root=root,
                            enabled=opts.cache)["x"]
    sensor = frames.shape[-1], frames.shape[-2]

    labels = torch.tensor([label for _, label in files], dtype=torch.int64)
    is_test = np.array([rel.startswith("Test/") for rel, _ in files])
    train_all = np.flatnonzero(~is_test)
    train_pos, val_pos = stratified_split(labels.numpy()[train_all], val_fraction, split_seed)

    def subset(idx: np.ndarray) -> ArrayDataset:
        index = torch.from_numpy(idx.astype(np.int64))
        return ArrayDataset(frames[index], labels[index])

    train, val = subset(train_all[train_pos]), subset(train_all[val_pos])
    test = subset(np.flatnonzero(is_test))
    kind = "subset of the first 1000 train + 100 test" if is_subset else "full"
    description = (f"N-MNIST ({kind} recordings, ATIS 34x34 events binned by Tonic into "
                   f"{steps} frames of {time_window * 1e3:g} ms, {sensor[1]}x{sensor[0]}): "
                   f"train {len(train)} / val {len(val)} / test {len(test)}")
    logger.debug("loaded nmnist: %s", description)
    return SplitData(name="nmnist", train=train, val=val, test=test,
                     input_shape=(steps, 2, sensor[1], sensor[0]), num_classes=10,
                     checksum=digest, description=description)
