"""DVS128 Gesture from Tonic's npy tarballs and from the original AEDAT 3.1 + labels CSV
release, both written here in their real layouts: binning, labels, splits, md5, errors, cache,
and the download path with a fake fetch."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from event_formats import aedat31_bytes, aedat31_packet, aedat31_special_packet
from snn5.data import DATASETS, DatasetFileError
from snn5.data import download as download_module
from snn5.data import dvsgesture
from snn5.data.dvsgesture import load_dvsgesture

TRAIN_USERS = ("user01_fluorescent", "user02_led")
TEST_USERS = ("user24_natural",)


def _gesture(label: int, rng: np.random.Generator) -> np.ndarray:
    """[N, 4] events (x, y, p, t [ms]) as in Tonic's arrays: first event at t = 0, one at
    (127, 127) last."""
    n = 30 + label
    a = np.empty((n, 4), dtype=np.int64)
    a[:, 0], a[:, 1] = rng.integers(0, 128, n), rng.integers(0, 128, n)
    a[:, 2] = rng.integers(0, 2, n)
    a[:, 3] = np.sort(rng.integers(0, 1500, n))
    a[0] = (label, 2 * label, 1, 0)
    a[-1] = (127, 127, 0, 1500 + 10 * label)
    return a


def _tarball(path: Path, folder: str, users: tuple[str, ...], seed: int) -> dict:
    rng = np.random.default_rng(seed)
    arrays = {}
    with tarfile.open(path, "w:gz") as tar:
        for user in users:
            for label in range(11):
                a = _gesture(label, rng)
                buf = io.BytesIO()
                np.save(buf, a)
                info = tarfile.TarInfo(f"{folder}/{user}/{label}.npy")
                info.size = buf.tell()
                buf.seek(0)
                tar.addfile(info, buf)
                arrays[(user, label)] = a
    return arrays


def _expected(a: np.ndarray, steps: int, size: int) -> torch.Tensor:
    """Independent binning: T windows of ceil((span + 1) / T) us from the first event."""
    t = a[:, 3] * 1000
    t = t - t.min()
    w = -(-(int(t.max()) + 1) // steps)
    f = torch.zeros(steps, 2, size, size)
    for (x, y, p, _), tt in zip(a, t, strict=True):
        f[tt // w, p, y * size // 128, x * size // 128] += 1
    return f


@pytest.fixture
def tonic_root(tmp_path, monkeypatch):
    d = tmp_path / "dvsgesture"
    d.mkdir()
    train = _tarball(d / "ibmGestureTrain.tar.gz", "ibmGestureTrain", TRAIN_USERS, 0)
    test = _tarball(d / "ibmGestureTest.tar.gz", "ibmGestureTest", TEST_USERS, 1)
    md5s = {name: (url, hashlib.md5((d / name).read_bytes()).hexdigest())
            for name, (url, _) in dvsgesture.DVSGESTURE_ARCHIVES.items()}
    monkeypatch.setattr(dvsgesture, "DVSGESTURE_ARCHIVES", md5s)
    return tmp_path, train, test


def test_tonic_tarballs_bin_every_event(tonic_root):
    root, _, test = tonic_root
    data = load_dvsgesture(root, val_fraction=0.5)
    assert DATASETS.get("dvsgesture") is load_dvsgesture and data.num_classes == 11
    assert (len(data.train), len(data.val), len(data.test)) == (11, 11, 11)
    assert data.input_shape == (16, 2, 32, 32)
    assert data.test.y.tolist() == list(range(11))                  # sorted user, class
    for label in (0, 4, 10):
        a = test[(TEST_USERS[0], label)]
        assert torch.equal(data.test.x[label], _expected(a, 16, 32))
    full = load_dvsgesture(root, val_fraction=0.5, steps=4, size=128)
    assert full.input_shape == (4, 2, 128, 128)
    a = test[(TEST_USERS[0], 3)]
    assert full.test.x[3, 0, 1, 6, 3] >= 1 and full.test.x[3, 3, 0, 127, 127] >= 1
    assert int(full.test.x[3].sum()) == len(a)
    fixed = load_dvsgesture(root, val_fraction=0.5, steps=2, time_window=1.0, size=16)
    assert int(fixed.test.x[3].sum()) == int((a[:, 3] < 2000).sum())   # after 2 s dropped


def test_wrong_md5_and_missing_files_are_named(tonic_root, monkeypatch):
    root, _, _ = tonic_root
    monkeypatch.setattr(dvsgesture, "DVSGESTURE_ARCHIVES", {
        "ibmGestureTrain.tar.gz": ("u", "3a8f0d4120a166bac7591f77409cb105"),
        "ibmGestureTest.tar.gz": ("u", "56070e45dadaa85fff82e0fbfbc06de5")})
    with pytest.raises(DatasetFileError, match=r"ibmGestureTrain\.tar\.gz has md5 .*expected "
                                               r"3a8f0d41.*download=True"):
        load_dvsgesture(root)
    (root / "dvsgesture" / "ibmGestureTest.tar.gz").unlink()
    with pytest.raises(DatasetFileError, match=r"ibmGestureTest\.tar\.gz missing and no .*"
                                               r"DvsGesture folder") as e:
        load_dvsgesture(root)
    assert root / "dvsgesture" / "DvsGesture" in e.value.paths


def test_cache_hit_and_invalidation(tonic_root, monkeypatch):
    root, _, _ = tonic_root
    first = load_dvsgesture(root, val_fraction=0.5, steps=3)
    monkeypatch.setattr(dvsgesture, "camera_frames", lambda *a, **k: pytest.fail("rebinned"))
    again = load_dvsgesture(root, val_fraction=0.5, steps=3)
    assert torch.equal(first.train.x, again.train.x) and torch.equal(first.test.x, again.test.x)
    with pytest.raises(pytest.fail.Exception):
        load_dvsgesture(root, val_fraction=0.5, steps=3, size=64)


def test_download_fetches_tonics_tarballs(tmp_path, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    _tarball(src / "ibmGestureTrain.tar.gz", "ibmGestureTrain", TRAIN_USERS, 0)
    _tarball(src / "ibmGestureTest.tar.gz", "ibmGestureTest", TEST_USERS, 1)
    by_url = {url: src / name for name, (url, _) in dvsgesture.DVSGESTURE_ARCHIVES.items()}
    assert set(by_url) == {"https://figshare.com/ndownloader/files/38022171",
                           "https://figshare.com/ndownloader/files/38020584"}

    def fake_fetch(url, out, *, timeout=60.0):
        data = by_url[url].read_bytes()
        out.write(data)
        return len(data)

    monkeypatch.setattr(download_module, "fetch_url", fake_fetch)
    with pytest.raises(DatasetFileError, match=r"(?s)could not download .*ibmGestureTrain"):
        load_dvsgesture(tmp_path / "a", download=True)            # Tonic's md5: fake rejected
    monkeypatch.setattr(dvsgesture, "DVSGESTURE_ARCHIVES", {
        name: (url, hashlib.md5((src / name).read_bytes()).hexdigest())
        for name, (url, _) in dvsgesture.DVSGESTURE_ARCHIVES.items()})
    data = load_dvsgesture(tmp_path / "a", download=True, val_fraction=0.5)
    assert len(data.test) == 11
    assert (tmp_path / "a" / "dvsgesture" / "ibmGestureTest.tar.gz").is_file()


def _trial(folder: Path, name: str, rng: np.random.Generator) -> list[tuple[int, np.ndarray]]:
    """An AEDAT 3.1 trial with 11 gestures of 1 s each (plus events between them) and its
    labels CSV; returns (label, events [x, y, p, t us]) per gesture."""
    rows, gestures, packets = [], [], []
    for k, cls in enumerate(rng.permutation(11) + 1):
        start = 1_000_000 + k * 2_000_000
        n = 20
        ev = np.stack([rng.integers(0, 128, n), rng.integers(0, 128, n), rng.integers(0, 2, n),
                       np.sort(rng.integers(start, start + 1_000_000, n))], axis=1)
        ev[0, 3], ev[-1, 3] = start, start + 999_999                 # both ends inside
        rows.append(f"{cls},{start},{start + 1_000_000}")
        gestures.append((int(cls) - 1, ev))
        outside = np.array([[1, 1, 1, start + 1_000_000], [2, 2, 0, start + 1_500_000]])
        for chunk in (ev[:10], ev[10:], outside):
            packets.append(aedat31_packet(*chunk.T))
        packets.append(aedat31_special_packet())
    (folder / f"{name}.aedat").write_bytes(aedat31_bytes(*packets))
    (folder / f"{name}_labels.csv").write_text(
        "class,startTime_usec,endTime_usec\n" + "\n".join(rows) + "\n")
    return gestures


def test_original_aedat31_release(tmp_path):
    folder = tmp_path / "dvsgesture" / "DvsGesture"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for user in ("user01_fluorescent", "user02_led", "user24_natural"):
        gestures = _trial(folder, user, rng)
    (folder / "trials_to_train.txt").write_text("user01_fluorescent.aedat\nuser02_led.aedat\n\n")
    (folder / "trials_to_test.txt").write_text("user24_natural.aedat\n")
    data = load_dvsgesture(tmp_path, val_fraction=0.5, steps=4, size=128)
    assert (len(data.train), len(data.val), len(data.test)) == (11, 11, 11)
    assert "original AEDAT 3.1" in data.description
    assert data.test.y.tolist() == [label for label, _ in gestures]   # CSV row order
    for i, (_, ev) in enumerate(gestures):
        x = data.test.x[i]
        assert int(x.sum()) == len(ev)                 # the events between gestures excluded
        t = ev[:, 3] - ev[0, 3]
        w = -(-(int(t.max()) + 1) // 4)
        for (ex, ey, ep, _), tt in zip(ev, t, strict=True):
            assert x[tt // w, ep, ey, ex] >= 1
    (folder / "user02_led_labels.csv").unlink()
    with pytest.raises(DatasetFileError, match=r"user02_led_labels\.csv\n.*To fix") as e:
        load_dvsgesture(tmp_path)
    assert e.value.paths == (folder / "user02_led_labels.csv",)
