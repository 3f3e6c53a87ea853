"""Triton (CUDA) kernels of the fused multi-step neuron ops in :mod:`snn5.kernels.ops`.

Importing this module needs ``triton`` and registers the ``"cuda"`` kernels of
``snn5::leaky_scan``, ``snn5::leaky_scan_backward``, ``snn5::alif_scan`` and
``snn5::alif_scan_backward`` (the fake and autograd parts are shared with the CPU kernels).
:mod:`snn5.kernels.ops` imports it only where CUDA and triton both exist, so a CPU-only install
never imports triton. The functions below are the registered kernels; with
``TRITON_INTERPRET=1`` set before this module is imported they also run on CPU tensors in
Triton's interpreter (how tests/kernels/test_triton.py checks them without a GPU).

Layout as in the C++ kernels: ``x [T, N]`` contiguous, one program per block of ``BLOCK``
neurons, the time loop inside the kernel with the state in registers; the backward runs in
reverse time from the saved pre-reset membrane ``h`` (and ``a`` before each step for ALIF).

Parity with the reference (:mod:`snn5.core.neurons` run by PyTorch on the same device): forward
spikes and states are bitwise identical because

- the same floating-point operations run in the same order as the reference's elementwise ops
  (mirroring ``csrc/neurons_cpu.cpp``, whose comments give the derivation);
- every operation computes in float32 and, for bfloat16, rounds its result to bfloat16 (round to
  nearest even) before the next one, which is what each PyTorch bfloat16 op does (float op-math,
  rounding on store). ``_rnd`` below does it; float32 needs no extra rounding. In Triton's
  interpreter (SOFT) the roundings and the bfloat16 loads and stores work on the bits, because
  its own float32 <-> bfloat16 conversions truncate and mishandle subnormals;
- no fused multiply-add: the kernels launch with ``enable_fp_fusion=False``. Triton otherwise
  contracts ``a * b + c`` into one ``fma`` with a single rounding, while the reference rounds the
  product before the sum (separate kernels). With fusion off the PTX holds ``mul.rn.f32`` /
  ``add.rn.f32``, whose explicit rounding also forbids ptxas from contracting them, and no
  ``.ftz`` (subnormals are kept, as PyTorch's CUDA kernels keep them); the tests compile the
  kernels to PTX and check both. LLVM may run the sum or difference of two values already
  rounded to bfloat16 as one bfloat16 instruction (``add.rn.bf16x2`` on sm_90, ``fma.rn.bf16``
  with a multiplier of +-1 on sm_80): one rounding of the exact result, which equals the float32
  operation followed by the rounding to bfloat16, since float32 carries more than 2 x 8 + 2
  significand bits (double rounding is then innocuous);
- scalar parameters arrive as 0-d tensors on the device and are loaded in the kernel (no host
  sync). A fixed (python float) parameter comes as float64 and is rounded once to float32 in the
  kernel, which is what PyTorch does with a python scalar in a float32/bfloat16 op (the scalar is
  cast to the float op-math type); a learned one arrives already rounded to the input dtype
  (see :mod:`snn5.kernels.dispatch`). ALIF's fixed decays arrive as python floats, which Triton
  passes as float32 (the same rounding).

The backward computes in float32 like the C++ one (its division and ``exp`` use the GPU's fast
approximations: gradients are checked within tolerances). The scalar parameter gradients are sums
over ``T x N``: each program accumulates its neurons' terms in float32 over time, reduces them
across its block, and writes one partial per program; the partials are summed in float64 by
PyTorch (deterministic, no atomics) into the float64 ``[4]`` tensor the op returns.
"""

# No ``from __future__ import annotations``: Triton reads the ``tl.constexpr`` annotations.

import contextlib
import math

import torch
import triton
import triton.language as tl
from torch import Tensor

from snn5.kernels import ops

_HALF_PI = tl.constexpr(0.5 * math.pi)
# Reset ids (dispatch.RESET_IDS): 0 subtract, 1 zero, 2 none.


# ------------------------------------------------------------------ device helpers

@triton.jit
def _rnd(v, BF16: tl.constexpr, SOFT: tl.constexpr):
    """``v`` (float32) rounded to the storage dtype and kept in float32: the identity for
    float32; round to nearest even to bfloat16 otherwise. SOFT does the rounding with integer
    ops (as ``c10::BFloat16`` does) for Triton's interpreter, whose float32 -> bfloat16 cast
    truncates; on the GPU the cast is ``cvt.rn.bf16.f32``."""
    if BF16:
        if SOFT:
            bits = v.to(tl.uint32, bitcast=True)
            bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
            v = tl.where(v != v, v, bits.to(tl.float32, bitcast=True))
        else:
            v = v.to(tl.bfloat16).to(tl.float32)
    return v


@triton.jit
def _ld(ptr, mask, SOFT: tl.constexpr):
    """Load as float32 (exact). SOFT widens bfloat16 by its bits: the interpreter's conversion
    mishandles subnormals."""
    v = tl.load(ptr, mask=mask, other=0.0)
    if SOFT and v.dtype == tl.bfloat16:
        v = (v.to(tl.uint16, bitcast=True).to(tl.uint32) << 16).to(tl.float32, bitcast=True)
    else:
        v = v.to(tl.float32)
    return v


@triton.jit
def _st(ptr, v, mask, BF16: tl.constexpr, SOFT: tl.constexpr):
    """Store float32 ``v`` rounded to the storage dtype (for the interpreter by its bits too)."""
    v = _rnd(v, BF16, SOFT)
    if SOFT and BF16:
        bits = (v.to(tl.uint32, bitcast=True) >> 16).to(tl.uint16)
        tl.store(ptr, bits.to(tl.bfloat16, bitcast=True), mask=mask)
    else:
        tl.store(ptr, v.to(ptr.dtype.element_ty), mask=mask)


@triton.jit
def _after_reset(h, v_th, RESET: tl.constexpr, BF16: tl.constexpr, SOFT: tl.constexpr):
    """The membrane after the reset of a step whose pre-reset membrane is ``h``."""
    s = tl.where(_rnd(h - v_th, BF16, SOFT) >= 0.0, 1.0, 0.0)
    if RESET == 0:
        v = _rnd(h - _rnd(s * v_th, BF16, SOFT), BF16, SOFT)
    elif RESET == 1:
        v = _rnd(h * (1.0 - s), BF16, SOFT)
    else:
        v = h
    return v


@triton.jit
def _surrogate(u, w, SG: tl.constexpr):
    """``(d primitive / du, d primitive / d width)`` at ``u`` (``sg_grad`` / ``sg_dwidth`` of
    the C++ kernels; ids: atan 0, sigmoid 1, fast_sigmoid 2, triangle 3, rectangle 4)."""
    if SG == 0:
        k = _HALF_PI * w * u
        d = 1.0 + k * k
        g = 0.5 * w / d
        dw = 0.5 * u / d
    elif SG == 1:
        s = 1.0 / (1.0 + tl.exp(-w * u))
        g = w * s * (1.0 - s)
        dw = u * s * (1.0 - s)
    elif SG == 2:
        d = 1.0 + w * tl.abs(u)
        g = 0.5 * w / (d * d)
        dw = 0.5 * u / (d * d)
    elif SG == 3:
        a = tl.abs(u) / w
        r = 1.0 - a
        g = tl.where(r > 0.0, r / w, 0.0)
        dw = tl.where(a < 1.0, -(1.0 - a) * u / (w * w), 0.0)
    else:
        g = tl.where(tl.abs(u) < 0.5 * w, 1.0 / w, 0.0)
        # inclusive bound: the reference differentiates clamp(u / w + 1/2, 0, 1), whose
        # backward passes the gradient at the bounds
        dw = tl.where(tl.abs(u) <= 0.5 * w, -u / (w * w), 0.0)
    return g, dw


# ------------------------------------------------------------------ IF / LIF / PLIF

@triton.jit(do_not_specialize=["T", "N"])
def _leaky_fwd(x_ptr, v0_ptr, z_ptr, h_ptr, v_out_ptr, beta_ptr, omb_ptr, v_th_ptr, T, N,
               IS_IF: tl.constexpr, RESET: tl.constexpr, SAVE: tl.constexpr,
               BF16: tl.constexpr, SOFT: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)    # [BLOCK] neurons
    mask = offs < N
    beta = tl.load(beta_ptr).to(tl.float32)
    omb = tl.load(omb_ptr).to(tl.float32)
    v_th = tl.load(v_th_ptr).to(tl.float32)
    v = _ld(v0_ptr + offs, mask, SOFT)
    for t in range(T):
        row = tl.cast(t, tl.int64) * N + offs           # x[t, offs] (int64: T * N may be large)
        x = _ld(x_ptr + row, mask, SOFT)
        if IS_IF:
            h = _rnd(v + x, BF16, SOFT)
        else:
            h = _rnd(_rnd(beta * v, BF16, SOFT) + _rnd(omb * x, BF16, SOFT), BF16, SOFT)
        s = tl.where(_rnd(h - v_th, BF16, SOFT) >= 0.0, 1.0, 0.0)
        if RESET == 0:
            v = _rnd(h - _rnd(s * v_th, BF16, SOFT), BF16, SOFT)
        elif RESET == 1:
            v = _rnd(h * (1.0 - s), BF16, SOFT)
        else:
            v = h
        _st(z_ptr + row, s, mask, BF16, SOFT)
        if SAVE:
            _st(h_ptr + row, h, mask, BF16, SOFT)
    _st(v_out_ptr + offs, v, mask, BF16, SOFT)


@triton.jit(do_not_specialize=["T", "N"])
def _leaky_bwd(gz_ptr, gv_last_ptr, h_ptr, x_ptr, v0_ptr, gx_ptr, gv0_ptr, part_ptr, beta_ptr,
               omb_ptr, v_th_ptr, width_ptr, T, N, IS_IF: tl.constexpr, RESET: tl.constexpr,
               SG: tl.constexpr, DETACH: tl.constexpr, HAS_GV: tl.constexpr,
               WANT_BETA: tl.constexpr, BF16: tl.constexpr, SOFT: tl.constexpr,
               BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    beta = tl.load(beta_ptr).to(tl.float32)
    omb = tl.load(omb_ptr).to(tl.float32)
    v_th = tl.load(v_th_ptr).to(tl.float32)
    width = tl.load(width_ptr).to(tl.float32)
    if HAS_GV:
        gv = _ld(gv_last_ptr + offs, mask, SOFT)
    else:
        gv = tl.zeros([BLOCK], dtype=tl.float32)
    if WANT_BETA:
        v_init = _ld(v0_ptr + offs, mask, SOFT)
    g_th = tl.zeros([BLOCK], dtype=tl.float32)       # per-neuron sums over time
    g_beta = tl.zeros([BLOCK], dtype=tl.float32)
    g_w = tl.zeros([BLOCK], dtype=tl.float32)
    g_omb = tl.zeros([BLOCK], dtype=tl.float32)
    for i in range(T):
        t = T - 1 - i
        row = tl.cast(t, tl.int64) * N + offs
        h = _ld(h_ptr + row, mask, SOFT)
        u = _rnd(h - v_th, BF16, SOFT)
        s = tl.where(u >= 0.0, 1.0, 0.0)
        gz = _ld(gz_ptr + row, mask, SOFT)
        if RESET == 0:
            if not DETACH:
                gz = gz - gv * v_th
            sg, dw = _surrogate(u, width, SG)
            gu = gz * sg
            gh = gv + gu
            g_th -= gu + gv * s
        elif RESET == 1:
            if not DETACH:
                gz = gz - gv * h
            sg, dw = _surrogate(u, width, SG)
            gu = gz * sg
            gh = gv * (1.0 - s) + gu
            g_th -= gu
        else:
            sg, dw = _surrogate(u, width, SG)
            gu = gz * sg
            gh = gv + gu
            g_th -= gu
        g_w += gz * dw
        if IS_IF:
            gx = gh
            gv = gh
        else:
            gx = omb * gh
            if WANT_BETA:
                # the membrane before this step: after the previous step's reset, or v0
                has_prev = tl.full([BLOCK], t, tl.int32) > 0
                h_prev = _ld(h_ptr + row - N, mask & has_prev, SOFT)
                v_prev = tl.where(has_prev, _after_reset(h_prev, v_th, RESET, BF16, SOFT), v_init)
                g_beta += gh * v_prev
                x = _ld(x_ptr + row, mask, SOFT)
                g_omb += gh * x
            gv = beta * gh
        _st(gx_ptr + row, gx, mask, BF16, SOFT)
    _st(gv0_ptr + offs, gv, mask, BF16, SOFT)
    # partials [program, 4]: v_th, beta, width, omb (masked lanes hold exact zeros; where()
    # keeps them out anyway)
    tl.store(part_ptr + pid * 4 + 0, tl.sum(tl.where(mask, g_th, 0.0), axis=0))
    tl.store(part_ptr + pid * 4 + 1, tl.sum(tl.where(mask, g_beta, 0.0), axis=0))
    tl.store(part_ptr + pid * 4 + 2, tl.sum(tl.where(mask, g_w, 0.0), axis=0))
    tl.store(part_ptr + pid * 4 + 3, tl.sum(tl.where(mask, g_omb, 0.0), axis=0))


# ------------------------------------------------------------------ ALIF

@triton.jit(do_not_specialize=["T", "N"])
def _alif_fwd(x_ptr, v0_ptr, a0_ptr, z_ptr, h_ptr, a_seq_ptr, v_out_ptr, a_out_ptr, v_th_ptr,
              beta, omb, rho, omr, b_adapt, T, N, RESET: tl.constexpr, SAVE: tl.constexpr,
              BF16: tl.constexpr, SOFT: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    v_th = tl.load(v_th_ptr).to(tl.float32)
    v = _ld(v0_ptr + offs, mask, SOFT)
    a = _ld(a0_ptr + offs, mask, SOFT)
    for t in range(T):
        row = tl.cast(t, tl.int64) * N + offs
        x = _ld(x_ptr + row, mask, SOFT)
        h = _rnd(_rnd(beta * v, BF16, SOFT) + _rnd(omb * x, BF16, SOFT), BF16, SOFT)
        thr = _rnd(v_th + _rnd(b_adapt * a, BF16, SOFT), BF16, SOFT)
        s = tl.where(_rnd(h - thr, BF16, SOFT) >= 0.0, 1.0, 0.0)
        if RESET == 0:
            v = _rnd(h - _rnd(s * thr, BF16, SOFT), BF16, SOFT)
        elif RESET == 1:
            v = _rnd(h * (1.0 - s), BF16, SOFT)
        else:
            v = h
        if SAVE:
            _st(h_ptr + row, h, mask, BF16, SOFT)
            _st(a_seq_ptr + row, a, mask, BF16, SOFT)             # a before this step
        a = _rnd(_rnd(rho * a, BF16, SOFT) + _rnd(omr * s, BF16, SOFT), BF16, SOFT)
        _st(z_ptr + row, s, mask, BF16, SOFT)
    _st(v_out_ptr + offs, v, mask, BF16, SOFT)
    _st(a_out_ptr + offs, a, mask, BF16, SOFT)


@triton.jit(do_not_specialize=["T", "N"])
def _alif_bwd(gz_ptr, gv_last_ptr, ga_last_ptr, h_ptr, a_seq_ptr, gx_ptr, gv0_ptr, ga0_ptr,
              part_ptr, v_th_ptr, width_ptr, beta, omb, rho, omr, b_adapt, T, N,
              RESET: tl.constexpr, SG: tl.constexpr, DETACH: tl.constexpr,
              HAS_GV: tl.constexpr, HAS_GA: tl.constexpr, BF16: tl.constexpr,
              SOFT: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    v_th = tl.load(v_th_ptr).to(tl.float32)
    width = tl.load(width_ptr).to(tl.float32)
    if HAS_GV:
        gv = _ld(gv_last_ptr + offs, mask, SOFT)
    else:
        gv = tl.zeros([BLOCK], dtype=tl.float32)
    if HAS_GA:
        ga = _ld(ga_last_ptr + offs, mask, SOFT)
    else:
        ga = tl.zeros([BLOCK], dtype=tl.float32)
    g_th = tl.zeros([BLOCK], dtype=tl.float32)
    g_w = tl.zeros([BLOCK], dtype=tl.float32)
    for i in range(T):
        t = T - 1 - i
        row = tl.cast(t, tl.int64) * N + offs
        h = _ld(h_ptr + row, mask, SOFT)
        a = _ld(a_seq_ptr + row, mask, SOFT)
        thr = _rnd(v_th + _rnd(b_adapt * a, BF16, SOFT), BF16, SOFT)
        u = _rnd(h - thr, BF16, SOFT)
        s = tl.where(u >= 0.0, 1.0, 0.0)
        gz = _ld(gz_ptr + row, mask, SOFT) + ga * omr
        if RESET == 0:
            if not DETACH:
                gz = gz - gv * thr
            sg, dw = _surrogate(u, width, SG)
            gu = gz * sg
            gh = gv + gu
            g_thr = -gu - gv * s
        elif RESET == 1:
            if not DETACH:
                gz = gz - gv * h
            sg, dw = _surrogate(u, width, SG)
            gu = gz * sg
            gh = gv * (1.0 - s) + gu
            g_thr = -gu
        else:
            sg, dw = _surrogate(u, width, SG)
            gu = gz * sg
            gh = gv + gu
            g_thr = -gu
        g_th += g_thr
        g_w += gz * dw
        _st(gx_ptr + row, omb * gh, mask, BF16, SOFT)
        gv = beta * gh
        ga = rho * ga + b_adapt * g_thr
    _st(gv0_ptr + offs, gv, mask, BF16, SOFT)
    _st(ga0_ptr + offs, ga, mask, BF16, SOFT)
    tl.store(part_ptr + pid * 4 + 0, tl.sum(tl.where(mask, g_th, 0.0), axis=0))
    tl.store(part_ptr + pid * 4 + 1, 0.0)
    tl.store(part_ptr + pid * 4 + 2, tl.sum(tl.where(mask, g_w, 0.0), axis=0))
    tl.store(part_ptr + pid * 4 + 3, 0.0)


# ------------------------------------------------------------------ host side

def _block(n: int) -> int:
    """Neurons per program (4 warps each): one neuron per thread while there are few neurons,
    so that more programs and threads share the GPU (the time loop is latency-bound); four per
    thread (16-byte float32 accesses) in large layers. Not tuned on hardware yet."""
    return 128 if n <= 65536 else 512


def _check(name: str, t: Tensor, like: Tensor) -> Tensor:
    """``t`` contiguous, after checking it has the sequence's dtype and device."""
    if t.dtype != like.dtype or t.device != like.device:
        raise ValueError(f"{name} is {t.dtype} on {t.device} but the sequence is {like.dtype} "
                         f"on {like.device}; the Triton kernels take one dtype and device")
    return t.contiguous()


def _dtype_flags(x: Tensor) -> dict[str, bool]:
    if x.dtype not in (torch.float32, torch.bfloat16):
        raise ValueError(f"the Triton kernels take float32 or bfloat16, not {x.dtype}")
    return {"BF16": x.dtype == torch.bfloat16, "SOFT": not x.is_cuda}


def _scalar(t: Tensor, x: Tensor) -> Tensor:
    """A 0-d parameter on x's device (dispatch already puts it there: then no copy, no sync)."""
    return t if t.device == x.device else t.to(x.device)


def _on(x: Tensor):
    """Launch on x's GPU (Triton launches on the current device)."""
    return torch.cuda.device(x.device) if x.is_cuda else contextlib.nullcontext()


def _partials(n: int, like: Tensor) -> Tensor:
    """One row of parameter-gradient partial sums per program."""
    return torch.empty((triton.cdiv(n, _block(n)), 4), dtype=torch.float32, device=like.device)


def _launch(kernel, n: int, x: Tensor, *args, **constexprs) -> None:
    """Run ``kernel`` over ``n`` neurons on x's device, without fused multiply-adds."""
    block = _block(n)
    with _on(x):
        kernel[(triton.cdiv(n, block),)](*args, BLOCK=block, num_warps=4,
                                         enable_fp_fusion=False, **constexprs)


def leaky_scan(x: Tensor, v0: Tensor, beta: Tensor, omb: Tensor, v_th: Tensor, width: Tensor,
               is_if: bool, reset: int, surrogate: int, detach_reset: bool, save: bool
               ) -> tuple[Tensor, Tensor, Tensor]:
    """``snn5::leaky_scan`` on CUDA. Returns ``(z [T, N], v_T [N], h [T, N] or empty)``."""
    flags = _dtype_flags(x)
    x = x.contiguous()
    v0 = _check("v0", v0, x)
    steps, n = x.shape
    z = torch.empty_like(x)
    h = torch.empty_like(x) if save else x.new_empty(0)
    v_last = torch.empty_like(v0)
    if n == 0:
        return z, v_last, h
    _launch(_leaky_fwd, n, x, x, v0, z, h if save else z, v_last, _scalar(beta, x),
            _scalar(omb, x), _scalar(v_th, x), steps, n, IS_IF=is_if, RESET=reset, SAVE=save,
            **flags)
    return z, v_last, h


def leaky_scan_backward(grad_z: Tensor, grad_v: Tensor | None, h: Tensor, x: Tensor | None,
                        v0: Tensor | None, beta: Tensor, omb: Tensor, v_th: Tensor,
                        width: Tensor, is_if: bool, reset: int, surrogate: int,
                        detach_reset: bool, param_grads: bool = True
                        ) -> tuple[Tensor, Tensor, Tensor]:
    """``snn5::leaky_scan_backward`` on CUDA. Returns ``(grad_x [T, N], grad_v0 [N],
    grads [4] float64: v_th, beta, width, omb)``; the decay gradients need ``x`` (and ``v0``).
    The threshold and width partials are always computed (a block reduction, cheap on a GPU)."""
    flags = _dtype_flags(h)
    grad_z = _check("grad_z", grad_z, h)
    steps, n = h.shape
    want_beta = param_grads and x is not None and not is_if
    if want_beta:
        x = _check("x", x, h)
        v0 = _check("v0", v0, h) if v0 is not None else h.new_zeros(n)
    gv = _check("grad_v", grad_v, h) if grad_v is not None else None
    gx, gv0 = torch.empty_like(h), h.new_empty(n)
    if n == 0:
        return gx, gv0, h.new_zeros(4, dtype=torch.float64)
    part = _partials(n, h)
    _launch(_leaky_bwd, n, h, grad_z, h if gv is None else gv, h, x if want_beta else h,
            v0 if want_beta else h, gx, gv0, part, _scalar(beta, h), _scalar(omb, h),
            _scalar(v_th, h), _scalar(width, h), steps, n, IS_IF=is_if, RESET=reset,
            SG=surrogate, DETACH=detach_reset, HAS_GV=gv is not None, WANT_BETA=want_beta,
            **flags)
    return gx, gv0, part.sum(0, dtype=torch.float64)


def alif_scan(x: Tensor, v0: Tensor, a0: Tensor, v_th: Tensor, width: Tensor, beta: float,
              omb: float, rho: float, omr: float, beta_adapt: float, reset: int, surrogate: int,
              detach_reset: bool, save: bool
              ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """``snn5::alif_scan`` on CUDA. Returns ``(z [T, N], v_T, a_T, h [T, N], a_seq [T, N])``
    (``h`` and ``a_seq``, the adaptation before each step, are empty unless ``save``)."""
    flags = _dtype_flags(x)
    x = x.contiguous()
    v0, a0 = _check("v0", v0, x), _check("a0", a0, x)
    steps, n = x.shape
    z = torch.empty_like(x)
    h, a_seq = (torch.empty_like(x), torch.empty_like(x)) if save else (x.new_empty(0),) * 2
    v_last, a_last = torch.empty_like(v0), torch.empty_like(a0)
    if n == 0:
        return z, v_last, a_last, h, a_seq
    _launch(_alif_fwd, n, x, x, v0, a0, z, h if save else z, a_seq if save else z, v_last,
            a_last, _scalar(v_th, x), float(beta), float(omb), float(rho), float(omr),
            float(beta_adapt), steps, n, RESET=reset, SAVE=save, **flags)
    return z, v_last, a_last, h, a_seq


def alif_scan_backward(grad_z: Tensor, grad_v: Tensor | None, grad_a: Tensor | None, h: Tensor,
                       a_seq: Tensor, v_th: Tensor, width: Tensor, beta: float, omb: float,
                       rho: float, omr: float, beta_adapt: float, reset: int, surrogate: int,
                       detach_reset: bool, param_grads: bool = True
                       ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``snn5::alif_scan_backward`` on CUDA. Returns ``(grad_x, grad_v0, grad_a0,
    grads [4] float64: v_th, 0, width, 0)``."""
    flags = _dtype_flags(h)
    grad_z, a_seq = _check("grad_z", grad_z, h), _check("a_seq", a_seq, h)
    steps, n = h.shape
    gv = _check("grad_v", grad_v, h) if grad_v is not None else None
    ga = _check("grad_a", grad_a, h) if grad_a is not None else None
    gx, gv0, ga0 = torch.empty_like(h), h.new_empty(n), h.new_empty(n)
    if n == 0:
        return gx, gv0, ga0, h.new_zeros(4, dtype=torch.float64)
    part = _partials(n, h)
    _launch(_alif_bwd, n, h, grad_z, h if gv is None else gv, h if ga is None else ga, h,
            a_seq, gx, gv0, ga0, part, _scalar(v_th, h), _scalar(width, h), float(beta),
            float(omb), float(rho), float(omr), float(beta_adapt), steps, n, RESET=reset,
            SG=surrogate, DETACH=detach_reset, HAS_GV=gv is not None, HAS_GA=ga is not None,
            **flags)
    return gx, gv0, ga0, part.sum(0, dtype=torch.float64)


ops.register_kernel("leaky_scan", "cuda")(leaky_scan)
ops.register_kernel("leaky_scan_backward", "cuda")(leaky_scan_backward)
ops.register_kernel("alif_scan", "cuda")(alif_scan)
ops.register_kernel("alif_scan_backward", "cuda")(alif_scan_backward)
