"""Every test here starts from the same global RNG state (inputs drawn with torch.rand/randn)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_global_rng() -> None:
    torch.manual_seed(0)
