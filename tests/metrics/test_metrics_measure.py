"""measure(): every field checked against an independent computation on a tiny model."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from snn5._registry import UnknownNameError
from snn5.metrics import (
    ENERGY_MODELS, EnergyModel, Measurement, OpCounter, accuracy, ann_energy_j, energy_breakdown,
    measure, predict,
)
from snn5.nn import SpikeRecorder

KEYS = {"accuracy", "loss", "firing_rate", "synops_per_sample", "synops_per_layer",
        "snn_macs_per_sample", "ann_macs_per_sample", "energy_j_per_sample",
        "ann_energy_j_per_sample", "energy_model", "timesteps", "latency_ms_per_sample",
        "samples", "counts_per_layer", "neurons_per_layer", "energy_by_model"}


def _reference(model: nn.Module, batches) -> dict:
    """Logits, spikes and SynOps computed by hand, batch by batch."""
    logits, labels, spikes, steps = [], [], {}, {}
    counter = OpCounter(model)
    with torch.inference_mode():
        for x, y in batches:
            with counter, SpikeRecorder(model) as rec:
                logits.append(model(x))
            labels.append(y)
            for name, z in rec.spikes.items():
                spikes[name] = spikes.get(name, 0.0) + z.sum().item()
                steps[name] = steps.get(name, 0) + z.numel()
    return {"logits": torch.cat(logits), "y": torch.cat(labels), "spikes": spikes,
            "steps": steps, "synops": counter.synops_per_sample,
            "synops_per_layer": counter.synops_per_layer, "macs": counter.macs_per_sample,
            "counts_per_layer": counter.counts_per_layer}


def test_measure_fields_match_independent_computation(snn, ann, batches):
    snn.eval()
    ref = _reference(snn, batches)
    snn.train()
    m = measure(snn, batches, ann_model=ann)

    assert m.samples == 15
    assert m.accuracy == pytest.approx(accuracy(ref["logits"], ref["y"]))
    assert m.loss == pytest.approx(F.cross_entropy(ref["logits"], ref["y"]).item())
    assert m.firing_rate_per_layer == {
        name: pytest.approx(ref["spikes"][name] / ref["steps"][name]) for name in ref["spikes"]}
    assert m.firing_rate_mean == pytest.approx(sum(ref["spikes"].values())
                                               / sum(ref["steps"].values()))
    assert 0.0 < m.firing_rate_mean < 1.0
    assert m.synops_per_sample == pytest.approx(ref["synops"]) and m.synops_per_sample > 0
    assert m.synops_per_layer == pytest.approx(ref["synops_per_layer"])
    assert m.snn_macs_per_sample == 4 * (4 * 36) * 9          # direct input: conv at every step
    assert m.ann_macs_per_sample == (4 * 36) * 9 + (4 * 36) * 3
    assert m.energy_j_per_sample == pytest.approx(m.synops_per_sample * 0.9e-12
                                                  + m.snn_macs_per_sample * 4.6e-12)
    assert m.ann_energy_j_per_sample == pytest.approx(m.ann_macs_per_sample * 4.6e-12)
    assert m.energy_model == "45nm"
    assert m.counts_per_layer == {name: pytest.approx(c)
                                  for name, c in ref["counts_per_layer"].items()}
    assert m.neurons_per_layer == {"net.1": 4 * 36, "net.4": 3}
    assert m.timesteps == 4
    assert m.latency_ms_per_sample >= 0.0 and math.isfinite(m.latency_ms_per_sample)


def test_measure_restores_training_flags(snn, batches):
    snn.train()
    snn.net[1].eval()                              # a mixed state comes back as it was
    flags = [mod.training for mod in snn.modules()]
    measure(snn, batches)
    assert [mod.training for mod in snn.modules()] == flags


def test_to_dict_is_json_ready_with_the_documented_keys(snn, ann, batches):
    d = measure(snn, batches, ann_model=ann).to_dict()
    assert set(d) == KEYS
    assert set(d["firing_rate"]) == {"mean", "per_layer"}
    assert set(d["firing_rate"]["per_layer"]) == {"net.1", "net.4"}
    assert set(d["synops_per_layer"]) == {"net.0.module", "net.3"}
    assert list(d["counts_per_layer"]) == ["net.0.module", "net.1", "net.3", "net.4"]
    assert set(d["energy_by_model"]) == set(ENERGY_MODELS.names())
    assert json.loads(json.dumps(d, allow_nan=False)) == d


def test_without_ann_and_timesteps(batches):
    class Plain(nn.Module):                        # no spiking layers, no timesteps attribute
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(36, 3)

        def forward(self, x):
            return self.fc(x.flatten(1))

    m = measure(Plain(), batches)
    assert m.ann_macs_per_sample is None and m.ann_energy_j_per_sample is None
    assert m.timesteps is None
    assert m.firing_rate_mean is None and m.firing_rate_per_layer == {}
    assert m.synops_per_sample == 0 and m.snn_macs_per_sample == 36 * 3
    json.dumps(m.to_dict(), allow_nan=False)


def test_poisson_input_gives_synops_not_macs(make_snn, batches):
    m = measure(make_snn(encoding="poisson"), batches)
    assert m.snn_macs_per_sample == 0.0
    assert m.synops_per_layer["net.0.module"] > 0
    assert m.energy_j_per_sample == pytest.approx(m.synops_per_sample * 0.9e-12)


def test_one_shot_generator_of_batches(snn, batches):
    m = measure(snn, (b for b in batches))
    assert m.samples == 15


def test_errors_before_work(snn, batches):
    with pytest.raises(UnknownNameError, match="45nm"):
        measure(snn, batches, energy_model="nope")
    with pytest.raises(ValueError, match="empty"):
        measure(snn, [])
    with pytest.raises(ValueError, match="device"):
        measure(snn, batches, device="meta")
    with pytest.raises(TypeError, match="int64"):
        measure(snn, [(batches[0][0], batches[0][1].float())])
    with pytest.raises(TypeError, match="pair"):
        measure(snn, [batches[0][0]])


def test_measurement_is_frozen(snn, batches):
    m = measure(snn, batches)
    assert isinstance(m, Measurement)
    with pytest.raises(AttributeError):
        m.accuracy = 1.0  # type: ignore[misc]


def test_accuracy_and_predict(snn, batches):
    logits = torch.tensor([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    assert accuracy(logits, torch.tensor([1, 0, 0])) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match=r"\[B, C\]"):
        accuracy(torch.zeros(3), torch.zeros(3, dtype=torch.long))
    snn.train()
    preds, labels = predict(snn, batches)
    assert preds.shape == labels.shape == (15,) and preds.dtype == torch.int64
    assert snn.training
    assert torch.equal(labels, torch.cat([y for _, y in batches]))


def test_energy_on_every_registered_profile(snn, ann, batches):
    m = measure(snn, batches, ann_model=ann)
    for name, em in ENERGY_MODELS.items():
        e = m.energy_by_model[name]
        breakdown = energy_breakdown(m.counts_per_layer, name)
        assert e["energy_j_per_sample"] == pytest.approx(breakdown.total_j)
        assert e["per_layer_j"] == pytest.approx(breakdown.per_layer_j)
        assert sum(e["per_layer_j"].values()) == pytest.approx(e["energy_j_per_sample"])
        assert e["ann_energy_j_per_sample"] == pytest.approx(ann_energy_j(m.ann_macs_per_sample,
                                                                          name))
        assert e["constants"] == em.to_dict()
    assert m.energy_by_model["45nm"]["energy_j_per_sample"] == m.energy_j_per_sample
    loihi = m.energy_by_model["loihi"]["per_layer_j"]
    updates = m.counts_per_layer["net.1"]["neuron_updates"]
    assert updates == 4 * 4 * 36                                 # T x neurons per sample
    assert loihi["net.1"] == pytest.approx(updates * 81e-12
                                           + m.counts_per_layer["net.1"]["spikes"] * 1.7e-12)
    gpu = m.energy_by_model["gpu_dense"]["per_layer_j"]
    assert gpu["net.3"] == pytest.approx(4 * 144 * 3 * 400 / 78e12)   # dense: spikes or not
    assert gpu["net.1"] == 0.0                                  # neuron updates not priced


def test_headline_profile_and_custom_model(snn, ann, batches):
    m = measure(snn, batches, ann_model=ann, energy_model="loihi")
    assert m.energy_model == "loihi"
    assert m.energy_j_per_sample == m.energy_by_model["loihi"]["energy_j_per_sample"]
    assert m.ann_energy_j_per_sample == pytest.approx(m.ann_macs_per_sample * 4.6e-12)
    toy = EnergyModel("toy", e_ac_j=0.0, e_mac_j=1.0, reference="test")
    m = measure(snn, batches, energy_model=toy)
    assert m.energy_j_per_sample == pytest.approx(m.snn_macs_per_sample)
    assert set(m.energy_by_model) == {*ENERGY_MODELS.names(), "toy"}
