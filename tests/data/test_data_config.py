"""DATASETS registry, DataConfig validation, load_dataset, public API and layering."""

from __future__ import annotations

import ast
from pathlib import Path

import pydantic
import pytest
import torch

import snn5.data
from snn5._registry import UnknownNameError
from snn5.data import DATASETS, ArrayDataset, DataConfig, SplitData, load_dataset
from snn5.data.registry import DATASET_OPTIONS

PUBLIC = {"DataConfig", "DATASETS", "load_dataset", "SplitData", "ArrayDataset", "BatchLoader",
          "resolve_data_dir", "DatasetFileError", "download_mnist", "Augment"}


def test_public_api():
    assert set(snn5.data.__all__) == PUBLIC
    for name in PUBLIC:
        assert getattr(snn5.data, name) is not None
        assert getattr(snn5.data, name).__doc__, f"{name} has no docstring"


def test_registered_datasets():
    assert DATASETS.names() == ["cifar10dvs", "digits", "dvsgesture", "fsdd", "fsdd_logmel",
                                "mnist", "nmnist", "pokerdvs", "shd"]
    assert DATASET_OPTIONS.names() == ["cifar10dvs", "dvsgesture", "nmnist", "pokerdvs", "shd"]


def test_defaults():
    cfg = DataConfig()
    assert cfg.model_dump() == {"name": "digits", "data_dir": None, "val_fraction": 0.1,
                                "split_seed": 0, "download": False, "train_subset": None,
                                "augment": {"shift": 0, "hflip": False, "cutout": 0,
                                            "event_drop": 0.0, "time_shift": 0},
                                "options": {}}


def test_train_subset_is_stratified_and_leaves_val_and_test_alone():
    full = load_dataset(DataConfig(name="digits"))
    sub = load_dataset(DataConfig(name="digits", train_subset=200))
    assert len(sub.train) == 200
    counts = sub.train.y.bincount(minlength=10)
    assert counts.min() >= 19 and counts.max() <= 21          # 10 classes, proportional
    assert torch.equal(sub.val.x, full.val.x) and torch.equal(sub.test.y, full.test.y)
    again = load_dataset(DataConfig(name="digits", train_subset=200))
    assert torch.equal(again.train.x, sub.train.x)           # drawn with split_seed
    assert "subset of 200" in sub.description
    with pytest.raises(pydantic.ValidationError, match="train_subset"):
        DataConfig(train_subset=0)


def test_unknown_name_lists_valid_names():
    with pytest.raises(pydantic.ValidationError) as info:
        DataConfig(name="cifar-11")
    message = str(info.value)
    assert "name" in message and "unknown dataset 'cifar-11'" in message
    valid = ("valid names: cifar10dvs, digits, dvsgesture, fsdd, fsdd_logmel, mnist, nmnist, "
             "pokerdvs, shd")
    assert valid in message
    with pytest.raises(UnknownNameError, match=valid):
        DATASETS.get("cifar-11")


def test_name_is_case_insensitive():
    assert DataConfig(name="MNIST").name == "mnist"


@pytest.mark.parametrize("value", [0.0, 1.0, -0.5, 2.0])
def test_val_fraction_bounds(value):
    with pytest.raises(pydantic.ValidationError, match="val_fraction"):
        DataConfig(val_fraction=value)


def test_split_seed_must_be_non_negative():
    with pytest.raises(pydantic.ValidationError, match="split_seed"):
        DataConfig(split_seed=-1)


def test_extra_fields_forbidden_and_frozen():
    with pytest.raises(pydantic.ValidationError, match="batch_size"):
        DataConfig(batch_size=3)
    cfg = DataConfig()
    with pytest.raises(pydantic.ValidationError):
        cfg.name = "mnist"


def test_data_dir_accepts_paths(tmp_path):
    assert DataConfig(data_dir=tmp_path).data_dir == str(tmp_path)


def test_round_trip():
    cfg = DataConfig(name="mnist", data_dir="/data", val_fraction=0.2, split_seed=4,
                     download=True)
    assert DataConfig.model_validate(cfg.model_dump()) == cfg
    assert DataConfig.model_validate_json(cfg.model_dump_json()) == cfg


def test_options_are_checked_per_dataset_and_round_trip():
    cfg = DataConfig(name="dvsgesture", options={"steps": 8, "size": 64})
    assert cfg.options == {"steps": 8, "size": 64}             # unset keys keep loader defaults
    assert DataConfig.model_validate(cfg.model_dump()) == cfg
    assert DataConfig(name="shd", options={"time_window": 0.02, "steps": 50}).options == {
        "time_window": 0.02, "steps": 50}
    with pytest.raises(pydantic.ValidationError, match=r"options.stepz: Extra inputs.*valid "
                                                       r"keys: time_window, steps, channels"):
        DataConfig(name="shd", options={"stepz": 5})
    with pytest.raises(pydantic.ValidationError, match="options.size: .*must divide the 128x128"):
        DataConfig(name="cifar10dvs", options={"size": 30})
    with pytest.raises(pydantic.ValidationError, match="options.channels: .*must divide 700"):
        DataConfig(name="shd", options={"channels": 300})
    with pytest.raises(pydantic.ValidationError, match="whole number of time_window"):
        DataConfig(name="nmnist", options={"duration": 0.31})
    with pytest.raises(pydantic.ValidationError, match="'digits' takes no options.*remove them"):
        DataConfig(name="digits", options={"steps": 3})


def test_options_reach_the_loader(monkeypatch, tmp_path):
    seen = {}

    def load_fake(root, *, val_fraction, split_seed, download, **options):
        seen.update(options)
        ds = ArrayDataset(torch.zeros(2, 3), torch.tensor([0, 1]))
        return SplitData(name="fake", train=ds, val=ds, test=ds, input_shape=(3,),
                         num_classes=2, checksum="0" * 64, description="fake")

    monkeypatch.setitem(DATASETS._items, "shd", load_fake)
    load_dataset(DataConfig(name="shd", data_dir=str(tmp_path), options={"steps": 7}))
    assert seen == {"steps": 7}


@pytest.fixture
def fake_dataset(monkeypatch):
    """Register a recording loader under 'fake' for one test (the registry is restored)."""
    import torch

    calls = []

    def load_fake(root, *, val_fraction, split_seed, download):
        calls.append(dict(root=root, val_fraction=val_fraction, split_seed=split_seed,
                          download=download))
        ds = ArrayDataset(torch.zeros(2, 3), torch.tensor([0, 1]))
        return SplitData(name="fake", train=ds, val=ds, test=ds, input_shape=(3,),
                         num_classes=2, checksum="0" * 64, description="fake")

    monkeypatch.setitem(DATASETS._items, "fake", load_fake)
    return calls


def test_load_dataset_resolves_root_and_passes_options(fake_dataset, monkeypatch, tmp_path):
    monkeypatch.setenv("SNN5_DATA", str(tmp_path / "env"))
    data = load_dataset(DataConfig(name="fake", val_fraction=0.3, split_seed=9, download=True))
    assert data.name == "fake"
    assert fake_dataset[-1] == dict(root=tmp_path / "env", val_fraction=0.3, split_seed=9,
                                    download=True)
    load_dataset(DataConfig(name="fake", data_dir=str(tmp_path / "arg")))
    assert fake_dataset[-1]["root"] == tmp_path / "arg"


def test_load_dataset_needs_a_config():
    with pytest.raises(TypeError, match="DataConfig"):
        load_dataset({"name": "digits"})


# ---------------------------------------------------------------- layering and style contract

_PACKAGE = Path(snn5.data.__file__).parent
_ALLOWED_SNN5 = ("snn5.data", "snn5._registry")


def _modules():
    return sorted(_PACKAGE.glob("*.py"))


@pytest.mark.parametrize("path", _modules(), ids=lambda p: p.name)
def test_module_follows_layering_and_style(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    assert ast.get_docstring(tree), f"{path.name} has no module docstring"
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        for name in names:
            if name == "snn5" or name.startswith("snn5."):
                assert name.startswith(_ALLOWED_SNN5), f"{path.name} imports {name} (layer L3)"
        assert not isinstance(node, ast.Assert), f"{path.name}:{node.lineno} uses assert"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id != "print", f"{path.name}:{node.lineno} calls print"
    assert len(path.read_text().splitlines()) < 400, f"{path.name} is too long"
