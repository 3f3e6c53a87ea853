"""The default dataset: scikit-learn's bundled digits, split train / val / test."""

from __future__ import annotations

import hashlib
from collections import Counter

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits as sk_load_digits

from snn5.data import DataConfig, SplitData, load_dataset
from snn5.data.base import stratified_split
from snn5.data.digits import load_digits

# sha256 of load_digits().data as little-endian float64 bytes + target as int64 bytes. Pinned:
# a change means scikit-learn shipped different data, which every run record would then show.
DIGITS_SHA256 = "f6d9e39f37dc45d327f6db33428ee58970ccceabb2535a5c179de35886b70443"


@pytest.fixture(scope="module")
def digits() -> SplitData:
    return load_digits(None, val_fraction=0.1, split_seed=0, download=False)


def rows(*datasets) -> Counter:
    """Multiset of (pixels, label) over the datasets."""
    out: Counter = Counter()
    for ds in datasets:
        for x, y in zip(ds.x.reshape(len(ds), -1).numpy(), ds.y.numpy(), strict=True):
            out[(x.tobytes(), int(y))] += 1
    return out


def class_counts(ds) -> list[int]:
    return torch.bincount(ds.y, minlength=10).tolist()


def test_shapes_dtypes_and_sizes(digits):
    assert digits.name == "digits"
    assert digits.input_shape == (1, 8, 8)
    assert digits.num_classes == 10
    assert (len(digits.train), len(digits.val), len(digits.test)) == (1293, 144, 360)
    for ds in (digits.train, digits.val, digits.test):
        assert ds.x.dtype == torch.float32 and ds.y.dtype == torch.int64
        assert ds.x.shape[1:] == (1, 8, 8)
        assert 0 <= int(ds.y.min()) and int(ds.y.max()) <= 9
    assert "train 1293 / val 144 / test 360" in digits.description
    assert "\n" not in digits.description


def test_pixels_scaled_to_unit_range(digits):
    x = torch.cat([digits.train.x, digits.val.x, digits.test.x])
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    sk = sk_load_digits()
    # values are the 0..16 counts divided by 16, exactly
    assert set((x * 16).unique().tolist()) == set(np.unique(sk.data).tolist())


def test_splits_partition_the_data(digits):
    sk = sk_load_digits()
    full = Counter()
    for x, y in zip((sk.data / 16).astype(np.float32), sk.target, strict=True):
        full[(x.tobytes(), int(y))] += 1
    assert rows(digits.train, digits.val, digits.test) == full


def test_checksum_identifies_the_source(digits):
    sk = sk_load_digits()
    expected = hashlib.sha256(np.asarray(sk.data, "<f8").tobytes()
                              + np.asarray(sk.target, "<i8").tobytes()).hexdigest()
    assert digits.checksum == expected
    assert digits.checksum == DIGITS_SHA256


def test_splits_are_stratified(digits):
    total = np.bincount(sk_load_digits().target, minlength=10)
    test = np.array(class_counts(digits.test))
    assert np.all(np.abs(test - 0.2 * total) <= 1)
    rest = total - test
    val = np.array(class_counts(digits.val))
    assert np.all(np.abs(val - 0.1 * rest) <= 1)


def test_test_set_is_fixed(digits):
    for val_fraction, split_seed in [(0.1, 1), (0.3, 0), (0.25, 12345)]:
        other = load_digits(None, val_fraction=val_fraction, split_seed=split_seed,
                            download=False)
        assert torch.equal(other.test.x, digits.test.x)
        assert torch.equal(other.test.y, digits.test.y)
        assert len(other.train) + len(other.val) == 1437


def test_val_split_depends_on_split_seed_only(digits):
    torch.manual_seed(123)
    np.random.seed(123)  # the global RNGs must play no part
    same = load_dataset(DataConfig(name="digits", split_seed=0))
    assert torch.equal(same.val.x, digits.val.x) and torch.equal(same.train.y, digits.train.y)
    other = load_dataset(DataConfig(name="digits", split_seed=1))
    assert not torch.equal(other.val.x, digits.val.x)
    assert rows(other.train, other.val) == rows(digits.train, digits.val)


def test_val_fraction_sets_val_size():
    data = load_digits(None, val_fraction=0.25, split_seed=0, download=False)
    assert len(data.val) == 360 and len(data.train) == 1077


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5, True])
def test_stratified_split_rejects_bad_fraction(fraction):
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        stratified_split(np.arange(100) % 5, fraction, seed=0)


def test_stratified_split_needs_every_class_in_both_parts():
    with pytest.raises(ValueError, match="at least one sample of each of the 10 classes"):
        load_digits(None, val_fraction=0.001, split_seed=0, download=False)


def test_stratified_split_partitions_indices():
    y = np.arange(200) % 4
    kept, held = stratified_split(y, 0.25, seed=3)
    assert len(held) == 50
    assert np.array_equal(np.sort(np.concatenate([kept, held])), np.arange(200))
    assert np.array_equal(kept, np.sort(kept)) and np.array_equal(held, np.sort(held))
    assert all(12 <= c <= 13 for c in np.bincount(y[held]))
