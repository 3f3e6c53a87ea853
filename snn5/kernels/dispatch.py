"""Choose between the fused kernels and the core reference for a multi-step neuron scan.

``Backend.AUTO`` takes a fused kernel when one applies (device with a loaded kernel, float32 or
bfloat16, a built-in surrogate, scalar parameters) and the reference otherwise. The decay and
threshold values handed to a kernel are computed exactly as the reference computes them
(python floats for fixed constants, the same tensor ops for learned ones), so forward spikes
are bitwise identical.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from snn5.core import neurons as core
from snn5.core import neurons_ext as core_ext
from snn5.core.options import Option, Reset
from snn5.core.surrogate import ATan, FastSigmoid, Rectangle, Sigmoid, Surrogate, Triangle
from snn5.kernels.build import load_cpu_kernels


class Backend(Option):
    """Which implementation runs a neuron scan: AUTO picks the fastest that applies; REFERENCE
    is the PyTorch loop over ``snn5.core`` steps; CPU the fused C++ kernel; TRITON the fused GPU
    kernel."""

    AUTO = "auto"
    REFERENCE = "reference"
    CPU = "cpu"
    TRITON = "triton"


SURROGATE_IDS: dict[type[Surrogate], int] = {ATan: 0, Sigmoid: 1, FastSigmoid: 2, Triangle: 3,
                                             Rectangle: 4}
RESET_IDS = {Reset.SUBTRACT: 0, Reset.ZERO: 1, Reset.NONE: 2}
REFERENCE_SCANS: dict[str, Callable] = {"if": core.if_scan, "lif": core.lif_scan,
                                        "plif": core.plif_scan, "alif": core.alif_scan,
                                        "li": core.li_scan,
                                        # reference only (no fused kernel): AUTO runs these
                                        "glif": core_ext.glif_scan,
                                        "tc_lif": core_ext.tclif_scan,
                                        "el_lif": core_ext.el_lif_scan,
                                        "int_lif": core_ext.int_lif_scan,
                                        "refractory_lif": core_ext.refractory_lif_scan}
FUSED_FAMILIES = ("if", "lif", "plif", "alif")
_F64 = torch.float64


def triton_available() -> bool:
    """Whether the Triton GPU kernels can run here (CUDA and the triton package)."""
    if not torch.cuda.is_available():
        return False
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def _scalar(value: float | Tensor) -> bool:
    return not isinstance(value, Tensor) or value.numel() == 1


def fused_blocker(family: str, x_seq: Tensor, p: tuple, surrogate: Surrogate,
                  width: Tensor | None) -> str | None:
    """Why no fused kernel applies to this call (None when one does)."""
    if family not in FUSED_FAMILIES:
        return f"no fused kernel for '{family}' neurons"
    if x_seq.dtype not in (torch.float32, torch.bfloat16):
        return f"fused kernels take float32 or bfloat16, not {x_seq.dtype}"
    if type(surrogate) not in SURROGATE_IDS:
        return f"surrogate {type(surrogate).__name__} has no fused kernel"
    params = [p.v_th] + ([p.tau_raw] if family == "plif" else [])
    if family in ("lif", "alif"):
        params += [p.tau_mem] + ([p.tau_adapt, p.beta_adapt] if family == "alif" else [])
    if not all(_scalar(v) for v in params) or (width is not None and width.numel() != 1):
        return "fused kernels take one value per parameter (per-neuron parameters use the reference)"
    if x_seq.device.type == "cpu":
        return None if load_cpu_kernels() is not None else "the CPU kernels are not built"
    if x_seq.device.type == "cuda":
        return None if triton_available() else "Triton is not available"
    return f"no fused kernel for device {x_seq.device.type}"


def _const(value: float, like: Tensor) -> Tensor:
    # torch.full fills on the device (the value travels as a kernel argument); torch.tensor
    # would copy from the host and synchronise with the GPU on every call.
    return torch.full((), float(value), dtype=_F64, device=like.device)


def _rounded(value: Tensor, dtype: torch.dtype) -> Tensor:
    """``value`` rounded to ``dtype`` (the value the reference computes with) but kept in
    float32 with a straight-through gradient, so the kernel's float32 parameter gradients are
    not rounded to bfloat16 on their way back."""
    v = value.float().reshape(())
    return v if dtype == torch.float32 else v + (v.to(dtype).float() - v).detach()


def _param(value: float | Tensor, x: Tensor) -> Tensor:
    """A parameter as the reference sees it: python floats stay exact (PyTorch applies them at
    float precision), tensors take the input dtype's value (as ``core.neurons._as`` does)."""
    if isinstance(value, Tensor):
        return _rounded(value, x.dtype)
    return _const(value, x)


def _fused(family: str, x_seq: Tensor, state: NamedTuple, p: tuple, dt: float,
           surrogate: Surrogate, width: Tensor | None) -> tuple[Tensor, NamedTuple]:
    from snn5.kernels import ops

    T = x_seq.shape[0]
    feat = x_seq.shape[1:]
    x = x_seq.reshape(T, -1).contiguous()                      # [T, N]
    w = width.reshape(()) if width is not None else _const(surrogate.param_value, x)
    v_th = _param(p.v_th, x)
    sid, rid = SURROGATE_IDS[type(surrogate)], RESET_IDS[p.reset]
    flat = [s.reshape(-1).contiguous() for s in state]          # [N] each
    save = torch.is_grad_enabled() and (
        x.requires_grad or any(s.requires_grad for s in flat) or v_th.requires_grad
        or w.requires_grad or (family == "plif" and p.tau_raw.requires_grad))
    if family == "alif":
        beta, rho = core.decay(float(p.tau_mem), dt), core.decay(float(p.tau_adapt), dt)
        z, v, a, _, _ = ops.alif_scan(x, flat[0], flat[1], v_th, w, beta, 1.0 - beta, rho,
                                      1.0 - rho, float(p.beta_adapt), rid, sid,
                                      p.detach_reset, save)
        return z.view(T, *feat), core.ALIFState(v.view(feat), a.view(feat))
    if family == "plif":
        beta32 = torch.exp(-torch.sigmoid(p.tau_raw.float()))
        beta = _rounded(beta32, x.dtype)                        # as plif_step computes them,
        omb = _rounded(1.0 - beta, x.dtype)                     # rounded in x's dtype
    elif family == "lif":
        b = core.decay(float(p.tau_mem), dt)
        beta, omb = _const(b, x), _const(1.0 - b, x)            # python floats, as lif_step
    else:
        beta = omb = _const(1.0, x)
    z, v, _ = ops.leaky_scan(x, flat[0], beta, omb, v_th, w, family == "if", rid, sid,
                             p.detach_reset, save)
    state_type = core.IFState if family == "if" else core.LIFState
    return z.view(T, *feat), state_type(v.view(feat))


def scan(family: str, x_seq: Tensor, state: NamedTuple, p: tuple, *, dt: float,
         surrogate: Surrogate, width: Tensor | None = None,
         backend: Backend = Backend.AUTO) -> tuple[Tensor, NamedTuple]:
    """Run ``family``'s multi-step dynamics over ``x_seq [T, B, *F]`` from ``state``.

    Same contract as the core ``*_scan`` functions (which the REFERENCE backend calls).
    Raises ValueError when a fused backend is forced where it cannot run, saying why.
    """
    backend = Backend.parse(backend)
    if family not in REFERENCE_SCANS:
        raise ValueError(f"unknown neuron family '{family}'; known: "
                         f"{', '.join(sorted(REFERENCE_SCANS))}")
    kw = {"dt": dt, "surrogate": surrogate, "width": width}
    if backend is Backend.REFERENCE:
        return REFERENCE_SCANS[family](x_seq, state, p, **kw)
    blocker = fused_blocker(family, x_seq, p, surrogate, width)
    if blocker is None and backend is not Backend.AUTO:
        expected = "cpu" if backend is Backend.CPU else "cuda"
        if x_seq.device.type != expected:
            blocker = f"backend {backend.value} runs on {expected} tensors, got {x_seq.device}"
    if blocker is not None:
        if backend is Backend.AUTO:
            return REFERENCE_SCANS[family](x_seq, state, p, **kw)
        raise ValueError(f"backend '{backend.value}' cannot run this {family} scan: {blocker}; "
                         "use backend='auto' or 'reference'")
    return _fused(family, x_seq, state, p, dt, surrogate, width)


def active_backends() -> dict[str, str]:
    """What ``Backend.AUTO`` uses on this machine, per device, with the reason if not fused."""
    from snn5.kernels.build import kernel_error

    cpu = load_cpu_kernels()
    out = {"cpu": "fused C++ kernel (IF, LIF, PLIF, ALIF)" if cpu is not None else
           f"reference ({kernel_error('cpu') or 'not built'})"}
    if torch.cuda.is_available():
        out["cuda"] = ("fused Triton kernel (IF, LIF, PLIF, ALIF)" if triton_available() else
                       "reference (Triton not installed)")
    return out


__all__ = ["Backend", "FUSED_FAMILIES", "active_backends", "fused_blocker", "scan",
           "triton_available"]
