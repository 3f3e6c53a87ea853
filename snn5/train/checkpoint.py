"""Checkpoints: safetensors files with a JSON metadata header, written atomically.

One file holds everything needed to resume (model, optimizer and scheduler state, RNG states,
progress) so that a crash can never leave a checkpoint whose parts disagree: the file is written
to a temporary name in the same folder, flushed to disk, then renamed over the old one. Loading
never unpickles: tensors come from safetensors, everything else from JSON.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor

META_KEY = "snn5"


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, unreadable or does not fit the model."""


def save_checkpoint(path: str | os.PathLike, tensors: dict[str, Tensor],
                    meta: dict[str, Any]) -> Path:
    """Write ``tensors`` and JSON-serialisable ``meta`` to ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    flat = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(flat, tmp, metadata={META_KEY: json.dumps(meta)})
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu"
                    ) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Read a checkpoint written by :func:`save_checkpoint`: ``(tensors, meta)``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found; was the run started with this "
                              "--out folder, and did it finish at least one epoch?")
    try:
        tensors = load_file(str(path), device=str(device))
        meta = read_meta(path)
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
        raise CheckpointError(f"checkpoint {path} is unreadable ({exc}); it may be truncated. "
                              "Delete it to restart from an earlier one, or retrain.") from exc
    return tensors, meta


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON metadata of a checkpoint, without loading its tensors."""
    with safe_open(str(path), framework="pt") as f:
        raw = (f.metadata() or {}).get(META_KEY)
    if raw is None:
        raise CheckpointError(f"{path} is a safetensors file without snn5 metadata")
    return json.loads(raw)


def prefixed(prefix: str, tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """``{prefix + "." + key: tensor}``."""
    return {f"{prefix}.{k}": v for k, v in tensors.items()}


def unprefixed(prefix: str, tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """The entries of ``tensors`` under ``prefix.``, with the prefix removed."""
    start = len(prefix) + 1
    return {k[start:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


def split_state(state: Any, prefix: str) -> tuple[dict[str, Tensor], Any]:
    """Split a nested state (dicts/lists of tensors and plain values, like an optimizer's
    ``state_dict()``) into flat tensors and a JSON-ready skeleton with references to them."""
    tensors: dict[str, Tensor] = {}

    def walk(obj: Any, key: str) -> Any:
        if isinstance(obj, Tensor):
            tensors[key] = obj
            return {"__tensor__": key}
        if isinstance(obj, dict):
            return {"__dict__": [[walk(k, f"{key}.k{i}"), walk(v, f"{key}.{i}")]
                                 for i, (k, v) in enumerate(obj.items())]}
        if isinstance(obj, (list, tuple)):
            return {"__list__": [walk(v, f"{key}.{i}") for i, v in enumerate(obj)],
                    "tuple": isinstance(obj, tuple)}
        if obj is None or isinstance(obj, (bool, int, float, str)):
            return obj
        raise TypeError(f"cannot store {type(obj).__name__} at {key} in a checkpoint")

    return tensors, walk(state, prefix)


def join_state(skeleton: Any, tensors: dict[str, Tensor]) -> Any:
    """Inverse of :func:`split_state`."""
    if isinstance(skeleton, dict):
        if "__tensor__" in skeleton:
            return tensors[skeleton["__tensor__"]]
        if "__dict__" in skeleton:
            return {join_state(k, tensors): join_state(v, tensors) for k, v in skeleton["__dict__"]}
        if "__list__" in skeleton:
            items = [join_state(v, tensors) for v in skeleton["__list__"]]
            return tuple(items) if skeleton["tuple"] else items
    return skeleton


def rng_state() -> dict[str, Tensor]:
    """The global torch RNG states (CPU and every CUDA device)."""
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            state[f"cuda{i}"] = s
    return state


def set_rng_state(state: dict[str, Tensor]) -> None:
    """Restore states saved by :func:`rng_state`."""
    torch.set_rng_state(state["cpu"].to(torch.uint8))
    cuda = [state[k] for k in sorted(state) if k.startswith("cuda")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.to(torch.uint8) for s in cuda])
