"""MNIST from the real IDX files: shapes, counts, checksum, and errors for bad files."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import struct
from pathlib import Path

import pytest
import torch

from snn5.data import DataConfig, DatasetFileError, SplitData, load_dataset
from snn5.data import download as download_module
from snn5.data.mnist import MNIST_FILES, load_mnist, read_idx

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
FIX_HINTS = ("SNN5_DATA", "--data-dir", "download=True", "snn5 download mnist")


@pytest.fixture(scope="module")
def mnist(mnist_root: Path) -> SplitData:
    return load_mnist(mnist_root, val_fraction=0.1, split_seed=0, download=False)


@pytest.fixture
def no_network(monkeypatch):
    def refuse(url, out, **kwargs):
        pytest.fail(f"network fetch attempted without download=True: {url}")

    monkeypatch.setattr(download_module, "fetch_url", refuse)


def counts(ds) -> list[int]:
    return torch.bincount(ds.y, minlength=10).tolist()


def test_shapes_and_dtypes(mnist):
    assert mnist.name == "mnist"
    assert mnist.input_shape == (1, 28, 28) and mnist.num_classes == 10
    assert (len(mnist.train), len(mnist.val), len(mnist.test)) == (54000, 6000, 10000)
    for ds in (mnist.train, mnist.val, mnist.test):
        assert ds.x.dtype == torch.float32 and ds.y.dtype == torch.int64
        assert ds.x.shape[1:] == (1, 28, 28)
        assert float(ds.x.min()) == 0.0 and float(ds.x.max()) == 1.0
    assert "train 54000 / val 6000 / test 10000" in mnist.description


def test_class_counts(mnist):
    assert [a + b for a, b in zip(counts(mnist.train), counts(mnist.val), strict=True)] \
        == TRAIN_COUNTS
    assert counts(mnist.test) == TEST_COUNTS


def test_val_split_is_stratified(mnist):
    for n_val, n_all in zip(counts(mnist.val), TRAIN_COUNTS, strict=True):
        assert abs(n_val - 0.1 * n_all) <= 1


def test_pixel_means(mnist):
    test_sum = mnist.test.x.sum(dtype=torch.float64)
    assert float(test_sum) / (10000 * 784) == pytest.approx(33.7912 / 255, abs=1e-6)
    train_sum = mnist.train.x.sum(dtype=torch.float64) + mnist.val.x.sum(dtype=torch.float64)
    assert float(train_sum) / (60000 * 784) == pytest.approx(33.3184 / 255, abs=1e-6)


def test_checksum_is_sha256_of_the_md5s(mnist):
    md5s = [md5 for md5, _ in MNIST_FILES.values()]
    assert md5s[0] == "f68b3c2dcbeaaa9fbdd348bbdeb94873"  # fixed order: train images first
    assert mnist.checksum == hashlib.sha256("\n".join(md5s).encode()).hexdigest()


def test_load_dataset_through_env(mnist_root, monkeypatch, mnist):
    monkeypatch.setenv("SNN5_DATA", str(mnist_root))
    data = load_dataset(DataConfig(name="mnist", split_seed=1, val_fraction=0.05))
    assert (len(data.train), len(data.val)) == (57000, 3000)
    assert data.checksum == mnist.checksum
    assert torch.equal(data.test.y, mnist.test.y)


# ---------------------------------------------------------------- missing and corrupt files


def link_files(src: Path, root: Path, names) -> Path:
    """Make ``root/mnist`` holding symlinks to the named real files."""
    directory = root / "mnist"
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        os.symlink(src / name, directory / name)
    return directory


def check_message(error: DatasetFileError, paths) -> str:
    message = str(error)
    for path in paths:
        assert str(path) in message
    for hint in FIX_HINTS:
        assert hint in message
    assert set(error.paths) == set(paths)
    return message


def test_missing_files_listed_in_one_error(mnist_dir, tmp_path, no_network):
    names = list(MNIST_FILES)
    directory = link_files(mnist_dir, tmp_path, names[1:3])
    missing = [directory / names[0], directory / names[3]]
    with pytest.raises(DatasetFileError) as info:
        load_mnist(tmp_path, val_fraction=0.1, split_seed=0, download=False)
    message = check_message(info.value, missing)
    assert "2 of 4 files missing" in message
    assert isinstance(info.value, OSError)


def test_missing_folder(tmp_path, no_network):
    with pytest.raises(DatasetFileError, match="4 of 4 files missing") as info:
        load_dataset(DataConfig(name="mnist", data_dir=str(tmp_path)))
    check_message(info.value, [tmp_path / "mnist" / name for name in MNIST_FILES])


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_corrupt_file_named_with_md5s(mnist_dir, tmp_path, damage, no_network):
    names = list(MNIST_FILES)
    victim = "t10k-labels-idx1-ubyte.gz"
    directory = link_files(mnist_dir, tmp_path, [n for n in names if n != victim])
    data = bytearray((mnist_dir / victim).read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data[len(data) // 2] ^= 0xFF
    (directory / victim).write_bytes(bytes(data))
    with pytest.raises(DatasetFileError) as info:
        load_mnist(tmp_path, val_fraction=0.1, split_seed=0, download=False)
    message = check_message(info.value, [directory / victim])
    assert "expected md5 ec29112dd5afa0611ce80d1b7f02629c (4542 bytes)" in message
    assert f"found md5 {hashlib.md5(data).hexdigest()} ({len(data)} bytes)" in message
    assert "1 file(s) corrupt" in message


def test_several_corrupt_files_in_one_error(mnist_dir, tmp_path, no_network):
    names = list(MNIST_FILES)
    directory = link_files(mnist_dir, tmp_path, names[:2])
    for name in names[2:]:
        (directory / name).write_bytes(b"not mnist")
    with pytest.raises(DatasetFileError, match="2 file") as info:
        load_mnist(tmp_path, val_fraction=0.1, split_seed=0, download=False)
    check_message(info.value, [directory / name for name in names[2:]])


# ---------------------------------------------------------------- IDX header checks


def write_idx(path: Path, magic: int, dims, payload: bytes | None = None) -> Path:
    header = struct.pack(f">{1 + len(dims)}I", magic, *dims)
    if payload is None:
        payload = bytes(int(torch.tensor(dims).prod()))
    with gzip.open(path, "wb") as f:
        f.write(header + payload)
    return path


def test_read_idx_valid(tmp_path):
    path = write_idx(tmp_path / "ok.gz", 2051, (2, 28, 28), bytes(range(256)) * 6 + bytes(32))
    array = read_idx(path, magic=2051, shape=(2, 28, 28))
    assert array.shape == (2, 28, 28) and array.dtype.name == "uint8"
    assert array.reshape(-1)[:256].tolist() == list(range(256))


@pytest.mark.parametrize(("magic", "dims", "payload", "match"), [
    (2049, (2, 28, 28), None, r"expected magic 2051 with dims \(2, 28, 28\), found magic 2049"),
    (2051, (3, 28, 28), None, r"found magic 2051 with dims \(3, 28, 28\)"),
    (2051, (2, 28, 28), bytes(100), r"100 data bytes after its header, expected 1568"),
])
def test_read_idx_rejects_bad_headers(tmp_path, magic, dims, payload, match):
    path = write_idx(tmp_path / "bad.gz", magic, dims, payload)
    with pytest.raises(DatasetFileError, match=match) as info:
        read_idx(path, magic=2051, shape=(2, 28, 28))
    assert str(path) in str(info.value) and info.value.paths == (path,)


def test_read_idx_rejects_non_gzip_and_short_files(tmp_path):
    plain = tmp_path / "plain.gz"
    plain.write_bytes(b"\x00\x00\x08\x03 not gzip")
    with pytest.raises(DatasetFileError, match="not a readable gzip file"):
        read_idx(plain, magic=2051, shape=(2, 28, 28))
    real = tmp_path / "cut.gz"
    with gzip.open(real, "wb") as f:
        f.write(b"\x00\x00\x08")
    with pytest.raises(DatasetFileError, match="too few for an IDX header"):
        read_idx(real, magic=2051, shape=(2, 28, 28))
    truncated = tmp_path / "truncated.gz"
    write_idx(truncated, 2051, (2, 28, 28))
    truncated.write_bytes(truncated.read_bytes()[:-12])
    with pytest.raises(DatasetFileError, match="not a readable gzip file"):
        read_idx(truncated, magic=2051, shape=(2, 28, 28))


def test_header_check_runs_on_real_files(mnist_dir, tmp_path):
    """The real label file read with the image magic is rejected with both headers named."""
    path = tmp_path / "labels.gz"
    shutil.copyfile(mnist_dir / "t10k-labels-idx1-ubyte.gz", path)
    with pytest.raises(DatasetFileError, match="found magic 2049"):
        read_idx(path, magic=2051, shape=(10000, 28, 28))
