"""Containers for time-major networks: a time-distributed wrapper and a state-threading Sequential."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from snn5.nn.neurons import NeuronBase


class TimeDistributed(nn.Module):
    """Run a stateless layer (Conv, BatchNorm, pooling, ...) on every step of ``[T, B, ...]``.

    Time is folded into the batch: ``[T, B, ...] -> [T*B, ...] -> layer -> [T, B, ...]``, so the
    layer runs once over all steps.
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        if getattr(module, "stateful", False) or isinstance(module, NeuronBase):
            raise TypeError(f"{type(module).__name__} keeps state over time; put the sequence "
                            "neuron in the Sequential directly instead of wrapping it in "
                            "TimeDistributed (which would restart its state at every step).")
        self.module = module

    def forward(self, x_seq: Tensor) -> Tensor:
        if x_seq.ndim < 3:
            raise ValueError(f"TimeDistributed expects [T, B, ...] with at least one feature "
                             f"dimension, got shape {tuple(x_seq.shape)}")
        T, B = x_seq.shape[:2]
        y = self.module(x_seq.flatten(0, 1))     # [T*B, ...]  time folded into batch
        return y.unflatten(0, (T, B))            # [T, B, ...]


def detach_state(state: Any) -> Any:
    """The same state with every tensor detached from the graph (truncated BPTT).

    Works on what :class:`Sequential` and the neurons return: tensors, NamedTuples, tuples
    of per-layer entries, ``None`` for stateless layers. Values are unchanged; gradients
    stop at the returned state.

    Example:
        >>> out, state = net(x_chunk, state)
        >>> state = detach_state(state)       # no gradient crosses this chunk boundary
    """
    if state is None:
        return None
    if isinstance(state, Tensor):
        return state.detach()
    if isinstance(state, tuple):
        parts = [detach_state(s) for s in state]
        return type(state)(*parts) if hasattr(state, "_fields") else tuple(parts)
    raise TypeError(f"cannot detach a state of type {type(state).__name__}; states are "
                    "tensors, NamedTuples or tuples of them")


def is_stateful(layer: nn.Module) -> bool:
    """True for layers that take and return a state (neurons, nested Sequentials)."""
    return bool(getattr(layer, "stateful", False))


class Sequential(nn.Sequential):
    """Chain layers over a sequence, threading each stateful layer's state.

    ``forward(x_seq, state=None) -> (out, state)`` where ``state`` is a tuple with one entry per
    layer (None for stateless layers). Stateless layers must accept ``[T, B, ...]`` (elementwise
    ops and ``nn.Linear`` do; wrap Conv/BatchNorm/pooling in :class:`TimeDistributed`).

    With ``checkpoint_steps=K`` (training only) the sequence runs through the whole stack in
    chunks of K steps under activation checkpointing: autograd keeps each chunk's input and the
    states between chunks, and recomputes a chunk's activations during its backward, so memory
    grows with T only through the inputs. Outputs and gradients equal the unchunked run.

    Example:
        >>> net = Sequential(nn.Linear(784, 128), LIF(20e-3), nn.Linear(128, 10), LIF(20e-3))
        >>> out, state = net(x_seq)                # x_seq: [T, B, 784]
        >>> out2, state = net(x_next, state)       # continue the stream
    """

    stateful = True

    def forward(self, x: Tensor, state: tuple[Any, ...] | None = None,  # type: ignore[override]
                *, checkpoint_steps: int | None = None) -> tuple[Tensor, tuple[Any, ...]]:
        if checkpoint_steps is None or not torch.is_grad_enabled():
            return self._run(x, state)
        if checkpoint_steps < 1:
            raise ValueError(f"checkpoint_steps must be >= 1, got {checkpoint_steps}")
        norms = [type(m).__name__ for m in self.modules()
                 if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]
        if norms:
            raise ValueError(f"checkpoint_steps splits the sequence in time, which would change "
                             f"the batch statistics of {norms[0]} in training; train this model "
                             "without checkpoint_steps, or use it in eval mode")
        outs = []
        for chunk in x.split(checkpoint_steps, dim=0):               # [K, B, ...]
            out, state = checkpoint(self._run, chunk, state, use_reentrant=False)
            outs.append(out)
        return torch.cat(outs), state

    def _run(self, x: Tensor, state: tuple[Any, ...] | None) -> tuple[Tensor, tuple[Any, ...]]:
        if state is None:
            state = (None,) * len(self)
        elif len(state) != len(self):
            raise ValueError(f"Sequential has {len(self)} layers but the state has {len(state)} "
                             "entries; pass the state this Sequential returned.")
        new_state = []
        for layer, s in zip(self, state):
            if is_stateful(layer):
                x, s = layer(x, s)
            else:
                x = layer(x)
            new_state.append(s)
        return x, tuple(new_state)
