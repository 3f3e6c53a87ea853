"""NIR graphs rewritten for the discretisation of Norse's and snnTorch's NIR importers, and back.

snn5 exports exact continuous-time parameters (:mod:`snn5.export.nir`): a LIF steps
``v <- beta v + (1 - beta) I`` with ``beta = exp(-dt / tau)``, fires at ``v >= v_th``. The two
peers' importers (read in norse 1.1.0 ``norse/torch/utils/import_nir.py`` and snntorch 1.0.0
``snntorch/import_nir.py``) discretise differently:

==================  =========================================  ===============================
                    Norse ``from_nir(graph, dt=dt)``           snnTorch ``import_from_nir``
==================  =========================================  ===============================
LIF                 forward Euler with its ``dt``:             ``Leaky``, fixed ``dt = 1e-4``:
                    ``v += dt/tau (v_leak - v + I)``           ``beta = 1 - dt/tau``,
                    (``LIFBoxCell``; ``r`` ignored)            ``mem <- beta mem + I``, threshold
                                                               ``v_th / (r dt / tau)``
IF                  ``v += I`` (``IAFCell``, ``r`` ignored)    ``Leaky(beta=0.9)``: leaks [1]
LI                  not imported                               not imported
fire                ``v > v_th`` (strict)                      ``mem > threshold`` (strict)
reset               to ``v_reset``; ``reset_method=`` can      to zero, always (no subtract)
                    subtract
AvgPool2d           not imported (SumPool2d is)                ``nn.AvgPool2d``
Flatten             ``nn.Flatten(start_dim, end_dim)``: torch  the same
                    dims (batch counted), NIR's are batch-free
==================  =========================================  ===============================

[1] snnTorch's importer builds an IF node as a leaky neuron with ``beta = 0.9``: no rewrite of
the graph gives an integrate-and-fire neuron there.

:func:`to_peer_graph` writes a copy whose *peer* simulation equals snn5's exact one at ``dt``:
a LIF's ``tau`` becomes ``dt_peer / (1 - beta)`` (the Euler step then decays by ``beta``;
snnTorch's threshold scaling by ``1 - beta`` is undone by its own ``w_scale``), an LI readout
becomes a LIF that never fires (threshold ``inf``: its membrane is the readout), thresholds move
one float32 step down so that the strict ``>`` fires where snn5's ``>=`` does, Flatten dims are
shifted to torch's convention, and for Norse an average pool becomes a sum pool with its
``1 / prod(kernel)`` folded into the next weight node (exact for a power-of-two window).
Equality is then exact in arithmetic, up to float32 rounding of the rearranged updates.

:func:`from_peer_graph` maps a peer's export back to exact parameters: snnTorch writes
``tau = 1e-4 / (1 - beta)``, ``r = tau / 1e-4``; Norse 1.1.0 writes ``tau = dt / tau_mem_inv``
(``dt`` times the true ``tau``: divide by ``dt``). A LIF's ``tau`` becomes
``-dt / log(1 - dt_peer / tau)``, so ``exp(-dt / tau)`` is the peer's Euler decay.
"""

from __future__ import annotations

import copy
import math

import nir
import numpy as np

from snn5.core.options import Option

SNNTORCH_DT = 1e-4
"""The step snnTorch's NIR importer and exporter hard-code (seconds)."""


class Peer(Option):
    """A library whose NIR importer/exporter :func:`to_peer_graph` / :func:`from_peer_graph`
    match."""

    NORSE = "norse"
    SNNTORCH = "snntorch"


def _peer_dt(peer: Peer, dt: float) -> float:
    return dt if peer is Peer.NORSE else SNNTORCH_DT


def _below(v_th: np.ndarray) -> np.ndarray:
    """The float32 just below each threshold: ``v > below(th)`` iff ``v >= th`` in float32."""
    th = np.asarray(v_th, dtype=np.float32)
    return np.nextafter(th, np.float32(-np.inf)).astype(np.float64)


def to_peer_graph(graph: nir.NIRGraph, peer: Peer | str, dt: float) -> nir.NIRGraph:
    """A copy of an snn5-exported ``graph`` whose simulation by ``peer``'s NIR importer equals
    snn5's at step ``dt`` (see the module docstring).

    Args:
        graph: a graph of :func:`snn5.export.export_nir` (LIF / IF / LI, weights, pooling,
            flatten).
        peer: :class:`Peer` or its name.
        dt: the step of the snn5 model in seconds (Norse: pass the same to ``from_nir``).

    Returns:
        The rewritten graph (the input is not changed).
    """
    peer = Peer.parse(peer)
    if not (isinstance(dt, (int, float)) and dt > 0):
        raise ValueError(f"dt must be a positive step in seconds, got {dt!r}")
    g = copy.deepcopy(graph)
    h = _peer_dt(peer, dt)
    fold: dict[str, float] = {}
    for name, node in list(g.nodes.items()):
        if isinstance(node, (nir.LIF, nir.LI)):
            beta = np.exp(-dt / np.asarray(node.tau, dtype=np.float64))
            th = (_below(node.v_threshold) if isinstance(node, nir.LIF)
                  else np.full(np.shape(node.tau), np.inf))
            g.nodes[name] = nir.LIF(tau=h / (1.0 - beta), r=np.asarray(node.r, np.float64),
                                    v_leak=np.asarray(node.v_leak, np.float64), v_threshold=th,
                                    v_reset=np.zeros(np.shape(node.tau)),
                                    metadata=node.metadata)
        elif isinstance(node, nir.IF):
            node.v_threshold = _below(node.v_threshold)
        elif isinstance(node, nir.Flatten):
            node.start_dim = node.start_dim + 1 if node.start_dim >= 0 else node.start_dim
            node.end_dim = node.end_dim + 1 if node.end_dim >= 0 else node.end_dim
        elif isinstance(node, nir.AvgPool2d) and peer is Peer.NORSE:
            g.nodes[name] = nir.SumPool2d(kernel_size=node.kernel_size, stride=node.stride,
                                          padding=node.padding, metadata=node.metadata)
            fold[name] = 1.0 / math.prod(int(k) for k in np.atleast_1d(node.kernel_size))
    for name, scale in fold.items():
        _fold_pool_scale(g, name, scale)
    return g


def _fold_pool_scale(g: nir.NIRGraph, start: str, scale: float) -> None:
    """Multiply the weights of the first weight node after ``start`` (through flatten nodes);
    when a neuron comes first (a pool on currents, before the neuron), the weights and bias of
    the weight node right before ``start`` instead: ``avg(W x + b) = sum((W / k) x + b / k)``
    (exact in float for a power-of-two window such as 2x2)."""
    prev = [s for s, d in g.edges if d == start]
    if len(prev) == 1 and isinstance(g.nodes[prev[0]], (nir.Affine, nir.Conv1d, nir.Conv2d,
                                                         nir.Linear)):
        before = g.nodes[prev[0]]
        nxt = [d for s, d in g.edges if s == start]
        if len(nxt) == 1 and isinstance(g.nodes[nxt[0]], (nir.LIF, nir.IF, nir.LI)):
            before.weight = (np.asarray(before.weight) * scale).astype(
                np.asarray(before.weight).dtype)
            if getattr(before, "bias", None) is not None:
                before.bias = (np.asarray(before.bias) * scale).astype(
                    np.asarray(before.bias).dtype)
            return
    name = start
    while True:
        nxt = [d for s, d in g.edges if s == name]
        if len(nxt) != 1:
            raise ValueError(f"cannot fold the average pool '{start}' into a sum pool for "
                             "Norse: it must feed one chain ending in a Linear/Affine/Conv node")
        name = nxt[0]
        node = g.nodes[name]
        if isinstance(node, (nir.Linear, nir.Affine, nir.Conv1d, nir.Conv2d)):
            node.weight = (np.asarray(node.weight) * scale).astype(np.asarray(node.weight).dtype)
            return
        if not isinstance(node, nir.Flatten):
            raise ValueError(f"cannot fold the average pool '{start}' for Norse: node "
                             f"'{name}' ({type(node).__name__}) comes before a weight node")


def from_peer_graph(graph: nir.NIRGraph, peer: Peer | str, dt: float,
                    sample_shape: tuple[int, ...]) -> nir.NIRGraph:
    """A copy of a graph exported by ``peer`` whose exact (snn5) simulation at ``dt`` equals the
    peer's Euler simulation: LIF ``tau -> -dt / log(1 - dt_peer / tau_true)`` (Norse:
    ``tau_true = tau / dt``, see the module docstring); everything else unchanged but the Input
    type, which the peers' tracers write with the sample batch: it becomes ``sample_shape``.

    Args:
        graph: a graph from Norse's ``to_nir(..., dt=dt)`` or snnTorch's ``export_to_nir``.
        peer: :class:`Peer` or its name.
        dt: the step the peer model runs at (snnTorch: its updates are per step whatever dt).
        sample_shape: the per-sample input shape (no batch).

    Returns:
        The rewritten graph, to run with :class:`snn5.export.EventRuntime` at ``dt``.
    """
    peer = Peer.parse(peer)
    g = copy.deepcopy(graph)
    for name, node in g.nodes.items():
        if isinstance(node, nir.Input):
            g.nodes[name] = nir.Input(input_type={"input": np.array(sample_shape)},
                                      metadata=node.metadata)
    h = _peer_dt(peer, dt)
    for node in g.nodes.values():
        if isinstance(node, nir.LIF):
            tau = np.asarray(node.tau, dtype=np.float64)
            tau = tau / dt if peer is Peer.NORSE else tau        # Norse writes dt * tau
            node.tau = -dt / np.log1p(-h / tau)
    return g


__all__ = ["Peer", "SNNTORCH_DT", "from_peer_graph", "to_peer_graph"]
