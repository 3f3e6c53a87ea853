"""N-MNIST subset from the original .bin files (read and binned through Tonic)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import tonic  # noqa: F401  (in the test extra: the N-MNIST tests always run)

from snn5.data import DATASETS, DatasetFileError, SplitData  # noqa: E402
from snn5.data.nmnist import events_to_frames, load_nmnist, read_nmnist_events  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
TRAIN_COUNTS = [97, 116, 99, 93, 105, 92, 94, 117, 87, 100]      # the subset's README
TEST_COUNTS = [8, 14, 8, 11, 14, 7, 10, 15, 2, 11]
FIX_HINTS = ("SNN5_DATA", "--data-dir", "download=True", "nmnist-subset")
XYTP = np.dtype([("x", int), ("y", int), ("t", int), ("p", int)])


@pytest.fixture(scope="module")
def nmnist_root() -> Path:
    for root in [Path(p) for p in (os.environ.get("SNN5_DATA"),) if p] + [SHARED]:
        if (root / "nmnist-subset" / "labels.csv").is_file():
            return root.resolve()
    pytest.skip("N-MNIST subset not found (need <root>/nmnist-subset/; set SNN5_DATA)")


@pytest.fixture(scope="module")
def nmnist(nmnist_root: Path) -> SplitData:
    return load_nmnist(nmnist_root)


def _linked_copy(src: Path, dst_root: Path) -> Path:
    """A data root whose nmnist-subset holds symlinks to the real files."""
    dst = dst_root / "nmnist-subset"
    for path in sorted((src / "nmnist-subset").rglob("*")):
        rel = path.relative_to(src / "nmnist-subset")
        if path.is_dir():
            (dst / rel).mkdir(parents=True, exist_ok=True)
        else:
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            (dst / rel).symlink_to(path)
    return dst


def _encode(x: int, y: int, t_us: int, p: int) -> bytes:
    """One event in the 40-bit N-MNIST format (the README's layout)."""
    return bytes([x, y, (p << 7) | ((t_us >> 16) & 0x7F), (t_us >> 8) & 0xFF, t_us & 0xFF])


def test_split_sizes_shapes_and_classes(nmnist):
    assert nmnist.name == "nmnist" and nmnist.num_classes == 10
    assert (len(nmnist.train), len(nmnist.val), len(nmnist.test)) == (900, 100, 100)
    assert nmnist.input_shape == (15, 2, 34, 34)
    assert torch.bincount(nmnist.test.y, minlength=10).tolist() == TEST_COUNTS
    train_val = torch.cat([nmnist.train.y, nmnist.val.y])
    assert torch.bincount(train_val, minlength=10).tolist() == TRAIN_COUNTS
    x = nmnist.train.x
    assert x.dtype == torch.float32 and float(x.min()) == 0.0 and torch.equal(x, x.round())
    assert 3000 < float(x.sum((1, 2, 3, 4)).mean()) < 5000        # ~4,100 events per sample
    assert "train 900 / val 100 / test 100" in nmnist.description
    assert DATASETS.get("nmnist") is load_nmnist


def test_labels_follow_labels_csv_and_frames_match_the_file(nmnist, nmnist_root):
    # first test rows of labels.csv: Test/7/00001.bin, Test/2/00002.bin, Test/1/00003.bin
    assert nmnist.test.y[:3].tolist() == [7, 2, 1]
    events = read_nmnist_events(nmnist_root / "nmnist-subset" / "Test" / "7" / "00001.bin")
    kept = events[events["t"] < 300_000]
    assert float(nmnist.test.x[0].sum()) == len(kept)
    frame = nmnist.test.x[0, 0]                                     # first 20 ms [2, 34, 34]
    first = kept[kept["t"] < 20_000]
    e = first[0]
    same = ((first["x"] == e["x"]) & (first["y"] == e["y"]) & (first["p"] == e["p"])).sum()
    assert float(frame[e["p"], e["y"], e["x"]]) == same


def test_reader_and_binning_on_hand_made_events(tmp_path):
    path = tmp_path / "00001.bin"
    path.write_bytes(_encode(3, 5, 1_000, 1) + _encode(3, 5, 25_000, 1)
                     + _encode(33, 0, 45_000, 0) + _encode(7, 7, 70_000, 1))
    events = read_nmnist_events(path)
    assert [tuple(e) for e in events] == [(3, 5, 1000, 1), (3, 5, 25000, 1), (33, 0, 45000, 0),
                                          (7, 7, 70000, 1)]
    frames = events_to_frames(events, time_window=20e-3, steps=3)  # 0-20, 20-40, 40-60 ms
    assert frames.shape == (3, 2, 34, 34)
    assert frames[0, 1, 5, 3] == 1 and frames[1, 1, 5, 3] == 1     # [T, p, y, x]
    assert frames[2, 0, 0, 33] == 1
    assert float(frames.sum()) == 3                                # the 70 ms event is dropped
    small = events_to_frames(events, time_window=20e-3, steps=3, spatial_factor=0.5)
    assert small.shape == (3, 2, 17, 17) and small[0, 1, 2, 1] == 1
    empty = events_to_frames(events[:0], time_window=20e-3, steps=3)
    assert empty.shape == (3, 2, 34, 34) and float(empty.sum()) == 0


def test_truncated_file_is_named(nmnist_root, tmp_path):
    dst = _linked_copy(nmnist_root, tmp_path)
    bad = dst / "Train" / "0" / "00002.bin"
    data = bad.read_bytes()
    bad.unlink()
    bad.write_bytes(data[:-2])
    with pytest.raises(DatasetFileError, match=r"Train/0/00002\.bin: \d+ bytes") as info:
        load_nmnist(tmp_path)
    assert all(hint in str(info.value) for hint in FIX_HINTS)
    assert info.value.paths == (bad,)
    with pytest.raises(DatasetFileError, match=r"00002\.bin holds \d+ bytes"):
        read_nmnist_events(bad)


def test_missing_file_and_changed_file_are_reported(nmnist_root, tmp_path):
    dst = _linked_copy(nmnist_root, tmp_path)
    gone = dst / "Test" / "4" / "00005.bin"
    gone.unlink()
    with pytest.raises(DatasetFileError, match=r"1 of 1100 recordings missing") as info:
        load_nmnist(tmp_path)
    assert info.value.paths == (gone,)
    data = bytearray((nmnist_root / "nmnist-subset" / "Test" / "4" / "00005.bin").read_bytes())
    data[0] ^= 0x01                                                  # x of the first event
    gone.write_bytes(bytes(data))
    with pytest.raises(DatasetFileError, match="does not match its checksum.*MANIFEST"):
        load_nmnist(tmp_path)


def test_bad_labels_csv_and_no_data(nmnist_root, tmp_path):
    with pytest.raises(DatasetFileError, match="N-MNIST not found") as info:
        load_nmnist(tmp_path)
    assert all(hint in str(info.value) for hint in FIX_HINTS)
    dst = _linked_copy(nmnist_root, tmp_path)
    labels = dst / "labels.csv"
    text = labels.read_text().replace("Train/5/00001.bin,5", "Train/5/00001.bin,3")
    labels.unlink()
    labels.write_text(text)
    with pytest.raises(DatasetFileError, match=r"row for Train/5/00001\.bin says label 3"):
        load_nmnist(tmp_path)


def test_bad_parameters_and_missing_tonic(nmnist_root, monkeypatch):
    with pytest.raises(ValueError, match=r"time_window\s+Input should be greater than 0"):
        load_nmnist(nmnist_root, time_window=0)
    with pytest.raises(ValueError, match="whole number of time_window"):
        load_nmnist(nmnist_root, time_window=0.07)
    monkeypatch.setitem(sys.modules, "tonic", None)
    with pytest.raises(ImportError, match=r"pip install 'snn5\[events\]'"):
        load_nmnist(nmnist_root)
