"""Surrogate sharpening schedules: values, validation, and what anneal_surrogates changes."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from snn5.core import ATan, Triangle
from snn5.models import SpikingMLPConfig, build_model
from snn5.nn import LIF, NeuronBase, ScheduleKind, SurrogateSchedule, anneal_surrogates


@pytest.mark.parametrize("kind", list(ScheduleKind))
def test_schedule_starts_and_ends_at_its_values(kind) -> None:
    s = SurrogateSchedule(start=2.0, end=8.0, kind=kind)
    assert s.value(0.0) == pytest.approx(2.0) and s.value(1.0) == pytest.approx(8.0)
    values = [s.value(p / 10) for p in range(11)]
    assert values == sorted(values)                                    # monotone sharpening


def test_schedule_midpoints_by_hand() -> None:
    assert SurrogateSchedule(2.0, 8.0).value(0.5) == pytest.approx(5.0)
    assert SurrogateSchedule(2.0, 8.0, "exponential").value(0.5) == pytest.approx(4.0)
    assert SurrogateSchedule(2.0, 8.0, "cosine").value(0.5) == pytest.approx(5.0)
    assert SurrogateSchedule(2.0, 8.0, "cosine").value(0.25) == pytest.approx(
        8.0 + (2.0 - 8.0) * 0.5 * (1 + math.cos(math.pi / 4)))
    assert SurrogateSchedule(1.0, 0.25, "linear").value(1.0) == 0.25  # widths shrink


def test_schedule_is_frozen_and_validates() -> None:
    s = SurrogateSchedule(1.0, 4.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.start = 2.0                                                  # type: ignore[misc]
    assert s.kind is ScheduleKind.LINEAR
    with pytest.raises(ValueError, match="linear, exponential, cosine"):
        SurrogateSchedule(1.0, 4.0, kind="step")
    for bad in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="start"):
            SurrogateSchedule(bad, 4.0)
    for bad in (-0.1, 1.5, math.nan):
        with pytest.raises(ValueError, match=r"progress.*\[0, 1\]"):
            s.value(bad)


def test_anneal_sets_every_neuron_and_keeps_the_surrogate_family() -> None:
    model = build_model(SpikingMLPConfig(hidden=(8, 8), readout="spike_count",
                                         neuron={"surrogate": {"name": "atan", "alpha": 1.0}}),
                        (1, 8, 8), 10)
    neurons = [m for m in model.modules() if isinstance(m, NeuronBase) and m.spiking]
    assert len(neurons) == 3
    n = anneal_surrogates(model, 0.5, SurrogateSchedule(1.0, 5.0))
    assert n == 3
    assert all(m.surrogate == ATan(alpha=3.0) for m in neurons)
    tri = LIF(surrogate=Triangle(width=1.0))
    anneal_surrogates(tri, 1.0, SurrogateSchedule(1.0, 0.2, "exponential"))
    assert tri.surrogate == Triangle(width=0.2)


def test_anneal_changes_gradients_not_spikes() -> None:
    torch.manual_seed(0)
    m = LIF(tau_mem=5e-3, surrogate=ATan(alpha=1.0))
    x = torch.rand(10, 4, 6) * 3

    def run():
        xi = x.clone().requires_grad_(True)
        z, _ = m(xi)
        z.sum().backward()
        return z, xi.grad

    z0, g0 = run()
    anneal_surrogates(m, 1.0, SurrogateSchedule(1.0, 10.0))
    z1, g1 = run()
    assert torch.equal(z0, z1) and not torch.allclose(g0, g1)


def test_learnable_width_is_rejected_with_the_fix() -> None:
    model = torch.nn.Sequential(LIF(), LIF(surrogate=ATan(learnable=True)))
    with pytest.raises(ValueError, match=r"1 learn.*learnable: false"):
        anneal_surrogates(model, 0.5, SurrogateSchedule(1.0, 4.0))
    assert model[0].surrogate == ATan()                                # nothing changed
