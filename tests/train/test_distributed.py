"""Data-parallel training: K processes under torchrun train like one process with the same
global batch (to rounding), resume, and refuse what they cannot do."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import yaml
from torch import nn

from snn5.config import load_config
from snn5.data import ArrayDataset, BatchLoader
from snn5.nn.attention import TokenBatchNorm
from snn5.runs import train_run
from snn5.train.checkpoint import load_checkpoint, unprefixed
from snn5.train.distributed import (
    Dist, _GlobalBatchNorm, global_batch_norm, sync_batchnorm_, unsync_batchnorm_,
)
from snn5.train.surrogate import Trainer
from snn5.train.surrogate.config import TrainConfig

HERE = Path(__file__).parent

MLP = {
    "seed": 0,
    "data": {"name": "digits"},
    "model": {"name": "spiking_mlp", "hidden": [48], "timesteps": 4,
              "readout": "mean_membrane",
              "neuron": {"kind": "lif", "tau_mem": 2.0e-3, "dt": 1.0e-3}},
    "train": {"epochs": 2, "batch_size": 30, "threads": 1,       # 1293 = 43 x 30 + 3
              "optimizer": {"name": "adamw", "lr": 5.0e-3}},
}
CONV = {
    "seed": 0,
    "data": {"name": "digits", "augment": {"shift": 1}},
    "model": {"name": "conv_snn", "channels": [6, 12], "fc_hidden": [24], "dropout": 0.0,
              "timesteps": 2, "encoding": "direct", "readout": "mean_membrane",
              "neuron": {"kind": "lif", "tau_mem": 2.0e-3, "dt": 1.0e-3}},
    "train": {"epochs": 1, "batch_size": 50, "threads": 1,
              "optimizer": {"name": "adamw", "lr": 5.0e-3}},
}


def write(tmp: Path, name: str, cfg: dict) -> Path:
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def torchrun(*args: str, nproc: int = 2) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           f"--nproc_per_node={nproc}", *args], capture_output=True, text=True,
                          env=env, timeout=300)


def weights(run: Path, name: str = "last.safetensors") -> dict[str, torch.Tensor]:
    tensors, _ = load_checkpoint(run / "checkpoints" / name)
    return unprefixed("model", tensors)


def assert_close_weights(a: dict, b: dict, atol: float) -> None:
    assert a.keys() == b.keys()
    worst = max((float((a[k].double() - b[k].double()).abs().max()), k) for k in a
                if a[k].numel())
    assert worst[0] <= atol, f"largest difference {worst[0]:.3g} in {worst[1]}"


@pytest.fixture(scope="module")
def distill_runs(tmp_path_factory):
    """A digits ANN teacher; the distilled MLP trained in one process and in two (CLI)."""
    tmp = tmp_path_factory.mktemp("ddp")
    teacher = {**MLP, "paradigm": "ann", "train": {**MLP["train"], "epochs": 1}}
    train_run(load_config(write(tmp, "teacher", teacher)), tmp / "teacher", progress=False)
    student = {**MLP, "paradigm": "distill",
               "distill": {"teacher": str(tmp / "teacher"), "temperature": 2.0, "alpha": 0.5}}
    cfg = write(tmp, "student", student)
    one = train_run(load_config(cfg), tmp / "one", progress=False)
    done = subprocess.run([sys.executable, "-m", "snn5", "train", str(cfg), "--out",
                           str(tmp / "two"), "--nproc", "2"], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return tmp, cfg, one, done


def test_two_processes_train_like_one(distill_runs):
    tmp, _, one, done = distill_runs
    assert "test accuracy" in done.stdout and done.stdout.count("test accuracy") == 1
    assert_close_weights(weights(tmp / "one"), weights(tmp / "two"), atol=1e-5)
    two = yaml.safe_load((tmp / "two" / "metrics.json").read_text())
    assert two["distributed"] == {"world_size": 2, "backend": "gloo"}
    for a, b in zip(one["history"], two["history"], strict=True):   # metrics summed over ranks
        for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "firing_rate"):
            assert a[key] == pytest.approx(b[key], abs=1e-5), key
    assert two["test_accuracy"] == pytest.approx(one["test_accuracy"], abs=1 / 360 + 1e-9)
    assert two["distill"]["cache_hit"]                    # the teacher's logits were reused


def test_distributed_resume_follows_the_uninterrupted_run(distill_runs):
    tmp, cfg, _, _ = distill_runs
    out = tmp / "stopped"
    first = torchrun(str(HERE / "ddp_run.py"), str(cfg), str(out), "--stop-after-epoch", "1")
    assert first.returncode != 0 and not (out / "metrics.json").exists(), first.stderr[-2000:]
    _, meta = load_checkpoint(out / "checkpoints" / "last.safetensors")
    assert meta["epoch"] == 1
    again = torchrun(str(HERE / "ddp_run.py"), str(cfg), str(out), "--resume")
    assert again.returncode == 0, again.stderr[-3000:]
    a, b = weights(tmp / "two"), weights(out)
    assert all(torch.equal(a[k], b[k]) for k in a)        # same processes: bit for bit


def test_batch_norm_uses_the_global_batch(tmp_path):
    """Conv SNN with batch norm and shift augmentation: 2 processes vs 1, one epoch."""
    cfg = write(tmp_path, "conv", CONV)
    train_run(load_config(cfg), tmp_path / "one", progress=False)
    done = torchrun("-m", "snn5", "train", str(cfg), "--out", str(tmp_path / "two"))
    assert done.returncode == 0, done.stderr[-3000:]
    one, two = weights(tmp_path / "one"), weights(tmp_path / "two")
    assert_close_weights(one, two, atol=1e-5)             # running statistics included
    assert any("running_var" in k for k in one)


# ------------------------------------------------------------------ in one process


@pytest.fixture
def one_process_group():
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    yield
    dist.destroy_process_group()


@pytest.mark.parametrize("momentum", [0.1, None])
def test_global_batch_norm_matches_batch_norm(one_process_group, momentum):
    torch.manual_seed(0)
    x = torch.randn(6, 4, 5, 5, requires_grad=True)
    ref_bn, bn = nn.BatchNorm2d(4, momentum=momentum), nn.BatchNorm2d(4, momentum=momentum)
    with torch.no_grad():
        for m in (ref_bn, bn):
            m.weight.copy_(torch.linspace(0.5, 2, 4))
            m.bias.copy_(torch.linspace(-1, 1, 4))
    ref = ref_bn(x)
    out = global_batch_norm(bn, x)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    g = torch.randn_like(ref)
    ref_grads = torch.autograd.grad(ref, [x, ref_bn.weight, ref_bn.bias], g)
    grads = torch.autograd.grad(out, [x, bn.weight, bn.bias], g)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(bn, name), getattr(ref_bn, name))


def test_sync_keeps_subclass_reshaping_and_state_dict():
    model = nn.Sequential(nn.BatchNorm2d(3), TokenBatchNorm(5))
    keys = model.state_dict().keys()
    assert sync_batchnorm_(model) == 2
    token = model[1]
    mro = type(token).__mro__
    # the subclass reshapes first, then the global statistics, then torch's batch norm
    assert mro.index(TokenBatchNorm) < mro.index(_GlobalBatchNorm) < mro.index(nn.BatchNorm1d)
    assert isinstance(token, TokenBatchNorm) and model.state_dict().keys() == keys
    x = torch.randn(2, 3, 4, 5)                            # [T, B, N, D]: no process group
    assert token(x).shape == x.shape                       # plain batch norm outside DDP
    unsync_batchnorm_(model)
    assert type(model[0]) is nn.BatchNorm2d and type(model[1]) is TokenBatchNorm


def test_tbptt_is_refused_in_a_distributed_run():
    data = ArrayDataset(torch.rand(8, 4), torch.arange(8) % 2)
    model = nn.Sequential(nn.Linear(4, 2))
    cfg = TrainConfig(epochs=1, batch_size=4, tbptt_steps=2)
    with pytest.raises(ValueError, match="tbptt_steps.*distributed"):
        Trainer(model, cfg, BatchLoader(data, 4, shuffle=False), [],
                dist=Dist(rank=0, world_size=2))


def test_plasticity_is_refused_under_torchrun(monkeypatch, tmp_path):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    path = write(tmp_path, "p", {**MLP, "paradigm": "plasticity"})
    with pytest.raises(ValueError, match="plasticity runs in one process.*without torchrun"):
        train_run(load_config(path), tmp_path / "run")
    assert not (tmp_path / "run").exists() and not dist.is_initialized()


def test_nproc_must_be_positive(tmp_path, capsys):
    from snn5.cli.main import main

    path = write(tmp_path, "m", MLP)
    assert main(["train", str(path), "--out", str(tmp_path / "r"), "--nproc", "0"]) == 2
    assert "--nproc must be >= 1" in capsys.readouterr().err


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA devices (NCCL, one "
                    "process per GPU)")
def test_two_gpus_train_like_one(tmp_path):
    cfg = write(tmp_path, "conv", {**CONV, "train": {**CONV["train"], "device": "cuda",
                                                     "amp": "off"}})
    train_run(load_config(cfg), tmp_path / "one", progress=False)
    done = torchrun("-m", "snn5", "train", str(cfg), "--out", str(tmp_path / "two"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert yaml.safe_load((tmp_path / "two" / "metrics.json").read_text())["distributed"] == {
        "world_size": 2, "backend": "nccl"}
    assert_close_weights(weights(tmp_path / "one"), weights(tmp_path / "two"), atol=1e-4)
