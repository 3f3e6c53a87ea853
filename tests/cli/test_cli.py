"""The snn5 command: exit codes, printed results, errors without tracebacks."""

import json
import subprocess
import sys

import pytest
import yaml

from snn5.cli.main import main

TINY = {"data": {"name": "digits", "train_subset": 120},
        "model": {"name": "spiking_mlp", "hidden": [16], "timesteps": 2},
        "train": {"epochs": 1, "batch_size": 40}}


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


def test_info_lists_versions_and_components(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for key in ("snn5", "torch", "threads", "cuda", "kernels (cpu)", "lif", "atan", "conv_snn",
                "digits", "45nm", "plasticity rules", "triplet"):
        assert key in out


def test_train_then_evaluate_then_resume(config, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["-q", "train", str(config), "--out", str(out), "--set", "seed=2"]) == 0
    printed = capsys.readouterr().out
    assert "test accuracy" in printed and str(out) in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["seed"] == 2
    assert main(["-q", "evaluate", str(out)]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["test_accuracy"] == metrics["test_accuracy"]
    # a second train into the same folder is refused without touching it
    assert main(["-q", "train", str(config), "--out", str(out), "--set", "seed=2"]) == 2
    assert "already holds a run; pass --resume" in capsys.readouterr().err
    assert main(["-q", "train", str(config), "--out", str(out), "--set", "seed=2",
                 "--resume"]) == 0


@pytest.mark.parametrize("args, message", [
    (["--set", "train.epochs=0"], "train.epochs: Input should be greater than or equal to 1"),
    (["--set", "model.name=vgg"], "unknown model 'vgg'; valid names: conv_snn, "),
    (["--set", "nonsense"], "must look like key.sub=value"),
])
def test_bad_config_is_one_clear_line(config, tmp_path, capsys, args, message):
    assert main(["-q", "train", str(config), "--out", str(tmp_path / "r"), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()                    # failed before any work


def test_missing_mnist_names_the_files_and_the_fix(config, tmp_path, capsys):
    code = main(["-q", "train", str(config), "--out", str(tmp_path / "r"), "--set",
                 "data.name=mnist", "--data-dir", str(tmp_path / "empty")])
    assert code == 2
    err = capsys.readouterr().err
    assert "train-images-idx3-ubyte.gz" in err and "snn5 download mnist" in err
    assert not (tmp_path / "r").exists()                    # nothing half-written to block a rerun


def test_console_entry_point_runs():
    done = subprocess.run([sys.executable, "-m", "snn5", "--help"], capture_output=True, text=True)
    assert done.returncode == 0
    for command in ("train", "evaluate", "quickstart", "info", "download"):
        assert command in done.stdout
