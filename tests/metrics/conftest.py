"""Tiny classifier SNNs (and their ANN twin) built from snn5.nn for the metrics tests."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from snn5.core import encode_direct, encode_poisson
from snn5.nn import LIF, Sequential, SpikeCount, TimeDistributed, TimeMean

IN_SHAPE = (1, 6, 6)       # [C, H, W]
CLASSES = 3


class TinySNN(nn.Module):
    """conv3x3(1->4) -> LIF -> flatten -> linear(144->3) -> LIF -> spike count.

    ``encoding="direct"`` repeats the analog image over T (the conv sees real values at every
    step); ``"poisson"`` feeds rate spikes (the conv sees spikes).
    """

    def __init__(self, timesteps: int = 4, encoding: str = "direct") -> None:
        super().__init__()
        self.timesteps = timesteps
        self.encoding = encoding
        self.net = Sequential(
            TimeDistributed(nn.Conv2d(1, 4, 3, padding=1)),
            LIF(2e-3),
            TimeDistributed(nn.Flatten()),
            nn.Linear(4 * 6 * 6, CLASSES),
            LIF(2e-3),
        )
        self.readout = SpikeCount()
        with torch.no_grad():                        # strong weights: the layers do fire
            self.net[0].module.weight.normal_(0.0, 2.0)
            self.net[0].module.bias.fill_(0.5)
            self.net[3].weight.normal_(0.0, 1.0)

    def forward(self, x: Tensor) -> Tensor:         # x: [B, C, H, W]
        if self.encoding == "direct":
            x_seq = encode_direct(x, self.timesteps)             # [T, B, C, H, W]
        else:
            x_seq = encode_poisson(x, self.timesteps)            # [T, B, C, H, W]
        z_seq, _ = self.net(x_seq)                               # [T, B, 3]
        return self.readout(z_seq)                               # [B, 3]


class TinyANN(nn.Module):
    """The same-size ANN of :class:`TinySNN`: ReLU instead of LIF, T = 1."""

    def __init__(self) -> None:
        super().__init__()
        self.timesteps = 1
        self.net = nn.Sequential(
            TimeDistributed(nn.Conv2d(1, 4, 3, padding=1)), nn.ReLU(),
            TimeDistributed(nn.Flatten()), nn.Linear(4 * 6 * 6, CLASSES), nn.ReLU(),
        )
        self.readout = TimeMean()

    def forward(self, x: Tensor) -> Tensor:
        return self.readout(self.net(encode_direct(x, 1)))      # [B, 3]


def make_batches(n_batches: int = 3, batch_size: int = 5, seed: int = 0
                 ) -> list[tuple[Tensor, Tensor]]:
    """Images in [0, 1] ``[B, 1, 6, 6]`` with int64 labels."""
    g = torch.Generator().manual_seed(seed)
    return [(torch.rand(batch_size, *IN_SHAPE, generator=g),
             torch.randint(0, CLASSES, (batch_size,), generator=g)) for _ in range(n_batches)]


@pytest.fixture
def snn() -> TinySNN:
    torch.manual_seed(0)
    return TinySNN()


@pytest.fixture
def ann() -> TinyANN:
    torch.manual_seed(1)
    return TinyANN()


@pytest.fixture
def batches() -> list[tuple[Tensor, Tensor]]:
    return make_batches()


@pytest.fixture
def make_snn():
    """Factory: ``make_snn(timesteps=4, encoding="direct")`` -> a seeded :class:`TinySNN`."""
    def make(timesteps: int = 4, encoding: str = "direct") -> TinySNN:
        torch.manual_seed(0)
        return TinySNN(timesteps, encoding)
    return make
