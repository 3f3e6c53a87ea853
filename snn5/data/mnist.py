"""MNIST from the four original IDX ``.gz`` files, verified by md5 and IDX header."""

from __future__ import annotations

import gzip
import hashlib
import logging
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from snn5.data import download as _download
from snn5.data.base import ArrayDataset, DatasetFileError, SplitData, stratified_split
from snn5.data.root import DATA_ENV_VAR

__all__ = ["MNIST_FILES", "MNIST_MIRRORS", "download_mnist", "load_mnist", "read_idx"]

logger = logging.getLogger(__name__)

MNIST_FILES: dict[str, tuple[str, int]] = {
    "train-images-idx3-ubyte.gz": ("f68b3c2dcbeaaa9fbdd348bbdeb94873", 9_912_422),
    "train-labels-idx1-ubyte.gz": ("d53e105ee54ea40749a09fcbcd1e9432", 28_881),
    "t10k-images-idx3-ubyte.gz": ("9fb629c4189551a2d022fa330f9573f3", 1_648_877),
    "t10k-labels-idx1-ubyte.gz": ("ec29112dd5afa0611ce80d1b7f02629c", 4_542),
}
"""The canonical files: name -> (md5, size in bytes), in the order the checksum uses."""

MNIST_MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
"""Base URLs tried in order by :func:`download_mnist`."""

_IMAGES_MAGIC, _LABELS_MAGIC = 2051, 2049  # 0x00000803: ubyte, 3 dims; 0x00000801: ubyte, 1 dim
_SIDE = 28
_COUNTS = {"train": 60_000, "t10k": 10_000}


def _fix(directory: Path) -> str:
    return (f"To fix: copy the original MNIST files into {directory} (keep their names), "
            f"or point {DATA_ENV_VAR} / --data-dir at the folder that contains mnist/, "
            "or fetch them with download=True (DataConfig(download=True)) "
            "or `snn5 download mnist`.")


def read_idx(path: Path, *, magic: int, shape: Sequence[int]) -> np.ndarray:
    """Read a gzip-compressed IDX file of unsigned bytes, checking its header.

    Args:
        path: The ``.gz`` file.
        magic: Expected magic number (2051 for images, 2049 for labels).
        shape: Expected dimensions from the header, e.g. ``(60000, 28, 28)``.

    Returns:
        uint8 array of the given shape.

    Raises:
        DatasetFileError: The file is not valid gzip, the header differs from the expected
            one, or the payload size does not match the header.
    """
    expected = f"magic {magic} with dims {tuple(shape)}"
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise DatasetFileError(f"{path} is not a readable gzip file ({type(exc).__name__}: "
                               f"{exc}); expected an IDX file with {expected}. "
                               f"{_fix(path.parent)}", paths=[path]) from exc
    header_len = 4 + 4 * len(shape)
    if len(raw) < header_len:
        raise DatasetFileError(f"{path} holds {len(raw)} bytes, too few for an IDX header with "
                               f"{expected}. {_fix(path.parent)}", paths=[path])
    found_magic, *dims = struct.unpack(f">{1 + len(shape)}I", raw[:header_len])
    if found_magic != magic or tuple(dims) != tuple(shape):
        raise DatasetFileError(f"{path} has an unexpected IDX header: expected {expected}, "
                               f"found magic {found_magic} with dims {tuple(dims)}. "
                               f"{_fix(path.parent)}", paths=[path])
    count = int(np.prod(shape))
    if len(raw) - header_len != count:
        raise DatasetFileError(f"{path} has {len(raw) - header_len} data bytes after its "
                               f"header, expected {count} for dims {tuple(shape)}. "
                               f"{_fix(path.parent)}", paths=[path])
    return np.frombuffer(raw, dtype=np.uint8, offset=header_len).reshape(tuple(shape))


def _verify(directory: Path) -> None:
    """Raise one DatasetFileError listing every missing file, else every md5 mismatch."""
    paths = [directory / name for name in MNIST_FILES]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        listing = "\n".join(f"  - {p}" for p in missing)
        raise DatasetFileError(f"MNIST: {len(missing)} of {len(paths)} files missing:\n"
                               f"{listing}\n{_fix(directory)}", paths=missing)
    bad: list[Path] = []
    lines: list[str] = []
    for path in paths:
        md5, size = MNIST_FILES[path.name]
        found = _download.file_md5(path)
        if found != md5:
            bad.append(path)
            lines.append(f"  - {path}: expected md5 {md5} ({size} bytes), found md5 {found} "
                         f"({path.stat().st_size} bytes)")
    if bad:
        listing = "\n".join(lines)
        raise DatasetFileError(f"MNIST: {len(bad)} file(s) corrupt (md5 mismatch):\n{listing}\n"
                               f"Delete them and fetch them again. {_fix(directory)}", paths=bad)


def download_mnist(root: Path, *, mirrors: Sequence[str] = MNIST_MIRRORS) -> None:
    """Download the MNIST files that are missing or corrupt under ``<root>/mnist/``.

    Each file is fetched from the mirrors in order, written to a temp file in the same
    folder and renamed into place only after its md5 matches. Intact files are kept.

    Args:
        root: Data root (see :func:`resolve_data_dir`); files go to ``root / "mnist"``.
        mirrors: Base URLs tried in order.

    Raises:
        DatasetFileError: A file could not be fetched intact from any mirror; the message
            names the file, every URL tried and why, and the manual fix.
    """
    directory = Path(root) / "mnist"
    for name, (md5, _size) in MNIST_FILES.items():
        path = directory / name
        if path.is_file():
            if _download.file_md5(path) == md5:
                logger.debug("MNIST %s present, md5 ok", path)
                continue
            logger.warning("MNIST %s is corrupt (md5 mismatch); downloading it again", path)
        _download.download_file(name, directory, md5=md5, mirrors=mirrors,
                                fix=_fix(directory))


def load_mnist(root: Path, *, val_fraction: float = 0.1, split_seed: int = 0,
               download: bool = False) -> SplitData:
    """Load MNIST from ``<root>/mnist/`` as train / val / test.

    Every load checks the md5 of the four files and their IDX headers. The validation set
    is a stratified ``val_fraction`` of the 60,000 training images drawn with
    ``split_seed``; the test set is the official 10,000 images.

    Args:
        root: Data root (see :func:`resolve_data_dir`).
        val_fraction: Share of the training images used for validation, ``0 < v < 1``.
        split_seed: Seed of the validation split.
        download: Fetch missing or corrupt files first (needs internet).

    Returns:
        The split dataset. ``x``: float32 in [0, 1], shape ``[N, 1, 28, 28]``; ``y``: int64
        in 0..9. With the defaults: 54,000 train / 6,000 val / 10,000 test.

    Raises:
        DatasetFileError: A file is missing, corrupt or malformed; the message names the
            file(s) and the fix.
    """
    directory = Path(root) / "mnist"
    if download:
        download_mnist(root)
    _verify(directory)
    arrays = {}
    for split, n in _COUNTS.items():
        images_path = directory / f"{split}-images-idx3-ubyte.gz"
        labels_path = directory / f"{split}-labels-idx1-ubyte.gz"
        images = read_idx(images_path, magic=_IMAGES_MAGIC, shape=(n, _SIDE, _SIDE))
        labels = read_idx(labels_path, magic=_LABELS_MAGIC, shape=(n,))
        if labels.max() > 9:
            raise DatasetFileError(f"{labels_path} holds label {int(labels.max())}; MNIST "
                                   f"labels are 0..9. {_fix(directory)}", paths=[labels_path])
        arrays[split] = (images, labels)

    def to_dataset(images: np.ndarray, labels: np.ndarray) -> ArrayDataset:
        x = torch.from_numpy(images.astype(np.float32)).div_(255.0).unsqueeze(1)  # [N, 1, 28, 28]
        return ArrayDataset(x, torch.from_numpy(labels.astype(np.int64)))

    train_images, train_labels = arrays["train"]
    train_idx, val_idx = stratified_split(train_labels, val_fraction, split_seed)
    train = to_dataset(train_images[train_idx], train_labels[train_idx])
    val = to_dataset(train_images[val_idx], train_labels[val_idx])
    test = to_dataset(*arrays["t10k"])
    checksum = hashlib.sha256("\n".join(md5 for md5, _ in MNIST_FILES.values()).encode())
    description = ("MNIST (original IDX files, 28x28, 10 classes): "
                   f"train {len(train)} / val {len(val)} / test {len(test)}")
    logger.debug("loaded mnist: %s", description)
    return SplitData(name="mnist", train=train, val=val, test=test, input_shape=(1, _SIDE, _SIDE),
                     num_classes=10, checksum=checksum.hexdigest(), description=description)
