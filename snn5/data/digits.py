"""scikit-learn's bundled handwritten digits: the default dataset, no download needed."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import torch

from snn5.data.base import ArrayDataset, SplitData, stratified_split

__all__ = ["DIGITS_TEST_FRACTION", "DIGITS_TEST_SEED", "load_digits"]

logger = logging.getLogger(__name__)

DIGITS_TEST_FRACTION = 0.2
"""Share of the 1,797 images held out as the fixed test set."""

DIGITS_TEST_SEED = 0
"""Seed of the test hold-out: fixed and independent of ``split_seed``, so the test set never
changes."""

_MAX_PIXEL = 16.0  # each pixel counts the set bits (0..16) of a 4x4 block of a 32x32 bitmap


def load_digits(root: Path | None = None, *, val_fraction: float = 0.1, split_seed: int = 0,
                download: bool = False) -> SplitData:
    """Load scikit-learn's ``load_digits`` (UCI optdigits test set) as train / val / test.

    1,797 images of 8x8 pixels, 10 classes. The set has no official test split, so a
    stratified 20 % test set is held out with the fixed seed ``DIGITS_TEST_SEED``; the
    validation set is then drawn, stratified, from the rest with ``split_seed``.
    Pixels are scaled from 0..16 to [0, 1].

    Args:
        root: Data root; unused (the data ships inside scikit-learn), kept for the common
            loader signature.
        val_fraction: Share of the non-test images used for validation, ``0 < v < 1``.
        split_seed: Seed of the validation split.
        download: Unused; nothing to download.

    Returns:
        The split dataset. ``x``: float32 in [0, 1], shape ``[N, 1, 8, 8]``; ``y``: int64 in
        0..9. With the defaults: 1,293 train / 144 val / 360 test.
    """
    del root, download  # bundled with scikit-learn
    from sklearn.datasets import load_digits as sk_load_digits  # slow import: defer it

    bunch = sk_load_digits()
    data = np.asarray(bunch.data, dtype="<f8")      # [1797, 64], values 0..16
    target = np.asarray(bunch.target, dtype="<i8")  # [1797]
    checksum = hashlib.sha256(data.tobytes() + target.tobytes()).hexdigest()

    x_all = torch.from_numpy((data / _MAX_PIXEL).astype(np.float32)).reshape(-1, 1, 8, 8)
    y_all = torch.from_numpy(target.astype(np.int64))
    rest, test = stratified_split(target, DIGITS_TEST_FRACTION, DIGITS_TEST_SEED)
    train_pos, val_pos = stratified_split(target[rest], val_fraction, split_seed)
    train, val = rest[train_pos], rest[val_pos]

    def subset(idx: np.ndarray) -> ArrayDataset:
        index = torch.from_numpy(idx)
        return ArrayDataset(x_all[index], y_all[index])

    description = (f"scikit-learn load_digits (UCI optdigits, 8x8, 10 classes): "
                   f"train {len(train)} / val {len(val)} / test {len(test)}")
    logger.debug("loaded digits: %s", description)
    return SplitData(name="digits", train=subset(train), val=subset(val), test=subset(test),
                     input_shape=(1, 8, 8), num_classes=10, checksum=checksum,
                     description=description)
