"""resolve_data_dir: explicit argument > $SNN5_DATA > ~/.cache/snn5/data."""

from __future__ import annotations

from pathlib import Path

import pytest

from snn5.data import resolve_data_dir


@pytest.fixture
def fake_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    return home


def test_explicit_argument_wins_over_env(monkeypatch, tmp_path, fake_home):
    monkeypatch.setenv("SNN5_DATA", str(tmp_path / "env"))
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_dir(str(tmp_path / "arg")) == tmp_path / "arg"


def test_env_used_when_no_argument(monkeypatch, tmp_path, fake_home):
    monkeypatch.setenv("SNN5_DATA", str(tmp_path / "env"))
    assert resolve_data_dir(None) == tmp_path / "env"
    assert resolve_data_dir() == tmp_path / "env"


@pytest.mark.parametrize("env", [None, ""])
def test_default_under_home_cache(monkeypatch, fake_home, env):
    if env is None:
        monkeypatch.delenv("SNN5_DATA", raising=False)
    else:
        monkeypatch.setenv("SNN5_DATA", env)
    assert resolve_data_dir(None) == fake_home / ".cache" / "snn5" / "data"


def test_tilde_is_expanded(monkeypatch, fake_home):
    monkeypatch.setenv("SNN5_DATA", "~/env-data")
    assert resolve_data_dir(None) == fake_home / "env-data"
    assert resolve_data_dir("~/arg-data") == fake_home / "arg-data"


def test_nothing_is_created(monkeypatch, tmp_path, fake_home):
    monkeypatch.delenv("SNN5_DATA", raising=False)
    resolve_data_dir(None)
    resolve_data_dir(tmp_path / "x")
    assert not fake_home.exists()
    assert not (tmp_path / "x").exists()


def test_empty_argument_is_an_error():
    with pytest.raises(ValueError, match="data_dir is an empty string"):
        resolve_data_dir("")
