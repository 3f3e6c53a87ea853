"""In-memory dataset containers, the dataset file error, and the stratified split helper."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = ["ArrayDataset", "DatasetFileError", "SplitData", "stratified_split"]


class DatasetFileError(OSError):
    """A dataset file is missing, corrupt or malformed.

    The message names every affected file by its full path, what was expected (checksum,
    header), what was found, and how to fix it. ``paths`` holds the affected files.
    """

    def __init__(self, message: str, *, paths: Sequence[Path] = ()) -> None:
        super().__init__(message)
        self.paths: tuple[Path, ...] = tuple(Path(p) for p in paths)

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True, eq=False)
class ArrayDataset:
    """A labelled dataset held in memory as two tensors.

    Args:
        x: Inputs, float32. Shape ``[N, *input_shape]``.
        y: Class labels, int64. Shape ``[N]``.

    Example:
        >>> ds = ArrayDataset(torch.zeros(4, 1, 8, 8), torch.tensor([0, 1, 0, 1]))
        >>> len(ds)
        4
    """

    x: Tensor
    y: Tensor

    def __post_init__(self) -> None:
        if not isinstance(self.x, Tensor) or not isinstance(self.y, Tensor):
            raise TypeError(f"ArrayDataset needs torch tensors, got x: {type(self.x).__name__}, "
                            f"y: {type(self.y).__name__}; convert with torch.as_tensor(...).")
        if self.x.dtype != torch.float32:
            raise TypeError(f"ArrayDataset.x must be float32, got {self.x.dtype}; pass x.float().")
        if self.y.dtype != torch.int64:
            raise TypeError(f"ArrayDataset.y must be int64 class labels, got {self.y.dtype}; "
                            "pass y.long().")
        if self.x.dim() < 1 or self.y.dim() != 1:
            raise ValueError(f"ArrayDataset needs x of shape [N, ...] and y of shape [N], got "
                             f"x {tuple(self.x.shape)} and y {tuple(self.y.shape)}.")
        if self.x.shape[0] != self.y.shape[0]:
            raise ValueError(f"ArrayDataset x and y differ in length: x has {self.x.shape[0]} "
                             f"samples, y has {self.y.shape[0]} labels.")

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        """Return sample ``index`` as ``(x[index], y[index])`` (map-style dataset)."""
        return self.x[index], self.y[index]


@dataclass(frozen=True, eq=False)
class SplitData:
    """A dataset split into train / validation / test, with what identifies it.

    Args:
        name: Registry name of the dataset (``"digits"``, ``"mnist"``).
        train: Training split.
        val: Validation split, drawn from the training data with ``split_seed``.
        test: Test split (the official one where the dataset has one).
        input_shape: Shape of one sample, e.g. ``(1, 28, 28)``.
        num_classes: Number of classes; labels are ``0 .. num_classes - 1``.
        checksum: Hex sha256 identifying the source data (recorded with every run).
        description: One line: source and split sizes.
    """

    name: str
    train: ArrayDataset
    val: ArrayDataset
    test: ArrayDataset
    input_shape: tuple[int, ...]
    num_classes: int
    checksum: str
    description: str

    def __post_init__(self) -> None:
        if self.num_classes < 1:
            raise ValueError(f"SplitData '{self.name}': num_classes must be >= 1, "
                             f"got {self.num_classes}.")
        for split, ds in (("train", self.train), ("val", self.val), ("test", self.test)):
            if not isinstance(ds, ArrayDataset):
                raise TypeError(f"SplitData '{self.name}': {split} must be an ArrayDataset, "
                                f"got {type(ds).__name__}.")
            if tuple(ds.x.shape[1:]) != tuple(self.input_shape):
                raise ValueError(f"SplitData '{self.name}': {split} samples have shape "
                                 f"{tuple(ds.x.shape[1:])}, input_shape says "
                                 f"{tuple(self.input_shape)}.")

    def __repr__(self) -> str:
        return (f"SplitData(name={self.name!r}, train={len(self.train)}, val={len(self.val)}, "
                f"test={len(self.test)}, input_shape={self.input_shape}, "
                f"num_classes={self.num_classes}, checksum={self.checksum[:12]}...)")


def stratified_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split sample indices into (kept, held-out), preserving class proportions.

    The held-out part has ``ceil(fraction * N)`` samples (scikit-learn's rule). Both index
    arrays are sorted, so the kept samples stay in their original order and only the choice
    of held-out samples depends on ``seed``.

    Args:
        y: Class labels. Shape ``[N]``.
        fraction: Share of samples to hold out, ``0 < fraction < 1``.
        seed: Seed of the split; the same seed always gives the same split.

    Returns:
        ``(kept, held)``: sorted int64 index arrays that partition ``range(N)``.
    """
    from sklearn.model_selection import train_test_split  # sklearn import is slow: defer it

    if isinstance(fraction, bool) or not 0.0 < float(fraction) < 1.0:
        raise ValueError(f"the held-out fraction must lie strictly between 0 and 1, "
                         f"got {fraction!r}; e.g. val_fraction=0.1.")
    y = np.asarray(y)
    n = int(y.shape[0])
    num_classes = int(np.unique(y).size)
    n_held = math.ceil(float(fraction) * n)
    if n_held < num_classes or n - n_held < num_classes:
        raise ValueError(f"a stratified split of {n} samples with fraction {fraction} puts "
                         f"{n_held} samples in the held-out part and {n - n_held} in the rest; "
                         f"each part needs at least one sample of each of the {num_classes} "
                         "classes. Choose a fraction further from 0 and 1.")
    kept, held = train_test_split(np.arange(n), test_size=n_held, random_state=seed,
                                  shuffle=True, stratify=y)
    return np.sort(kept).astype(np.int64), np.sort(held).astype(np.int64)
