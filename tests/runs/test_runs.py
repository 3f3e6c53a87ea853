"""Run folders: contents and metrics fields, refusal to overwrite, resume checks, evaluate,
determinism, and the quickstart (its real config, which is the acceptance of the main job)."""

import json

import pytest

from snn5.config import config_from_dict
from snn5.runs import RunExistsError, evaluate_run, quickstart, quickstart_config, train_run

SMALL = {"seed": 1, "data": {"name": "digits", "train_subset": 200},
         "model": {"name": "conv_snn", "channels": [4, 8], "fc_hidden": [16], "timesteps": 2},
         "train": {"epochs": 2, "batch_size": 50, "optimizer": {"lr": 5e-3}}}

REQUIRED = ["test_accuracy", "val_accuracy", "firing_rate", "synops_per_sample",
            "ann_macs_per_sample", "energy_j_per_sample", "ann_energy_j_per_sample", "timesteps",
            "seed", "dataset", "snn5_version", "git_commit", "torch_version", "device",
            "train_seconds", "latency_ms_per_sample", "history", "energy_model"]
TIMING = {"train_seconds", "latency_ms_per_sample", "history", "finished_at"}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "small"
    return out, train_run(config_from_dict(SMALL), out, progress=False)


def test_run_folder_holds_everything(run):
    out, metrics = run
    for name in ("config.yaml", "metrics.json", "report.md", "plots/training_curves.png",
                 "plots/spike_raster.png", "plots/firing_rates.png",
                 "checkpoints/last.safetensors", "checkpoints/best.safetensors"):
        assert (out / name).is_file(), name
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk == json.loads(json.dumps(metrics))
    for key in REQUIRED:
        assert key in on_disk, key
    rate = on_disk["firing_rate"]
    assert set(rate) == {"mean", "per_layer"} and len(rate["per_layer"]) == 3   # 2 conv + 1 fc
    assert 0 <= rate["mean"] <= 1
    assert on_disk["dataset"]["name"] == "digits" and len(on_disk["dataset"]["checksum"]) == 64
    assert on_disk["timesteps"] == 2 and on_disk["seed"] == 1
    # energy = SynOps x 0.9 pJ + dense MACs x 4.6 pJ under the default model
    expected = on_disk["synops_per_sample"] * 0.9e-12 + on_disk["snn_macs_per_sample"] * 4.6e-12
    assert on_disk["energy_j_per_sample"] == pytest.approx(expected)
    assert on_disk["ann_energy_j_per_sample"] == pytest.approx(on_disk["ann_macs_per_sample"] * 4.6e-12)
    report = (out / "report.md").read_text()
    assert "test accuracy" in report and "![spike raster](plots/spike_raster.png)" in report


def test_existing_run_is_never_overwritten(run):
    out, _ = run
    before = (out / "metrics.json").read_text()
    with pytest.raises(RunExistsError, match="pass --resume"):
        train_run(config_from_dict(SMALL), out, progress=False)
    changed = config_from_dict(SMALL, ["train.optimizer.lr=0.01"])
    with pytest.raises(ValueError, match=r"train.optimizer.lr: 0.005 -> 0.01"):
        train_run(changed, out, resume=True, progress=False)
    assert (out / "metrics.json").read_text() == before


def test_resume_of_a_finished_run_changes_nothing(run):
    out, metrics = run
    again = train_run(config_from_dict(SMALL), out, resume=True, progress=False)
    assert again["test_accuracy"] == metrics["test_accuracy"]
    assert again["history"] == metrics["history"]


def test_evaluate_reproduces_the_test_measurement(run):
    out, metrics = run
    result = evaluate_run(out)
    for key in ("test_accuracy", "test_loss", "firing_rate", "synops_per_sample",
                "ann_macs_per_sample", "energy_j_per_sample"):
        assert result[key] == metrics[key], key
    assert (out / "evaluation.json").is_file()
    with pytest.raises(FileNotFoundError, match="not a run folder"):
        evaluate_run(out / "checkpoints")


def test_two_runs_with_one_seed_give_identical_metrics(run, tmp_path):
    _, first = run
    second = train_run(config_from_dict(SMALL), tmp_path / "again", progress=False)
    strip = lambda m: {k: v for k, v in m.items() if k not in TIMING}      # noqa: E731
    assert strip(second) == strip(first)
    assert [{k: v for k, v in h.items() if k != "seconds"} for h in second["history"]] == \
           [{k: v for k, v in h.items() if k != "seconds"} for h in first["history"]]


def test_quickstart_short_writes_the_summary(tmp_path):
    summary = quickstart(tmp_path / "qs", overrides=["train.epochs=1", "data.train_subset=100",
                                                     "plasticity.epochs=1"], progress=False)
    rows = {r["paradigm"]: r for r in summary["rows"]}
    assert set(rows) == {"surrogate", "ann", "plasticity", "conversion"}
    assert rows["conversion"]["timesteps"] == 4 and rows["conversion"]["synops_per_sample"] > 0
    assert rows["plasticity"]["model"] == "spiking_mlp" and rows["plasticity"]["synops_per_sample"] > 0
    for row in rows.values():
        for key in ("test_accuracy", "timesteps", "firing_rate", "macs_per_sample",
                    "energy_j_per_sample", "train_seconds"):
            assert key in row
    assert rows["ann"]["timesteps"] == 1 and rows["ann"]["firing_rate"] is None
    assert rows["surrogate"]["synops_per_sample"] > 0
    assert json.loads((tmp_path / "qs" / "summary.json").read_text())["rows"] == summary["rows"]
    assert (tmp_path / "qs" / "report.md").is_file()
    assert (tmp_path / "qs" / "plots" / "comparison.png").is_file()
    with pytest.raises(FileExistsError, match="--overwrite"):
        quickstart(tmp_path / "qs", overrides=["train.epochs=1"], progress=False)


def test_quickstart_reaches_95_percent_on_digits(tmp_path):
    """The main job's acceptance: the shipped quickstart config (30 epochs, ~25 s here)."""
    summary = quickstart(tmp_path / "qs", progress=False)
    snn = next(r for r in summary["rows"] if r["paradigm"] == "surrogate")
    assert snn["test_accuracy"] >= 0.95
    stdp = next(r for r in summary["rows"] if r["paradigm"] == "plasticity")
    assert stdp["test_accuracy"] >= 0.85
    converted = next(r for r in summary["rows"] if r["paradigm"] == "conversion")
    assert converted["test_accuracy"] >= 0.9
    assert quickstart_config().train.epochs == 30


def test_short_mnist_training_learns(mnist_root, tmp_path):
    """One epoch on a 3,000-image subset of the real MNIST files: far above chance (10 %)."""
    cfg = config_from_dict({"data": {"name": "mnist", "data_dir": str(mnist_root),
                                     "train_subset": 3000},
                            "model": {"name": "spiking_mlp", "hidden": [128], "timesteps": 4},
                            "train": {"epochs": 1, "batch_size": 64, "eval_batch_size": 2000,
                                      "optimizer": {"lr": 5e-3}}})
    metrics = train_run(cfg, tmp_path / "mnist", progress=False)
    assert metrics["dataset"]["test"] == 10000
    assert metrics["test_accuracy"] > 0.80
