"""Encoder modules: static input ``[B, *F]`` -> spike or current sequence ``[T, B, *F]``."""

from __future__ import annotations

from torch import Tensor, nn

from snn5.core.options import Option
from snn5.core.encoders import encode_direct, encode_latency, encode_poisson


class Encoding(Option):
    """How a static input becomes a sequence: the analog value as a current at every step
    (DIRECT), Bernoulli rate spikes (POISSON), or one spike per input, earlier when larger
    (LATENCY); or the input already is a sequence, one frame per step (EVENTS: event-camera
    frames ``[T, *F]`` per sample, T taken from the data)."""

    DIRECT = "direct"
    POISSON = "poisson"
    LATENCY = "latency"
    EVENTS = "events"


class DirectEncoder(nn.Module):
    """Repeat the input at every step (a view, no copy)."""

    def __init__(self, timesteps: int) -> None:
        super().__init__()
        self.timesteps = timesteps

    def forward(self, x: Tensor) -> Tensor:
        return encode_direct(x, self.timesteps)

    def extra_repr(self) -> str:
        return f"timesteps={self.timesteps}"


class PoissonEncoder(DirectEncoder):
    """Bernoulli rate code with probability ``max_rate * x`` per step (global RNG)."""

    def __init__(self, timesteps: int, max_rate: float = 1.0) -> None:
        super().__init__(timesteps)
        self.max_rate = max_rate

    def forward(self, x: Tensor) -> Tensor:
        return encode_poisson(x, self.timesteps, max_rate=self.max_rate)


class LatencyEncoder(DirectEncoder):
    """Time-to-first-spike code: one spike at ``round((1 - x) (T - 1))``."""

    def __init__(self, timesteps: int, threshold: float = 0.0) -> None:
        super().__init__(timesteps)
        self.threshold = threshold

    def forward(self, x: Tensor) -> Tensor:
        return encode_latency(x, self.timesteps, threshold=self.threshold)


class EventsEncoder(DirectEncoder):
    """The input already is a sequence: ``x [B, T, *F] -> [T, B, *F]`` (a view)."""

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim < 2 or x.shape[1] != self.timesteps:
            raise ValueError(f"events encoding expects [B, T={self.timesteps}, ...] with time as "
                             f"the second axis, got shape {tuple(x.shape)}")
        return x.transpose(0, 1)


def build_encoder(kind: Encoding, timesteps: int) -> nn.Module:
    """The encoder module for ``kind``."""
    return {Encoding.DIRECT: DirectEncoder, Encoding.POISSON: PoissonEncoder,
            Encoding.LATENCY: LatencyEncoder,
            Encoding.EVENTS: EventsEncoder}[Encoding.parse(kind)](timesteps)
