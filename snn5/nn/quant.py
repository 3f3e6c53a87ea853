"""Quantized neuron state: the straight-through rounding op and the membrane grid.

:class:`MembraneGrid` is a neuron's ``state_quantizer`` (see :class:`snn5.nn.NeuronBase`): after
every step the membrane is stored on a fixed-point grid, ``v = delta * clamp(round(v / delta),
-2^(b-1), 2^(b-1) - 1)`` with ``delta = v_range * v_th / 2^(b-1)``, so ``0`` and ``v_th`` lie on
the grid and ``b`` bits hold ``[-v_range v_th, v_range v_th)``. The gradient passes the rounding
unchanged (straight-through estimator, Bengio, Leonard & Courville, arXiv 2013). The grid follows
the uniform scheme of stateful quantization-aware training (SQUAT: Venkatesh, Marinescu &
Eshraghian, arXiv:2404.19668, 2024), applied to the membrane kept between steps (after the
reset). It lives here, below the compression and export packages, so that a model with
quantized membranes can be both trained (``snn5.compress.quantize_``) and rebuilt from an
exported NIR graph (``snn5.export.import_nir``).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor


class _STEQuant(torch.autograd.Function):
    """``step * clamp(round(x / step), q_min, q_max)``; backward passes the gradient unchanged."""

    @staticmethod
    def forward(ctx, x: Tensor, step: Tensor | float, q_min: int, q_max: int) -> Tensor:
        return torch.clamp(torch.round(x / step), q_min, q_max) * step

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None, None]:
        return grad, None, None, None            # straight-through estimator


def fake_quant(x: Tensor, step: Tensor | float, q_min: int, q_max: int) -> Tensor:
    """``x`` on the grid ``step * {q_min..q_max}`` with a straight-through gradient to ``x``
    (``step`` is a constant: no gradient reaches it)."""
    if isinstance(step, Tensor):
        step = step.detach()
    return _STEQuant.apply(x, step, q_min, q_max)


class MembraneGrid:
    """``grid(state, params) -> state``: the membrane ``state.v`` on ``bits`` bits.

    Args:
        bits: width of the membrane register, 2 to 16.
        v_range: the grid spans ``[-v_range v_th, v_range v_th)`` (``v_th`` of the neuron);
            values outside are clipped.
    """

    def __init__(self, bits: int, v_range: float = 1.0) -> None:
        if not (isinstance(bits, int) and not isinstance(bits, bool) and 2 <= bits <= 16):
            raise ValueError(f"membrane bits must be an integer in [2, 16], got {bits!r}")
        if not (isinstance(v_range, (int, float)) and v_range > 0):
            raise ValueError(f"v_range is the grid's half-width in units of v_th, > 0 (e.g. "
                             f"1.0), got {v_range!r}")
        self.bits = bits
        self.v_range = float(v_range)

    def delta(self, v_th: float | Tensor) -> float | Tensor:
        """Grid step ``v_range * v_th / 2^(bits-1)`` (a constant in backward)."""
        if isinstance(v_th, Tensor):
            v_th = v_th.detach()
        return self.v_range * v_th / 2 ** (self.bits - 1)

    def __call__(self, state: NamedTuple, params: NamedTuple) -> NamedTuple:
        half = 2 ** (self.bits - 1)
        return state._replace(v=fake_quant(state.v, self.delta(params.v_th), -half, half - 1))

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, MembraneGrid) and other.bits == self.bits
                and other.v_range == self.v_range)

    def __hash__(self) -> int:
        return hash((self.bits, self.v_range))

    def __repr__(self) -> str:
        return f"MembraneGrid(bits={self.bits}, v_range={self.v_range:g})"


__all__ = ["MembraneGrid", "fake_quant"]
