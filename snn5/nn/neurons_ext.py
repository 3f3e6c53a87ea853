"""Neuron modules of the surrogate-gradient track: thin shells over :mod:`snn5.core.neurons_ext`.

Each family is a sequence module and a Cell twin, registered in :data:`snn5.nn.NEURONS` (so
YAML ``kind: glif`` etc. builds them and the neuron contract suite runs them):

=================  ===================  ========================================================
kind               module               paper
=================  ===================  ========================================================
``glif``           :class:`GLIF`        Yao et al., NeurIPS 2022 (gated leak/integration/reset)
``tc_lif``         :class:`TCLIF`       Zhang et al., AAAI 2024 (two compartments)
``el_lif``         :class:`ELLIF`       Xu et al., NeurIPS 2024 (FEEL-SNN evolutionary leak)
``int_lif``        :class:`IntLIF`      Luo et al., ECCV 2024 (integer training, binary inference)
``refractory_lif`` :class:`RefractoryLIF`  own formulation (dynamic refractory period)
=================  ===================  ========================================================

None has a fused kernel: ``Backend.AUTO`` runs the core reference, and ``backend='cpu'`` or
``'triton'`` is refused with the reason.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from snn5.core import neurons as F
from snn5.core import neurons_ext as X
from snn5.nn.neurons import NEURONS, Neuron, NeuronCell, _check_tau


def _learned(shape: tuple[int, ...], value: float | Tensor) -> nn.Parameter:
    """A float32 parameter of ``shape`` (``()``: one per layer) filled with ``value``."""
    return nn.Parameter(torch.as_tensor(value, dtype=torch.float32).expand(shape).clone())


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def _check_unit_open(name: str, value: float) -> float:
    if not (isinstance(value, (int, float)) and 0.0 < value < 1.0):
        raise ValueError(f"{name} must lie in (0, 1), got {value!r}")
    return float(value)


def _check_non_negative(name: str, value: float) -> float:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    return float(value)


# ----------------------------------------------------------------------------- families

class _GLIF:
    family = "glif"
    _step_fn = staticmethod(X.glif_step)
    _state_type = X.GLIFState

    def __init__(self, tau_mem: float = 20e-3, *, shape: tuple[int, ...] = (),
                 gate_init: float = 0.5, linear_leak: float = 0.0625,
                 reset_potential: float = 0.5, conductance: float = 0.5, **kw: Any) -> None:
        super().__init__(**kw)
        tau0 = _check_tau("tau_mem", tau_mem, self.dt)
        gate = _logit(_check_unit_open("gate_init", gate_init))
        self.tau_raw = _learned(shape, _logit(math.exp(-self.dt / tau0)))
        self.leak_gate = _learned(shape, gate)
        self.integ_gate = _learned(shape, gate)
        self.reset_gate = _learned(shape, gate)
        self.linear_leak = _learned(shape, _logit(_check_unit_open("linear_leak", linear_leak)))
        self.reset_potential = _learned(
            shape, _logit(_check_unit_open("reset_potential", reset_potential)))
        self.conductance = _learned(shape, _logit(_check_unit_open("conductance", conductance)))

    @property
    def tau_mem(self) -> Tensor:
        """Current membrane time constant(s) in seconds: ``-dt / log(sigmoid(tau_raw))``
        (``inf`` when the decay rounds to 1)."""
        return self.dt / torch.nn.functional.softplus(-self.tau_raw.detach())

    def gates(self) -> dict[str, Tensor]:
        """The current values in (0, 1): the gates alpha (leak), beta (integration), gamma
        (reset), and the conductance, linear leak E_L and soft-reset potential V_R."""
        return {name: torch.sigmoid(getattr(self, name).detach())
                for name in ("leak_gate", "integ_gate", "reset_gate", "conductance",
                             "linear_leak", "reset_potential")}

    def params(self) -> X.GLIFParams:
        return X.GLIFParams(self.tau_raw, self.leak_gate, self.integ_gate, self.reset_gate,
                            self.linear_leak, self.reset_potential, self.conductance, self.v_th,
                            self.reset, self.detach_reset)

    def _physics(self) -> dict[str, float]:
        return {"tau_mem(mean)": float(self.tau_mem.mean())}


class _TCLIF:
    family = "tc_lif"
    _step_fn = staticmethod(X.tclif_step)
    _state_type = X.TCLIFState

    def __init__(self, coupling_sd: float = 0.5, coupling_ds: float = 0.5, *,
                 dendrite_reset: float = 0.5, shape: tuple[int, ...] = (), **kw: Any) -> None:
        super().__init__(**kw)
        self.coupling_sd_raw = _learned(shape, _logit(_check_unit_open("coupling_sd", coupling_sd)))
        self.coupling_ds_raw = _learned(shape, _logit(_check_unit_open("coupling_ds", coupling_ds)))
        self.dendrite_reset = _check_non_negative("dendrite_reset", dendrite_reset)

    def couplings(self) -> tuple[Tensor, Tensor]:
        """``(beta_1 in (-1, 0), beta_2 in (0, 1))``: soma->dendrite and dendrite->soma."""
        return -torch.sigmoid(self.coupling_sd_raw.detach()), torch.sigmoid(
            self.coupling_ds_raw.detach())

    def params(self) -> X.TCLIFParams:
        return X.TCLIFParams(self.coupling_sd_raw, self.coupling_ds_raw, self.dendrite_reset,
                             self.v_th, self.reset, self.detach_reset)

    def _physics(self) -> dict[str, float]:
        return {"dendrite_reset": self.dendrite_reset}


class _ELLIF:
    family = "el_lif"
    _step_fn = staticmethod(X.el_lif_step)
    _state_type = X.ELLIFState

    def __init__(self, tau_mem: float = 20e-3, *, leak_steps: int = 1,
                 shape: tuple[int, ...] = (), **kw: Any) -> None:
        kw.setdefault("reset", "zero")                  # the paper's hard reset
        super().__init__(**kw)
        tau0 = _check_tau("tau_mem", tau_mem, self.dt)
        if isinstance(leak_steps, bool) or not isinstance(leak_steps, int) or leak_steps < 1:
            raise ValueError(f"leak_steps is the number of learned per-step leaks (the paper "
                             f"uses the model's T), an int >= 1, got {leak_steps!r}")
        self.leak = _learned((leak_steps, *shape), math.exp(-self.dt / tau0))

    def decay(self, step: int) -> Tensor:
        """The leak this neuron applies at time step ``step`` (0-based)."""
        return self.leak.detach()[min(step, self.leak.shape[0] - 1)]

    def params(self) -> X.ELLIFParams:
        return X.ELLIFParams(self.leak, self.v_th, self.reset, self.detach_reset)


class _IntLIF:
    family = "int_lif"
    _step_fn = staticmethod(X.int_lif_step)
    _state_type = F.LIFState

    def __init__(self, tau_mem: float = 20e-3, max_spike: int = 4, *,
                 spike_driven: bool = False, **kw: Any) -> None:
        super().__init__(**kw)
        self.tau_mem = _check_tau("tau_mem", tau_mem, self.dt)
        if isinstance(max_spike, bool) or not isinstance(max_spike, int) or max_spike < 1:
            raise ValueError(f"max_spike is the largest integer spike D, an int >= 1, got "
                             f"{max_spike!r}")
        self.max_spike = max_spike
        self.spike_driven = bool(spike_driven)

    def params(self) -> X.IntLIFParams:
        return X.IntLIFParams(self.tau_mem, self.max_spike, self.v_th, self.reset,
                              self.detach_reset)

    def _physics(self) -> dict[str, float]:
        return {"tau_mem": self.tau_mem, "max_spike": self.max_spike}


class _RefractoryLIF:
    family = "refractory_lif"
    _step_fn = staticmethod(X.refractory_lif_step)
    _state_type = X.RefractoryLIFState

    def __init__(self, tau_mem: float = 20e-3, t_ref: float = 2e-3, ref_gain: float = 1.0,
                 tau_adapt: float = 100e-3, **kw: Any) -> None:
        super().__init__(**kw)
        self.tau_mem = _check_tau("tau_mem", tau_mem, self.dt)
        self.tau_adapt = _check_tau("tau_adapt", tau_adapt, self.dt)
        self.t_ref = _check_non_negative("t_ref", t_ref)
        self.ref_gain = _check_non_negative("ref_gain", ref_gain)

    def params(self) -> X.RefractoryLIFParams:
        return X.RefractoryLIFParams(self.tau_mem, self.t_ref, self.ref_gain, self.tau_adapt,
                                     self.v_th, self.reset, self.detach_reset)

    def _physics(self) -> dict[str, float]:
        return {"tau_mem": self.tau_mem, "t_ref": self.t_ref, "ref_gain": self.ref_gain,
                "tau_adapt": self.tau_adapt}


# ----------------------------------------------------------------------------- public classes

class GLIF(_GLIF, Neuron):
    """Gated LIF (Yao et al., NeurIPS 2022). State: ``GLIFState(v, z)``.
    See :func:`snn5.core.neurons_ext.glif_step`.

    Args:
        tau_mem: initial membrane time constant in seconds (> dt): the exponential decay
            ``sigmoid(tau_raw)`` starts at ``exp(-dt / tau_mem)``; learned.
        shape: shape of every learned parameter: ``()`` one per layer, ``(C, 1, 1)`` one per
            channel of ``[T, B, C, H, W]`` input (the paper's channel-wise gating).
        gate_init: initial value of the three gates, in (0, 1).
        linear_leak: initial linear leak E_L (potential lost per step), in (0, 1).
        reset_potential: initial soft-reset potential V_R, in (0, 1).
        conductance: initial input conductance, in (0, 1).
        **kw: see :class:`snn5.nn.NeuronBase`.
    """


class GLIFCell(_GLIF, NeuronCell):
    """One step of :class:`GLIF`."""


class TCLIF(_TCLIF, Neuron):
    """Two-compartment LIF (Zhang et al., AAAI 2024). State: ``TCLIFState(v_d, v_s)``.
    The paper: ``coupling_sd = coupling_ds = 0.5``, ``dendrite_reset = 0.5``, subtract reset.
    See :func:`snn5.core.neurons_ext.tclif_step`.

    Args:
        coupling_sd: initial ``|beta_1|`` (soma -> dendrite, inhibitory), in (0, 1).
        coupling_ds: initial ``beta_2`` (dendrite -> soma), in (0, 1).
        dendrite_reset: potential removed from the dendrite by a spike (gamma), >= 0.
        shape: shape of the learned couplings (``()`` per layer).
    """


class TCLIFCell(_TCLIF, NeuronCell):
    """One step of :class:`TCLIF`."""


class ELLIF(_ELLIF, Neuron):
    """LIF with a learned leak per time step (FEEL-SNN's evolutionary leak, Xu et al.,
    NeurIPS 2024). State: ``ELLIFState(v, step)``. See :func:`snn5.core.neurons_ext.el_lif_step`.

    Args:
        tau_mem: time constant (s, > dt); every leak starts at ``exp(-dt / tau_mem)``.
        leak_steps: number of learned leaks, one per time step (the paper: the model's T);
            later steps reuse the last one. 1 (default): one leak for every step.
        shape: shape of the leak of one step: ``()`` one per layer; the paper learns one per
            neuron (``(C, H, W)``).
        **kw: see :class:`snn5.nn.NeuronBase`; ``reset`` defaults to ``zero`` (the paper).
    """


class ELLIFCell(_ELLIF, NeuronCell):
    """One step of :class:`ELLIF`."""


class IntLIF(_IntLIF, Neuron):
    """Integer-spike LIF: integer spikes ``0..max_spike`` in training, binary sub-steps at
    spike-driven inference. See :func:`snn5.core.neurons_ext.int_lif_step`.

    ``forward`` returns integer spikes ``[T, B, *F]`` in every mode, so a model keeps its T
    steps. With ``spike_driven=True`` and the module in eval mode, ``forward`` instead returns
    the binary form ``[T * D, B, *F]`` (D = ``max_spike`` sub-steps per step, see
    :func:`snn5.core.neurons_ext.int_lif_binary_scan`): the spike count of the D sub-steps of
    step t equals the integer spike of training mode at step t, and the final state is equal.
    Stateful layers after a spike-driven IntLIF see T * D steps, so use it at the boundary to
    spike-driven hardware, not inside a model that is evaluated as trained.

    Args:
        tau_mem: membrane time constant in seconds (> dt).
        max_spike: D, the largest integer spike (>= 1).
        spike_driven: emit the binary sub-step form in eval mode.
    """

    def forward(self, x_seq: Tensor, state: NamedTuple | None = None) -> tuple[Tensor, NamedTuple]:
        if self.spike_driven and not self.training:
            return X.int_lif_binary_scan(x_seq, self._start(x_seq, state), self.params(),
                                         **self._kw())
        return super().forward(x_seq, state)

    def binary(self, x_seq: Tensor, state: NamedTuple | None = None) -> tuple[Tensor, NamedTuple]:
        """The binary sub-step form ``([T * D, B, *F], state)`` whatever the mode."""
        return X.int_lif_binary_scan(x_seq, self._start(x_seq, state), self.params(),
                                     **self._kw())


class IntLIFCell(_IntLIF, NeuronCell):
    """One step of :class:`IntLIF` (spike-driven in eval mode: ``[D, B, *F]`` binary)."""

    def forward(self, x: Tensor, state: NamedTuple | None = None) -> tuple[Tensor, NamedTuple]:
        if self.spike_driven and not self.training:
            return X.int_lif_binary_step(x, self._start(x, state), self.params(), **self._kw())
        return super().forward(x, state)


class RefractoryLIF(_RefractoryLIF, Neuron):
    """LIF with a dynamic refractory period (own formulation; see
    :func:`snn5.core.neurons_ext.refractory_lif_step`). State:
    ``RefractoryLIFState(v, a, ref)``.

    Args:
        tau_mem: membrane time constant in seconds (> dt).
        t_ref: refractory time in seconds at zero activity (>= 0), rounded up to whole steps.
        ref_gain: relative growth of the refractory time per unit of recent activity (>= 0).
        tau_adapt: time constant of the activity trace in seconds (> dt).
    """


class RefractoryLIFCell(_RefractoryLIF, NeuronCell):
    """One step of :class:`RefractoryLIF`."""


for _name, _cls in {"glif": GLIF, "tc_lif": TCLIF, "el_lif": ELLIF, "int_lif": IntLIF,
                    "refractory_lif": RefractoryLIF}.items():
    NEURONS.register(_name, _cls)

__all__ = ["ELLIF", "GLIF", "ELLIFCell", "GLIFCell", "IntLIF", "IntLIFCell", "RefractoryLIF",
           "RefractoryLIFCell", "TCLIF", "TCLIFCell"]
