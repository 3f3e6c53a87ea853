"""Loading the ANN teacher and fingerprinting it (weights and architecture) for the cache."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor, nn

RUN_CONFIG = "config.yaml"
RUN_WEIGHTS = Path("checkpoints") / "best.safetensors"


class TeacherNotFoundError(FileNotFoundError):
    """``distill.teacher`` names no run folder or checkpoint file."""


class TeacherError(ValueError):
    """The teacher cannot be used: not an ANN run, or an unreadable checkpoint."""


class TeacherArchitectureError(TeacherError):
    """The teacher's weights do not fit the student's ANN twin (names or shapes differ)."""


def teacher_weights_path(source: str | os.PathLike) -> Path:
    """The weights file of ``source``: a run folder's selected weights, or the file itself.

    Raises:
        TeacherNotFoundError: nothing at ``source``, or a run folder without its weights.
        TeacherError: a run folder whose ``paradigm`` is not ``ann``.
    """
    path = Path(source)
    if not path.exists():
        raise TeacherNotFoundError(
            f"distill.teacher {path} does not exist; train the teacher first (`snn5 train "
            "<config> --override paradigm=ann --out <folder>`) and point distill.teacher at "
            "that folder, or at a .safetensors / .pt checkpoint of the ANN twin.")
    if path.is_file():
        return path
    config = path / RUN_CONFIG
    if not config.is_file():
        raise TeacherNotFoundError(f"distill.teacher {path} is a folder without {RUN_CONFIG}; "
                                   "pass the --out folder of a finished `snn5 train` run.")
    paradigm = (yaml.safe_load(config.read_text()) or {}).get("paradigm", "surrogate")
    if paradigm != "ann":
        raise TeacherError(f"distill.teacher {path} is a run of paradigm '{paradigm}'; the "
                           "teacher must be an ANN run (paradigm: ann) of the same model.")
    weights = path / RUN_WEIGHTS
    if not weights.is_file():
        raise TeacherNotFoundError(f"distill.teacher {path} has no {RUN_WEIGHTS}; did the run "
                                   "finish at least one epoch?")
    return weights


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    """The tensors of a safetensors file or a ``torch.save``d state dict (weights only)."""
    try:
        if path.suffix == ".safetensors":
            tensors = load_file(str(path), device="cpu")
        else:
            tensors = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, SafetensorError, ValueError) as exc:
        raise TeacherError(f"teacher checkpoint {path} is unreadable ({exc}); pass a "
                           ".safetensors file or a .pt state dict saved with torch.save.") from exc
    if isinstance(tensors, dict):
        for key in ("model", "state_dict"):             # {"model": state_dict} wrappers
            if isinstance(tensors.get(key), dict):
                tensors = tensors[key]
    if not isinstance(tensors, dict) or not all(isinstance(v, Tensor) for v in tensors.values()):
        raise TeacherError(f"teacher checkpoint {path} holds no state dict (name -> tensor); "
                           "save the ANN with torch.save(model.state_dict(), path).")
    if any(k.startswith("model.") for k in tensors):     # snn5 checkpoints prefix "model."
        tensors = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    return tensors


def load_teacher(source: str | os.PathLike, twin: nn.Module) -> nn.Module:
    """Load the teacher's weights into ``twin`` (the student's same-size ANN) and freeze it.

    Args:
        source: a finished run folder of ``paradigm: ann``, or a ``.safetensors`` / ``.pt``
            (``torch.load(weights_only=True)``) checkpoint of the ANN twin.
        twin: a freshly built ANN twin of the student (``build_model(..., ann=True)``).

    Returns:
        ``twin`` with the teacher's weights, in eval mode, without gradients.

    Raises:
        TeacherNotFoundError, TeacherError, TeacherArchitectureError.
    """
    path = teacher_weights_path(source)
    tensors = _read_state_dict(path)
    expected = twin.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = [f"{k} {tuple(tensors[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
             if k in tensors and tensors[k].shape != v.shape]
    if missing or unexpected or wrong:
        details = "; ".join(part for part in (
            missing and f"missing {', '.join(missing[:5])}",
            unexpected and f"unexpected {', '.join(unexpected[:5])}",
            wrong and f"shape {', '.join(wrong[:5])}") if part)
        raise TeacherArchitectureError(
            f"teacher {path} does not fit the ANN twin of the student ({details}). The teacher "
            "must be trained with the student's model section and paradigm: ann.")
    twin.load_state_dict(tensors)
    twin.eval().requires_grad_(False)
    return twin


def weights_hash(model: nn.Module) -> str:
    """Hex sha256 of a model's state dict (names, dtypes, shapes and values)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def architecture_hash(model: nn.Module) -> str:
    """Hex sha256 of a model's structure (its module tree as printed)."""
    return hashlib.sha256(repr(model).encode()).hexdigest()
