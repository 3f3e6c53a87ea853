"""search_space parsing: types from the base config, named errors, validation by RunConfig."""

import optuna
import pytest

from snn5.config import config_from_dict, load_config
from snn5.hpo import ParamKind, SearchSpaceError, load_tune_config, parse_search_space

BASE = config_from_dict({"data": {"name": "digits"}, "model": {"name": "spiking_mlp"}})


def test_types_come_from_the_base_config_or_type():
    specs = parse_search_space({
        "train.optimizer.lr": {"low": 1e-4, "high": 1e-2, "log": True},
        "model.timesteps": {"low": 2, "high": 8, "step": 2},
        "train.epochs": {"low": 1, "high": 3, "type": "float"},
        "model.hidden": {"choices": [[16], [32, 32]]},
    }, BASE)
    assert [s.kind for s in specs] == [ParamKind.FLOAT, ParamKind.INT, ParamKind.FLOAT,
                                       ParamKind.CHOICE]
    assert specs[0].log and specs[1].step == 2 and specs[3].choices == ([16], [32, 32])


def test_suggestions_stay_in_range_and_map_choices_back():
    specs = parse_search_space({"model.timesteps": {"low": 2, "high": 8, "step": 2},
                                "model.hidden": {"choices": [[16], [32, 32]]}}, BASE)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(8):
        trial = study.ask()
        t, hidden = (s.suggest(trial) for s in specs)
        assert t in (2, 4, 6, 8) and hidden in ([16], [32, 32])
        assert specs[1].value_of(trial.params) == hidden


@pytest.mark.parametrize("raw, match", [
    ({"train.optimizer.lrr": {"low": 1e-4, "high": 1e-2}},
     r"'train.optimizer.lrr' is not a key.*close valid keys: train.optimizer.lr"),
    ({"train.optimizer.lr": {"low": 1e-2, "high": 1e-4}}, r"low .* must be below high"),
    ({"train.optimizer.lr": {"low": 0.0, "high": 1e-2, "log": True}}, r"log range needs low > 0"),
    ({"train.optimizer.lr": {"low": 1e-4}}, r"a range needs low and high"),
    ({"train.optimizer.lr": {"low": 1e-4, "high": 1e-2, "lg": True}}, r"got keys"),
    ({"train.optimizer.lr": {"low": 1e-4, "high": 1e-2, "log": True, "step": 1e-4}},
     r"log and step cannot be combined"),
    ({"model.timesteps": {"low": 1.5, "high": 8}}, r"int range needs integer"),
    ({"model.readout": {"low": 1, "high": 2}}, r"not a number.*add type: float"),
    ({"model.hidden": {"choices": []}}, r"non-empty list"),
    ({"train.epochs": {"low": 0, "high": 3}},
     r"(?s)search_space.train.epochs = 0.*train.epochs: .*greater than"),
    ({"train.optimizer.lr": 0.01}, r"must be a mapping"),
    ([], r"non-empty mapping"),
])
def test_errors_name_the_entry_and_the_fix(raw, match):
    with pytest.raises(SearchSpaceError, match=match):
        parse_search_space(raw, BASE)


def test_load_config_sets_the_search_space_aside(tmp_path):
    path = tmp_path / "tune.yaml"
    path.write_text("data: {name: digits}\ntrain: {epochs: 2}\n"
                    "search_space:\n  train.optimizer.lr: {low: 1.0e-4, high: 1.0e-2}\n")
    assert load_config(path).train.epochs == 2            # `snn5 train` trains the base config
    base, space = load_tune_config(path, ["train.epochs=3"])
    assert base.train.epochs == 3 and [s.path for s in space] == ["train.optimizer.lr"]


def test_a_config_without_search_space_is_refused(tmp_path):
    path = tmp_path / "plain.yaml"
    path.write_text("data: {name: digits}\n")
    with pytest.raises(SearchSpaceError, match="no top-level search_space"):
        load_tune_config(path)


def test_the_shipped_tune_config_parses():
    base, space = load_tune_config("configs/digits_mlp_tune.yaml")
    assert base.data.name == "digits" and len(space) >= 3


PLASTIC = config_from_dict({"paradigm": "plasticity", "data": {"name": "digits"},
                            "model": {"name": "spiking_mlp", "encoding": "poisson"},
                            "plasticity": {"rule": {"name": "stdp", "a_plus": 0.005}}})


def test_plasticity_rule_parameters_can_be_searched_even_when_unset():
    specs = parse_search_space({"plasticity.rule.a_plus": {"low": 1e-3, "high": 1e-2},
                                "plasticity.rule.tau_plus": {"low": 5e-3, "high": 4e-2,
                                                             "log": True},
                                "plasticity.lr": {"low": 0.1, "high": 2.0}}, PLASTIC)
    assert [s.kind for s in specs] == [ParamKind.FLOAT] * 3


def test_an_unknown_rule_parameter_names_the_valid_ones():
    with pytest.raises(SearchSpaceError, match=r"(?s)'plasticity.rule.tau_pre' is not a key.*"
                                               r"valid: .*tau_plus"):
        parse_search_space({"plasticity.rule.tau_pre": {"low": 5e-3, "high": 4e-2}}, PLASTIC)
