"""CIFAR10-DVS (Li, Liu, Ji, Li & Shi, Front. Neurosci. 2017): 10,000 CIFAR-10 images (1,000
per class) moved on a monitor in front of a 128x128 DVS, one jAER AEDAT 2.0 recording each.

Files: the original per-class archives ``<root>/cifar10dvs/<class>.zip`` (figshare
"CIFAR10-DVS New"; ``download=True`` fetches them with the md5s SpikingJelly records in
``CIFAR10DVS.resource_url_md5``), read without extracting, or the same archives already
unpacked as ``<root>/cifar10dvs/<class>/cifar10_<class>_<i>.aedat``. Each recording is AEDAT
2.0 (see :mod:`snn5.data.aedat`); pixels are mapped as SpikingJelly and events-tfds map them so
that the images appear upright: ``x = 127 - y_address``, ``y = 127 - x_address``, polarity 1 =
ON. (Tonic's ``CIFAR10DVS`` instead downloads a re-encoded AEDAT4 copy.)

There is no official train / test split. The test set here is a stratified ``test_fraction``
(10 %, the common 9:1 split) drawn with ``test_seed``, the validation set a stratified
``val_fraction`` of the rest drawn with ``split_seed``. (Some papers instead test on
recordings 0-99 of each class, which gives higher accuracies; compare with care.)
Frames: :func:`snn5.data.events.camera_frames`, cached on disk. License: CC BY 4.0.
"""

from __future__ import annotations

import hashlib
import logging
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from pydantic import Field

from snn5.data import download as _download
from snn5.data.aedat import read_aedat2
from snn5.data.base import ArrayDataset, DatasetFileError, SplitData, stratified_split
from snn5.data.cache import cached_tensors, file_sha256
from snn5.data.events import CameraFrameOptions, camera_frames, tonic
from snn5.data.root import DATA_ENV_VAR

__all__ = ["CIFAR10DVS_ARCHIVES", "CIFAR10DVS_CLASSES", "CIFAR10DVSOptions",
           "cifar10dvs_events", "load_cifar10dvs"]

logger = logging.getLogger(__name__)

SENSOR = (128, 128)
CIFAR10DVS_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                      "ship", "truck")
"""Class names in label order (CIFAR-10's)."""

CIFAR10DVS_ARCHIVES: dict[str, tuple[str, str]] = {
    "airplane.zip": ("https://ndownloader.figshare.com/files/7712788",
                     "0afd5c4bf9ae06af762a77b180354fdd"),
    "automobile.zip": ("https://ndownloader.figshare.com/files/7712791",
                       "8438dfeba3bc970c94962d995b1b9bdd"),
    "bird.zip": ("https://ndownloader.figshare.com/files/7712794",
                 "a9c207c91c55b9dc2002dc21c684d785"),
    "cat.zip": ("https://ndownloader.figshare.com/files/7712812",
                "52c63c677c2b15fa5146a8daf4d56687"),
    "deer.zip": ("https://ndownloader.figshare.com/files/7712815",
                 "b6bf21f6c04d21ba4e23fc3e36c8a4a3"),
    "dog.zip": ("https://ndownloader.figshare.com/files/7712818",
                "f379ebdf6703d16e0a690782e62639c3"),
    "frog.zip": ("https://ndownloader.figshare.com/files/7712842",
                 "cad6ed91214b1c7388a5f6ee56d08803"),
    "horse.zip": ("https://ndownloader.figshare.com/files/7712851",
                  "e7cbbf77bec584ffbf913f00e682782a"),
    "ship.zip": ("https://ndownloader.figshare.com/files/7712836",
                 "41c7bd7d6b251be82557c6cce9a7d5c9"),
    "truck.zip": ("https://ndownloader.figshare.com/files/7712839",
                  "89f3922fd147d9aeff89e76a2b0b70a7"),
}
"""The original per-class archives: name -> (URL, md5), as SpikingJelly's
``CIFAR10DVS.resource_url_md5`` records them (figshare article 4724671)."""

_INDEX = re.compile(r"_(\d+)\.aedat$")


class CIFAR10DVSOptions(CameraFrameOptions):
    """Binning and test split of CIFAR10-DVS (``data.options``); defaults: 10 frames over each
    recording, 32x32, a stratified 10 % test set drawn with seed 0. See
    :class:`snn5.data.events.CameraFrameOptions`.

    Args:
        test_fraction: Share of the recordings held out for testing (stratified).
        test_seed: Seed of the test split (kept apart from ``split_seed`` so that the test
            set stays the same when the validation split changes).
    """

    steps: int = Field(default=10, ge=1, le=10_000)
    test_fraction: float = Field(default=0.1, gt=0.0, lt=1.0)
    test_seed: int = Field(default=0, ge=0, lt=2**32)


def _fix(directory: Path) -> str:
    return (f"To fix: put the 10 original per-class archives (airplane.zip ... truck.zip, "
            f"figshare 'CIFAR10-DVS New') or their unpacked <class>/ folders in {directory}, or "
            f"point {DATA_ENV_VAR} / --data-dir at the folder that contains cifar10dvs/, or fetch "
            "them with download=True (DataConfig(download=True); several GB).")


def cifar10dvs_events(source: Path | bytes, *, name: str | Path | None = None) -> np.ndarray:
    """Events of one CIFAR10-DVS recording with the upright pixel mapping (module docstring)."""
    events = read_aedat2(source, name=name)
    x = events["x"].copy()
    events["x"] = 127 - events["y"]
    events["y"] = 127 - x
    return events


def _sort_key(name: str) -> tuple[int, str]:
    match = _INDEX.search(name)
    return (int(match.group(1)) if match else -1, name)


def _class_recordings(directory: Path, cls: str) -> Iterator[tuple[str, bytes | Path]]:
    """``(name, bytes or path)`` of one class's recordings, in recording-index order, read one
    at a time."""
    archive, folder = directory / f"{cls}.zip", directory / cls
    if archive.is_file():
        try:
            with zipfile.ZipFile(archive) as zf:
                names = sorted((n for n in zf.namelist() if n.endswith(".aedat")), key=_sort_key)
                if not names:
                    raise DatasetFileError(f"CIFAR10-DVS: {archive} holds no .aedat recording."
                                           f" {_fix(directory)}", paths=[archive])
                for n in names:
                    yield f"{archive}:{n}", zf.read(n)
        except (zipfile.BadZipFile, OSError) as exc:
            if isinstance(exc, DatasetFileError):
                raise
            raise DatasetFileError(f"{archive} is unreadable ({type(exc).__name__}: {exc}); "
                                   f"replace it with an intact copy. {_fix(directory)}",
                                   paths=[archive]) from exc
        return
    paths = sorted(folder.glob("*.aedat"), key=lambda p: _sort_key(p.name))
    if not paths:
        raise DatasetFileError(f"CIFAR10-DVS: {folder} holds no .aedat recording. "
                               f"{_fix(directory)}", paths=[folder])
    for path in paths:
        yield str(path), path


def load_cifar10dvs(root: Path, *, val_fraction: float = 0.1, split_seed: int = 0,
                    download: bool = False, steps: int = 10, time_window: float | None = None,
                    size: int = 32, cache: bool = True, test_fraction: float = 0.1,
                    test_seed: int = 0) -> SplitData:
    """Load CIFAR10-DVS as event frames, split train / val / test (stratified, see the module
    docstring).

    Args:
        root: Data root; files are read from ``<root>/cifar10dvs/``.
        val_fraction: Share of the non-test recordings held out for validation.
        split_seed: Seed of the validation split.
        download: Fetch missing class archives first (needs internet).
        steps, time_window, size, cache, test_fraction, test_seed: See
            :class:`CIFAR10DVSOptions`.

    Returns:
        ``x``: float32 event counts ``[N, T, 2, size, size]`` (channel = polarity, 1 = ON);
        ``y``: int64 class 0..9 in CIFAR-10 order. With all 10,000 recordings and the defaults:
        8,100 train / 900 val / 1,000 test.

    Raises:
        DatasetFileError: An archive or folder is missing, corrupt or fails its md5; the
            message names it and the fix.
        ImportError: Tonic is not installed (the message gives the pip command).
    """
    opts = CIFAR10DVSOptions(steps=steps, time_window=time_window, size=size, cache=cache,
                             test_fraction=test_fraction, test_seed=test_seed)
    tonic()
    root = Path(root)
    directory = root / "cifar10dvs"
    lines: list[str] = []                  # "<source> <checksum>" of every source file
    missing: list[Path] = []
    for cls in CIFAR10DVS_CLASSES:
        name = f"{cls}.zip"
        archive, folder = directory / name, directory / cls
        if not archive.is_file() and not folder.is_dir() and download:
            url, md5 = CIFAR10DVS_ARCHIVES[name]
            _download.download_file(name, directory, md5=md5, urls=[url], fix=_fix(directory))
        if archive.is_file():
            md5 = CIFAR10DVS_ARCHIVES[name][1]
            got = _download.file_md5(archive)
            if got != md5:
                raise DatasetFileError(f"CIFAR10-DVS: {archive} has md5 {got}, expected {md5} "
                                       "(the original figshare archive); it is corrupt or "
                                       f"another version. {_fix(directory)}", paths=[archive])
            lines.append(f"{name} md5:{md5}")
        elif folder.is_dir():
            lines += [f"{cls}/{p.name} sha256:{file_sha256(p)}"
                      for p in sorted(folder.glob("*.aedat"), key=lambda p: _sort_key(p.name))]
        else:
            missing.append(archive)
    if missing:
        raise DatasetFileError(f"CIFAR10-DVS: {', '.join(str(p) for p in missing)} missing (and "
                               f"no unpacked class folder). {_fix(directory)}", paths=missing)
    checksum = hashlib.sha256("".join(f"{line}\n" for line in lines).encode()).hexdigest()

    def build() -> dict[str, torch.Tensor]:
        frames, labels = [], []
        for label, cls in enumerate(CIFAR10DVS_CLASSES):
            for name, item in _class_recordings(directory, cls):
                events = (cifar10dvs_events(item, name=name) if isinstance(item, bytes)
                          else cifar10dvs_events(item))
                frames.append(camera_frames(events, SENSOR, steps=opts.steps,
                                            time_window=opts.time_window, size=opts.size))
                labels.append(label)
        return {"x": torch.stack(frames), "y": torch.tensor(labels, dtype=torch.int64)}

    params = opts.model_dump(exclude={"cache", "test_fraction", "test_seed"})
    t = cached_tensors("cifar10dvs", checksum, params, build, root=root, enabled=opts.cache)
    x, y = t["x"], t["y"]
    rest, test_idx = stratified_split(y.numpy(), opts.test_fraction, opts.test_seed)
    keep, held = stratified_split(y.numpy()[rest], val_fraction, split_seed)

    def subset(idx: np.ndarray) -> ArrayDataset:
        index = torch.from_numpy(idx.astype(np.int64))
        return ArrayDataset(x[index], y[index])

    train, val, test = subset(rest[keep]), subset(rest[held]), subset(test_idx)
    when = ("over each recording" if opts.time_window is None
            else f"of {opts.time_window * 1e3:g} ms")
    description = (f"CIFAR10-DVS (10 classes, {opts.steps} frames {when}, {opts.size}x{opts.size};"
                   f" stratified {opts.test_fraction:g} test split, seed {opts.test_seed}): "
                   f"train {len(train)} / val {len(val)} / test {len(test)}")
    logger.debug("loaded cifar10dvs: %s", description)
    return SplitData(name="cifar10dvs", train=train, val=val, test=test,
                     input_shape=(opts.steps, 2, opts.size, opts.size),
                     num_classes=len(CIFAR10DVS_CLASSES), checksum=checksum,
                     description=description)
