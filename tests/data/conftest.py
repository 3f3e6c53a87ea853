"""Fixtures for snn5.data tests (``mnist_root`` comes from tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def mnist_dir(mnist_root: Path) -> Path:
    """The folder holding the four original MNIST files."""
    return mnist_root / "mnist"


@pytest.fixture(autouse=True)
def _frame_cache(tmp_path_factory, monkeypatch) -> Path:
    """Binned-frame caches go to a per-session temp folder, never the user's ~/.cache."""
    path = tmp_path_factory.getbasetemp() / "snn5-frame-cache"
    monkeypatch.setenv("SNN5_CACHE", str(path))
    return path
