"""SHD from HDF5 files laid out as the published shd_train.h5 / shd_test.h5 (written here with
h5py): binning, labels, split, errors, cache and the download path with a fake fetch."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from event_formats import write_shd
from snn5.data import DATASETS, DataConfig, DatasetFileError, load_dataset
from snn5.data import download as download_module
from snn5.data import shd
from snn5.data.shd import bin_shd_spikes, load_shd

pytest.importorskip("h5py")


def _recordings(n: int, seed: int) -> tuple[list, list, list]:
    rng = np.random.default_rng(seed)
    times = [np.sort(rng.uniform(0, 1.2, size=rng.integers(5, 40))) for _ in range(n)]
    units = [rng.integers(0, 700, size=len(t)) for t in times]
    return times, units, [i % 20 for i in range(n)]


@pytest.fixture
def root(tmp_path) -> Path:
    (tmp_path / "shd").mkdir()
    write_shd(tmp_path / "shd" / "shd_train.h5", *_recordings(200, 0))
    write_shd(tmp_path / "shd" / "shd_test.h5", *_recordings(20, 1))
    return tmp_path


def test_every_spike_lands_in_its_frame_and_channel():
    times = [np.array([0.0, 0.0099, 0.0101, 0.0255, 0.999, 1.0, 1.3], np.float32), np.zeros(0)]
    units = [np.array([0, 0, 699, 5, 7, 8, 9]), np.zeros(0, np.int64)]
    f = bin_shd_spikes(times, units, time_window=10e-3, steps=100)
    assert f.shape == (2, 100, 700) and f.dtype == torch.float32
    assert f[0, 0, 0] == 2 and f[0, 1, 699] == 1 and f[0, 2, 5] == 1 and f[0, 99, 7] == 1
    assert f.sum() == 5                                   # t >= 1.0 s is beyond 100 x 10 ms
    pooled = bin_shd_spikes(times, units, time_window=10e-3, steps=100, channels=140)
    assert pooled[0, 1, 139] == 1 and pooled[0, 2, 1] == 1 and pooled.sum() == 5


def test_load_split_labels_and_frames(root):
    data = load_shd(root, time_window=20e-3, steps=50)
    assert DATASETS.get("shd") is load_shd and data.num_classes == 20
    assert (len(data.train), len(data.val), len(data.test)) == (180, 20, 20)
    assert data.input_shape == (50, 700)
    times, units, labels = _recordings(20, 1)
    assert data.test.y.tolist() == labels
    for i in (0, 7):
        t_us = np.floor(np.asarray(times[i], np.float32).astype(np.float64) * 1e6)
        expect = torch.zeros(50, 700)
        for k, u in zip((t_us // 20_000).astype(int), units[i], strict=True):
            if k < 50:
                expect[k, u] += 1
        assert torch.equal(data.test.x[i], expect)
    assert "train 180 / val 20 / test 20" in data.description
    via_config = load_dataset(DataConfig(name="shd", data_dir=str(root), val_fraction=0.1,
                                         options={"time_window": 20e-3, "steps": 50}))
    assert torch.equal(via_config.train.x, data.train.x) and via_config.checksum == data.checksum


def test_cache_hit_and_invalidation(root, monkeypatch):
    first = load_shd(root, steps=20)
    monkeypatch.setattr(shd, "read_shd", lambda path: pytest.fail("read although cached"))
    assert torch.equal(load_shd(root, steps=20).test.x, first.test.x)
    with pytest.raises(pytest.fail.Exception):                         # new binning: rebuilt
        load_shd(root, steps=21)
    write_shd(root / "shd" / "shd_test.h5", *_recordings(20, 2))       # changed file: rebuilt
    with pytest.raises(pytest.fail.Exception):
        load_shd(root, steps=20)


def test_missing_and_malformed_files_are_named(root):
    (root / "shd" / "shd_test.h5").unlink()
    with pytest.raises(DatasetFileError, match=r"shd_test\.h5 is missing.*download=True") as e:
        load_shd(root)
    assert e.value.paths == (root / "shd" / "shd_test.h5",)
    (root / "shd" / "shd_test.h5").write_bytes(b"not hdf5")
    with pytest.raises(DatasetFileError, match=r"shd_test\.h5 is not a readable SHD HDF5"):
        load_shd(root, cache=False)
    times, units, labels = _recordings(3, 0)
    units[1][0] = 700
    write_shd(root / "shd" / "shd_test.h5", times, units, labels)
    with pytest.raises(DatasetFileError, match=r"shd_test\.h5 is malformed: 1 recording\(s\) "
                                               r"with channels outside 0\.\.699"):
        load_shd(root, cache=False)


def test_download_fetches_checks_and_unpacks(root, tmp_path, monkeypatch):
    payloads = {}
    for split in ("train", "test"):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.write(root / "shd" / f"shd_{split}.h5", f"shd_{split}.h5")
        payloads[f"shd_{split}.h5.zip"] = buf.getvalue()
    urls = []

    def fake_fetch(url, out, *, timeout=60.0):
        urls.append(url)
        data = payloads[url.rsplit("/", 1)[1]]
        out.write(data)
        return len(data)

    monkeypatch.setattr(download_module, "fetch_url", fake_fetch)
    target = tmp_path / "fresh"
    with pytest.raises(DatasetFileError, match=r"(?s)could not download .*shd_train\.h5\.zip.*"
                                               r"expected md5 f3252aeb"):
        load_shd(target, download=True)                # Tonic's md5 rejects the fake bytes
    assert not list((target / "shd").glob("*"))        # nothing partial left behind
    monkeypatch.setattr(shd, "SHD_ARCHIVES", {name: hashlib.md5(data).hexdigest()
                                              for name, data in payloads.items()})
    data = load_shd(target, download=True, steps=10)
    assert urls[-2:] == ["https://zenkelab.org/datasets/shd_train.h5.zip",
                         "https://zenkelab.org/datasets/shd_test.h5.zip"]
    assert sorted(p.name for p in (target / "shd").iterdir()) == ["shd_test.h5", "shd_train.h5"]
    assert torch.equal(data.test.x, load_shd(root, steps=10).test.x)
