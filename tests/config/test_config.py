"""Run config: YAML round trip, dotted overrides, and errors that name the field."""

import pytest
import yaml

from snn5.config import (
    ConfigError, RunConfig, config_diff, config_from_dict, dump_config, load_config, save_config,
)
from snn5.core import FastSigmoid, Reset
from snn5.models import ConvSNNConfig

FULL = {
    "seed": 3,
    "paradigm": "surrogate",
    "data": {"name": "digits", "val_fraction": 0.2},
    "model": {"name": "conv_snn", "channels": [8, 16], "timesteps": 3, "readout": "max_membrane",
              "neuron": {"kind": "alif", "tau_mem": 5e-3, "tau_adapt": 0.1, "reset": "zero",
                         "surrogate": {"name": "fast_sigmoid", "alpha": 5.0, "learnable": True}}},
    "train": {"epochs": 2, "optimizer": {"name": "sgd", "lr": 0.1, "nesterov": True},
              "rate_penalty": {"weight": 0.01, "target": 0.05}},
}


def test_yaml_round_trip_is_exact(tmp_path):
    cfg = config_from_dict(FULL)
    path = save_config(cfg, tmp_path / "config.yaml")
    again = load_config(path)
    assert again == cfg
    assert dump_config(again) == dump_config(cfg) == path.read_text()
    # the YAML holds plain strings and numbers, typed objects come back on load
    raw = yaml.safe_load(path.read_text())
    assert raw["model"]["neuron"]["surrogate"] == {"name": "fast_sigmoid", "learnable": True,
                                                   "alpha": 5.0}
    assert raw["model"]["neuron"]["reset"] == "zero"
    assert isinstance(again.model, ConvSNNConfig)
    assert again.model.neuron.surrogate == FastSigmoid(alpha=5.0, learnable=True)
    assert again.model.neuron.reset is Reset.ZERO


@pytest.mark.parametrize("kind", ["if", "lif", "plif", "alif"])
def test_written_config_of_every_neuron_kind_loads_back(kind, tmp_path):
    cfg = config_from_dict(FULL, ["model.neuron={kind: %s}" % kind])
    again = load_config(save_config(cfg, tmp_path / "c.yaml"))
    assert again == cfg
    written = yaml.safe_load((tmp_path / "c.yaml").read_text())["model"]["neuron"]
    assert ("tau_adapt" in written) == (kind == "alif")
    assert ("tau_mem" in written) == (kind != "if")


def test_defaults_are_filled_in():
    text = dump_config(RunConfig())
    for key in ("seed:", "paradigm:", "data:", "model:", "train:", "measure:", "energy_model: 45nm",
                "tau_mem:", "surrogate:"):
        assert key in text


def test_dotted_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(FULL))
    cfg = load_config(path, ["train.epochs=7", "model.channels=[4, 4]", "train.grad_clip=null",
                             "model.neuron.surrogate.alpha=2.5", "measure.raster_sample=3"])
    assert cfg.train.epochs == 7
    assert cfg.model.channels == (4, 4)
    assert cfg.train.grad_clip is None
    assert cfg.model.neuron.surrogate.alpha == 2.5
    assert config_diff(load_config(path), cfg) == [
        "measure.raster_sample: 0 -> 3", "model.channels: [8, 16] -> [4, 4]",
        "model.neuron.surrogate.alpha: 5.0 -> 2.5", "train.epochs: 2 -> 7",
        "train.grad_clip: 1.0 -> None"]


@pytest.mark.parametrize("overrides, expected", [
    (["train.epochs=0"], "train.epochs: Input should be greater than or equal to 1"),
    (["train.epoch=3"], "train.epoch: unknown key"),
    (["train.epochs=three"], "train.epochs: Input should be a valid integer"),
    (["model.name=resnet99"], "unknown model 'resnet99'; valid names: conv_snn, "),
    (["data.name=cifar"], "unknown dataset 'cifar'; valid names: cifar10dvs, digits, dvsgesture, fsdd, "),
    (["model.neuron.kind=hh"], "model.neuron.kind: unknown neuron 'hh'; valid names: alif, "),
    (["model.neuron.surrogate.name=erf"], "unknown surrogate 'erf'; valid names: atan"),
    (["model.neuron.reset=soft"], "model.neuron.reset: Input should be 'subtract', 'zero' or 'none'"),
    (["model.neuron.tau_mem=0.5e-3"], "tau_mem must exceed dt=0.001 s"),
    (["model.readout=vote"], "model.readout: Input should be 'spike_count'"),
    (["measure.energy_model=7nm"], "unknown energy model '7nm'; valid names: 45nm"),
    (["train.optimizer.name=lion"], "train.optimizer.name: Input should be 'adamw' or 'sgd'"),
    (["paradigm=hebbian"],
     "paradigm: Input should be 'surrogate', 'ann', 'plasticity', 'conversion' or 'distill'"),
    (["model.neuron.kind=lif", "model.neuron.tau_adapt=0.3"], "neuron kind 'lif' has no tau_adapt"),
])
def test_bad_configs_name_the_field(overrides, expected):
    with pytest.raises(ConfigError) as info:
        config_from_dict(FULL, overrides, source="test.yaml")
    message = str(info.value)
    assert message.startswith("invalid config (test.yaml):")
    assert expected in message


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as info:
        config_from_dict({"seed": -1, "train": {"epochs": 0, "batch": 3}})
    lines = str(info.value).splitlines()[1:]
    assert [line.split(":")[0].strip() for line in lines] == ["seed", "train.epochs", "train.batch"]


def test_malformed_overrides_and_files(tmp_path):
    with pytest.raises(ConfigError, match="must look like key.sub=value"):
        config_from_dict({}, ["train.epochs"])
    with pytest.raises(ConfigError, match="'seed' is a value, not a section"):
        config_from_dict({"seed": 1}, ["seed.x=1"])
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(listing)
