"""Where dataset files live on disk: one rule, used by every loader and by the CLI."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DATA_ENV_VAR", "DEFAULT_DATA_DIR", "resolve_data_dir"]

DATA_ENV_VAR = "SNN5_DATA"
"""Environment variable naming the data root when no directory is passed explicitly."""

DEFAULT_DATA_DIR = Path("~/.cache/snn5/data")
"""Data root used when neither an explicit directory nor ``SNN5_DATA`` is given."""


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Return the root folder that holds the datasets (``<root>/mnist/...``).

    Precedence: the explicit ``data_dir`` argument (the CLI's ``--data-dir``), else the
    environment variable ``SNN5_DATA`` (when set and non-empty), else ``~/.cache/snn5/data``.
    ``~`` is expanded; nothing is created or checked on disk.

    Args:
        data_dir: Explicit data root, or ``None`` to fall back to the environment / default.

    Returns:
        The data root as an absolute-or-relative ``Path`` with ``~`` expanded.

    Example:
        >>> resolve_data_dir("/data/snn")
        PosixPath('/data/snn')
    """
    if data_dir is not None:
        text = os.fspath(data_dir)
        if not text:
            raise ValueError("data_dir is an empty string; pass a folder path or None "
                             f"(None uses ${DATA_ENV_VAR} or {DEFAULT_DATA_DIR}).")
        return Path(text).expanduser()
    env = os.environ.get(DATA_ENV_VAR, "")
    if env:
        return Path(env).expanduser()
    return DEFAULT_DATA_DIR.expanduser()
