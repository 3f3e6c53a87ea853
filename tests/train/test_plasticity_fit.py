"""Plasticity paradigm end to end: the closed-form readout is exact for the model's own forward
pass, a `paradigm: plasticity` run config trains through the run pipeline, bad configs fail."""

from __future__ import annotations

import json

import pytest
import torch

from snn5.config import ConfigError, config_from_dict
from snn5.data import DataConfig, load_dataset
from snn5.models import SpikingMLPConfig, build_model
from snn5.runs.run import train_run
from snn5.train.plasticity import hidden_layers, ridge_fit
from snn5.train.plasticity.fit import output_layer, readout_features

PLASTIC = {
    "seed": 0,
    "paradigm": "plasticity",
    "data": {"name": "digits"},
    "model": {"name": "spiking_mlp", "hidden": [40], "timesteps": 8, "encoding": "poisson",
              "readout": "mean_membrane", "neuron": {"kind": "lif", "tau_mem": 2e-3, "dt": 1e-3}},
    "plasticity": {"epochs": 1, "batch_size": 32,
                   "rule": {"name": "stdp", "a_plus": 0.005, "a_minus": 5e-5},
                   "normalize": 4.0, "homeostasis_target": 0.1, "winners": 3},
    "train": {"eval_batch_size": 500},
}


def test_ridge_fit_solves_least_squares():
    torch.manual_seed(0)
    f = torch.randn(200, 6, dtype=torch.float64)
    y = torch.randint(0, 3, (200,))
    W, b = ridge_fit(f, y, 3, alpha=1e-12, gain=2.0)
    X = torch.cat([f, torch.full((200, 1), 2.0, dtype=torch.float64)], 1)
    ref = torch.linalg.lstsq(X, torch.nn.functional.one_hot(y, 3).double()).solution
    torch.testing.assert_close(W.double(), ref[:6].T, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(b.double(), ref[6], rtol=1e-4, atol=1e-5)


def test_model_scores_are_linear_in_the_readout_features():
    """The fit relies on scores = W f + b * gain for the model's own forward pass."""
    cfg = SpikingMLPConfig(hidden=(16,), timesteps=6, encoding="poisson", readout="mean_membrane")
    torch.manual_seed(1)
    model = build_model(cfg, (8,), 3).eval()
    x = torch.rand(5, 8)
    torch.manual_seed(2)
    f, gain, _ = readout_features(model, [(x, torch.zeros(5, dtype=torch.long))],
                                  torch.device("cpu"))
    head = output_layer(model)
    torch.manual_seed(2)                                     # the same Poisson draws
    with torch.no_grad():
        scores = model(x)
    torch.testing.assert_close(scores, f @ head.weight.T + gain * head.bias, rtol=1e-5,
                               atol=1e-5)
    assert hidden_layers(model) == ["stem.1"]


@pytest.mark.parametrize("readout", ["spike_count", "max_membrane"])
def test_nonlinear_readouts_are_refused(readout):
    cfg = SpikingMLPConfig(hidden=(8,), timesteps=4, encoding="poisson", readout=readout)
    model = build_model(cfg, (4,), 2)
    with pytest.raises(ValueError, match="set model.readout: mean_membrane"):
        readout_features(model, [(torch.rand(2, 4), torch.zeros(2, dtype=torch.long))],
                         torch.device("cpu"))


def test_plasticity_run_trains_the_hidden_layer_and_beats_chance(tmp_path):
    cfg = config_from_dict(PLASTIC)
    data = load_dataset(DataConfig(name="digits"))
    metrics = train_run(cfg, tmp_path / "run", progress=False)
    assert metrics["paradigm"] == "plasticity"
    assert metrics["test_accuracy"] > 0.6                    # chance is 0.1
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["epochs"] == 1
    assert (tmp_path / "run" / "report.md").is_file()
    # the plastic weights changed from their uniform start and respect the constraints
    from snn5.train.checkpoint import load_checkpoint
    tensors, _ = load_checkpoint(tmp_path / "run" / "checkpoints" / "best.safetensors")
    w = tensors["model.stem.1.weight"]
    assert w.min() >= 0 and w.max() <= 1
    torch.testing.assert_close(w.sum(1), torch.full((40,), 4.0), rtol=1e-4, atol=1e-4)
    torch.manual_seed(0)
    fresh = build_model(cfg.model, data.input_shape, data.num_classes)
    assert not torch.allclose(fresh.stem[1].weight, w)


@pytest.mark.parametrize("change, message", [
    ({"rule": {"name": "rstdp"}}, "learns from a reward"),
    ({"rule": {"name": "stpd"}}, "unknown plasticity rule 'stpd'"),
    ({"bounds": [1.0, 0.0]}, "min < max"),
    ({"winners": 0}, "winners"),
])
def test_bad_plasticity_configs_name_the_problem(change, message):
    bad = {**PLASTIC, "plasticity": {**PLASTIC["plasticity"], **change}}
    with pytest.raises(ConfigError, match=message):
        config_from_dict(bad)


def test_killed_run_resumes_to_the_same_result(tmp_path, monkeypatch):
    import snn5.train.plasticity.fit as fit_module

    cfg = config_from_dict({**PLASTIC, "plasticity": {**PLASTIC["plasticity"], "epochs": 2}})
    whole = train_run(cfg, tmp_path / "whole", progress=False)

    real, calls = fit_module.ridge_fit, []

    def dies_in_epoch_two(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(fit_module, "ridge_fit", dies_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        train_run(cfg, tmp_path / "killed", progress=False)
    monkeypatch.setattr(fit_module, "ridge_fit", real)
    resumed = train_run(cfg, tmp_path / "killed", resume=True, progress=False)
    for key in ("test_accuracy", "val_accuracy", "best_epoch", "steps"):
        assert resumed[key] == whole[key], key
    from snn5.train.checkpoint import load_checkpoint
    a, _ = load_checkpoint(tmp_path / "whole" / "checkpoints" / "last.safetensors")
    b, _ = load_checkpoint(tmp_path / "killed" / "checkpoints" / "last.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
