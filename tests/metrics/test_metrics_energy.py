"""Energy profiles, their formulas on hand counts, and the public API of snn5.metrics."""

from __future__ import annotations

import dataclasses

import pytest

import snn5.metrics
from snn5._registry import UnknownNameError
from snn5.metrics import (
    COUNT_KEYS, ENERGY_MODELS, EnergyModel, ann_energy_j, energy_breakdown, energy_j,
    get_energy_model,
)

PJ = 1e-12
COUNTS = {"synops": 1000, "macs": 200, "dense_macs": 5000, "neuron_updates": 300, "spikes": 40}


def test_every_public_name_imports():
    for name in snn5.metrics.__all__:
        assert getattr(snn5.metrics, name) is not None, name


def test_registered_profiles():
    assert ENERGY_MODELS.names() == ["45nm", "gpu_dense", "loihi"]
    for _, em in ENERGY_MODELS.items():
        assert set(em.costs) == set(COUNT_KEYS) and em.reference
        with pytest.raises(dataclasses.FrozenInstanceError):
            em.e_ac_j = 1.0  # type: ignore[misc]


def test_default_45nm_model_is_horowitz():
    em = ENERGY_MODELS.get("45nm")
    assert (em.e_ac_j, em.e_mac_j) == (pytest.approx(0.9 * PJ), pytest.approx(4.6 * PJ))
    assert em.e_dense_mac_j == em.e_neuron_update_j == em.e_spike_j == 0.0
    assert "Horowitz" in em.reference and "ISSCC 2014" in em.reference


def test_loihi_constants_are_davies_table_2():
    em = ENERGY_MODELS.get("loihi")
    assert em.e_ac_j == pytest.approx(23.6 * PJ)                # per synaptic spike op (min)
    assert em.e_neuron_update_j == pytest.approx(81 * PJ)       # per neuron update (active)
    assert em.e_spike_j == pytest.approx(1.7 * PJ)              # per spike within a tile
    assert em.e_mac_j == pytest.approx(4.6 * PJ)                # analog layer on a 45 nm host
    assert em.e_dense_mac_j == 0.0
    assert "Davies" in em.reference and "IEEE Micro" in em.reference


def test_gpu_dense_is_a100_tdp_over_peak_tf32():
    em = ENERGY_MODELS.get("gpu_dense")
    assert em.e_dense_mac_j == pytest.approx(400.0 / 78e12)     # 5.13 pJ per MAC
    assert em.e_ac_j == em.e_mac_j == em.e_neuron_update_j == em.e_spike_j == 0.0
    assert "A100" in em.reference


@pytest.mark.parametrize(("name", "expected"), [
    ("45nm", 1000 * 0.9 * PJ + 200 * 4.6 * PJ),
    ("loihi", 1000 * 23.6 * PJ + 200 * 4.6 * PJ + 300 * 81 * PJ + 40 * 1.7 * PJ),
    ("gpu_dense", 5000 * 400.0 / 78e12),
])
def test_each_profile_prices_hand_counts(name, expected):
    assert energy_j(COUNTS, name) == pytest.approx(expected, rel=1e-12)
    assert energy_j(COUNTS, ENERGY_MODELS.get(name)) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(("name", "per_mac"), [("45nm", 4.6 * PJ), ("loihi", 4.6 * PJ),
                                                ("gpu_dense", 400.0 / 78e12)])
def test_ann_twin_pays_every_mac_once(name, per_mac):
    assert ann_energy_j(1e6, name) == pytest.approx(1e6 * per_mac)
    assert ann_energy_j(1e6) == pytest.approx(1e6 * 4.6 * PJ)  # default: 45nm


@pytest.mark.parametrize("name", ["45nm", "loihi", "gpu_dense"])
def test_breakdown_sums_to_the_total_in_layer_order(name):
    layers = {"conv": {**dict.fromkeys(COUNT_KEYS, 0), "macs": 500, "dense_macs": 500},
              "lif": {**dict.fromkeys(COUNT_KEYS, 0), "neuron_updates": 100, "spikes": 7},
              "fc": {**dict.fromkeys(COUNT_KEYS, 0), "synops": 70, "dense_macs": 900}}
    b = energy_breakdown(layers, name)
    assert b.model == name and list(b.per_layer_j) == ["conv", "lif", "fc"]
    assert b.per_layer_j == {k: pytest.approx(energy_j(c, name)) for k, c in layers.items()}
    assert b.total_j == pytest.approx(energy_j({k: sum(c[k] for c in layers.values())
                                                for k in COUNT_KEYS}, name))
    assert b.total_j > 0


def test_exported_graph_counts_without_dense_macs():
    """The NIR runtime's format (no dense_macs): event-driven profiles apply, the dense one
    says what is missing."""
    counts = {"lif1": {"synops": 0, "macs": 0, "neuron_updates": 40, "spikes": 5},
              "fc": {"synops": 15, "macs": 0, "neuron_updates": 0, "spikes": 0}}
    assert energy_breakdown(counts, "45nm").total_j == pytest.approx(15 * 0.9 * PJ)
    assert energy_breakdown(counts, "loihi").total_j == pytest.approx(
        15 * 23.6 * PJ + 40 * 81 * PJ + 5 * 1.7 * PJ)
    with pytest.raises(ValueError, match=r"layer 'lif1' have no 'dense_macs'.*gpu_dense"):
        energy_breakdown(counts, "gpu_dense")


def test_unknown_energy_model_lists_valid_names():
    with pytest.raises(UnknownNameError,
                       match=r"unknown energy model '7nm'; valid names: 45nm, gpu_dense, loihi"):
        energy_j(COUNTS, "7nm")
    with pytest.raises(UnknownNameError, match="valid names: 45nm, gpu_dense, loihi"):
        energy_breakdown({}, "truenorth")


def test_custom_model():
    custom = EnergyModel("toy", e_ac_j=1.0, e_mac_j=10.0, reference="made up",
                         e_neuron_update_j=100.0, e_spike_j=1000.0)
    assert energy_j({"synops": 3, "macs": 2, "neuron_updates": 1, "spikes": 1}, custom) == 1123.0
    assert ann_energy_j(2, custom) == 20.0
    assert get_energy_model(custom) is custom
    assert custom.to_dict()["e_spike_j"] == 1000.0


@pytest.mark.parametrize("bad", [-1e-12, float("nan"), float("inf"), "1pJ"])
def test_energy_model_rejects_bad_energies(bad):
    with pytest.raises(ValueError, match="e_spike_j must be a number of joules >= 0"):
        EnergyModel("bad", e_ac_j=1e-12, e_mac_j=1e-12, reference="", e_spike_j=bad)


def test_energy_model_prices_dense_or_event_driven_not_both():
    with pytest.raises(ValueError, match="set e_dense_mac_j=0"):
        EnergyModel("both", e_ac_j=1e-12, e_mac_j=0.0, reference="", e_dense_mac_j=1e-12)
    with pytest.raises(ValueError, match="gives a MAC no energy"):
        EnergyModel("free", e_ac_j=1e-12, e_mac_j=0.0, reference="")


def test_bad_counts_are_rejected():
    with pytest.raises(ValueError, match="synops of layer 'fc' must be a finite count"):
        energy_breakdown({"fc": {**COUNTS, "synops": -1}})
    with pytest.raises(ValueError, match="macs must be a finite count"):
        ann_energy_j(float("nan"))
    with pytest.raises(ValueError, match="spikes must be a finite count"):
        energy_j({**COUNTS, "spikes": True}, "loihi")
