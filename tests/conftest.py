"""Shared fixtures: where the real datasets are (``$SNN5_DATA``, else ``../shared/data``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from snn5.data.mnist import MNIST_FILES

# Repo at <work>/main, shared data at <work>/shared/data (see the shared data README).
REPO_SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def _has_mnist(root: Path) -> bool:
    return all((root / "mnist" / name).is_file() for name in MNIST_FILES)


@pytest.fixture(scope="session")
def mnist_root() -> Path:
    """A data root whose ``mnist/`` holds the four original MNIST files (else skip)."""
    candidates = [Path(p) for p in (os.environ.get("SNN5_DATA"),) if p]
    candidates.append(REPO_SHARED_DATA)
    for root in candidates:
        if _has_mnist(root):
            return root.resolve()
    pytest.skip(f"real MNIST files not found under {' or '.join(map(str, candidates))} "
                "(need <root>/mnist/*-ubyte.gz; set SNN5_DATA to a data root that has them)")
