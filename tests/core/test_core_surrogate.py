"""Contracts of the spike function and every registered surrogate (snn5.core.SURROGATES).

Each surrogate is checked with its default parameter and with a non-default one:
``grad`` is the derivative of ``primitive`` (finite differences, float64), the primitive is a
smooth step 0 -> 1/2 -> 1, ``grad`` integrates to 1, and :func:`spike` is an exact Heaviside
forward whose backward is ``grad_output * grad`` (and, for a tensor width, the derivative of the
primitive in the width).
"""

from __future__ import annotations

import math

import pytest
import torch

import snn5.core as core
from snn5.core import (
    SURROGATES, ATan, FastSigmoid, Rectangle, Sigmoid, Surrogate, Triangle, spike,
)

SURROGATE_NAMES = SURROGATES.names()
NON_DEFAULT = 0.7            # a shape parameter different from every default (alpha or width)


def make(name: str, which: str, **kw: object) -> Surrogate:
    cls = SURROGATES.get(name)
    if which == "default":
        return cls(**kw)
    return cls(**{cls.param: NON_DEFAULT}, **kw)


def kinks(s: Surrogate) -> list[float]:
    """Points where ``grad`` is discontinuous or not differentiable (finite differences avoid them)."""
    w = s.param_value
    if isinstance(s, Rectangle):
        return [-w / 2, w / 2]
    if isinstance(s, Triangle):
        return [-w, 0.0, w]
    return []


def sample_points(s: Surrogate, n: int = 400, gap: float = 1e-3) -> torch.Tensor:
    """Random float64 points over the interesting range, at least ``gap`` away from kinks."""
    g = torch.Generator().manual_seed(1)
    scale = 3.0 / s.param_value if s.param in ("alpha",) else 3.0 * s.param_value
    x = (torch.rand(n, generator=g, dtype=torch.float64) * 2 - 1) * scale
    for k in kinks(s):
        x = x[(x - k).abs() > gap]
    assert x.numel() > n // 2
    return x


param_cases = pytest.mark.parametrize("which", ["default", "non_default"])
name_cases = pytest.mark.parametrize("name", SURROGATE_NAMES)


# ----------------------------------------------------------------------------- registry

def test_public_names_import() -> None:
    for public in core.__all__:
        assert hasattr(core, public), public


def test_registry_holds_the_documented_surrogates() -> None:
    assert {"atan", "sigmoid", "fast_sigmoid", "triangle", "rectangle"} <= set(SURROGATE_NAMES)
    assert SURROGATES.get("superspike") is FastSigmoid
    assert SURROGATES.get("ATan") is ATan                      # case-insensitive lookup
    with pytest.raises(ValueError, match="atan.*fast_sigmoid.*rectangle"):
        SURROGATES.get("no_such_surrogate")


@name_cases
def test_surrogate_is_frozen_and_typed(name: str) -> None:
    s = make(name, "default")
    assert isinstance(s, Surrogate)
    assert s.param and isinstance(getattr(s, s.param), float)
    with pytest.raises(AttributeError):                            # frozen dataclass
        setattr(s, s.param, 3.0)
    d = s.to_dict()
    assert d["name"] == s.name and d[s.param] == s.param_value and d["learnable"] is False


# ----------------------------------------------------------------------------- primitive / grad

@name_cases
@param_cases
def test_grad_matches_finite_difference_of_primitive(name: str, which: str) -> None:
    s = make(name, which)
    x = sample_points(s)
    h = 1e-6
    fd = (s.primitive(x + h) - s.primitive(x - h)) / (2 * h)
    torch.testing.assert_close(s.grad(x), fd, rtol=1e-6, atol=1e-7)


@name_cases
@param_cases
def test_primitive_is_a_step_from_zero_to_one(name: str, which: str) -> None:
    s = make(name, which)
    far = torch.tensor([-1e6, 1e6], dtype=torch.float64)
    lo, hi = s.primitive(far).tolist()
    assert lo == pytest.approx(0.0, abs=1e-5) and hi == pytest.approx(1.0, abs=1e-5)
    assert s.primitive(torch.zeros((), dtype=torch.float64)).item() == pytest.approx(0.5, abs=1e-15)
    x = torch.linspace(-50, 50, 20001, dtype=torch.float64)
    p = s.primitive(x)
    assert (p.diff() >= 0).all(), "primitive must be non-decreasing"
    assert (s.grad(x) >= 0).all()


@name_cases
@param_cases
def test_grad_integrates_to_one(name: str, which: str) -> None:
    s = make(name, which)
    # sinh-spaced grid: dense near 0 where the surrogate is sharp, reaching |x| = 1e4.
    u = torch.linspace(-math.asinh(1e4), math.asinh(1e4), 400001, dtype=torch.float64)
    x = torch.sinh(u)
    integral = torch.trapezoid(s.grad(x), x).item()
    # heavy tails (fast sigmoid ~ 1/(alpha x)^2) leave < 1e-3 outside |x| < 1e4
    assert integral == pytest.approx(1.0, abs=2e-3)


# Closed forms written from the papers/docstrings, independent of the library code:
# name -> (primitive(x, p), peak value grad(0) as a function of the parameter p).
CLOSED_FORMS = {
    "atan": (lambda x, a: 0.5 + math.atan(math.pi / 2 * a * x) / math.pi, lambda a: a / 2),
    "sigmoid": (lambda x, a: 1 / (1 + math.exp(-a * x)), lambda a: a / 4),
    "fast_sigmoid": (lambda x, a: 0.5 + 0.5 * a * x / (1 + a * abs(x)), lambda a: a / 2),
    "triangle": (lambda x, w: (0.0 if x <= -w else 1.0 if x >= w else
                               (0.5 * (1 + x / w) ** 2 if x < 0 else 1 - 0.5 * (1 - x / w) ** 2)),
                 lambda w: 1 / w),
    "rectangle": (lambda x, w: min(1.0, max(0.0, x / w + 0.5)), lambda w: 1 / w),
}


@pytest.mark.parametrize("name", sorted(CLOSED_FORMS))
@param_cases
def test_primitive_and_peak_match_closed_form(name: str, which: str) -> None:
    s = make(name, which)
    prim, peak = CLOSED_FORMS[name]
    p = s.param_value
    xs = [-2.0, -0.6, -0.3, -0.05, 0.0, 0.05, 0.3, 0.6, 2.0]
    got = s.primitive(torch.tensor(xs, dtype=torch.float64)).tolist()
    assert got == pytest.approx([prim(x, p) for x in xs], abs=1e-12)
    assert s.grad(torch.zeros((), dtype=torch.float64)).item() == pytest.approx(peak(p), rel=1e-12)


@name_cases
@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf"), "2.0"])
def test_bad_parameter_raises(name: str, bad: object) -> None:
    cls = SURROGATES.get(name)
    with pytest.raises(ValueError, match=cls.param):
        cls(**{cls.param: bad})


# ----------------------------------------------------------------------------- spike function

@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@name_cases
def test_spike_forward_is_exact_heaviside_in_input_dtype(name: str, dtype: torch.dtype) -> None:
    s = make(name, "default")
    x = torch.tensor([-math.inf, -3.0, -1e-30, -0.0, 0.0, 1e-30, 0.5, 3.0, math.inf], dtype=dtype)
    z = spike(x, s)
    assert z.dtype == dtype and z.shape == x.shape
    assert z.tolist() == [0, 0, 0, 1, 1, 1, 1, 1, 1]
    width = torch.tensor(s.param_value)                            # tensor width: same forward
    assert spike(x, s, width).tolist() == z.tolist()
    assert spike(x, s, width).dtype == dtype


@name_cases
@param_cases
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_spike_backward_is_grad_output_times_surrogate_grad(name: str, which: str,
                                                             dtype: torch.dtype) -> None:
    s = make(name, which)
    # kinks kept 2 % away so that rounding x to bfloat16 cannot move a point across one
    x = sample_points(s, n=60, gap=0.02)[:35].reshape(5, 7).to(dtype).requires_grad_(True)
    g = torch.randn(5, 7, dtype=torch.float64).to(dtype)
    spike(x, s).backward(g)
    assert x.grad is not None and x.grad.dtype == dtype
    expected = g.double() * s.grad(x.detach().double())
    tol = {torch.float64: 1e-12, torch.float32: 1e-5, torch.bfloat16: 2e-2}[dtype]
    torch.testing.assert_close(x.grad.double(), expected, rtol=tol, atol=tol)


@name_cases
@param_cases
def test_width_gradient_is_derivative_of_primitive_in_width(name: str, which: str) -> None:
    s = make(name, which, learnable=True)
    x = sample_points(s, n=300, gap=5e-3)[:150].reshape(3, -1)
    g = torch.randn_like(x)
    w = torch.tensor(s.param_value, dtype=torch.float64, requires_grad=True)
    z = spike(x.clone().requires_grad_(True), s, w)
    z.backward(g)
    h = 1e-6
    S = lambda ww: (g * s.primitive(x, torch.tensor(ww, dtype=torch.float64))).sum().item()
    fd = (S(s.param_value + h) - S(s.param_value - h)) / (2 * h)
    assert w.grad is not None and math.isfinite(w.grad.item())
    assert w.grad.item() == pytest.approx(fd, rel=1e-5, abs=1e-8)
    assert abs(fd) > 1e-3, "the check needs a non-trivial width gradient"


@name_cases
def test_width_tensor_changes_the_input_gradient(name: str) -> None:
    """A tensor width is used by backward instead of the dataclass field."""
    s = make(name, "default", learnable=True)
    x = torch.linspace(-0.4, 0.4, 9, dtype=torch.float64, requires_grad=True)
    w = torch.tensor(NON_DEFAULT, dtype=torch.float64)
    spike(x, s, w).sum().backward()
    torch.testing.assert_close(x.grad, make(name, "non_default").grad(x.detach()))


@name_cases
def test_spike_learnable_width_in_bfloat16_keeps_float32_width_grad(name: str) -> None:
    s = make(name, "default", learnable=True)
    x = torch.randn(64).to(torch.bfloat16).requires_grad_(True)
    w = torch.tensor(s.param_value, requires_grad=True)            # float32 parameter
    z = spike(x, s, w)
    assert z.dtype == torch.bfloat16
    (z * torch.randn(64).to(torch.bfloat16)).sum().backward()
    assert x.grad.dtype == torch.bfloat16 and w.grad.dtype == torch.float32
    assert torch.isfinite(w.grad) and torch.isfinite(x.grad).all()
