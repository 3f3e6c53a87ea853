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


def event_linear(spikes: Tensor, weight: Tensor, bias: Tensor | None = None, *,
                 weight_t: Tensor | None = None) -> Tensor:
    """``F.linear(spikes, weight, bias)`` computed from the active inputs only.

    Args:
        spikes: ``[..., in]`` with values in {-1, 0, 1} (float32, CPU).
        weight: ``[out, in]``.
        bias: ``[out]`` or None.
        weight_t: ``weight.t().contiguous()`` if the caller caches it.

    Returns:
        ``[..., out]``. Falls back to the dense product when the input holds other values, the
        kernels are not built, or the tensors are not float32 on the CPU.
    """
    ext = load_cpu_kernels()
    usable = (ext is not None and spikes.device.type == "cpu" and spikes.dtype == torch.float32
              and weight.dtype == torch.float32 and not torch.is_grad_enabled())
    if not usable:
        return F.linear(spikes, weight, bias)
    lead = spikes.shape[:-1]
    rows = spikes.reshape(-1, spikes.shape[-1]).contiguous()          # [R, in]
    wt = weight.t().contiguous() if weight_t is None else weight_t     # [in, out]
    b = bias.detach() if bias is not None else torch.empty(0)
    out, ok = ext.event_linear_fwd(rows, wt.detach(), b)
    if not ok:                                                         # not spikes after all
        return F.linear(spikes, weight, bias)
    return out.view(*lead, weight.shape[0])


def spike_rate(x: Tensor) -> float:
    """Fraction of nonzero entries (one pass over ``x``)."""
    return x.count_nonzero().item() / max(x.numel(), 1)
