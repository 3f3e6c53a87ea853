"""Datasets read from files on disk (never a hub at run time), splits and batching.

Public API:
    DataConfig, load_dataset, DATASETS: choose and load a dataset by name.
    SplitData, ArrayDataset: the loaded train / val / test tensors and what identifies them.
    BatchLoader: deterministic, resumable mini-batches.
    Augment: reproducible training-time augmentation (shift, flip, cutout, event drop).
    resolve_data_dir: ``data_dir`` argument > ``$SNN5_DATA`` > ``~/.cache/snn5/data``.
    DatasetFileError: raised for missing or corrupt dataset files (an ``OSError``).
    download_mnist: fetch the MNIST files for users with internet.

Example:
    >>> from snn5.data import BatchLoader, DataConfig, load_dataset
    >>> data = load_dataset(DataConfig(name="digits"))
    >>> loader = BatchLoader(data.train, 64, shuffle=True, seed=0)
    >>> x, y = next(iter(loader.batches(epoch=0)))
    >>> x.shape, data.num_classes
    (torch.Size([64, 1, 8, 8]), 10)
"""

from snn5.data.augment import Augment
from snn5.data.base import ArrayDataset, DatasetFileError, SplitData
from snn5.data.loader import BatchLoader
from snn5.data.mnist import download_mnist
from snn5.data.registry import DATASETS, DataConfig, load_dataset
from snn5.data.root import resolve_data_dir

__all__ = [
    "DATASETS",
    "ArrayDataset",
    "Augment",
    "BatchLoader",
    "DataConfig",
    "DatasetFileError",
    "SplitData",
    "download_mnist",
    "load_dataset",
    "resolve_data_dir",
]
