"""DVS128 Gesture (Amir et al., CVPR 2017): 11 hand and arm gestures by 29 people under 5
lighting conditions, recorded by a 128x128 DVS128; 23 people for training, 6 for testing.

Two layouts are recognised under ``<root>/dvsgesture/`` (the first found is used):

1. Tonic's preprocessed tarballs ``ibmGestureTrain.tar.gz`` / ``ibmGestureTest.tar.gz``
   (figshare; ``download=True`` fetches them with the md5s that ``tonic.datasets.DVSGesture``
   records). They hold ``ibmGesture<Split>/user<NN>_<lighting>/<class>.npy``: one gesture per
   file, an ``[N, 4]`` array of (x, y, polarity, t in milliseconds). Read without extracting.
2. The original IBM release, ``DvsGesture/`` as ``DvsGesture.tar.gz`` unpacks (download it by
   hand from https://research.ibm.com/interactive/dvsgesture/, a Box folder): per trial
   ``user<NN>_<lighting>.aedat`` (AEDAT 3.1 polarity events, see :mod:`snn5.data.aedat`) and
   ``user<NN>_<lighting>_labels.csv`` (``class,startTime_usec,endTime_usec``, classes 1..11),
   with ``trials_to_train.txt`` / ``trials_to_test.txt`` naming the trials of each split. A
   gesture is the events with ``start <= t < end``; its label is ``class - 1``.

Classes (0..10): hand clap, right hand wave, left hand wave, right arm clockwise, right arm
counter-clockwise, left arm clockwise, left arm counter-clockwise, arm roll, air drums, air
guitar, other. Frames: :func:`snn5.data.events.camera_frames` (default 16 frames over each
gesture, 32x32), cached on disk (:mod:`snn5.data.cache`). License: CC BY 4.0 (IBM).
"""

from __future__ import annotations

import csv
import io
import logging
import tarfile
from pathlib import Path

import numpy as np
import torch

from snn5.data import download as _download
from snn5.data.aedat import EVENT_DTYPE, read_aedat31
from snn5.data.base import ArrayDataset, DatasetFileError, SplitData, stratified_split
from snn5.data.cache import cached_tensors, files_checksum
from snn5.data.events import CameraFrameOptions, camera_frames, tonic
from snn5.data.root import DATA_ENV_VAR

__all__ = ["DVSGESTURE_ARCHIVES", "DVSGESTURE_CLASSES", "DVSGestureOptions", "load_dvsgesture",
           "read_gesture_trial"]

logger = logging.getLogger(__name__)

SENSOR = (128, 128)
DVSGESTURE_CLASSES = ("hand_clap", "right_hand_wave", "left_hand_wave", "right_arm_cw",
                      "right_arm_ccw", "left_arm_cw", "left_arm_ccw", "arm_roll", "air_drums",
                      "air_guitar", "other")
"""Class names in label order (label = IBM's class number - 1)."""

DVSGESTURE_ARCHIVES: dict[str, tuple[str, str]] = {
    "ibmGestureTrain.tar.gz": ("https://figshare.com/ndownloader/files/38022171",
                               "3a8f0d4120a166bac7591f77409cb105"),
    "ibmGestureTest.tar.gz": ("https://figshare.com/ndownloader/files/38020584",
                              "56070e45dadaa85fff82e0fbfbc06de5"),
}
"""Tonic's preprocessed tarballs: name -> (URL, md5), as ``tonic.datasets.DVSGesture``
records them."""


class DVSGestureOptions(CameraFrameOptions):
    """Binning of DVS128 Gesture (``data.options``); defaults: 16 frames over each gesture,
    32x32. See :class:`snn5.data.events.CameraFrameOptions`."""


def _fix(directory: Path) -> str:
    return (f"To fix: put Tonic's ibmGestureTrain.tar.gz and ibmGestureTest.tar.gz, or the "
            f"original release unpacked as DvsGesture/ (trials_to_train.txt, *.aedat, "
            f"*_labels.csv), in {directory}; or point {DATA_ENV_VAR} / --data-dir at the folder "
            "that contains dvsgesture/; or fetch Tonic's tarballs with download=True "
            "(DataConfig(download=True); several GB).")


def read_gesture_trial(aedat: Path, labels_csv: Path) -> list[tuple[np.ndarray, int]]:
    """The gestures of one original trial: ``(events, label)`` per row of its labels CSV,
    events with ``start <= t < end``."""
    events = read_aedat31(aedat)
    try:
        with labels_csv.open(newline="") as f:
            rows = [(int(r["class"]), int(r["startTime_usec"]), int(r["endTime_usec"]))
                    for r in csv.DictReader(f)]
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise DatasetFileError(f"{labels_csv} is missing or malformed ({type(exc).__name__}: "
                               f"{exc}); expected columns class,startTime_usec,endTime_usec. "
                               f"{_fix(labels_csv.parent.parent)}", paths=[labels_csv]) from exc
    out = []
    for cls, start, end in rows:
        if not 1 <= cls <= len(DVSGESTURE_CLASSES) or end <= start:
            raise DatasetFileError(f"{labels_csv}: row ({cls}, {start}, {end}) is not a class "
                                   "1..11 with start < end. Replace it with the original.",
                                   paths=[labels_csv])
        out.append((events[(events["t"] >= start) & (events["t"] < end)], cls - 1))
    return out


def _npy_events(data: bytes, name: str, archive: Path) -> np.ndarray:
    try:
        a = np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as exc:
        raise DatasetFileError(f"{archive}: {name} is not a numeric .npy ({exc}). Replace the "
                               f"tarball with an intact copy.", paths=[archive]) from exc
    if a.ndim != 2 or a.shape[1] != 4:
        raise DatasetFileError(f"{archive}: {name} holds shape {a.shape}, expected [events, 4] "
                               "(x, y, p, t [ms]). Replace the tarball with an intact copy.",
                               paths=[archive])
    events = np.empty(len(a), dtype=EVENT_DTYPE)
    events["x"], events["y"], events["p"] = a[:, 0], a[:, 1], a[:, 2]
    events["t"] = np.round(a[:, 3].astype(np.float64) * 1000).astype(np.int64)   # ms -> us
    return events


def _read_tarball(path: Path, opts: CameraFrameOptions) -> tuple[torch.Tensor, torch.Tensor]:
    samples: list[tuple[tuple[str, int], torch.Tensor, int]] = []
    try:
        with tarfile.open(path, "r:gz") as tar:
            for m in tar:                          # stream: a gz tarball is read once, in order
                if not (m.isfile() and m.name.endswith(".npy")):
                    continue
                rel = Path(m.name)
                try:
                    label = int(rel.stem)
                except ValueError:
                    label = -1
                if not 0 <= label < len(DVSGESTURE_CLASSES):
                    raise DatasetFileError(f"{path}: member {m.name} is not named <class>.npy "
                                           "with class 0..10.", paths=[path])
                events = _npy_events(tar.extractfile(m).read(), m.name, path)
                frames = camera_frames(events, SENSOR, steps=opts.steps,
                                       time_window=opts.time_window, size=opts.size)
                samples.append(((rel.parent.name, label), frames, label))
    except (tarfile.TarError, OSError, EOFError) as exc:
        if isinstance(exc, DatasetFileError):
            raise
        raise DatasetFileError(f"{path} is unreadable ({type(exc).__name__}: {exc}); replace it "
                               f"with an intact copy. {_fix(path.parent)}", paths=[path]) from exc
    if not samples:
        raise DatasetFileError(f"{path} holds no <user>/<class>.npy recordings. "
                               f"{_fix(path.parent)}", paths=[path])
    samples.sort(key=lambda s: s[0])
    return (torch.stack([f for _, f, _ in samples]),                         # [N, T, 2, H, W]
            torch.tensor([y for _, _, y in samples], dtype=torch.int64))


def _trials(folder: Path, split: str) -> list[str]:
    listing = folder / f"trials_to_{split}.txt"
    try:
        names = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
    except OSError as exc:
        raise DatasetFileError(f"DVS128 Gesture: {listing} cannot be read ({exc}). "
                               f"{_fix(folder.parent)}", paths=[listing]) from exc
    if not names:
        raise DatasetFileError(f"DVS128 Gesture: {listing} names no trial. "
                               f"{_fix(folder.parent)}", paths=[listing])
    return names


def _original_files(folder: Path) -> dict[str, list[tuple[Path, Path]]]:
    out = {}
    missing = []
    for split in ("train", "test"):
        pairs = []
        for name in _trials(folder, split):
            aedat = folder / name
            labels = folder / f"{Path(name).stem}_labels.csv"
            missing += [p for p in (aedat, labels) if not p.is_file()]
            pairs.append((aedat, labels))
        out[split] = pairs
    if missing:
        listing = "\n".join(f"  - {p}" for p in missing[:10])
        raise DatasetFileError(f"DVS128 Gesture: {len(missing)} file(s) named by the trial lists "
                               f"are missing:\n{listing}\n{_fix(folder.parent)}", paths=missing)
    return out


def _read_original(pairs: list[tuple[Path, Path]],
                   opts: CameraFrameOptions) -> tuple[torch.Tensor, torch.Tensor]:
    frames, labels = [], []
    for aedat, csv_path in pairs:
        for events, label in read_gesture_trial(aedat, csv_path):
            frames.append(camera_frames(events, SENSOR, steps=opts.steps,
                                        time_window=opts.time_window, size=opts.size))
            labels.append(label)
    return torch.stack(frames), torch.tensor(labels, dtype=torch.int64)


def load_dvsgesture(root: Path, *, val_fraction: float = 0.1, split_seed: int = 0,
                    download: bool = False, steps: int = 16, time_window: float | None = None,
                    size: int = 32, cache: bool = True) -> SplitData:
    """Load DVS128 Gesture as event frames, split train / val / test.

    Args:
        root: Data root; files are read from ``<root>/dvsgesture/``.
        val_fraction: Share of the training gestures held out for validation (stratified).
        split_seed: Seed of the validation split.
        download: Fetch Tonic's tarballs when neither layout is present (needs internet).
        steps, time_window, size, cache: See :class:`snn5.data.events.CameraFrameOptions`.

    Returns:
        ``x``: float32 event counts ``[N, T, 2, size, size]`` (channel = polarity, 1 = ON);
        ``y``: int64 class 0..10. The test set is the official one (the 6 test subjects).

    Raises:
        DatasetFileError: Files are missing, corrupt or fail their md5; the message names them
            and the fix.
        ImportError: Tonic is not installed (the message gives the pip command).
    """
    opts = DVSGestureOptions(steps=steps, time_window=time_window, size=size, cache=cache)
    tonic()
    root = Path(root)
    directory = root / "dvsgesture"
    tarballs = {name: directory / name for name in DVSGESTURE_ARCHIVES}
    original = directory / "DvsGesture"
    if not all(p.is_file() for p in tarballs.values()) and not original.is_dir() and download:
        for name, (url, md5) in DVSGESTURE_ARCHIVES.items():
            if not tarballs[name].is_file():
                _download.download_file(name, directory, md5=md5, urls=[url],
                                        fix=_fix(directory))
    if all(p.is_file() for p in tarballs.values()):
        for name, path in tarballs.items():
            md5 = DVSGESTURE_ARCHIVES[name][1]
            got = _download.file_md5(path)
            if got != md5:
                raise DatasetFileError(f"DVS128 Gesture: {path} has md5 {got}, expected {md5} "
                                       "(the file Tonic checks); it is corrupt or another "
                                       f"version. {_fix(directory)}", paths=[path])
        checksum = "+".join(md5 for _, md5 in DVSGESTURE_ARCHIVES.values())
        layout = "Tonic's preprocessed tarballs"

        def build() -> dict[str, torch.Tensor]:
            (train_x, train_y), (test_x, test_y) = (
                _read_tarball(tarballs[name], opts) for name in DVSGESTURE_ARCHIVES)
            return {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y}
    elif original.is_dir():
        files = _original_files(original)
        listed = [original / "trials_to_train.txt", original / "trials_to_test.txt"]
        listed += [p for split in files.values() for pair in split for p in pair]
        checksum = files_checksum(listed, directory)
        layout = "original AEDAT 3.1 release"

        def build() -> dict[str, torch.Tensor]:
            train_x, train_y = _read_original(files["train"], opts)
            test_x, test_y = _read_original(files["test"], opts)
            return {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y}
    else:
        missing = [p for p in tarballs.values() if not p.is_file()]
        raise DatasetFileError(f"DVS128 Gesture not found: {', '.join(map(str, missing))} "
                               f"missing and no {original} folder. {_fix(directory)}",
                               paths=[*missing, original])

    params = {"layout": layout, **opts.model_dump(exclude={"cache"})}
    t = cached_tensors("dvsgesture", checksum, params, build, root=root, enabled=opts.cache)
    keep, held = stratified_split(t["train_y"].numpy(), val_fraction, split_seed)
    keep_t, held_t = torch.from_numpy(keep), torch.from_numpy(held)
    train = ArrayDataset(t["train_x"][keep_t], t["train_y"][keep_t])
    val = ArrayDataset(t["train_x"][held_t], t["train_y"][held_t])
    test = ArrayDataset(t["test_x"], t["test_y"])
    when = ("over each gesture" if opts.time_window is None
            else f"of {opts.time_window * 1e3:g} ms")
    description = (f"DVS128 Gesture ({layout}, 11 classes, {opts.steps} frames {when}, "
                   f"{opts.size}x{opts.size}): train {len(train)} / val {len(val)} / "
                   f"test {len(test)}")
    logger.debug("loaded dvsgesture: %s", description)
    return SplitData(name="dvsgesture", train=train, val=val, test=test,
                     input_shape=(opts.steps, 2, opts.size, opts.size),
                     num_classes=len(DVSGESTURE_CLASSES), checksum=checksum,
                     description=description)
