"""Dataset registry, the validated data config, and ``load_dataset``."""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any, Protocol

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from snn5._registry import Registry
from snn5.data.augment import Augment
from snn5.data.base import ArrayDataset, SplitData, stratified_split
from snn5.data.cifar10dvs import CIFAR10DVSOptions, load_cifar10dvs
from snn5.data.digits import load_digits
from snn5.data.dvsgesture import DVSGestureOptions, load_dvsgesture
from snn5.data.fsdd import load_fsdd, load_fsdd_logmel
from snn5.data.mnist import load_mnist
from snn5.data.nmnist import NMNISTOptions, load_nmnist
from snn5.data.pokerdvs import POKERDVSOptions, load_pokerdvs
from snn5.data.shd import SHDOptions, load_shd
from snn5.data.root import resolve_data_dir

__all__ = ["DATASETS", "DATASET_OPTIONS", "DataConfig", "DatasetLoader", "load_dataset"]

logger = logging.getLogger(__name__)


class DatasetLoader(Protocol):
    """What a dataset registry entry is: a function from a data root to split data."""

    def __call__(self, root: Path, *, val_fraction: float, split_seed: int,
                 download: bool, **options: Any) -> SplitData: ...


DATASETS: Registry[DatasetLoader] = Registry("dataset")
"""Dataset name -> loader ``(root, *, val_fraction, split_seed, download) -> SplitData``."""

DATASETS.register("digits", load_digits)
DATASETS.register("mnist", load_mnist)
DATASETS.register("fsdd", load_fsdd)
DATASETS.register("fsdd_logmel", load_fsdd_logmel)
DATASETS.register("nmnist", load_nmnist)
DATASETS.register("pokerdvs", load_pokerdvs)
DATASETS.register("shd", load_shd)
DATASETS.register("dvsgesture", load_dvsgesture)
DATASETS.register("cifar10dvs", load_cifar10dvs)

DATASET_OPTIONS: Registry[type[BaseModel]] = Registry("dataset with options")
"""Dataset name -> pydantic model of its ``DataConfig.options`` (extra keys forbidden); the
validated options are passed to the loader as keyword arguments. A dataset not listed here
takes no options."""

DATASET_OPTIONS.register("nmnist", NMNISTOptions)
DATASET_OPTIONS.register("pokerdvs", POKERDVSOptions)
DATASET_OPTIONS.register("shd", SHDOptions)
DATASET_OPTIONS.register("dvsgesture", DVSGestureOptions)
DATASET_OPTIONS.register("cifar10dvs", CIFAR10DVSOptions)


class DataConfig(BaseModel):
    """Which dataset to load and how to split it.

    Args:
        name: Registered dataset name (see ``DATASETS.names()``).
        data_dir: Data root; ``None`` uses ``$SNN5_DATA`` or ``~/.cache/snn5/data``.
        val_fraction: Share of the training data held out for validation, ``0 < v < 1``.
        split_seed: Seed of the validation split. It is kept apart from the training seed so
            that runs with different seeds and hyper-parameter trials are compared on the
            same validation set.
        download: Fetch missing files (needs internet; datasets that ship locally ignore it).
        train_subset: Train on a stratified subset of this many training samples (drawn with
            ``split_seed``) for short runs; validation and test sets are unchanged. ``None``:
            all of them.
        augment: Random training-time augmentation of the training batches (shift,
            hflip, cutout, event_drop, time_shift; all off by default); see
            :class:`snn5.data.Augment`. Validation and test data are never augmented.
        options: Dataset-specific options (binning of event datasets: ``steps``,
            ``time_window``, ``size``, ``cache``, ...), checked against the model that
            :data:`DATASET_OPTIONS` registers for ``name``; unset keys keep the loader's
            defaults. Example YAML: ``options: {steps: 16, size: 32}``.

    Example:
        >>> data = load_dataset(DataConfig(name="digits", val_fraction=0.2))
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "digits"
    data_dir: str | None = None
    val_fraction: float = Field(default=0.1, gt=0.0, lt=1.0)
    split_seed: int = Field(default=0, ge=0, lt=2**32)
    download: bool = False
    train_subset: int | None = Field(default=None, ge=1)
    augment: Augment = Augment()
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _known_name(cls, value: str) -> str:
        DATASETS.get(value)  # raises UnknownNameError (a ValueError) listing the valid names
        return value.lower()

    @field_validator("options")
    @classmethod
    def _known_options(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        name = info.data.get("name")
        if name is None:                      # the name failed validation: reported already
            return value
        if name not in DATASET_OPTIONS:
            if value:
                raise ValueError(f"dataset '{name}' takes no options, got {sorted(value)}; "
                                 f"remove them (datasets with options: "
                                 f"{', '.join(DATASET_OPTIONS.names())})")
            return value
        model = DATASET_OPTIONS.get(name)
        try:
            checked = model.model_validate(value)
        except ValidationError as exc:
            problems = "; ".join(".".join(["options", *map(str, e["loc"])]) + f": {e['msg']}"
                                 for e in exc.errors())
            raise ValueError(f"invalid options for dataset '{name}': {problems} (valid keys: "
                             f"{', '.join(model.model_fields)})") from None
        return checked.model_dump(include=set(checked.model_fields_set))

    @field_validator("data_dir", mode="before")
    @classmethod
    def _path_to_str(cls, value: object) -> object:
        return os.fspath(value) if isinstance(value, os.PathLike) else value


def load_dataset(cfg: DataConfig) -> SplitData:
    """Load the dataset that ``cfg`` names, split into train / val / test.

    Args:
        cfg: The data config; its ``data_dir`` goes through :func:`resolve_data_dir`.

    Returns:
        The split dataset, with its checksum and a one-line description.

    Raises:
        DatasetFileError: Dataset files are missing or corrupt (the message names the fix).
    """
    if not isinstance(cfg, DataConfig):
        raise TypeError(f"load_dataset needs a DataConfig, got {type(cfg).__name__}; "
                        "build one with DataConfig(name=...).")
    root = resolve_data_dir(cfg.data_dir)
    loader = DATASETS.get(cfg.name)
    data = loader(root, val_fraction=cfg.val_fraction, split_seed=cfg.split_seed,
                  download=cfg.download, **cfg.options)
    if cfg.train_subset is not None:
        data = _subset_train(data, cfg.train_subset, cfg.split_seed)
    logger.info("dataset %s: %s (sha256 %s)", cfg.name, data.description, data.checksum[:12])
    return data


def _subset_train(data: SplitData, size: int, seed: int) -> SplitData:
    n = len(data.train)
    if size >= n:
        return data
    _, keep = stratified_split(data.train.y.numpy(), size / n, seed)
    idx = torch.from_numpy(keep)
    train = ArrayDataset(data.train.x[idx], data.train.y[idx])
    return dataclasses.replace(data, train=train, description=(
        f"{data.description} (training on a stratified subset of {len(train)} of {n})"))
