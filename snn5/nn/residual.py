"""Spike-element-wise residual blocks (SEW, Fang et al., NeurIPS 2021).

"Deep Residual Learning in Spiking Neural Networks" (Fang, Yu, Chen, Huang, Masquelier, Tian,
NeurIPS 2021) adds the shortcut *after* the residual branch has spiked: with ``A[t]`` the spikes
of the residual branch ``SN(F(S[t]))`` and ``S[t]`` the block's input spikes (or the spikes of a
downsampling shortcut), the block emits ``g(A[t], S[t])`` where the connect function ``g`` is

=====  ===============================  ==========================================
ADD    ``A + S``                        integer spike counts (0, 1, 2)
AND    ``A AND S = A * S``              binary
IAND   ``(NOT A) AND S = (1 - A) * S``  binary
=====  ===============================  ==========================================

With ADD and IAND a block whose residual branch is silent (``A = 0``) is the identity, which is
the property the paper builds deep SNNs on.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from snn5.core.options import Option
from snn5.nn.layers import is_stateful


class Connect(Option):
    """How a SEW block joins its residual branch ``A`` and its shortcut ``S``.

    ADD:  ``A + S`` (spike counts).
    AND:  ``A * S``.
    IAND: ``(1 - A) * S`` (the shortcut passes where the residual branch is silent).
    """

    ADD = "add"
    AND = "and"
    IAND = "iand"


def connect(residual: Tensor, shortcut: Tensor, kind: Connect) -> Tensor:
    """``g(A, S)`` of the SEW paper, ``residual = A``, ``shortcut = S`` (same shape)."""
    kind = Connect.parse(kind)
    if residual.shape != shortcut.shape:
        raise ValueError(f"the residual branch gives {tuple(residual.shape)} but the shortcut "
                         f"{tuple(shortcut.shape)}; give the block a downsampling shortcut "
                         "(conv1x1 with the same stride and channels) so the shapes match")
    if kind is Connect.ADD:
        return residual + shortcut
    if kind is Connect.AND:
        return residual * shortcut
    return (1.0 - residual) * shortcut


def _call(module: nn.Module, x: Tensor, state: Any) -> tuple[Tensor, Any]:
    """Run a stateful module with its state, or a stateless one without."""
    if is_stateful(module):
        return module(x, state)
    return module(x), None


class SEWBlock(nn.Module):
    """A residual block ``out = g(residual(x), shortcut(x))`` over a whole sequence.

    Both branches are modules over ``[T, B, ...]``; stateful ones (neurons,
    :class:`snn5.nn.Sequential`) get their own state, which this block threads: its state is
    ``(residual_state, shortcut_state)``. The identity shortcut is ``shortcut=None``.

    Args:
        residual: the residual branch, e.g. ``Sequential(conv, BN, SN, conv, BN, SN)``.
        shortcut: None (identity) or the downsampling branch, e.g. ``Sequential(conv1x1, BN, SN)``.
        connect: the connect function ``g``.

    Shape:
        ``x: [T, B, *F] -> [T, B, *F']`` (``F'`` the residual branch's output features).

    Example:
        >>> block = SEWBlock(Sequential(TimeDistributed(nn.Conv2d(8, 8, 3, padding=1)),
        ...                             LIF(10e-3)), connect=Connect.ADD)
        >>> out, state = block(spikes)             # spikes: [T, B, 8, H, W]
    """

    stateful = True

    def __init__(self, residual: nn.Module, shortcut: nn.Module | None = None, *,
                 connect: Connect | str = Connect.ADD) -> None:
        super().__init__()
        self.residual = residual
        self.shortcut = shortcut
        self.connect = Connect.parse(connect)

    def forward(self, x: Tensor, state: tuple[Any, Any] | None = None
                ) -> tuple[Tensor, tuple[Any, Any]]:
        if state is None:
            state = (None, None)
        elif not (isinstance(state, tuple) and len(state) == 2):
            raise ValueError("SEWBlock state is (residual_state, shortcut_state); pass the state "
                             "this block returned")
        a, s_res = _call(self.residual, x, state[0])              # [T, B, *F'] branch spikes
        if self.shortcut is None:
            s, s_sc = x, None
        else:
            s, s_sc = _call(self.shortcut, x, state[1])           # [T, B, *F'] shortcut spikes
        return connect(a, s, self.connect), (s_res, s_sc)

    def extra_repr(self) -> str:
        return f"connect={self.connect.value}"


__all__ = ["Connect", "SEWBlock", "connect"]
