"""The classifier shell every model family builds: encode -> layers -> readout."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal, overload

import torch
from torch import Tensor, nn

from snn5.nn.encoders import Encoding, build_encoder
from snn5.nn.layers import Sequential, is_stateful

__all__ = ["ClassifierStream", "SpikingClassifier", "select_samples"]


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
    :meth:`stream` runs the same network one step at a time (early exit).

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

    def stream(self, x: Tensor) -> ClassifierStream:
        """Step-by-step inference on ``x [B, *input_shape]``: a :class:`ClassifierStream`
        whose steps give the logits after 1, 2, ..., T steps and which can drop samples."""
        return ClassifierStream(self, x)

    def extra_repr(self) -> str:
        return f"timesteps={self.timesteps}, encoding={self.encoding.value}"


def select_samples(state: Any, keep: Tensor, batch: int) -> Any:
    """The entries ``keep`` (a bool mask ``[B]`` or indices) of every tensor in a state of
    :class:`snn5.nn.Sequential` or a readout (tensors ``[B, ...]``, NamedTuples, tuples, None)."""
    if state is None:
        return None
    if isinstance(state, Tensor):
        if state.ndim == 0 or state.shape[0] != batch:
            raise ValueError(f"a state tensor of shape {tuple(state.shape)} has no batch axis of "
                             f"{batch} samples first; the stream can only drop samples from "
                             "states shaped [B, ...] (every snn5 neuron's)")
        return state[keep]
    if isinstance(state, tuple):
        parts = [select_samples(s, keep, batch) for s in state]
        return type(state)(*parts) if hasattr(state, "_fields") else tuple(parts)
    raise TypeError(f"cannot select samples from a state of type {type(state).__name__}; "
                    "states are tensors, NamedTuples or tuples of them")


class ClassifierStream:
    """One sample batch run through a :class:`SpikingClassifier` one step at a time.

    :meth:`step` runs step ``t`` of the body and the readout for the samples still active,
    continuing from the state of step ``t - 1`` (nothing is recomputed), and returns their
    logits ``readout.reduce_steps(scores[:t + 1])``: what the model would answer had it been
    built with ``t + 1`` steps. :meth:`keep` drops samples: later steps run on the others only,
    so the computation shrinks with them. After ``T`` steps the stream is exhausted and step
    ``T + 1`` is never computed (:meth:`step` raises). Iterating yields the logits of each
    step until ``T`` or until no sample is left.

    In eval mode the logits of step ``T - 1`` equal ``model(x)``. The body must be causal in
    time, as for any chunked run of :class:`snn5.nn.Sequential`: every family streams except
    ``hybrid_snn_ann``, whose attention bridge mixes all ``T`` steps at once (it refuses a
    one-step input). With
    direct encoding the stem runs once; with spike encodings the whole input is encoded once
    (the same encoder call, hence the same random spikes, as ``model(x)``) and the stem runs
    on each step's frame.

    Attributes:
        t: steps done.
        index: ``[B_active]`` positions in the original batch of the samples still active.
    """

    def __init__(self, model: SpikingClassifier, x: Tensor) -> None:
        if not hasattr(model.readout, "steps"):
            raise TypeError(f"stream() needs a readout with steps() and reduce_steps() "
                            f"(snn5.nn.readout); {type(model.readout).__name__} has none")
        if tuple(x.shape[1:]) != model.input_shape:
            raise ValueError(f"expected input [B, {', '.join(map(str, model.input_shape))}], "
                             f"got {list(x.shape)}; the model was built for this dataset's shape.")
        self.model = model
        self.timesteps = model.timesteps
        self.t = 0
        self.index = torch.arange(x.shape[0], device=x.device)
        self._direct = model.encoding is Encoding.DIRECT
        # direct: the stem's one output [1, B, ...]; otherwise the encoded input [T, B, ...]
        self._drive = model.stem(x.unsqueeze(0)) if self._direct else model.encoder(x)
        self._body_state: Any = None
        self._readout_state: Any = None
        self._scores: Tensor | None = None                          # [t, B_active, C]

    @property
    def active(self) -> int:
        """Number of samples still running."""
        return int(self.index.numel())

    @property
    def done(self) -> bool:
        """All ``T`` steps are done or no sample is left."""
        return self.t >= self.timesteps or self.active == 0

    def step(self) -> Tensor:
        """Run the next step for the active samples: their logits ``[B_active, C]``."""
        if self.t >= self.timesteps:
            raise RuntimeError(f"the stream has run all T={self.timesteps} steps; the model has "
                               "no step beyond T. Start a new stream for new input.")
        if self.active == 0:
            raise RuntimeError("every sample was dropped from the stream; nothing is left to run")
        m = self.model
        if self._direct:
            h = self._drive                                            # [1, B, ...]
        else:
            h = m.stem(self._drive[self.t:self.t + 1])                 # [1, B, ...]
        out, self._body_state = m.body(h, self._body_state)           # [1, B, C]
        scores, self._readout_state = m.readout.steps(out, self._readout_state)  # [1, B, C]
        self._scores = scores if self._scores is None else torch.cat((self._scores, scores))
        self.t += 1
        return m.readout.reduce_steps(self._scores)                    # [B, C]

    def keep(self, mask: Tensor) -> None:
        """Keep the active samples where ``mask [B_active]`` (bool) is True, drop the others."""
        if mask.dtype is not torch.bool or mask.shape != (self.active,):
            raise ValueError(f"keep() takes a bool mask over the {self.active} active samples, "
                             f"got {mask.dtype} of shape {tuple(mask.shape)}")
        n = self.active
        self.index = self.index[mask]
        self._drive = self._drive[:, mask]                             # [1 or T, B', ...]
        self._body_state = select_samples(self._body_state, mask, n)
        self._readout_state = select_samples(self._readout_state, mask, n)
        if self._scores is not None:
            self._scores = self._scores[:, mask]                       # [t, B', C]

    def __iter__(self) -> Iterator[Tensor]:
        while not self.done:
            yield self.step()
