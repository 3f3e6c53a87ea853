"""Encoder modules: static input ``[B, *F]`` -> spike or current sequence ``[T, B, *F]``."""

from __future__ import annotations

from torch import Tensor, nn

from snn5.core.options import Option
from snn5.core.encoders import (
    encode_direct, encode_frequency, encode_latency, encode_poisson, encode_population,
    population_shape,
)


class Encoding(Option):
    """How a static input becomes a sequence: the analog value as a current at every step
    (DIRECT), Bernoulli rate spikes (POISSON), or one spike per input, earlier when larger
    (LATENCY); or the input already is a sequence, one frame per step (EVENTS: event-camera
    frames ``[T, *F]`` per sample, T taken from the data); Gaussian receptive fields, N neurons
    per value, as rate spikes (POPULATION: the first axis grows N-fold); or a different
    frequency band of the image per step (FREQUENCY: FEEL-SNN's FE, analog)."""

    DIRECT = "direct"
    POISSON = "poisson"
    LATENCY = "latency"
    EVENTS = "events"
    POPULATION = "population"
    FREQUENCY = "frequency"


class DirectEncoder(nn.Module):
    """Repeat the input at every step (a view, no copy)."""

    def __init__(self, timesteps: int) -> None:
        super().__init__()
        self.timesteps = timesteps

    def forward(self, x: Tensor) -> Tensor:
        return encode_direct(x, self.timesteps)

    def out_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Per-step, per-sample shape of the encoded sequence for per-sample ``input_shape``."""
        return tuple(input_shape)

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


class PopulationEncoder(DirectEncoder):
    """Population code with Gaussian receptive fields (Bohte et al., Neurocomputing 2002), see
    :func:`snn5.core.encoders.encode_population`: ``[B, C, *rest] -> [T, B, C * N, *rest]``.

    Args:
        timesteps: T.
        neurons: N receptive fields per value (>= 3).
        lo, hi: the value range the centres cover.
        beta: width factor (sigma = spacing / beta; the paper's 1.5).
        latency: one spike per neuron, earlier for a stronger response, instead of rate spikes.
    """

    def __init__(self, timesteps: int, neurons: int = 5, *, lo: float = 0.0, hi: float = 1.0,
                 beta: float = 1.5, latency: bool = False) -> None:
        super().__init__(timesteps)
        if isinstance(neurons, bool) or not isinstance(neurons, int) or neurons < 3:
            raise ValueError(f"PopulationEncoder needs neurons >= 3 per value, got {neurons!r}")
        self.neurons, self.lo, self.hi, self.beta, self.latency = neurons, lo, hi, beta, latency

    def forward(self, x: Tensor) -> Tensor:
        return encode_population(x, self.timesteps, neurons=self.neurons, lo=self.lo, hi=self.hi,
                                 beta=self.beta, latency=self.latency)

    def out_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return population_shape(tuple(input_shape), self.neurons)

    def extra_repr(self) -> str:
        code = "latency" if self.latency else "rate"
        return f"timesteps={self.timesteps}, neurons={self.neurons}, code={code}"


class FrequencyEncoder(DirectEncoder):
    """Frequency-filtered direct input (FE of FEEL-SNN, Xu et al., NeurIPS 2024), see
    :func:`snn5.core.encoders.encode_frequency`: images ``[B, *C, H, W] -> [T, B, *C, H, W]``.

    Args:
        timesteps: T.
        band: disjoint frequency rings per step instead of nested low-pass masks.
    """

    def __init__(self, timesteps: int, band: bool = False) -> None:
        super().__init__(timesteps)
        self.band = bool(band)

    def forward(self, x: Tensor) -> Tensor:
        return encode_frequency(x, self.timesteps, band=self.band)

    def extra_repr(self) -> str:
        return f"timesteps={self.timesteps}, masks={'band' if self.band else 'lowpass'}"


ENCODERS: dict[Encoding, type[DirectEncoder]] = {
    Encoding.DIRECT: DirectEncoder, Encoding.POISSON: PoissonEncoder,
    Encoding.LATENCY: LatencyEncoder, Encoding.EVENTS: EventsEncoder,
    Encoding.POPULATION: PopulationEncoder, Encoding.FREQUENCY: FrequencyEncoder,
}


def build_encoder(kind: Encoding | str, timesteps: int, **options: object) -> DirectEncoder:
    """The encoder module for ``kind``; ``options`` go to its constructor (e.g. ``neurons=7``
    for POPULATION). Every encoder has ``out_shape(input_shape)``, the per-step shape."""
    return ENCODERS[Encoding.parse(kind)](timesteps, **options)
