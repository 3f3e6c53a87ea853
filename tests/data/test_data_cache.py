"""The binned-frame cache: hits give identical tensors, a changed parameter or file misses,
corrupt entries are rebuilt, nothing is pickled; POKER-DVS and N-MNIST go through it."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from event_formats import SHARED
from snn5.data import cache as cache_module
from snn5.data import pokerdvs
from snn5.data.cache import cached_tensors, files_checksum, resolve_cache_dir


class Builder:
    def __init__(self, value: float = 1.0) -> None:
        self.calls = 0
        self.value = value

    def __call__(self) -> dict[str, torch.Tensor]:
        self.calls += 1
        return {"x": torch.full((3, 2), self.value), "y": torch.arange(3)}


def test_hit_miss_and_rebuild(tmp_path, monkeypatch):
    _frame_cache = tmp_path / "cache"
    monkeypatch.setenv("SNN5_CACHE", str(_frame_cache))
    build = Builder()
    first = cached_tensors("toy", "abc", {"steps": 4}, build, root=tmp_path)
    again = cached_tensors("toy", "abc", {"steps": 4}, build, root=tmp_path)
    assert build.calls == 1
    assert all(torch.equal(first[k], again[k]) and first[k].dtype == again[k].dtype
               for k in first)
    entries = sorted(_frame_cache.glob("toy-*.safetensors"))
    assert len(entries) == 1 and not list(_frame_cache.glob(".*part"))   # no temp left
    with safe_open(str(entries[0]), framework="pt") as f:                # plain safetensors
        assert f.metadata()["source"] == "abc" and '"steps": 4' in f.metadata()["params"]
    cached_tensors("toy", "abc", {"steps": 5}, build, root=tmp_path)     # new parameter
    cached_tensors("toy", "abd", {"steps": 4}, build, root=tmp_path)     # changed files
    assert build.calls == 3 and len(list(_frame_cache.glob("toy-*.safetensors"))) == 3
    entries[0].write_bytes(b"garbage")                                   # corrupt entry
    fresh = Builder(2.0)
    out = cached_tensors("toy", "abc", {"steps": 4}, fresh, root=tmp_path)
    assert fresh.calls == 1 and float(out["x"][0, 0]) == 2.0
    assert float(cached_tensors("toy", "abc", {"steps": 4}, Builder(), root=tmp_path)
                 ["x"][0, 0]) == 2.0                                     # rewritten entry hit
    off = Builder()
    cached_tensors("toy", "zzz", {}, off, root=tmp_path, enabled=False)
    cached_tensors("toy", "zzz", {}, off, root=tmp_path, enabled=False)
    assert off.calls == 2 and len(list(_frame_cache.glob("toy-*.safetensors"))) == 3


def test_unwritable_cache_still_returns(tmp_path, monkeypatch, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("SNN5_CACHE", str(blocker / "sub"))
    with caplog.at_level(logging.WARNING, logger="snn5.data.cache"):
        out = cached_tensors("toy", "abc", {}, Builder(), root=tmp_path)
    assert out["x"].shape == (3, 2) and "SNN5_CACHE" in caplog.text


def test_cache_dir_rule(tmp_path, monkeypatch):
    monkeypatch.setenv("SNN5_CACHE", str(tmp_path / "c"))
    assert resolve_cache_dir(tmp_path) == tmp_path / "c"
    monkeypatch.delenv("SNN5_CACHE")
    assert resolve_cache_dir(tmp_path) == tmp_path / ".snn5-cache"      # writable data root
    assert resolve_cache_dir(tmp_path / "absent") == Path("~/.cache/snn5/frames").expanduser()


def test_files_checksum_follows_content(tmp_path):
    a = tmp_path / "a.bin"
    a.write_bytes(b"1")
    before = files_checksum([a], tmp_path)
    a.write_bytes(b"2")
    os.utime(a, ns=(1, 1))                       # a new mtime: the memo must not hide the edit
    assert files_checksum([a], tmp_path) != before


def test_pokerdvs_second_load_comes_from_the_cache(monkeypatch):
    root = SHARED.resolve()
    if not (root / "poker-dvs" / "pips_test.tar.gz").is_file():
        pytest.skip("POKER-DVS tarballs not found (../shared/data absent)")
    first = pokerdvs.load_pokerdvs(root)

    def no_binning(*args, **kwargs):
        raise AssertionError("binned again although the cache holds the frames")

    monkeypatch.setattr(pokerdvs, "pokerdvs_frames", no_binning)
    second = pokerdvs.load_pokerdvs(root)
    assert torch.equal(first.train.x, second.train.x) and torch.equal(first.test.x, second.test.x)
    assert torch.equal(first.val.y, second.val.y)
    with pytest.raises(AssertionError, match="binned again"):           # new key: rebuilt
        pokerdvs.load_pokerdvs(root, time_window=3e-3, duration=30e-3)
    monkeypatch.setattr(cache_module, "_load", lambda path, key: None)
    with pytest.raises(AssertionError, match="binned again"):
        pokerdvs.load_pokerdvs(root)
