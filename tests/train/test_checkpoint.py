"""Checkpoint files: atomic writes, exact round trips, clear errors."""

import pytest
import torch

from snn5.train import checkpoint as ckpt
from snn5.train.checkpoint import (
    CheckpointError, join_state, load_checkpoint, read_meta, save_checkpoint, split_state,
)


def test_round_trip_tensors_and_meta(tmp_path):
    tensors = {"a": torch.randn(3, 4), "b.c": torch.arange(5), "s": torch.tensor(2.5)}
    save_checkpoint(tmp_path / "x.safetensors", tensors, {"epoch": 3, "hist": [{"l": 0.5}]})
    back, meta = load_checkpoint(tmp_path / "x.safetensors")
    assert meta == {"epoch": 3, "hist": [{"l": 0.5}]}
    for k in tensors:
        assert torch.equal(back[k], tensors[k])
    assert read_meta(tmp_path / "x.safetensors") == meta


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "last.safetensors"
    save_checkpoint(path, {"w": torch.ones(2)}, {"step": 1})

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ckpt, "save_file", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"w": torch.zeros(2)}, {"step": 2})
    assert read_meta(path) == {"step": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.safetensors"]   # no temp left


def test_optimizer_state_round_trip():
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    state = opt.state_dict()
    tensors, skeleton = split_state(state, "optim")
    back = join_state(skeleton, tensors)
    assert back["param_groups"] == state["param_groups"]
    for i, s in state["state"].items():
        for k, v in s.items():
            assert torch.equal(back["state"][i][k], v)
    opt2 = torch.optim.AdamW(model.parameters(), lr=1e-3)
    opt2.load_state_dict(back)


def test_missing_and_truncated_files(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.safetensors")
    path = tmp_path / "t.safetensors"
    save_checkpoint(path, {"w": torch.ones(1000)}, {})
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="unreadable .* truncated"):
        load_checkpoint(path)
