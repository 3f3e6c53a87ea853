"""Fixtures for snn5.data tests (``mnist_root`` comes from tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def mnist_dir(mnist_root: Path) -> Path:
    """The folder holding the four original MNIST files."""
    return mnist_root / "mnist"
