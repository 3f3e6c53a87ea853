"""Every YAML in configs/ validates (so the README's commands cannot break silently)."""

from pathlib import Path

import pytest

from snn5.config import load_config
from snn5.models import MODELS

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


def test_there_are_configs():
    assert len(CONFIGS) >= 3


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_config_is_valid(path):
    cfg = load_config(path)
    assert cfg.model.name in MODELS.names()
