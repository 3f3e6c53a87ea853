"""Conversion run folders: contents, the saved SNN rebuilt without data (same outputs, same
thresholds and leaks after HSEO), the ANN's weights reused by a second run, refusal to
overwrite."""

import json

import pytest
import torch

from snn5.config import config_from_dict
from snn5.data import load_dataset
from snn5.runs import RunExistsError
from snn5.runs.convert import convert_run, load_converted

SMALL = {"seed": 0, "paradigm": "conversion", "data": {"name": "digits", "train_subset": 600},
         "train": {"epochs": 4, "batch_size": 32, "optimizer": {"lr": 3e-3}},
         "conversion": {"ann": {"name": "mlp", "activation": "qcfs", "levels": 4, "hidden": [32]},
                        "method": "qcfs", "timesteps": [1, 2, 4], "target_timesteps": 2,
                        "measure_samples": 64,
                        "calibration": {"samples": 200, "bias_correction": True},
                        "hseo": {"enabled": True, "population_size": 4, "generations": 2}}}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("conv") / "qcfs"
    return out, convert_run(config_from_dict(SMALL), out, progress=False)


def test_run_folder_holds_everything(run):
    out, metrics = run
    for name in ("config.yaml", "metrics.json", "report.md", "model.safetensors",
                 "ann.safetensors", "plots/accuracy_vs_timesteps.png"):
        assert (out / name).is_file(), name
    assert set(metrics["snn_accuracy_by_timesteps"]) == {"1", "2", "4"}
    assert set(metrics["per_timesteps"]) == {"1", "2", "4"}
    assert metrics["calibration"]["hseo"]["evaluations"] == 1 + 4 * 2   # the baseline + 4 x 2
    assert "robust_accuracy_by_noise" not in metrics                    # not asked for
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["ann_accuracy"] == metrics["ann_accuracy"]


def test_load_converted_gives_the_same_network(run):
    out, metrics = run
    snn = load_converted(out)
    assert snn.timesteps == 2
    for name, neuron in snn.neurons().items():          # HSEO's leak and v_init survive
        saved = metrics["neurons"][name]
        assert float(neuron.leak) == pytest.approx(saved["leak"])
        assert float(neuron.v_init) == pytest.approx(saved["v_init"])
        assert float(neuron.v_th.mean()) == pytest.approx(saved["v_th"])
    test = load_dataset(config_from_dict(SMALL).data).test
    with torch.no_grad():
        pred = snn(test.x).argmax(-1)
    correct = int((pred == test.y).sum())
    assert correct == round(metrics["snn_accuracy_by_timesteps"]["2"] * len(test.y))


def test_ann_weights_of_a_run_feed_another_run(run, tmp_path):
    out, metrics = run
    cfg = dict(SMALL, conversion={**SMALL["conversion"], "ann_weights": str(out / "ann.safetensors"),
                                  "hseo": {"enabled": False}, "noise_levels": [0.0, 0.5]})
    again = convert_run(config_from_dict(cfg), tmp_path / "again", progress=False)
    noisy = again["robust_accuracy_by_noise"]               # any method measures noise on request
    assert set(noisy) == {"0.0", "0.5"} and noisy["0.5"] < noisy["0.0"]
    assert noisy["0.0"] == again["snn_accuracy_by_timesteps"]["2"]
    assert (tmp_path / "again" / "plots" / "accuracy_vs_noise.png").is_file()
    assert again["ann_accuracy"] == metrics["ann_accuracy"]
    assert again["ann_load_report"] == {"missing": [], "unexpected": []}
    assert again["train_seconds"] == 0.0


def test_a_prefixed_checkpoint_is_refused(run, tmp_path):
    out, _ = run
    cfg = dict(SMALL, conversion={**SMALL["conversion"],
                                  "ann_weights": str(out / "ann" / "checkpoints" / "best.safetensors")})
    with pytest.raises(ValueError, match="shares no key"):
        convert_run(config_from_dict(cfg), tmp_path / "prefixed", progress=False)


def test_existing_run_is_not_overwritten(run):
    out, _ = run
    before = (out / "metrics.json").read_bytes()
    with pytest.raises(RunExistsError):
        convert_run(config_from_dict(SMALL), out, progress=False)
    assert (out / "metrics.json").read_bytes() == before


def test_logic_gated_run_round_trips(tmp_path):
    """The add-only network (ternary layers gated, scales folded into thresholds) is rebuilt from
    the saved tensors alone and gives the same predictions."""
    cfg = {"seed": 0, "paradigm": "conversion", "data": {"name": "digits", "train_subset": 600},
           "train": {"epochs": 3, "batch_size": 32, "optimizer": {"lr": 3e-3}},
           "conversion": {"ann": {"name": "mlp", "activation": "qcfs", "levels": 4,
                                  "hidden": [32, 32], "batch_norm": False},
                          "method": "logic_gated", "timesteps": [2, 4], "target_timesteps": 4,
                          "measure_samples": 64, "noise_levels": [0.0, 0.3]}}
    metrics = convert_run(config_from_dict(cfg), tmp_path / "lg", progress=False)
    assert metrics["ternary_layer_ops_per_sample"]["multiplications"] == 0
    assert metrics["ternary_layer_ops_per_sample"]["additions"] > 0
    snn = load_converted(tmp_path / "lg")
    test = load_dataset(config_from_dict(cfg).data).test
    with torch.no_grad():
        correct = int((snn(test.x).argmax(-1) == test.y).sum())
    assert correct == round(metrics["snn_accuracy_by_timesteps"]["4"] * len(test.y))
