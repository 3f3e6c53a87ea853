"""Sparse event fan-out: what one step's spikes do to the next layer, one event at a time.

An :class:`Events` list holds the spikes of one step as ``(sample, flat index, value, count)``
rows. The functions here route every event along its outgoing synapses without ever building
the dense spike vector:

- :func:`linear_fanout`: a spike of input ``j`` adds column ``j`` of ``W`` (row ``j`` of
  ``W^T``) to its sample's output, ``out_features`` accumulates per spike.
- :func:`conv_fanout`: a spike at ``(c, *p)`` adds ``W[:, c, *k]`` at every output position
  ``o`` whose window reaches it, ``o * stride - padding + k * dilation = p``; ``C_out / groups``
  accumulates per (spike, reached position) pair.
- :func:`pool_route`: sum/average pooling as routing: a spike at ``(c, *p)`` becomes one event
  at each output position ``(c, o)`` whose window holds it, its value times 1 (sum) or
  ``1 / prod(kernel)`` (average, padding counted like ``torch.nn.AvgPool2d``); no accumulate.

Every function is vectorised over the events of a step (gather + ``index_add_``); the only
Python loop runs over the kernel taps (at most ``prod(kernel)`` iterations).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Events:
    """The events of one step.

    Attributes:
        sample: ``[N]`` batch index of each event (int64).
        index: ``[N]`` flat (C-order) index of the source neuron in its sample's feature map.
        value: ``[N]`` charge each event carries (1 for a spike, ``-1`` for a signed spike,
            ``n`` for a count of ``n`` spikes, ``1 / k^2`` after an average pool).
        count: ``[N]`` number of spikes each event stands for (float, integer-valued); the
            accumulates it triggers are ``count * fan-out``.
        shape: per-sample feature shape ``(*F)`` the flat indices refer to.
        batch: number of samples B.
    """

    sample: Tensor
    index: Tensor
    value: Tensor
    count: Tensor
    shape: tuple[int, ...]
    batch: int

    @staticmethod
    def from_dense(z: Tensor) -> Events:
        """The events of a spike (count) tensor ``z: [B, *F]``: one event per nonzero entry."""
        flat = z.reshape(z.shape[0], -1)                       # [B, prod(F)]
        sample, index = flat.nonzero(as_tuple=True)             # [N], [N]
        value = flat[sample, index]
        return Events(sample, index, value, value.abs(), tuple(z.shape[1:]), z.shape[0])

    @property
    def total_count(self) -> int:
        """Number of spikes in this list (``sum(count)``)."""
        return int(self.count.sum(dtype=torch.float64).round().item())

    def to_dense(self, dtype: torch.dtype) -> Tensor:
        """``[B, *F]``: the events summed into a dense input (each adds its value)."""
        numel = math.prod(self.shape)
        out = torch.zeros(self.batch * numel, dtype=dtype, device=self.value.device)
        out.index_add_(0, self.sample * numel + self.index, self.value.to(dtype))
        return out.view(self.batch, *self.shape)               # [B, *F]

    def reshaped(self, shape: tuple[int, ...]) -> Events:
        """The same events seen with another per-sample shape of equal size (a flatten: C-order
        flat indices do not change)."""
        return Events(self.sample, self.index, self.value, self.count, shape, self.batch)

    @staticmethod
    def concat(lists: list[Events]) -> Events:
        """One list holding the events of ``lists`` (same shape and batch)."""
        first = lists[0]
        return Events(*(torch.cat([getattr(e, f) for e in lists])
                        for f in ("sample", "index", "value", "count")),
                      first.shape, first.batch)


def linear_synapses(weight_t: Tensor) -> Tensor:
    """Nonzero synapses of every input, ``[in_features]`` (float64), from ``W^T``; computed
    once per graph, not per step (pruned weights are zeros)."""
    return (weight_t != 0).sum(1, dtype=torch.float64)


def linear_fanout(events: Events, weight_t: Tensor, synapses: Tensor) -> tuple[Tensor, int]:
    """Accumulate the events into ``W x`` without the dense ``x``.

    Args:
        events: spikes of the input ``(in_features,)``.
        weight_t: ``W^T`` as ``[in_features, out_features]`` (contiguous rows to gather).
        synapses: :func:`linear_synapses` of ``weight_t``.

    Returns:
        ``(out [B, out_features], synops)`` with ``synops`` = the spikes times the nonzero
        synapses of their input (``sum(count) * out_features`` for a dense weight).
    """
    out = weight_t.new_zeros(events.batch, weight_t.shape[1])          # [B, out]
    rows = weight_t[events.index] * events.value.to(weight_t.dtype)[:, None]   # [N, out]
    out.index_add_(0, events.sample, rows)
    fan_out = synapses[events.index]                                   # [N]
    return out, round(float((events.count.to(torch.float64) * fan_out).sum()))


@dataclass(frozen=True)
class WindowGeometry:
    """Sliding-window geometry of a convolution or pooling over ``nd`` spatial dims."""

    in_size: tuple[int, ...]
    out_size: tuple[int, ...]
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]                 # left/top padding (the side that shifts indices)
    dilation: tuple[int, ...]


def window_hits(events: Events, geom: WindowGeometry
                ) -> list[tuple[tuple[int, ...], Tensor, Tensor, Tensor]]:
    """For every kernel tap, the events that it maps onto a valid output position.

    An input position ``p`` reaches output ``o`` through tap ``k`` when
    ``o * stride - padding + k * dilation = p`` and ``0 <= o < out_size``.

    Args:
        events: events over ``(channels, *in_size)``.
        geom: the window geometry.

    Returns:
        A list over taps ``k`` of ``(k, keep [M] event indices, channel [M], out_flat [M])``
        with ``out_flat`` the C-order flat index of ``o`` in ``out_size``.
    """
    spatial = math.prod(geom.in_size)
    channel = events.index // spatial                                   # [N]
    rest = events.index % spatial
    pos = []
    for size in reversed(geom.in_size):                                 # unravel, last dim first
        pos.append(rest % size)
        rest = rest // size
    pos = torch.stack(pos[::-1], dim=1)                                 # [N, nd]
    dev = pos.device
    stride = torch.tensor(geom.stride, device=dev)
    pad = torch.tensor(geom.padding, device=dev)
    dil = torch.tensor(geom.dilation, device=dev)
    out_size = torch.tensor(geom.out_size, device=dev)
    hits = []
    for tap in itertools.product(*(range(k) for k in geom.kernel)):
        num = pos + pad - torch.tensor(tap, device=dev) * dil           # [N, nd] = o * stride
        o = torch.div(num, stride, rounding_mode="floor")
        valid = ((num >= 0) & (num % stride == 0) & (o < out_size)).all(dim=1)
        keep = valid.nonzero(as_tuple=True)[0]                          # [M]
        if keep.numel() == 0:
            continue
        out_flat = torch.zeros_like(keep)
        for d, size in enumerate(geom.out_size):                        # ravel, C order
            out_flat = out_flat * size + o[keep, d]
        hits.append((tap, keep, channel[keep], out_flat))
    return hits


def _by_group(weight: Tensor, groups: int) -> Tensor:
    """``[C_out, C_in/g, *k] -> [groups, C_in/g, *k, C_out/g]``: the weights a spike of
    (group, local channel) sends through each tap."""
    c_out, c_in_g = weight.shape[:2]
    return weight.reshape(groups, c_out // groups, c_in_g, *weight.shape[2:]).movedim(1, -1)


def conv_synapses(weight: Tensor, groups: int) -> Tensor:
    """Nonzero synapses of every (group, local input channel, tap), ``[groups, C_in/g, *k]``
    (float64); computed once per graph, not per step (pruned weights are zeros)."""
    return (_by_group(weight, groups) != 0).sum(-1, dtype=torch.float64)


def conv_fanout(events: Events, weight: Tensor, groups: int, geom: WindowGeometry,
                synapses: Tensor) -> tuple[Tensor, int]:
    """Accumulate the events into ``conv(x, W)`` (no bias) without the dense ``x``.

    Args:
        events: spikes over ``(C_in, *in_size)``.
        weight: ``[C_out, C_in / groups, *kernel]``.
        groups: convolution groups.
        geom: the window geometry.
        synapses: :func:`conv_synapses` of ``weight``.

    Returns:
        ``(out [B, C_out, *out_size], synops)``, ``synops`` = the (spike, reached position,
        output channel) triples joined by a nonzero weight (the pairs times ``C_out / groups``
        for a dense weight), the count of :func:`snn5.metrics.ops.conv_synops`.
    """
    c_out, c_in_g = weight.shape[:2]
    c_out_g = c_out // groups
    n_out = math.prod(geom.out_size)
    w = _by_group(weight, groups)                                      # [g, C_in/g, *k, C_out/g]
    out = weight.new_zeros(events.batch * n_out * groups, c_out_g)     # [B*O*groups, C_out/g]
    value = events.value.to(weight.dtype)
    triples = 0.0
    for tap, keep, channel, out_flat in window_hits(events, geom):
        group, local = channel // c_in_g, channel % c_in_g
        rows = (events.sample[keep] * n_out + out_flat) * groups + group          # [M]
        out.index_add_(0, rows, w[(group, local, *tap)] * value[keep, None])     # [M, C_out/g]
        fan_out = synapses[(group, local, *tap)]                                 # [M]
        triples += float((events.count[keep].to(torch.float64) * fan_out).sum())
    out = out.view(events.batch, *geom.out_size, c_out)                # [B, *O, C_out]
    return out.movedim(-1, 1).contiguous(), round(triples)             # [B, C_out, *O]


def pool_route(events: Events, geom: WindowGeometry, scale: float) -> Events:
    """Route the events through a sum (``scale = 1``) or average (``1 / prod(kernel)``) pool.

    Returns:
        Events over ``(C, *out_size)``: one per (event, window holding it), value times
        ``scale``, count unchanged (a spike that lands in two overlapping windows is sent
        twice).
    """
    channels = events.shape[0]
    n_out = math.prod(geom.out_size)
    parts = [(keep, channel * n_out + out_flat)
             for _, keep, channel, out_flat in window_hits(events, geom)]
    shape = (channels, *geom.out_size)
    if not parts:
        empty = events.index[:0]
        return Events(empty, empty, events.value[:0], events.count[:0], shape, events.batch)
    keep = torch.cat([k for k, _ in parts])
    index = torch.cat([i for _, i in parts])
    return Events(events.sample[keep], index, events.value[keep] * scale, events.count[keep],
                  shape, events.batch)


__all__ = ["Events", "WindowGeometry", "conv_fanout", "conv_synapses", "linear_fanout",
           "linear_synapses", "pool_route",
           "window_hits"]
