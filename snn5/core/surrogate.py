"""The one spike function and its surrogate gradients.

Forward is the Heaviside step ``z = H(x)`` (``x >= 0`` fires) in the input's dtype; backward
replaces the Dirac delta by the derivative of a smooth step, the surrogate's ``primitive``.
Every primitive here rises from 0 to 1 with value 1/2 at x = 0, so its derivative integrates to 1
(the convention of SpikingJelly's surrogates; snnTorch's ``fast_sigmoid(slope=k)`` is
``(2/k) * FastSigmoid(alpha=k).grad``).

A surrogate has a single shape parameter (``alpha``, a sharpness, or ``width``). With
``learnable=True`` the neuron module holds that parameter as ``nn.Parameter`` (log-scale, so it
stays positive) and passes it to :func:`spike` as a tensor; its gradient is the derivative of the
primitive with respect to the parameter, as in learnable-surrogate-gradient training (LSG).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import ClassVar

import torch
from torch import Tensor

from snn5._registry import Registry

SURROGATES: Registry[type[Surrogate]] = Registry("surrogate")


@dataclass(frozen=True, kw_only=True)
class Surrogate:
    """Base class: a frozen description of a surrogate gradient.

    Subclasses define one float field (named by ``param``) and the two pure functions
    ``primitive`` (a smooth step) and ``grad`` (its derivative). ``width`` may be a tensor
    (learnable) or ``None`` (use the dataclass field).
    """

    learnable: bool = False
    name: ClassVar[str] = ""
    param: ClassVar[str] = ""

    def __post_init__(self) -> None:
        value = getattr(self, self.param)
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ValueError(f"{type(self).__name__}.{self.param} must be a positive number, "
                             f"got {value!r}")

    @property
    def param_value(self) -> float:
        """The value of the shape parameter (``alpha`` or ``width``)."""
        return float(getattr(self, self.param))

    def _p(self, width: Tensor | None) -> Tensor | float:
        return self.param_value if width is None else width

    def primitive(self, x: Tensor, width: Tensor | None = None) -> Tensor:
        raise NotImplementedError

    def grad(self, x: Tensor, width: Tensor | None = None) -> Tensor:
        raise NotImplementedError

    def to_dict(self) -> dict[str, object]:
        """``{"name": ..., <param>: ..., "learnable": ...}``, the YAML form."""
        return {"name": self.name, **{f.name: getattr(self, f.name) for f in fields(self)}}

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if cls.name:
            SURROGATES.register(cls.name, cls)


@dataclass(frozen=True, kw_only=True)
class ATan(Surrogate):
    """Arctangent surrogate (Fang et al., ICCV 2021): ``P = 1/2 + atan(pi/2 * alpha * x) / pi``.

    ``P'(x) = (alpha / 2) / (1 + (pi/2 * alpha * x)^2)``; peak ``alpha / 2``.
    """

    alpha: float = 2.0
    name: ClassVar[str] = "atan"
    param: ClassVar[str] = "alpha"

    def primitive(self, x: Tensor, width: Tensor | None = None) -> Tensor:
        a = self._p(width)
        return 0.5 + torch.atan(0.5 * math.pi * a * x) / math.pi

    def grad(self, x: Tensor, width: Tensor | None = None) -> Tensor:
        a = self._p(width)
        return (0.5 * a) / (1.0 + (0.5 * math.pi * a * x) ** 2)


@dataclass(frozen=True, kw_only=True)
class Sigmoid(Surrogate):
    """Logistic surrogate: ``P = sigmoid(alpha * x)``, ``P' = alpha * s * (1 - s)``; peak ``alpha / 4``."""

    alpha: float = 4.0
    name: ClassVar[str] = "sigmoid"
    param: ClassVar[str] = "alpha"

    def primitive(self, x: Tensor, width: Tensor | None = None) -> Tensor:
        return torch.sigmoid(self._p(width) * x)

    def grad(self, x: Tensor, width: Tensor | None = None) -> Tensor:
        a = self._p(width)
        s = torch.sigmoid(a * x)
        return a * s * (1.0 - s)


@dataclass(frozen=True, kw_only=True)
class FastSigmoid(Surrogate):
    """Fast sigmoid of SuperSpike (Zenke & Ganguli, Neural Comput. 2018), normalised.

    ``P = 1/2 + alpha * x / (2 * (1 + alpha * |x|))``, ``P' = alpha / (2 * (1 + alpha * |x|)^2)``;
    peak ``alpha / 2``.
    """

    alpha: float = 2.0
    name: ClassVar[str] = "fast_sigmoid"
    param: ClassVar[str] = "alpha"

    def primitive(self, x: Tensor, width: Tensor | None = None) -> Tensor:
        a = self._p(width)
        return 0.5 + 0.5 * a * x / (1.0 + a * x.abs())

    def grad(self, x: Tensor, width: Tensor | None = None) -> Tensor:
        a = self._p(width)
        return 0.5 * a / (1.0 + a * x.abs()) ** 2


@dataclass(frozen=True, kw_only=True)
class Triangle(Surrogate):
    """Triangle (piecewise-linear) surrogate (Esser et al., PNAS 2016; Bellec et al. 2018).

    ``P' = max(0, 1 - |x| / width) / width``; ``P`` is the matching piecewise quadratic step.
    """

    width: float = 1.0
    name: ClassVar[str] = "triangle"
    param: ClassVar[str] = "width"

    def primitive(self, x: Tensor, width: Tensor | None = None) -> Tensor:
        w = self._p(width)
        u = (x / w).clamp(-1.0, 1.0)                     # position inside the support
        return 0.5 + u - 0.5 * u * u.abs()               # 0 at u=-1, 1/2 at 0, 1 at u=1

    def grad(self, x: Tensor, width: Tensor | None = None) -> Tensor:
        w = self._p(width)
        return (1.0 - x.abs() / w).clamp_min(0.0) / w


@dataclass(frozen=True, kw_only=True)
class Rectangle(Surrogate):
    """Rectangular (straight-through within a window) surrogate (Wu et al., Front. Neurosci. 2018).

    ``P' = 1 / width`` for ``|x| < width / 2``, else 0; ``P = clamp(x / width + 1/2, 0, 1)``.
    """

    width: float = 1.0
    name: ClassVar[str] = "rectangle"
    param: ClassVar[str] = "width"

    def primitive(self, x: Tensor, width: Tensor | None = None) -> Tensor:
        w = self._p(width)
        return (x / w + 0.5).clamp(0.0, 1.0)

    def grad(self, x: Tensor, width: Tensor | None = None) -> Tensor:
        w = self._p(width)
        return (x.abs() < 0.5 * w).to(x.dtype) / w


SURROGATES.register("superspike", FastSigmoid)


class _SpikeFn(torch.autograd.Function):
    """Heaviside forward, surrogate backward. ``width`` is None or a (learnable) tensor."""

    @staticmethod
    def forward(ctx, x: Tensor, width: Tensor | None, surrogate: Surrogate) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, width)
        ctx.surrogate = surrogate
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_z: Tensor) -> tuple[Tensor | None, Tensor | None, None]:  # type: ignore[override]
        x, width = ctx.saved_tensors
        surrogate: Surrogate = ctx.surrogate
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = (grad_z * surrogate.grad(x, width)).to(x.dtype)
        if width is not None and ctx.needs_input_grad[1]:
            # d z / d width is taken as d primitive / d width (the forward is the limit of P).
            with torch.enable_grad():
                w = width.detach().requires_grad_(True)
                p = surrogate.primitive(x.detach().to(w.dtype), w)
                (grad_w,) = torch.autograd.grad(p, w, grad_z.to(p.dtype))
        return grad_x, grad_w, None


def spike(x: Tensor, surrogate: Surrogate, width: Tensor | None = None) -> Tensor:
    """Emit ``H(x)`` (1 where ``x >= 0``) with the surrogate gradient of ``surrogate``.

    Args:
        x: distance to threshold, ``v - v_th``; any shape and floating dtype.
        surrogate: the surrogate gradient (e.g. ``ATan(alpha=2.0)``).
        width: the learned shape parameter as a tensor, or None to use ``surrogate``'s value.

    Returns:
        Spikes of exactly 0 or 1, same shape and dtype as ``x``.
    """
    return _SpikeFn.apply(x, width, surrogate)
