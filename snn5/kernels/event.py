"""Event-driven Linear for spike inputs at inference: accumulate only the weight rows of active
inputs (additions and subtractions, no multiplications).

The work of a dense ``Linear`` is ``R x in x out`` multiply-accumulates whatever the input; the
event path does ``(number of spikes) x out`` additions, so it wins below a spike rate that the
benchmark (``benchmarks/event_speed.py``) measures. Results equal ``F.linear`` up to the order
of the float32 summation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from snn5.kernels.build import load_cpu_kernels


def pack_weight(weight: Tensor) -> Tensor:
    """``weight [out, in]`` in the layout the event kernels read: ``[ceil(out / 64), in, 64]``,
    each tile of 64 outputs contiguous and transposed (zero-padded). One pass over the weight;
    a caller that applies the same weight many times (an inference layer) caches it."""
    ext = load_cpu_kernels()
    if ext is None:
        raise RuntimeError("the snn5 CPU kernels are not available on this machine")
    return ext.event_pack_weight(weight.detach().float())


def event_linear(spikes: Tensor, weight: Tensor, bias: Tensor | None = None, *,
                 packed: Tensor | None = None) -> Tensor:
    """``F.linear(spikes, weight, bias)`` computed from the active inputs only.

    Args:
        spikes: ``[..., in]`` with values in {-1, 0, 1} (float32, CPU).
        weight: ``[out, in]``.
        bias: ``[out]`` or None.
        packed: ``pack_weight(weight)`` if the caller caches it.

    Returns:
        ``[..., out]``. Falls back to the dense product when the input holds other values, the
        kernels are not built, the tensors are not float32 on the CPU, or under
        ``torch.compile`` (where the choice, which depends on the values, would break the graph).
    """
    ext = load_cpu_kernels()
    usable = (ext is not None and spikes.device.type == "cpu" and spikes.dtype == torch.float32
              and weight.dtype == torch.float32 and not torch.is_grad_enabled()
              and not torch.compiler.is_compiling())
    if not usable:
        return F.linear(spikes, weight, bias)
    lead = spikes.shape[:-1]
    rows = spikes.reshape(-1, spikes.shape[-1]).contiguous()          # [R, in]
    wp = pack_weight(weight) if packed is None else packed             # [tiles, in, 64]
    b = bias.detach().contiguous() if bias is not None else torch.empty(0)
    out, ok = ext.event_linear_fwd(rows, wp, b, weight.shape[0])
    if not ok:                                                         # not spikes after all
        return F.linear(spikes, weight, bias)
    return out.view(*lead, weight.shape[0])


def spike_rate(x: Tensor) -> float:
    """Fraction of nonzero entries (one pass over ``x``)."""
    return x.count_nonzero().item() / max(x.numel(), 1)


class _BitSavedLinear(torch.autograd.Function):
    """``F.linear`` whose saved input is the packed spike bits (1 bit per element); with
    ``event``, the product and the weight gradient are computed from the active inputs only."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cpu")
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, bits: Tensor,
                value: float, event: bool) -> Tensor:
        ctx.save_for_backward(bits, weight)
        ctx.meta = (x.shape, x.dtype, value, bias is not None, event)
        if event and value == 1.0:                                          # from the bits
            b = bias.detach().contiguous() if bias is not None else torch.empty(0)
            out = load_cpu_kernels().event_linear_bits(bits, x.shape[-1], pack_weight(weight),
                                                       b, weight.shape[0])
            return out.view(*x.shape[:-1], weight.shape[0])
        return F.linear(x, weight, bias)

    @staticmethod
    @torch.amp.custom_bwd(device_type="cpu")
    def backward(ctx, grad: Tensor):
        bits, weight = ctx.saved_tensors
        shape, dtype, value, has_bias, event = ctx.meta
        g2 = grad.reshape(-1, grad.shape[-1])                               # [R, out]
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = (g2 @ weight.to(g2.dtype)).view(shape)                     # [..., in]
        if ctx.needs_input_grad[1]:
            ext = load_cpu_kernels()
            if event and g2.dtype == torch.float32:                         # one add per spike
                gw = ext.event_weight_grad(bits, g2.contiguous(), shape[-1], value)
            else:
                z = ext.unpack_spikes(bits, shape[-1], value, dtype)        # [R, in]
                gw = g2.t() @ z.to(g2.dtype)                                # [out, in]
        if has_bias and ctx.needs_input_grad[2]:
            gb = g2.sum(0)
        return gx, gw, gb, None, None, None


def spike_linear(x: Tensor, weight: Tensor, bias: Tensor | None = None, *,
                 max_rate: float = 0.0) -> Tensor:
    """``F.linear(x, weight, bias)`` for training on spike input, saving the input as bits.

    When every entry of ``x`` is 0 or one common value (spikes, or spikes scaled by dropout),
    autograd keeps 1 bit per input element instead of 4 bytes; the forward and gradients are
    those of ``F.linear``. At a spike rate of at most ``max_rate`` (float32), the product and
    the weight gradient are event-driven: one addition per (spike, output), equal to the dense
    results up to the order of the float32 summation. Other inputs, devices or dtypes take
    ``F.linear`` itself, and so does ``torch.compile``: the choice depends on the input's values,
    which a compiled graph cannot branch on without a graph break.
    """
    ext = load_cpu_kernels()
    if (ext is None or x.device.type != "cpu" or x.dtype not in (torch.float32, torch.bfloat16)
            or not torch.is_grad_enabled() or x.numel() == 0 or torch.compiler.is_compiling()):
        return F.linear(x, weight, bias)
    rows = x.reshape(-1, x.shape[-1]).contiguous()
    bits, ok, value, count = ext.pack_spikes(rows.detach())   # one pass: check, c, pack, count
    if not ok:
        return F.linear(x, weight, bias)
    event = (x.dtype == torch.float32 and weight.dtype == torch.float32
             and count <= max_rate * rows.numel())
    return _BitSavedLinear.apply(rows.view(x.shape), weight, bias, bits, value, event)
