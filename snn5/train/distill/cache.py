"""The teacher's logits of the training set, computed once and memory-mapped from disk.

A cache entry is ``<key>.npy`` (float32 ``[N, C]``, row ``i`` = teacher logits of training
sample ``i``, un-augmented) plus ``<key>.json`` (what the key was made of). The key is the
sha256 of: the dataset checksum, the split name, a hash of the split's inputs and labels in
dataset order (so another ``val_fraction``, split seed or subset gives another key), the
teacher's weights hash and its architecture hash. The sidecar is written last, after the
array is complete, so an interrupted write is never read back.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from snn5.data import ArrayDataset
from snn5.train.distill.teacher import architecture_hash, weights_hash

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CacheKey:
    """What identifies a cache entry (written to its JSON sidecar)."""

    dataset_checksum: str
    split: str
    inputs_hash: str
    teacher_weights: str
    teacher_architecture: str

    @property
    def digest(self) -> str:
        """Hex sha256 of all fields: the entry's file name."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()


def inputs_hash(dataset: ArrayDataset) -> str:
    """Hex sha256 of a split's inputs and labels in dataset order."""
    digest = hashlib.sha256()
    for t in (dataset.x, dataset.y):
        t = t.detach().to("cpu").contiguous()
        digest.update(f"{t.dtype}:{tuple(t.shape)};".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def cache_key(teacher: nn.Module, dataset: ArrayDataset, *, dataset_checksum: str,
              split: str = "train") -> CacheKey:
    """The key of ``teacher``'s logits on ``dataset``."""
    return CacheKey(dataset_checksum, split, inputs_hash(dataset), weights_hash(teacher),
                    architecture_hash(teacher))


class CachedLogits:
    """Teacher logits by sample index, read from the memory-mapped cache file.

    Args:
        logits: the ``[N, C]`` float32 memory map (or array).
        path: the ``.npy`` file.
        hit: whether the entry existed (no teacher forward pass was made).
    """

    def __init__(self, logits: np.ndarray, path: Path, hit: bool) -> None:
        self.logits = logits
        self.path = path
        self.hit = hit

    def __len__(self) -> int:
        return self.logits.shape[0]

    def __call__(self, indices: Tensor) -> Tensor:
        """Teacher logits of the samples at ``indices [B]``: ``[B, C]`` float32 (CPU)."""
        return torch.from_numpy(np.asarray(self.logits[indices.cpu().numpy()]))


def _temp_path(folder: Path, prefix: str) -> Path:
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=folder)
    os.close(fd)
    return Path(name)


@torch.inference_mode()
def compute_logits(teacher: nn.Module, dataset: ArrayDataset, out: np.ndarray, *,
                   batch_size: int, device: torch.device) -> None:
    """Write ``teacher``'s logits of every sample of ``dataset`` (in order) into ``out``."""
    teacher.eval().to(device)
    for lo in range(0, len(dataset), batch_size):
        x = dataset.x[lo:lo + batch_size].to(device)      # [B, *input_shape], un-augmented
        out[lo:lo + len(x)] = teacher(x).float().cpu().numpy()


def teacher_logits(teacher: nn.Module, dataset: ArrayDataset, cache_dir: str | os.PathLike, *,
                   dataset_checksum: str, split: str = "train", batch_size: int = 256,
                   device: torch.device | str = "cpu") -> CachedLogits:
    """The teacher's logits of ``dataset``, from the cache or computed once and cached.

    Args:
        teacher: the frozen ANN teacher, ``teacher(x [B, ...]) -> logits [B, C]``.
        dataset: the split (its inputs are used as stored: no augmentation).
        cache_dir: folder of the cache entries (created).
        dataset_checksum: ``SplitData.checksum`` of the source data.
        split: name of the split (part of the key).
        batch_size: teacher batch size while filling the cache.
        device: where the teacher runs while filling the cache.

    Returns:
        The memory-mapped logits; ``.hit`` says whether they were already cached.

    Shape:
        The map is ``[len(dataset), num_classes]``.
    """
    key = cache_key(teacher, dataset, dataset_checksum=dataset_checksum, split=split)
    folder = Path(cache_dir)
    array, sidecar = folder / f"{key.digest}.npy", folder / f"{key.digest}.json"
    if sidecar.is_file() and array.is_file():
        logits = np.load(array, mmap_mode="r")
        meta = json.loads(sidecar.read_text())
        if logits.shape == (len(dataset), meta.get("classes")) and all(
                meta.get(k) == v for k, v in asdict(key).items()):
            log.info("teacher logits from cache %s", array)
            return CachedLogits(logits, array, hit=True)
        log.warning("cache entry %s does not match its key or shape; recomputing it", array)
    folder.mkdir(parents=True, exist_ok=True)
    with torch.inference_mode():
        num_classes = teacher.eval().to(device)(dataset.x[:1].to(device)).shape[1]
    # unique temporary names: two runs filling the same entry at once do not collide
    tmp = _temp_path(folder, f".{key.digest}.npy.")
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32,
                                        shape=(len(dataset), num_classes))
        compute_logits(teacher, dataset, out, batch_size=batch_size, device=torch.device(device))
        out.flush()
        del out
        os.replace(tmp, array)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp_meta = _temp_path(folder, f".{key.digest}.json.")
    tmp_meta.write_text(json.dumps({**asdict(key), "rows": len(dataset),
                                    "classes": int(num_classes)}, indent=2) + "\n")
    os.replace(tmp_meta, sidecar)
    log.info("teacher logits of %d samples cached in %s", len(dataset), array)
    return CachedLogits(np.load(array, mmap_mode="r"), array, hit=False)


class LiveTeacher:
    """Teacher logits by sample index, by running the teacher on every call (no cache).

    Args:
        teacher: the frozen ANN teacher.
        dataset: the split whose samples the indices address (un-augmented inputs).
        device: where the teacher runs.
    """

    def __init__(self, teacher: nn.Module, dataset: ArrayDataset,
                 device: torch.device | str = "cpu") -> None:
        self.teacher = teacher.eval().to(device)
        self.dataset = dataset
        self.device = torch.device(device)

    @torch.no_grad()          # not inference_mode: the logits are targets of a saved loss
    def __call__(self, indices: Tensor) -> Tensor:
        x = self.dataset.x[indices.to(self.dataset.x.device)]     # [B, *input_shape]
        return self.teacher(x.to(self.device)).float()
