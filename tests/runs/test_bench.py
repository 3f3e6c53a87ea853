"""`snn5 bench`: a suite trains each entry, adds the time-reversal test, writes JSON + Markdown,
resumes, and refuses bad suites before any training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from snn5.cli.main import main
from snn5.config import ConfigError
from snn5.runs.bench import load_suite, run_bench
from tests.conftest import REPO_SHARED_DATA

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def write_suite(tmp_path: Path, entries: list[dict]) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "description": "test suite",
                                    "entries": entries}))
    return path


def digits(name: str = "digits-mlp", **kw) -> dict:
    return {"name": name, "config": str(CONFIGS / "digits_mlp.yaml"),
            "set": {"train.epochs": 1, "model.timesteps": 2, "model.hidden": [16]}, **kw}


def test_suite_writes_rows_json_markdown_plots_and_resumes(tmp_path: Path) -> None:
    suite = write_suite(tmp_path, [digits(seeds=[0, 1])])
    out = tmp_path / "out"
    result = run_bench(suite, out)
    (row,) = result["rows"]
    runs = [json.loads((out / "runs" / "digits-mlp" / f"seed{s}" / "metrics.json").read_text())
            for s in (0, 1)]
    accs = [r["test_accuracy"] for r in runs]
    assert row["test_accuracy"] == pytest.approx(sum(accs) / 2)
    assert row["seeds"] == [0, 1] and [r["seed"] for r in runs] == [0, 1]
    assert row["reversed_accuracy"] is None and row["reversal_drop"] is None   # static input
    assert row["model"] == "spiking_mlp" and row["timesteps"] == 2
    assert row["energy_vs_ann"] == pytest.approx(row["energy_j_per_sample"]
                                                 / row["ann_energy_j_per_sample"])
    assert json.loads((out / "bench.json").read_text())["rows"] == result["rows"]
    md = (out / "leaderboard.md").read_text()
    assert "| digits-mlp | spiking_mlp | digits |" in md and "n/a" in md
    assert (out / "plots" / "accuracy_vs_energy.png").stat().st_size > 0
    assert (out / "plots" / "firing_rate_per_layer.png").stat().st_size > 0
    # a second invocation reuses the finished runs (no retraining: same metrics files)
    stamp = (out / "runs" / "digits-mlp" / "seed0" / "metrics.json").stat().st_mtime_ns
    again = run_bench(suite, out, data_dir=str(tmp_path))    # another data root: same run
    assert again["rows"] == result["rows"]
    assert (out / "runs" / "digits-mlp" / "seed0" / "metrics.json").stat().st_mtime_ns == stamp


@pytest.mark.skipif(not (REPO_SHARED_DATA / "poker-dvs").is_dir(),
                    reason="POKER-DVS files not found in ../shared/data")
def test_event_entry_gets_the_time_reversal_test(tmp_path: Path) -> None:
    suite = write_suite(tmp_path, [{"name": "poker", "config": str(CONFIGS / "pokerdvs_conv.yaml"),
                                    "set": {"train.epochs": 1, "model.channels": [4],
                                            "model.fc_hidden": [8]}}])
    result = run_bench(suite, tmp_path / "out", data_dir=str(REPO_SHARED_DATA))
    (row,) = result["rows"]
    rev = json.loads((tmp_path / "out" / "runs" / "poker" / "seed0" /
                      "time_reversal.json").read_text())
    assert rev["time_axis"] == 1 and 0.0 <= rev["reversed_accuracy"] <= 1.0
    assert row["reversal_drop"] == pytest.approx(row["test_accuracy"] - rev["reversed_accuracy"])


def test_bad_suites_fail_before_training(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_suite(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="unique"):
        load_suite(write_suite(tmp_path, [digits(), digits()]))
    with pytest.raises(ConfigError, match="folder name"):
        load_suite(write_suite(tmp_path, [digits(name="a/b")]))
    with pytest.raises(ConfigError, match="(?s)suite entry 'digits-mlp'.*epochs"):
        load_suite(write_suite(tmp_path, [digits(set={"train.epochs": 0})]))
    conv = {"name": "c", "config": str(CONFIGS / "mnist_qcfs.yaml")}
    with pytest.raises(ConfigError, match="conversion runs"):
        load_suite(write_suite(tmp_path, [conv]))


def test_a_finished_run_of_another_config_is_not_silently_reused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_bench(write_suite(tmp_path, [digits()]), out)
    changed = digits()
    changed["set"] = {**changed["set"], "model.hidden": [32]}
    with pytest.raises(ConfigError, match="another config"):
        run_bench(write_suite(tmp_path, [changed]), out)


def test_cli_prints_the_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch.manual_seed(0)
    assert main(["-q", "bench", str(write_suite(tmp_path, [digits()])),
                 "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "| digits-mlp |" in out and "leaderboard.md" in out
    assert main(["-q", "bench", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "p")]) == 2
