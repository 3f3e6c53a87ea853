"""A Linear layer that runs event-driven at inference when its input is sparse spikes."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from snn5.kernels.event import event_linear, pack_weight, spike_linear, spike_rate

# Up to this input spike rate the event path beats the dense product in inference at every size
# measured on a 2-core CPU (benchmarks/results/event_speed.json, N = 512-2048: 1.4-1.7x at 20 %,
# crossover near 30 %). Training (forward plus weight gradient) has no benchmark of its own: in
# benchmarks/results/lif_speed.json the event-driven second layer (12-13 % input rate) trains
# below the dense floor; ad-hoc timings of the kernels alone put its crossover at 20-25 %.
DEFAULT_MAX_RATE = 0.2


class EventLinear(nn.Linear):
    """``nn.Linear`` for spike input: event-driven inference, bit-saved training.

    Under ``torch.no_grad()``/``inference_mode()`` on the CPU, the layer measures the input's
    spike rate and, at or below ``max_rate``, accumulates only the weight rows of the active
    inputs (:func:`snn5.kernels.event_linear`); above it, it is ``nn.Linear``. In training the
    input kept for the weight gradient is stored as bits, and at or below ``max_rate`` (float32)
    the product and the weight gradient are event-driven too (:func:`snn5.kernels.spike_linear`);
    outputs and gradients equal ``nn.Linear``'s up to the order of float32 summation.
    Parameters, ``state_dict`` keys and operation counters are those of ``nn.Linear``. Under
    ``torch.compile`` the layer is ``nn.Linear`` (the event path's choice depends on the input's
    values and would break the compiled graph), so the eager model is the faster one on the CPU
    at low spike rates.

    Event-driven sums skip inputs that did not spike, so a non-finite weight of a silent input
    does not reach the output (the dense product would give NaN, as 0 * NaN is NaN); the
    trainer's checks still catch it through the gradients.

    The inference path caches the weight in the kernels' layout
    (:func:`snn5.kernels.pack_weight`), keyed by the weight's storage and version counter; an
    in-place change through ``weight.data`` bypasses the version counter, so make such changes
    under ``torch.no_grad()`` on ``weight`` itself. A weight that is not a plain
    ``nn.Parameter`` (recomputed at every forward by a pruning mask or a quantization
    parametrization) is packed at every forward, never cached.

    Args:
        in_features, out_features, bias: as ``nn.Linear``.
        max_rate: spike rate (fraction of nonzero inputs) up to which the event path is taken.
            The default (0.2) comes from ``benchmarks/event_speed.py`` on a 2-core CPU; set 0
            to disable.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 max_rate: float = DEFAULT_MAX_RATE, device=None, dtype=None) -> None:
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        if not 0.0 <= max_rate <= 1.0:
            raise ValueError(f"max_rate is a spike rate in [0, 1], got {max_rate}")
        self.max_rate = float(max_rate)
        self._packed: Tensor | None = None
        self._weight_key: tuple | None = None

    def _packed_weight(self) -> Tensor:
        weight = self.weight                 # one access: a parametrized weight is recomputed
        if not isinstance(weight, nn.Parameter) or weight.is_inference():
            # recomputed at every forward (pruning mask, quantization parametrization): a new
            # tensor that may reuse a freed address with version 0, so never key a cache on it
            return pack_weight(weight)
        key = (weight.data_ptr(), weight._version, weight.shape)
        if self._weight_key != key:
            self._packed = pack_weight(weight)
            self._weight_key = key
        return self._packed

    def forward(self, x: Tensor) -> Tensor:
        if torch.is_grad_enabled():                               # saves the spikes as bits
            return spike_linear(x, self.weight, self.bias, max_rate=self.max_rate)
        if (self.max_rate == 0.0 or x.device.type != "cpu" or x.dtype != torch.float32
                or torch.compiler.is_compiling() or spike_rate(x) > self.max_rate):
            return F.linear(x, self.weight, self.bias)
        return event_linear(x, self.weight, self.bias, packed=self._packed_weight())

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, max_rate={self.max_rate:g}"
