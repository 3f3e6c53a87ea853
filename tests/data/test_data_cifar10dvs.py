"""CIFAR10-DVS from per-class zips of AEDAT 2.0 recordings (and unpacked class folders), written
here in the original layout with the real jAER header: pixel mapping, labels, the stratified
9:1 test split, md5 and missing-file errors, cache, and the download path with a fake fetch."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from event_formats import aedat2_bytes
from snn5.data import DATASETS, DatasetFileError
from snn5.data import cifar10dvs
from snn5.data import download as download_module
from snn5.data.cifar10dvs import CIFAR10DVS_CLASSES, load_cifar10dvs

PER_CLASS = 20


def _recording(label: int, i: int) -> tuple[bytes, np.ndarray]:
    """AEDAT 2.0 bytes of one recording and its events as (x, y, p, t) in upright pixels."""
    rng = np.random.default_rng(100 * label + i)
    n = 15
    up = np.stack([rng.integers(0, 128, n), rng.integers(0, 128, n), rng.integers(0, 2, n),
                   np.sort(rng.integers(5_000, 1_000_000, n))], axis=1)
    up[0] = (label, 3 * i, 1, 5_000)
    # the file holds sensor addresses: x_address = 127 - y, y_address = 127 - x
    return aedat2_bytes(127 - up[:, 1], 127 - up[:, 0], up[:, 2], up[:, 3]), up


def _zip(directory: Path, cls: str, label: int) -> dict[int, np.ndarray]:
    events = {}
    with zipfile.ZipFile(directory / f"{cls}.zip", "w") as zf:
        for i in (10, 2, 0, 1, *range(3, 10), *range(11, PER_CLASS)):   # unsorted on purpose
            data, up = _recording(label, i)
            zf.writestr(f"{cls}/cifar10_{cls}_{i}.aedat", data)
            events[i] = up
    return events


@pytest.fixture
def root(tmp_path, monkeypatch):
    d = tmp_path / "cifar10dvs"
    d.mkdir()
    events = {cls: _zip(d, cls, k) for k, cls in enumerate(CIFAR10DVS_CLASSES)}
    monkeypatch.setattr(cifar10dvs, "CIFAR10DVS_ARCHIVES", {
        f"{cls}.zip": (url, hashlib.md5((d / f"{cls}.zip").read_bytes()).hexdigest())
        for cls, (url, _) in zip(CIFAR10DVS_CLASSES, cifar10dvs.CIFAR10DVS_ARCHIVES.values(),
                                 strict=True)})
    return tmp_path, events


def test_pixels_labels_and_stratified_split(root):
    path, events = root
    data = load_cifar10dvs(path, steps=2, size=128)
    assert DATASETS.get("cifar10dvs") is load_cifar10dvs and data.num_classes == 10
    assert (len(data.train), len(data.val), len(data.test)) == (162, 18, 20)   # 200 = 9:1
    for split in (data.train, data.val, data.test):
        counts = torch.bincount(split.y, minlength=10)
        assert counts.max() - counts.min() <= 1                      # stratified
    x = torch.cat([data.train.x, data.val.x, data.test.x])
    assert x.sum() == 200 * 15
    # recording order: class by class, recordings by index; find recording (3, 7) by content
    up = events["cat"][7]
    t = up[:, 3] - up[:, 3].min()
    w = -(-(int(t.max()) + 1) // 2)
    expect = torch.zeros(2, 2, 128, 128)
    for (ex, ey, ep, _), tt in zip(up, t, strict=True):
        expect[tt // w, ep, ey, ex] += 1
    hits = [i for i in range(len(x)) if torch.equal(x[i], expect)]
    assert len(hits) == 1
    y = torch.cat([data.train.y, data.val.y, data.test.y])
    assert int(y[hits[0]]) == 3
    other = load_cifar10dvs(path, steps=2, size=128, test_seed=1)
    assert not torch.equal(other.test.x, data.test.x)                # the test seed matters
    same = load_cifar10dvs(path, steps=2, size=128, split_seed=5)
    assert torch.equal(same.test.x, data.test.x)                     # val seed leaves test alone
    small = load_cifar10dvs(path, steps=2, size=32)
    assert small.input_shape == (2, 2, 32, 32) and "stratified 0.1 test split" in small.description


def test_unpacked_folders_give_the_same_frames(root, tmp_path):
    path, _ = root
    zipped = load_cifar10dvs(path, steps=3, cache=False)
    for cls in CIFAR10DVS_CLASSES:
        archive = path / "cifar10dvs" / f"{cls}.zip"
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(path / "cifar10dvs")
        archive.unlink()
    unpacked = load_cifar10dvs(path, steps=3, cache=False)
    assert torch.equal(zipped.train.x, unpacked.train.x)
    assert torch.equal(zipped.test.y, unpacked.test.y)


def test_md5_missing_and_corrupt_files_are_named(root, monkeypatch):
    path, _ = root
    d = path / "cifar10dvs"
    (d / "dog.zip").unlink()
    with pytest.raises(DatasetFileError, match=r"dog\.zip missing \(and no unpacked class "
                                               r"folder\).*download=True") as e:
        load_cifar10dvs(path)
    assert e.value.paths == (d / "dog.zip",)
    monkeypatch.undo()                                  # the md5s as SpikingJelly records them
    with pytest.raises(DatasetFileError, match=r"airplane\.zip has md5 .*expected "
                                               r"0afd5c4bf9ae06af762a77b180354fdd"):
        load_cifar10dvs(path)


def test_truncated_recording_is_named(tmp_path):
    d = tmp_path / "cifar10dvs"
    for k, cls in enumerate(CIFAR10DVS_CLASSES):
        (d / cls).mkdir(parents=True)
        for i in range(10):
            (d / cls / f"cifar10_{cls}_{i}.aedat").write_bytes(_recording(k, i)[0])
    bad = d / "frog" / "cifar10_frog_4.aedat"
    bad.write_bytes(bad.read_bytes()[:-2])
    with pytest.raises(DatasetFileError, match=r"cifar10_frog_4\.aedat: .*truncated"):
        load_cifar10dvs(tmp_path, val_fraction=0.2)


def test_cache_hit_and_download(root, tmp_path, monkeypatch):
    path, _ = root
    first = load_cifar10dvs(path, steps=2)
    monkeypatch.setattr(cifar10dvs, "camera_frames", lambda *a, **k: pytest.fail("rebinned"))
    assert torch.equal(load_cifar10dvs(path, steps=2).train.x, first.train.x)
    with pytest.raises(pytest.fail.Exception):
        load_cifar10dvs(path, steps=2, time_window=0.5)
    monkeypatch.undo()
    served = {url: (path / "cifar10dvs" / name).read_bytes()
              for name, (url, _) in cifar10dvs.CIFAR10DVS_ARCHIVES.items()}
    assert "https://ndownloader.figshare.com/files/7712788" in served

    def fake_fetch(url, out, *, timeout=60.0):
        out.write(served[url])
        return len(served[url])

    monkeypatch.setattr(download_module, "fetch_url", fake_fetch)
    with pytest.raises(DatasetFileError, match=r"(?s)could not download .*airplane\.zip.*"
                                               r"expected md5 0afd5c4b"):
        load_cifar10dvs(tmp_path / "fresh", download=True)
    monkeypatch.setattr(cifar10dvs, "CIFAR10DVS_ARCHIVES", {
        name: (url, hashlib.md5(served[url]).hexdigest())
        for name, (url, _) in cifar10dvs.CIFAR10DVS_ARCHIVES.items()})
    fetched = load_cifar10dvs(tmp_path / "fresh", download=True, steps=2)
    assert torch.equal(fetched.test.x, first.test.x)
