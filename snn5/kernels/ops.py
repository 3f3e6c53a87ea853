"""``torch.library`` custom ops for fused multi-step neurons, with fake and autograd parts.

Ops work on flattened sequences: ``x [T, N]``, states ``[N]``. Scalar parameters are 0-d
tensors so that gradients reach learnable ones (threshold, PLIF decay, surrogate width); the
values are the ones the reference uses (see :mod:`snn5.kernels.dispatch`). Device kernels
register per device type: the CPU one here, the Triton one in :mod:`snn5.kernels.triton_ops`.

Backward saves only the pre-reset membrane ``h [T, N]`` (plus ``a`` for ALIF and ``x`` when the
PLIF decay learns): spikes are recomputed from it exactly, no per-step graph is kept.

The ops are defined with ``torch.library.Library`` (schema + per-device impl + register_fake +
register_autograd) rather than ``torch.library.custom_op``: the latter wraps every kernel call in
a guard that imports ``torch._dynamo`` on first use (about 1.5 s and 150 MiB of RSS), which eager
training does not need. ``torch.compile`` traces the ops the same way.
"""

from __future__ import annotations

import importlib.util

from collections.abc import Callable

import torch
from torch import Tensor

from snn5.kernels.build import load_cpu_kernels

_LIB = torch.library.Library("snn5", "DEF")
_LIB.define("leaky_scan(Tensor x, Tensor v0, Tensor beta, Tensor omb, Tensor v_th, Tensor width, "
            "bool is_if, int reset, int surrogate, bool detach_reset, bool save) "
            "-> (Tensor, Tensor, Tensor)")
_LIB.define("leaky_scan_backward(Tensor grad_z, Tensor? grad_v, Tensor h, Tensor? x, Tensor? v0, "
            "Tensor beta, Tensor omb, Tensor v_th, Tensor width, bool is_if, int reset, "
            "int surrogate, bool detach_reset, bool param_grads=True) -> (Tensor, Tensor, Tensor)")
_LIB.define("alif_scan(Tensor x, Tensor v0, Tensor a0, Tensor v_th, Tensor width, float beta, "
            "float omb, float rho, float omr, float beta_adapt, int reset, int surrogate, "
            "bool detach_reset, bool save) -> (Tensor, Tensor, Tensor, Tensor, Tensor)")
_LIB.define("alif_scan_backward(Tensor grad_z, Tensor? grad_v, Tensor? grad_a, Tensor h, "
            "Tensor a_seq, Tensor v_th, Tensor width, float beta, float omb, float rho, float omr, "
            "float beta_adapt, int reset, int surrogate, bool detach_reset, bool param_grads=True) "
            "-> (Tensor, Tensor, Tensor, Tensor)")

leaky_scan = torch.ops.snn5.leaky_scan.default
"""``(x [T, N], v0 [N], beta, omb, v_th, width, is_if, reset, surrogate, detach_reset, save)
-> (z [T, N], v_T [N], h [T, N] or empty)``."""
leaky_scan_backward = torch.ops.snn5.leaky_scan_backward.default
"""``-> (grad_x [T, N], grad_v0 [N], grads [4] float64: v_th, beta, width, omb)``; the
scalar-parameter gradients are meaningful only with ``param_grads`` (beta/omb also need ``x``):
without it a backend may skip them (the CPU one returns zeros)."""
alif_scan = torch.ops.snn5.alif_scan.default
"""``-> (z [T, N], v_T, a_T, h [T, N], a_seq [T, N])`` (h, a_seq empty unless save)."""
alif_scan_backward = torch.ops.snn5.alif_scan_backward.default
"""``-> (grad_x, grad_v0, grad_a0, grads [4] float64: v_th, 0, width, 0)``; the
parameter gradients are meaningful only with ``param_grads``."""


def register_kernel(op: str, device: str) -> Callable[[Callable], Callable]:
    """Decorator registering ``fn`` as the ``device`` ("cpu", "cuda") kernel of ``snn5::op``."""
    def wrap(fn: Callable) -> Callable:
        _LIB.impl(op, fn, device.upper())
        return fn
    return wrap


def _fake(op: str) -> Callable[[Callable], Callable]:
    return torch.library.register_fake(f"snn5::{op}", lib=_LIB)


def _contig(t: Tensor | None) -> Tensor | None:
    """Incoming gradients may be expanded views (e.g. from ``.sum()``); kernels read memory."""
    return None if t is None else t.contiguous()


def _rows(g: Tensor) -> Tensor:
    """``grad_z [T, N]`` as the CPU kernels read it without a copy: rows contiguous or one value
    broadcast (stride 0), any step stride (0 for the gradient of a mean over steps, one value
    for the gradient of a sum); anything else is copied."""
    if g.dim() == 2 and g.stride(0) >= 0 and (g.size(1) <= 1 or g.stride(1) in (0, 1)):
        return g
    return g.contiguous()


def _ext():
    ext = load_cpu_kernels()
    if ext is None:
        raise RuntimeError("the snn5 CPU kernels are not available on this machine; use "
                           "backend='reference'")
    return ext


# ------------------------------------------------------------------ IF / LIF / PLIF

@register_kernel("leaky_scan", "cpu")
def _leaky_scan_cpu(x, v0, beta, omb, v_th, width, is_if, reset, surrogate, detach_reset, save):
    z, h, v_last = _ext().leaky_fwd(x, v0, is_if, reset, float(beta), float(omb),
                                    float(v_th), save)
    return z, v_last, h


@_fake("leaky_scan")
def _(x, v0, beta, omb, v_th, width, is_if, reset, surrogate, detach_reset, save):
    h = torch.empty_like(x) if save else x.new_empty(0)
    return torch.empty_like(x), torch.empty_like(v0), h


@register_kernel("leaky_scan_backward", "cpu")
def _leaky_bwd_cpu(grad_z, grad_v, h, x, v0, beta, omb, v_th, width, is_if, reset, surrogate,
                   detach_reset, param_grads=True):
    v0_ = v0 if v0 is not None else h.new_zeros(h.shape[1])
    return tuple(_ext().leaky_bwd(_rows(grad_z), _contig(grad_v), h, x, v0_, is_if, reset,
                                  surrogate, float(beta), float(omb), float(v_th), float(width),
                                  detach_reset, param_grads))


@_fake("leaky_scan_backward")
def _(grad_z, grad_v, h, x, v0, beta, omb, v_th, width, is_if, reset, surrogate, detach_reset,
      param_grads=True):
    return (torch.empty_like(h), h.new_empty(h.shape[1]),
            h.new_empty(4, dtype=torch.float64))


def _leaky_setup(ctx, inputs, output):
    x, v0, beta, omb, v_th, width, is_if, reset, surrogate, detach_reset, save = inputs
    _, _, h = output
    learn_decay = ctx.needs_input_grad[2] or ctx.needs_input_grad[3]
    ctx.save_for_backward(h, x if learn_decay else None, v0 if learn_decay else None,
                          beta, omb, v_th, width)
    ctx.flags = (is_if, reset, surrogate, detach_reset)
    ctx.mark_non_differentiable(h)
    ctx.set_materialize_grads(False)


def _leaky_backward(ctx, grad_z, grad_v, grad_h):
    h, x, v0, beta, omb, v_th, width = ctx.saved_tensors
    if h.numel() == 0:
        raise RuntimeError("snn5::leaky_scan ran with save=False but a gradient was requested")
    if grad_z is None:
        grad_z = torch.zeros_like(h)
    need = ctx.needs_input_grad
    gx, gv0, grads = leaky_scan_backward(grad_z, grad_v, h, x, v0, beta, omb, v_th, width,
                                         *ctx.flags, any(need[2:6]))

    def grad(k: int, like: Tensor, needed: bool) -> Tensor | None:
        return grads[k].to(like.dtype).reshape(like.shape) if needed else None

    return (gx, gv0 if need[1] else None, grad(1, beta, need[2]), grad(3, omb, need[3]),
            grad(0, v_th, need[4]), grad(2, width, need[5]), None, None, None, None, None)


torch.library.register_autograd("snn5::leaky_scan", _leaky_backward, setup_context=_leaky_setup,
                                lib=_LIB)


# ------------------------------------------------------------------ ALIF

@register_kernel("alif_scan", "cpu")
def _alif_scan_cpu(x, v0, a0, v_th, width, beta, omb, rho, omr, beta_adapt, reset, surrogate,
                   detach_reset, save):
    z, h, a_seq, v_last, a_last = _ext().alif_fwd(x, v0, a0, reset, beta, omb, rho, omr,
                                                  beta_adapt, float(v_th), save)
    return z, v_last, a_last, h, a_seq


@_fake("alif_scan")
def _(x, v0, a0, v_th, width, beta, omb, rho, omr, beta_adapt, reset, surrogate, detach_reset,
      save):
    saved = (torch.empty_like(x), torch.empty_like(x)) if save else (x.new_empty(0),) * 2
    return torch.empty_like(x), torch.empty_like(v0), torch.empty_like(a0), *saved


@register_kernel("alif_scan_backward", "cpu")
def _alif_bwd_cpu(grad_z, grad_v, grad_a, h, a_seq, v_th, width, beta, omb, rho, omr,
                  beta_adapt, reset, surrogate, detach_reset, param_grads=True):
    return tuple(_ext().alif_bwd(_rows(grad_z), _contig(grad_v), _contig(grad_a), h,
                                 a_seq, reset, surrogate, beta, omb, rho, omr, beta_adapt,
                                 float(v_th), float(width), detach_reset, param_grads))


@_fake("alif_scan_backward")
def _(grad_z, grad_v, grad_a, h, a_seq, v_th, width, beta, omb, rho, omr, beta_adapt, reset,
      surrogate, detach_reset, param_grads=True):
    n = h.shape[1]
    return (torch.empty_like(h), h.new_empty(n), h.new_empty(n),
            h.new_empty(4, dtype=torch.float64))


def _alif_setup(ctx, inputs, output):
    (x, v0, a0, v_th, width, beta, omb, rho, omr, beta_adapt, reset, surrogate, detach_reset,
     save) = inputs
    _, _, _, h, a_seq = output
    ctx.save_for_backward(h, a_seq, v_th, width)
    ctx.flags = (beta, omb, rho, omr, beta_adapt, reset, surrogate, detach_reset)
    ctx.mark_non_differentiable(h, a_seq)
    ctx.set_materialize_grads(False)


def _alif_backward(ctx, grad_z, grad_v, grad_a, grad_h, grad_a_seq):
    h, a_seq, v_th, width = ctx.saved_tensors
    if h.numel() == 0:
        raise RuntimeError("snn5::alif_scan ran with save=False but a gradient was requested")
    if grad_z is None:
        grad_z = torch.zeros_like(h)
    need = ctx.needs_input_grad
    gx, gv0, ga0, grads = alif_scan_backward(grad_z, grad_v, grad_a, h, a_seq, v_th, width,
                                             *ctx.flags, need[3] or need[4])
    g_th = grads[0].to(v_th.dtype).reshape(v_th.shape) if need[3] else None
    g_w = grads[2].to(width.dtype).reshape(width.shape) if need[4] else None
    return (gx, gv0 if need[1] else None, ga0 if need[2] else None, g_th, g_w,
            None, None, None, None, None, None, None, None, None)


torch.library.register_autograd("snn5::alif_scan", _alif_backward, setup_context=_alif_setup,
                                lib=_LIB)


# The CUDA kernels (Triton) register themselves when snn5.kernels.triton_ops is imported. Only
# where CUDA and triton both exist: a CPU-only install never imports triton.
if torch.cuda.is_available() and importlib.util.find_spec("triton") is not None:
    from snn5.kernels import triton_ops  # noqa: E402, F401
