"""POKER-DVS from Tonic's tarballs: counts, classes, exact binning, checksum and missing-file
errors."""

from __future__ import annotations

import io
import os
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from snn5.data import DatasetFileError
from snn5.data.pokerdvs import POKERDVS_CLASSES, load_pokerdvs, pokerdvs_frames

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


@pytest.fixture(scope="module")
def root() -> Path:
    for r in [Path(p) for p in (os.environ.get("SNN5_DATA"),) if p] + [SHARED]:
        if (r / "poker-dvs" / "pips_test.tar.gz").is_file():
            return r.resolve()
    pytest.skip("POKER-DVS tarballs not found (need <root>/poker-dvs/pips_*.tar.gz)")


@pytest.fixture(scope="module")
def poker(root):
    return load_pokerdvs(root)


def _recordings(path: Path) -> list[tuple[str, np.ndarray]]:
    with tarfile.open(path) as tar:
        return sorted((m.name, np.load(io.BytesIO(tar.extractfile(m).read())))
                      for m in tar.getmembers() if m.name.endswith(".npy"))


def test_counts_shapes_and_balanced_classes(poker):
    assert (len(poker.train), len(poker.val), len(poker.test)) == (43, 5, 20)
    assert poker.input_shape == (15, 2, 35, 35) and poker.num_classes == 4
    assert torch.bincount(poker.test.y).tolist() == [5, 5, 5, 5]
    ys = torch.cat([poker.train.y, poker.val.y])
    assert torch.bincount(ys).tolist() == [12, 12, 12, 12]


def test_frames_hold_every_event_at_its_place(poker, root):
    """Each test recording's frames count all its events (none lies beyond 30 ms), and one
    event lands at [t // 2 ms, p, y, x]; labels follow the class folders."""
    recs = _recordings(root / "poker-dvs" / "pips_test.tar.gz")
    for i, (name, ev) in enumerate(recs):
        assert int(poker.test.x[i].sum()) == len(ev)
        assert int(poker.test.y[i]) == POKERDVS_CLASSES.index(Path(name).parent.name)
    ev = np.array([[2500, 3, 7, 1], [2600, 3, 7, 1], [100, 34, 0, 0]], dtype=np.uint64)
    f = pokerdvs_frames(ev, time_window=2e-3, steps=3)
    assert f.shape == (3, 2, 35, 35) and f.sum() == 3
    assert f[1, 1, 7, 3] == 2 and f[0, 0, 0, 34] == 1


def test_corrupt_or_missing_tarball_is_named(root, tmp_path):
    d = tmp_path / "poker-dvs"
    d.mkdir()
    shutil.copy(root / "poker-dvs" / "pips_train.tar.gz", d)
    with pytest.raises(DatasetFileError, match="pips_test.tar.gz is missing") as exc:
        load_pokerdvs(tmp_path)
    assert "download=True" in str(exc.value)
    (d / "pips_test.tar.gz").write_bytes(b"not a tarball")
    with pytest.raises(DatasetFileError, match="has md5 .* expected eef2bf7d"):
        load_pokerdvs(tmp_path)
    with pytest.raises(ValueError, match="whole number"):
        load_pokerdvs(root, time_window=3e-3, duration=10e-3)
