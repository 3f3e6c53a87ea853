"""On-disk cache of binned event tensors, keyed by the source files' checksum and the binning
parameters.

Binning event recordings into frames is the slow part of loading an event dataset (minutes for
DVS128 Gesture or CIFAR10-DVS); the result depends only on the source files and the binning
parameters, so it is kept in a safetensors file named after a sha256 over both. A different
parameter or changed file gives another key and so another entry, which is built afresh; an
entry whose stored key does not match, or that cannot be read, is rebuilt and overwritten.
Entries are written atomically (temp file + rename) and read with safetensors (no pickle).

Where: ``$SNN5_CACHE`` if set, else ``<data root>/.snn5-cache`` when the data root is writable,
else ``~/.cache/snn5/frames``. Delete the folder to free the space; nothing else refers to it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

__all__ = ["CACHE_ENV_VAR", "cache_key", "cached_tensors", "file_sha256", "files_checksum",
           "resolve_cache_dir"]

logger = logging.getLogger(__name__)

CACHE_ENV_VAR = "SNN5_CACHE"
"""Environment variable naming the cache folder (overrides the default places)."""

FORMAT_VERSION = 1
"""Bumped when the layout of cached tensors changes, so old entries are not read."""

_CHUNK = 1 << 20
_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes, remembered for the process while its size and mtime stay
    the same (so a dataset's files are hashed once per process, not once per load)."""
    path = Path(path).resolve()
    st = path.stat()
    memo = (str(path), st.st_size, st.st_mtime_ns)
    if memo not in _DIGESTS:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
        _DIGESTS[memo] = digest.hexdigest()
    return _DIGESTS[memo]


def files_checksum(paths: Iterable[str | os.PathLike[str]], base: str | os.PathLike[str]) -> str:
    """sha256 over the lines ``"<path relative to base> <sha256 of the file>\\n"``, in the
    given order: one checksum that names a set of source files and their contents."""
    lines = (f"{Path(p).relative_to(base).as_posix()} {file_sha256(p)}\n" for p in paths)
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def resolve_cache_dir(root: str | os.PathLike[str]) -> Path:
    """The cache folder for datasets under the data root ``root`` (see the module docstring)."""
    env = os.environ.get(CACHE_ENV_VAR, "")
    if env:
        return Path(env).expanduser()
    root = Path(root).expanduser()
    if root.is_dir() and os.access(root, os.W_OK):
        return root / ".snn5-cache"
    return Path("~/.cache/snn5/frames").expanduser()


def cache_key(dataset: str, source: str, params: Mapping[str, Any]) -> str:
    """sha256 over the dataset name, the cache format, the source checksum and the (JSON)
    binning parameters."""
    text = json.dumps({"dataset": dataset, "format": FORMAT_VERSION, "source": source,
                       "params": dict(params)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _load(path: Path, key: str) -> dict[str, torch.Tensor] | None:
    try:
        with safe_open(str(path), framework="pt") as f:
            if (f.metadata() or {}).get("key") != key:
                logger.warning("cache entry %s has another key; rebuilding it", path)
                return None
            return {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118
    except (OSError, SafetensorError, ValueError) as exc:
        logger.warning("cache entry %s is unreadable (%s); rebuilding it", path, exc)
        return None


def _save(path: Path, tensors: Mapping[str, torch.Tensor], metadata: dict[str, str]) -> None:
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
        os.close(fd)
        save_file({k: v.contiguous() for k, v in tensors.items()}, tmp, metadata=metadata)
        os.replace(tmp, path)
        tmp = None
        logger.info("cached binned frames in %s", path)
    except OSError as exc:
        logger.warning("could not write the frame cache %s (%s); set %s to a writable folder "
                       "to keep binned frames between runs", path, exc, CACHE_ENV_VAR)
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def cached_tensors(dataset: str, source: str, params: Mapping[str, Any],
                   build: Callable[[], Mapping[str, torch.Tensor]], *,
                   root: str | os.PathLike[str], enabled: bool = True) -> dict[str, torch.Tensor]:
    """``build()``'s tensors, from the cache when an entry with the same key exists.

    Args:
        dataset: Dataset name (part of the key and of the file name).
        source: Checksum of the source files (part of the key).
        params: Binning parameters, JSON-serialisable (part of the key).
        build: Computes the tensors on a cache miss.
        root: The data root (decides the default cache folder).
        enabled: ``False`` calls ``build()`` and touches no file.

    Returns:
        Name -> tensor, equal to what ``build()`` returns.
    """
    if not enabled:
        return dict(build())
    key = cache_key(dataset, source, params)
    path = resolve_cache_dir(root) / f"{dataset}-{key[:24]}.safetensors"
    if path.is_file():
        tensors = _load(path, key)
        if tensors is not None:
            logger.info("binned frames of %s read from the cache %s", dataset, path)
            return tensors
    tensors = dict(build())
    _save(path, tensors, {"key": key, "dataset": dataset, "source": source,
                          "params": json.dumps(dict(params), sort_keys=True)})
    return tensors
