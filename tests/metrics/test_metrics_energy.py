"""Energy models and the public API of snn5.metrics."""

from __future__ import annotations

import dataclasses

import pytest

import snn5.metrics
from snn5._registry import UnknownNameError
from snn5.metrics import ENERGY_MODELS, EnergyModel, ann_energy_j, get_energy_model, snn_energy_j


def test_every_public_name_imports():
    for name in snn5.metrics.__all__:
        assert getattr(snn5.metrics, name) is not None, name


def test_default_45nm_model_is_horowitz():
    em = ENERGY_MODELS.get("45nm")
    assert em.name == "45nm"
    assert em.e_ac_j == pytest.approx(0.9e-12)
    assert em.e_mac_j == pytest.approx(4.6e-12)
    assert "Horowitz" in em.reference and "ISSCC 2014" in em.reference
    with pytest.raises(dataclasses.FrozenInstanceError):
        em.e_ac_j = 1.0  # type: ignore[misc]


def test_energy_is_counts_times_constants():
    assert snn_energy_j(1000, 0) == pytest.approx(1000 * 0.9e-12)
    assert snn_energy_j(1e6, 2e3, "45nm") == pytest.approx(1e6 * 0.9e-12 + 2e3 * 4.6e-12)
    assert ann_energy_j(1e6) == pytest.approx(1e6 * 4.6e-12)
    custom = EnergyModel("toy", e_ac_j=1.0, e_mac_j=10.0, reference="made up")
    assert snn_energy_j(3, 2, custom) == 23.0
    assert ann_energy_j(2, custom) == 20.0
    assert get_energy_model(custom) is custom


def test_unknown_energy_model_lists_valid_names():
    with pytest.raises(UnknownNameError, match=r"unknown energy model '7nm'.*45nm"):
        snn_energy_j(1, 1, "7nm")


@pytest.mark.parametrize("bad", [0.0, -1e-12, float("nan"), float("inf")])
def test_energy_model_rejects_non_positive_energies(bad):
    with pytest.raises(ValueError, match="e_ac_j"):
        EnergyModel("bad", e_ac_j=bad, e_mac_j=1e-12, reference="")


def test_negative_counts_are_rejected():
    with pytest.raises(ValueError, match="synops"):
        snn_energy_j(-1, 0)
    with pytest.raises(ValueError, match="macs"):
        ann_energy_j(float("nan"))
