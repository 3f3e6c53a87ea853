"""L1 kernels: fused multi-step neuron ops (``torch.library`` custom ops) and their dispatch.

Every kernel mirrors a reference scan in :mod:`snn5.core.neurons` and is tested against it.
"""

from snn5.kernels.build import cache_dir, kernel_error, load_cpu_kernels
from snn5.kernels.event import event_linear, pack_weight, spike_linear, spike_rate
from snn5.kernels.dispatch import (
    FUSED_FAMILIES, Backend, active_backends, fused_blocker, scan, triton_available,
)

__all__ = [
    "Backend", "FUSED_FAMILIES", "active_backends", "cache_dir", "fused_blocker",
    "event_linear", "kernel_error", "load_cpu_kernels", "pack_weight", "scan", "spike_linear", "spike_rate",
    "triton_available",
]
