"""Distillation: the KD loss, the teacher-logit cache (reuse, invalidation), teacher loading,
the trainer's per-batch hook, the config and `paradigm: distill` end to end on digits."""

from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from torch import nn

import snn5.runs.run as run_module
from snn5.config import RunConfig, load_config
from snn5.data import ArrayDataset, BatchLoader
from snn5.runs import train_run
from snn5.train.checkpoint import prefixed, save_checkpoint
from snn5.train.distill import (
    SoftTargetLoss, TeacherArchitectureError, TeacherError, TeacherNotFoundError, kd_loss,
    load_teacher, soft_kd_term, teacher_logits,
)
from snn5.train.surrogate import TrainConfig, Trainer

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "digits_distill.yaml"


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_kd_loss_matches_a_hand_computation():
    s = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
    t = np.array([[1.0, 3.0, 0.0], [-2.0, 0.0, 2.0]])
    y = np.array([0, 2])
    T, alpha = 3.0, 0.7
    p_t, p_s = _softmax(t / T), _softmax(s / T)
    kl = (p_t * (np.log(p_t) - np.log(p_s))).sum(axis=1).mean()
    ce = -np.log(_softmax(s)[np.arange(2), y]).mean()
    expected = alpha * T ** 2 * kl + (1 - alpha) * ce
    got = kd_loss(torch.tensor(s), torch.tensor(t), torch.tensor(y), temperature=T, alpha=alpha)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    soft = SoftTargetLoss(lambda idx: torch.tensor(t, dtype=torch.float32)[idx],
                          temperature=T, alpha=alpha)
    assert soft(torch.tensor(s), torch.arange(2)).item() == pytest.approx(alpha * T ** 2 * kl,
                                                                          rel=1e-5)
    assert soft.task_weight == pytest.approx(1 - alpha)
    with pytest.raises(ValueError, match="differ in shape"):
        soft_kd_term(torch.zeros(2, 3), torch.zeros(2, 4), 1.0)


class _Counting:
    """Counts the teacher's forward passes with a forward hook."""

    def __init__(self, module: nn.Module) -> None:
        self.calls = 0
        module.register_forward_hook(lambda *_: setattr(self, "calls", self.calls + 1))


def _data(n=20):
    g = torch.Generator().manual_seed(0)
    return ArrayDataset(torch.rand(n, 4, generator=g), torch.arange(n) % 3)


def test_cache_is_reused_and_invalidated(tmp_path):
    torch.manual_seed(0)
    teacher, data = nn.Linear(4, 3), _data()
    count = _Counting(teacher)
    first = teacher_logits(teacher, data, tmp_path, dataset_checksum="abc", batch_size=8)
    assert not first.hit and count.calls > 0
    with torch.no_grad():
        np.testing.assert_allclose(first(torch.arange(20)).numpy(), teacher(data.x).numpy(),
                                   rtol=1e-6)
    count.calls = 0
    again = teacher_logits(teacher, data, tmp_path, dataset_checksum="abc", batch_size=8)
    assert again.hit and count.calls == 0 and again.path == first.path
    assert isinstance(again.logits, np.memmap)
    idx = torch.tensor([5, 0, 17])
    assert torch.equal(again(idx), first(idx))
    # another subset, another source checksum, another teacher: each a new entry
    subset = ArrayDataset(data.x[:15], data.y[:15])
    assert not teacher_logits(teacher, subset, tmp_path, dataset_checksum="abc").hit
    assert not teacher_logits(teacher, data, tmp_path, dataset_checksum="xyz").hit
    original = {k: v.clone() for k, v in teacher.state_dict().items()}
    with torch.no_grad():
        teacher.weight[0, 0] += 1e-3
    count.calls = 0
    changed = teacher_logits(teacher, data, tmp_path, dataset_checksum="abc")
    assert not changed.hit and count.calls > 0 and changed.path != first.path
    assert len(list(tmp_path.glob("*.npy"))) == len(list(tmp_path.glob("*.json"))) == 4
    assert not list(tmp_path.glob(".*.tmp"))
    first.path.with_suffix(".json").unlink()        # an entry without its sidecar is not read
    count.calls = 0
    teacher.load_state_dict(original)                # back to the first teacher
    refilled = teacher_logits(teacher, data, tmp_path, dataset_checksum="abc", batch_size=8)
    assert not refilled.hit and count.calls > 0 and refilled.path == first.path
    assert torch.allclose(refilled(torch.arange(20)), first(torch.arange(20)))


def test_trainer_hook_gets_the_batch_sample_indices():
    torch.manual_seed(0)
    data = _data(10)
    loader = BatchLoader(data, 4, shuffle=True, seed=3)
    seen = []

    def extra(logits, indices):
        seen.append(indices.clone())
        return logits.sum() * 0.0

    model = nn.Sequential(nn.Linear(4, 3))
    Trainer(model, TrainConfig(epochs=2, batch_size=4), loader, BatchLoader(data, 5, shuffle=False),
            extra_loss=extra, progress=False).fit()
    assert len(seen) == 6
    assert torch.equal(torch.cat(seen[:3]), loader.order(0))
    assert torch.equal(torch.cat(seen[3:]), loader.order(1))


def test_teacher_loading_errors(tmp_path):
    twin = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    with pytest.raises(TeacherNotFoundError, match="does not exist"):
        load_teacher(tmp_path / "nope", twin)
    (tmp_path / "snn").mkdir()
    (tmp_path / "snn" / "config.yaml").write_text("paradigm: surrogate\n")
    with pytest.raises(TeacherError, match="paradigm: ann"):
        load_teacher(tmp_path / "snn", twin)
    other = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
    torch.save(other.state_dict(), tmp_path / "other.pt")
    with pytest.raises(TeacherArchitectureError, match=r"0.weight \(16, 4\) != \(8, 4\)"):
        load_teacher(tmp_path / "other.pt", twin)
    source = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    save_checkpoint(tmp_path / "t.safetensors", prefixed("model", source.state_dict()), {})
    teacher = load_teacher(tmp_path / "t.safetensors", twin)
    assert torch.equal(teacher[0].weight, source[0].weight)
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())


@pytest.mark.parametrize("update, match", [
    ({"paradigm": "distill"}, "needs distill.teacher"),
    ({"distill": {"teacher": "t", "alpha": 1.5}}, "alpha must be in"),
    ({"distill": {"teacher": "t", "temperature": 0.0}}, "temperature must be > 0"),
])
def test_config_errors_name_the_field(update, match):
    with pytest.raises(ValidationError, match=match):
        RunConfig(**update)


def test_snn5_train_distill_end_to_end(tmp_path, monkeypatch):
    base = load_config(CONFIG)
    cfg = base.model_copy(update={"train": base.train.model_copy(update={"epochs": 1})})
    train_run(cfg.model_copy(update={"paradigm": "ann"}), tmp_path / "ann", progress=False)
    calls = []

    def counted(source, twin):
        teacher = load_teacher(source, twin)
        teacher.register_forward_hook(lambda *_: calls.append(1))
        return teacher

    monkeypatch.setattr(run_module, "load_teacher", counted)
    student = cfg.model_copy(update={"distill": cfg.distill.model_copy(
        update={"teacher": str(tmp_path / "ann")})})
    first = train_run(student, tmp_path / "s1", progress=False)
    assert calls and not first["distill"]["cache_hit"]
    assert first["paradigm"] == "distill" and 0.0 < first["test_accuracy"] <= 1.0
    calls.clear()
    second = train_run(student, tmp_path / "s2", progress=False)
    assert second["distill"]["cache_hit"] and not calls
    assert second["distill"]["cache_file"] == first["distill"]["cache_file"]
    assert second["test_accuracy"] == first["test_accuracy"]   # same logits, same student
    other_split = student.model_copy(update={"data": student.data.model_copy(
        update={"val_fraction": 0.2})})
    third = train_run(other_split, tmp_path / "s3", progress=False)
    assert not third["distill"]["cache_hit"] and calls
    assert third["distill"]["cache_file"] != first["distill"]["cache_file"]


def test_missing_teacher_fails_before_the_run_folder_is_made(tmp_path):
    cfg = load_config(CONFIG)
    cfg = cfg.model_copy(update={"distill": cfg.distill.model_copy(
        update={"teacher": str(tmp_path / "no_teacher")})})
    with pytest.raises(TeacherNotFoundError, match="train the teacher first"):
        train_run(cfg, tmp_path / "student", progress=False)
    assert not (tmp_path / "student").exists()
