"""The time-reversal test reverses exactly the time axis and nothing else."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from snn5.data import ArrayDataset, BatchLoader
from snn5.metrics.reversal import reverse_time, time_axis, time_reversal_accuracy
from snn5.models import build_model
from snn5.nn.encoders import Encoding


def test_reverse_time_moves_frame_t_to_T_minus_1_minus_t_only() -> None:
    x = torch.randn(3, 5, 2, 4, 4)                 # [B, T, C, H, W]
    r = reverse_time(x, 1)
    for t in range(5):
        assert torch.equal(r[:, t], x[:, 4 - t])   # every other axis in place
    assert torch.equal(reverse_time(r, 1), x)
    assert torch.equal(x[:, 0], torch.as_tensor(x[:, 0]))   # input untouched (a copy)


def test_reverse_time_rejects_a_missing_axis() -> None:
    with pytest.raises(ValueError, match="time axis 3"):
        reverse_time(torch.zeros(2, 3, 4), 3)


class FirstFrame(nn.Module):
    """Predicts the class from the first frame only: order-sensitive by construction."""

    encoding = Encoding.EVENTS

    def forward(self, x: torch.Tensor) -> torch.Tensor:      # x: [B, T, C]
        return x[:, 0]


class Counts(nn.Module):
    """Predicts from the event count summed over time: blind to order."""

    encoding = Encoding.EVENTS

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.sum(1)


def batches(n: int = 40, T: int = 6, C: int = 3):
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, C, (n,), generator=g)
    x = torch.zeros(n, T, C)
    x[torch.arange(n), 0, y] = 1.0                  # the label lit in the first frame
    x[torch.arange(n), T - 1, (y + 1) % C] = 1.0    # another class lit in the last frame
    return BatchLoader(ArrayDataset(x, y), 16, shuffle=False)


def test_order_sensitive_model_loses_everything_count_model_nothing() -> None:
    loader = batches()
    assert time_reversal_accuracy(FirstFrame(), loader) == 0.0
    assert time_reversal_accuracy(Counts(), loader) == pytest.approx(
        float((torch.cat([Counts()(x).argmax(1) == y for x, y in loader])).float().mean()))


def test_time_axis_of_built_models() -> None:
    events = build_model({"name": "spiking_mlp", "encoding": "events", "hidden": [8]},
                         (4, 2, 3, 3), 5)
    static = build_model({"name": "spiking_mlp", "hidden": [8]}, (1, 8, 8), 5)
    assert time_axis(events) == 1 and time_axis(static) is None
    with pytest.raises(ValueError, match="encoding: events"):
        time_reversal_accuracy(static, [(torch.zeros(2, 1, 8, 8), torch.zeros(2, dtype=torch.long))])
