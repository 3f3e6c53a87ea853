"""The classifier shell every model family builds: encode -> layers -> readout."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, overload

from torch import Tensor, nn

from snn5.nn.encoders import Encoding, build_encoder
from snn5.nn.layers import Sequential, is_stateful


class SpikingClassifier(nn.Module):
    """``x: [B, *input_shape] -> logits [B, num_classes]`` through ``timesteps`` steps.

    The leading stateless layers form the *stem*. With direct encoding the stem sees the same
    input at every step, so it runs once on ``[1, B, ...]`` and its output is repeated over time
    (no T-fold recomputation; the operation counters see what really runs). With spike encodings
    the stem runs on the encoded ``[T, B, ...]`` sequence.

    ``forward(x)`` returns the logits; ``forward(x, per_step=True)`` returns ``(logits,
    scores)`` with the readout's per-step class scores ``scores: [T, B, C]`` (see
    :mod:`snn5.nn.readout`: the LI membrane for membrane readouts, the output spikes for spike
    counts), ``logits = readout.reduce_steps(scores)``. Per-step losses (TET, temporal
    regularisation) and truncated BPTT use them; :meth:`sequence` gives the body's input.

    Args:
        layers: the network, time-major (stateless layers accept ``[T, B, ...]``).
        readout: ``[T, B, C] -> [B, C]`` with ``steps`` (per-step scores) and ``reduce_steps``
            (see :mod:`snn5.nn.readout`); a plain module works for ``forward(x)`` only.
        timesteps: T.
        encoding: how the static input becomes a sequence.
        encoder_options: keyword options of the encoder (e.g. ``neurons`` of a population
            code); None: its defaults.
        input_shape: per-sample input shape, checked on every call.
        checkpoint_steps: train with time-chunked activation checkpointing of this many steps
            (see :class:`snn5.nn.Sequential`); None: off.
    """

    def __init__(self, layers: Sequence[nn.Module], readout: nn.Module, *, timesteps: int,
                 encoding: Encoding, input_shape: tuple[int, ...],
                 checkpoint_steps: int | None = None,
                 encoder_options: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        layers = list(layers)
        first = next((i for i, m in enumerate(layers) if is_stateful(m)), len(layers))
        self.timesteps = int(timesteps)
        self.encoding = Encoding.parse(encoding)
        self.input_shape = tuple(input_shape)
        self.encoder = build_encoder(self.encoding, self.timesteps, **(encoder_options or {}))
        self.stem = nn.Sequential(*layers[:first])
        self.body = Sequential(*layers[first:])
        self.readout = readout
        self.checkpoint_steps = checkpoint_steps

    def sequence(self, x: Tensor) -> Tensor:
        """Check ``x [B, *input_shape]``, encode it and run the stem: the body's input
        ``[T, B, ...]`` (with direct encoding a broadcast view of the stem's one output)."""
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"expected input [B, {', '.join(map(str, self.input_shape))}], got "
                             f"{list(x.shape)}; the model was built for this dataset's shape.")
        if self.encoding is Encoding.DIRECT:
            h = self.stem(x.unsqueeze(0))                  # [1, B, ...] run once
            return h.expand(self.timesteps, *h.shape[1:])  # [T, B, ...] same current every step
        return self.stem(self.encoder(x))                  # [T, B, ...]

    @overload
    def forward(self, x: Tensor, *, per_step: Literal[False] = False) -> Tensor: ...

    @overload
    def forward(self, x: Tensor, *, per_step: Literal[True]) -> tuple[Tensor, Tensor]: ...

    def forward(self, x: Tensor, *, per_step: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """Logits ``[B, C]``, or ``(logits, scores [T, B, C])`` with ``per_step=True``."""
        h = self.sequence(x)                                                # [T, B, ...]
        out, _ = self.body(h, checkpoint_steps=self.checkpoint_steps)       # [T, B, C]
        if not per_step:
            return self.readout(out)                                        # [B, C]
        steps = getattr(self.readout, "steps", None)
        if steps is None:
            raise TypeError(f"per_step=True needs a readout with steps() and reduce_steps() "
                            f"(snn5.nn.readout); {type(self.readout).__name__} has none")
        scores, _ = steps(out)                                              # [T, B, C]
        return self.readout.reduce_steps(scores), scores

    def extra_repr(self) -> str:
        return f"timesteps={self.timesteps}, encoding={self.encoding.value}"
