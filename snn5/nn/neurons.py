"""Neuron modules: thin shells over :mod:`snn5.core.neurons`.

Each family comes as a sequence module (``LIF``: ``[T, B, *F] -> ([T, B, *F], state)``) and a
Cell twin (``LIFCell``: ``[B, *F] -> ([B, *F], state)``) sharing parameters and physics. Modules
keep no state between calls: pass ``state=`` to continue a stream and use the state returned.

Example:
    >>> lif = LIF(tau_mem=20e-3, dt=1e-3, reset=Reset.SUBTRACT, surrogate=ATan(alpha=2.0))
    >>> z_seq, state = lif(torch.rand(100, 8, 32))       # [T=100, B=8, 32]
    >>> z_more, state = lif(torch.rand(50, 8, 32), state)   # continue the same stream
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

import torch
from torch import Tensor, nn

from snn5._registry import Registry
from snn5.core import neurons as F
from snn5.core.options import Reset
from snn5.core.surrogate import ATan, Surrogate
from snn5.kernels.dispatch import Backend, scan

NEURONS: Registry[type[Neuron]] = Registry("neuron")

# ``quantizer(state, params) -> state``: applied to the state after every step (stateful QAT).
StateQuantizer = Callable[[NamedTuple, NamedTuple], NamedTuple]


def _check_positive(name: str, value: float) -> float:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def _check_tau(name: str, tau: float, dt: float) -> float:
    tau = _check_positive(name, tau)
    if tau <= dt:
        raise ValueError(f"{name} must exceed dt={dt:g} s, got {tau:.3g} s. Did you pass "
                         "milliseconds? 20 ms is 20e-3.")
    return tau


class NeuronBase(nn.Module):
    """Parameters and physics shared by a neuron family's sequence module and Cell twin.

    Args:
        dt: simulation step in seconds.
        v_th: firing threshold (> 0).
        reset: what the membrane does after a spike.
        surrogate: surrogate gradient; with ``learnable=True`` its shape parameter becomes an
            ``nn.Parameter`` of this module (stored as a log so it stays positive).
        detach_reset: stop the gradient through the reset term.
        learn_v_th: make the threshold a learnable parameter (stored as a log, stays > 0).
        backend: implementation of the multi-step scan: AUTO (a fused kernel where one
            applies, else the reference), REFERENCE, CPU or TRITON. Cells always step the
            reference.

    Attributes:
        state_quantizer: None, or ``quantizer(state, params) -> state`` applied to the state
            after every step (after the reset), e.g. a membrane stored at a few bits
            (:func:`snn5.compress.quantize_` with ``MembraneQuant``); while set, the sequence
            module steps the reference loop whatever ``backend`` says (the fused kernels
            keep the state in float inside the kernel).
    """

    state_quantizer: StateQuantizer | None = None

    spiking: ClassVar[bool] = True
    max_spike: int = 1              # largest spike value (integer-spike neurons emit up to D)
    family: ClassVar[str]
    _step_fn: ClassVar[Any]
    _state_type: ClassVar[type[NamedTuple]]

    def __init__(self, *, dt: float = 1e-3, v_th: float = 1.0, reset: Reset | str = Reset.SUBTRACT,
                 surrogate: Surrogate = ATan(), detach_reset: bool = False,
                 learn_v_th: bool = False, backend: Backend | str = Backend.AUTO) -> None:
        super().__init__()
        self.dt = _check_positive("dt", dt)
        self.backend = Backend.parse(backend)
        v_th = _check_positive("v_th", v_th)
        self.reset = Reset.parse(reset)
        self.detach_reset = bool(detach_reset)
        if not isinstance(surrogate, Surrogate):
            raise TypeError(f"surrogate must be a Surrogate object such as ATan(alpha=2.0), got "
                            f"{surrogate!r}; names like 'atan' are resolved by the config layer.")
        self.surrogate = surrogate
        if surrogate.learnable:
            self.surrogate_log_width = nn.Parameter(torch.tensor(math.log(surrogate.param_value)))
        else:
            self.register_parameter("surrogate_log_width", None)
        if learn_v_th:
            self.v_th_log = nn.Parameter(torch.tensor(math.log(v_th)))
            self._v_th = None
        else:
            self.register_parameter("v_th_log", None)
            self._v_th = v_th

    @property
    def v_th(self) -> float | Tensor:
        return self._v_th if self.v_th_log is None else self.v_th_log.exp()

    def surrogate_width(self) -> Tensor | None:
        """The learned surrogate parameter, or None when it is fixed."""
        return None if self.surrogate_log_width is None else self.surrogate_log_width.exp()

    def params(self) -> tuple:
        raise NotImplementedError

    def init_state(self, x: Tensor) -> NamedTuple:
        """Resting state for one step's input ``x: [B, *F]`` (its shape, dtype and device)."""
        zeros = torch.zeros_like(x, memory_format=torch.contiguous_format)
        return self._state_type(*([zeros] * len(self._state_type._fields)))

    def _kw(self) -> dict[str, Any]:
        return {"dt": self.dt, "surrogate": self.surrogate, "width": self.surrogate_width()}

    def _check_state(self, state: NamedTuple, x: Tensor) -> None:
        """``x``: one step of input ``[B, *F]``; the state must match its shape, dtype, device."""
        if not isinstance(state, self._state_type):
            raise TypeError(f"{type(self).__name__} expects a {self._state_type.__name__} state, "
                            f"got {type(state).__name__}")
        shape = x.shape
        for name, value in zip(state._fields, state):
            if value.dtype != x.dtype or value.device != x.device:
                raise TypeError(f"{type(self).__name__} state.{name} is {value.dtype} on "
                                f"{value.device} but the input is {x.dtype} on {x.device}; "
                                "convert the state like the input (state._replace(...)) so "
                                "the output keeps the input's dtype.")
            if value.shape != shape:
                raise ValueError(f"{type(self).__name__} state.{name} has shape "
                                 f"{tuple(value.shape)} but one step of input is {tuple(shape)}; "
                                 "pass the state returned for this input's batch and features.")

    def extra_repr(self) -> str:
        parts = [f"{k}={v:g}" for k, v in self._physics().items()]
        v_th = "learned" if self.v_th_log is not None else f"{self._v_th:g}"
        parts += [f"v_th={v_th}", f"dt={self.dt:g}", f"reset={self.reset.value}",
                  f"surrogate={self.surrogate}"]
        if self.backend is not Backend.AUTO:
            parts.append(f"backend={self.backend.value}")
        return ", ".join(parts)

    def _physics(self) -> dict[str, float]:
        return {}


class Neuron(NeuronBase):
    """A sequence neuron: ``forward(x_seq [T, B, *F], state=None) -> (out [T, B, *F], state)``."""

    stateful: ClassVar[bool] = True

    def forward(self, x_seq: Tensor, state: NamedTuple | None = None) -> tuple[Tensor, NamedTuple]:
        start = self._start(x_seq, state)
        if self.state_quantizer is not None:
            return self._quantized_scan(x_seq, start)
        return scan(self.family, x_seq, start, self.params(), backend=self.backend, **self._kw())

    def _quantized_scan(self, x_seq: Tensor, state: NamedTuple) -> tuple[Tensor, NamedTuple]:
        """The reference loop with ``state_quantizer`` applied after every step."""
        p, kw = self.params(), self._kw()
        outs = []
        for x in x_seq.unbind(0):                    # x: [B, *F]
            out, state = self._step_fn(x, state, p, **kw)
            state = self.state_quantizer(state, p)
            outs.append(out)
        return torch.stack(outs), state              # [T, B, *F]

    def _start(self, x_seq: Tensor, state: NamedTuple | None) -> NamedTuple:
        """Check ``x_seq [T, B, *F]`` and ``state``; the state to start from."""
        if x_seq.ndim < 2 or x_seq.shape[0] == 0:
            raise ValueError(f"{type(self).__name__} takes a time-major sequence [T, B, ...] with "
                             f"T >= 1, got shape {tuple(x_seq.shape)}; use "
                             f"{type(self).__name__}Cell for one step.")
        x0 = x_seq[0].detach()
        if state is None:
            return self.init_state(x0)
        self._check_state(state, x0)
        return state


class NeuronCell(NeuronBase):
    """One step of a neuron: ``forward(x [B, *F], state=None) -> (out [B, *F], state)``."""

    def forward(self, x: Tensor, state: NamedTuple | None = None) -> tuple[Tensor, NamedTuple]:
        p = self.params()
        out, state = self._step_fn(x, self._start(x, state), p, **self._kw())
        if self.state_quantizer is not None:
            state = self.state_quantizer(state, p)
        return out, state

    def _start(self, x: Tensor, state: NamedTuple | None) -> NamedTuple:
        """Check one step's ``x [B, *F]`` and ``state``; the state to start from."""
        if state is None:
            return self.init_state(x.detach())
        self._check_state(state, x)
        return state


# ----------------------------------------------------------------------------- families

class _IF:
    family = "if"
    _step_fn = staticmethod(F.if_step)
    _state_type = F.IFState

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)

    def params(self) -> F.IFParams:
        return F.IFParams(self.v_th, self.reset, self.detach_reset)


class _LIF:
    family = "lif"
    _step_fn = staticmethod(F.lif_step)
    _state_type = F.LIFState

    def __init__(self, tau_mem: float = 20e-3, **kw: Any) -> None:
        super().__init__(**kw)
        self.tau_mem = _check_tau("tau_mem", tau_mem, self.dt)

    def params(self) -> F.LIFParams:
        return F.LIFParams(self.tau_mem, self.v_th, self.reset, self.detach_reset)

    def _physics(self) -> dict[str, float]:
        return {"tau_mem": self.tau_mem}


class _PLIF:
    family = "plif"
    _step_fn = staticmethod(F.plif_step)
    _state_type = F.LIFState

    def __init__(self, tau_mem: float = 2e-3, *, shape: tuple[int, ...] = (), **kw: Any) -> None:
        super().__init__(**kw)
        tau0 = _check_tau("tau_mem", tau_mem, self.dt)
        self.tau_raw = nn.Parameter(F.plif_raw(tau0, self.dt).expand(shape).clone())

    @property
    def tau_mem(self) -> Tensor:
        """Current membrane time constant(s) in seconds (always > dt)."""
        return F.plif_tau(self.tau_raw.detach(), self.dt)

    def params(self) -> F.PLIFParams:
        return F.PLIFParams(self.tau_raw, self.v_th, self.reset, self.detach_reset)

    def _physics(self) -> dict[str, float]:
        return {"tau_mem(mean)": float(self.tau_mem.mean())}


class _ALIF:
    family = "alif"
    _step_fn = staticmethod(F.alif_step)
    _state_type = F.ALIFState

    def __init__(self, tau_mem: float = 20e-3, tau_adapt: float = 200e-3,
                 beta_adapt: float = 1.8, **kw: Any) -> None:
        super().__init__(**kw)
        self.tau_mem = _check_tau("tau_mem", tau_mem, self.dt)
        self.tau_adapt = _check_tau("tau_adapt", tau_adapt, self.dt)
        if not (isinstance(beta_adapt, (int, float)) and beta_adapt >= 0):
            raise ValueError(f"beta_adapt must be a number >= 0, got {beta_adapt!r}")
        self.beta_adapt = float(beta_adapt)

    def params(self) -> F.ALIFParams:
        return F.ALIFParams(self.tau_mem, self.tau_adapt, self.beta_adapt, self.v_th,
                            self.reset, self.detach_reset)

    def _physics(self) -> dict[str, float]:
        return {"tau_mem": self.tau_mem, "tau_adapt": self.tau_adapt,
                "beta_adapt": self.beta_adapt}


class _LI:
    family = "li"
    spiking = False
    _step_fn = staticmethod(F.li_step)
    _state_type = F.LIState

    def __init__(self, tau_mem: float = 20e-3, *, dt: float = 1e-3) -> None:
        super().__init__(dt=dt)
        self.tau_mem = _check_tau("tau_mem", tau_mem, self.dt)

    def params(self) -> F.LIParams:
        return F.LIParams(self.tau_mem)

    def extra_repr(self) -> str:
        return f"tau_mem={self.tau_mem:g}, dt={self.dt:g}"


class IF(_IF, Neuron):
    """Integrate-and-fire, ``v = v + x``, over a sequence. See :func:`snn5.core.if_step`."""


class IFCell(_IF, NeuronCell):
    """One step of :class:`IF`."""


class LIF(_LIF, Neuron):
    """Leaky integrate-and-fire over a sequence. See :func:`snn5.core.lif_step`.

    Args:
        tau_mem: membrane time constant in seconds (> dt).
        **kw: see :class:`NeuronBase` (dt, v_th, reset, surrogate, detach_reset, learn_v_th).
    """


class LIFCell(_LIF, NeuronCell):
    """One step of :class:`LIF`."""


class PLIF(_PLIF, Neuron):
    """Parametric LIF (Fang et al., ICCV 2021): LIF with a learnable ``tau_mem`` kept > dt.

    Args:
        tau_mem: initial time constant in seconds (> dt).
        shape: shape of the learned time constant: ``()`` one per layer (the paper), or a
            feature shape for one per neuron.
    """


class PLIFCell(_PLIF, NeuronCell):
    """One step of :class:`PLIF`."""


class ALIF(_ALIF, Neuron):
    """Adaptive-threshold LIF of the LSNN (Bellec et al., NeurIPS 2018). See
    :func:`snn5.core.alif_step`. State: ``ALIFState(v, a)``."""


class ALIFCell(_ALIF, NeuronCell):
    """One step of :class:`ALIF`."""


class LI(_LI, Neuron):
    """Leaky integrator without spikes (readouts): returns the membrane trace ``[T, B, *F]``."""


class LICell(_LI, NeuronCell):
    """One step of :class:`LI`."""


for _name, _cls in {"if": IF, "lif": LIF, "plif": PLIF, "alif": ALIF, "li": LI}.items():
    NEURONS.register(_name, _cls)
