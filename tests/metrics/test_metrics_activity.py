"""FiringRates against hand counts."""

from __future__ import annotations

import math

import pytest
import torch

from snn5.metrics import FiringRates
from snn5.nn import SpikeRecorder


def test_rates_over_two_batches_match_a_hand_count():
    a1 = torch.zeros(2, 3, 4)                      # layer a: [T=2, B=3, 4]
    a1[0, 0, :] = 1.0                              # 4 spikes
    a1[1, 2, 1] = 1.0                              # 1 spike
    b1 = torch.zeros(2, 3, 1)                      # layer b: [T=2, B=3, 1]
    b1[:, 0, 0] = 1.0                              # 2 spikes
    a2 = torch.ones(2, 1, 4)                       # batch of 1: 8 spikes
    b2 = torch.zeros(2, 1, 1)
    rates = FiringRates()
    rates.update({"a": a1, "b": b1})
    rates.update({"a": a2, "b": b2})

    assert rates.spikes == {"a": 13.0, "b": 2.0}
    assert rates.neuron_steps == {"a": 2 * 4 * 4, "b": 2 * 4 * 1}
    assert rates.per_layer == {"a": pytest.approx(13 / 32), "b": pytest.approx(2 / 8)}
    # the mean weighs layers by their neuron-steps; it is not the mean of the layer rates
    assert rates.mean == pytest.approx(15 / 40)
    assert rates.mean != pytest.approx((13 / 32 + 2 / 8) / 2)
    assert rates.spikes_per_sample == {"a": pytest.approx(13 / 4), "b": pytest.approx(2 / 4)}


def test_signed_spikes_count_by_magnitude():
    rates = FiringRates()
    rates.update({"x": torch.tensor([[[1.0, -1.0, 0.0]]])})   # [T=1, B=1, 3]
    assert rates.per_layer["x"] == pytest.approx(2 / 3)


def test_empty_reset_and_bad_shape():
    rates = FiringRates()
    assert math.isnan(rates.mean)
    assert rates.per_layer == {}
    rates.update({"x": torch.ones(1, 2, 2)})
    assert rates.mean == 1.0
    rates.reset()
    assert math.isnan(rates.mean) and rates.spikes_per_sample == {}
    with pytest.raises(ValueError, match=r"\[T, B, \*F\]"):
        rates.update({"x": torch.ones(3)})


def test_rates_from_a_spike_recorder(snn, batches):
    rates = FiringRates()
    hand_spikes = hand_steps = 0.0
    per_layer: dict[str, list[float]] = {}
    with torch.inference_mode():
        for x, _ in batches:
            with SpikeRecorder(snn) as rec:
                snn(x)
            rates.update(rec.spikes)
            for name, z in rec.spikes.items():
                per_layer.setdefault(name, [0.0, 0.0])
                per_layer[name][0] += z.sum().item()
                per_layer[name][1] += z.numel()
                hand_spikes += z.sum().item()
                hand_steps += z.numel()
    assert set(rates.per_layer) == {"net.1", "net.4"}
    for name, (spikes, steps) in per_layer.items():
        assert rates.per_layer[name] == pytest.approx(spikes / steps)
    assert 0.0 < rates.mean < 1.0
    assert rates.mean == pytest.approx(hand_spikes / hand_steps)
