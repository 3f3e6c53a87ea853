"""SpikeRecorder: forward hooks on every spiking layer, removed on exit."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from snn5.nn import ALIF, IF, LI, LIF, LIFCell, PLIF, Sequential, SpikeRecorder, spiking_layers


def model() -> Sequential:
    return Sequential(nn.Linear(5, 6), LIF(tau_mem=5e-3), nn.Linear(6, 6),
                      Sequential(IF(), nn.Linear(6, 6), PLIF()), nn.Linear(6, 6),
                      ALIF(tau_mem=5e-3), nn.Linear(6, 3), LI())


def hook_count(m: nn.Module) -> int:
    return sum(len(sub._forward_hooks) for sub in m.modules())


def test_spiking_layers_finds_every_spiking_sequence_neuron() -> None:
    m = model()
    assert list(spiking_layers(m)) == ["1", "3.0", "3.2", "5"]
    holder = nn.ModuleDict({"cell": LIFCell(), "li": LI()})
    assert spiking_layers(holder) == {}


def test_records_every_spiking_layer_output_and_removes_hooks() -> None:
    m = model()
    x = torch.rand(8, 2, 5) * 4
    with SpikeRecorder(m) as rec:
        assert hook_count(m) == 4
        out, _ = m(x)
    assert hook_count(m) == 0
    assert sorted(rec.spikes) == ["1", "3.0", "3.2", "5"]
    # independently recompute the first layer's spikes
    z1, _ = m[1](m[0](x))
    assert torch.equal(rec.spikes["1"], z1)
    for z in rec.spikes.values():
        assert z.shape[:2] == (8, 2) and not z.requires_grad
        assert set(z.unique().tolist()) <= {0.0, 1.0}
    recorded = dict(rec.spikes)
    m(torch.rand(8, 2, 5))                                  # after exit nothing is recorded
    assert all(rec.spikes[k] is v for k, v in recorded.items())


def test_keeps_the_last_call() -> None:
    m = model()
    with SpikeRecorder(m) as rec:
        m(torch.rand(8, 2, 5))
        m(torch.rand(3, 1, 5))
    assert all(z.shape[:2] == (3, 1) for z in rec.spikes.values())


def test_detach_false_keeps_the_graph() -> None:
    m = model()
    with SpikeRecorder(m, detach=False) as rec:
        m(torch.rand(8, 2, 5) * 4)
    rate = sum(z.mean() for z in rec.spikes.values())
    rate.backward()                                         # an activity regulariser
    assert m[0].weight.grad is not None and m[0].weight.grad.abs().sum() > 0


def test_hooks_are_removed_when_the_block_raises() -> None:
    m = model()
    with pytest.raises(RuntimeError, match="boom"):
        with SpikeRecorder(m):
            raise RuntimeError("boom")
    assert hook_count(m) == 0
