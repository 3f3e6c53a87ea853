"""Recurrent spiking network of LIF and ALIF neurons (an LSNN) with a leaky-integrator readout.

The network of Bellec et al. (NeurIPS 2018; Nat. Commun. 2020), built on snn5's neuron steps:
one population of ``n_rec`` neurons, the last ``n_adaptive`` of them with an adaptive threshold
(:func:`snn5.core.neurons.alif_step`; the others are ALIF with ``beta_adapt = 0``, i.e. LIF),
driven by inputs and (optionally) by the population's own spikes of the previous step, read out
by leaky integrators (:func:`snn5.core.neurons.li_step`):

    v^t = alpha (v^{t-1} - z^{t-1} A^{t-1}) + (1 - alpha) (W_in x^t + W_rec z^{t-1})
    z^t = H(v^t - A^t),   A^t = v_th + beta_adapt a^{t-1},   a^t = rho a^{t-1} + (1 - rho) z^t
    y^t = kappa y^{t-1} + (1 - kappa) (W_out z^t + b_out)

There are no self-connections (the diagonal of ``W_rec`` is masked, as in the paper) and the
spike in the reset is not differentiated. The module is trained by BPTT (autograd through
:meth:`RecurrentSNN.forward`) or online by e-prop (:mod:`snn5.train.plasticity.eprop`, which
drives :meth:`RecurrentSNN.step`).

Example:
    >>> net = RecurrentSNN(28, 128, 10, n_adaptive=64, v_th=0.1)
    >>> y_seq, z_seq, state = net(torch.rand(28, 32, 28))     # [T=28, B=32, 28 inputs]
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn

from snn5.core.eprop import DampenedTriangle
from snn5.core.neurons import ALIFParams, ALIFState, LIParams, LIState, alif_step, decay, li_step
from snn5.core.options import Reset
from snn5.core.surrogate import Surrogate


class RecurrentState(NamedTuple):
    neuron: ALIFState                            # v, a: [B, N]
    z: Tensor                                    # [B, N] spikes of the last step
    readout: LIState                             # v: [B, K] readout membrane


class RecurrentStep(NamedTuple):
    """What one step produced (the quantities e-prop needs)."""

    z: Tensor                                    # [B, N] spikes
    v_rel: Tensor                                # [B, N] v - A before the reset (no grad)
    y: Tensor                                    # [B, K] readout


def _positive(name: str, value: float) -> float:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def _tau(name: str, tau: float, dt: float) -> float:
    tau = _positive(name, tau)
    if tau <= dt:
        raise ValueError(f"{name} must exceed dt={dt:g} s, got {tau:.3g} s. Did you pass "
                         "milliseconds? 20 ms is 20e-3.")
    return tau


class RecurrentSNN(nn.Module):
    """Recurrent LIF/ALIF network with a leaky readout: ``x [T, B, n_in] -> y [T, B, n_out]``.

    Args:
        n_in: input features per step.
        n_rec: neurons in the recurrent population.
        n_out: readout neurons.
        n_adaptive: how many of the neurons (the last ones) adapt their threshold.
        recurrent: connect the population to itself; False gives a feed-forward layer.
        dt: step in seconds.
        tau_mem: membrane time constant (s) of every neuron.
        tau_adapt: time constant (s) of the threshold adaptation.
        beta_adapt: threshold increase per unit of adaptation of the adaptive neurons (the
            paper's beta is ``(1 - exp(-dt / tau_adapt)) * beta_adapt``).
        v_th: baseline threshold.
        tau_out: time constant (s) of the readout, the paper's ``kappa = exp(-dt / tau_out)``.
        surrogate: spike surrogate; default the paper's pseudo-derivative,
            ``DampenedTriangle(width=v_th, gamma=0.3)``.
        readout_bias: give the readout neurons a bias.
        input_scale, recurrent_scale, readout_scale: initial weights are
            ``N(0, scale^2 / fan_in)``.

    Shape:
        ``forward(x_seq [T, B, n_in]) -> (y_seq [T, B, n_out], z_seq [T, B, n_rec], state)``.
    """

    def __init__(self, n_in: int, n_rec: int, n_out: int, *, n_adaptive: int = 0,
                 recurrent: bool = True, dt: float = 1e-3, tau_mem: float = 20e-3,
                 tau_adapt: float = 200e-3, beta_adapt: float = 1.8, v_th: float = 1.0,
                 tau_out: float = 20e-3, surrogate: Surrogate | None = None,
                 readout_bias: bool = True, input_scale: float = 1.0,
                 recurrent_scale: float = 1.0, readout_scale: float = 1.0) -> None:
        super().__init__()
        for name, n in (("n_in", n_in), ("n_rec", n_rec), ("n_out", n_out)):
            if not (isinstance(n, int) and n >= 1):
                raise ValueError(f"{name} must be an int >= 1, got {n!r}")
        if not (isinstance(n_adaptive, int) and 0 <= n_adaptive <= n_rec):
            raise ValueError(f"n_adaptive must be an int in [0, n_rec={n_rec}], got {n_adaptive!r}")
        self.dt = _positive("dt", dt)
        self.tau_mem = _tau("tau_mem", tau_mem, self.dt)
        self.tau_adapt = _tau("tau_adapt", tau_adapt, self.dt)
        self.tau_out = _tau("tau_out", tau_out, self.dt)
        self.v_th = _positive("v_th", v_th)
        if not (isinstance(beta_adapt, (int, float)) and beta_adapt >= 0):
            raise ValueError(f"beta_adapt must be a number >= 0, got {beta_adapt!r}")
        surrogate = DampenedTriangle(width=self.v_th) if surrogate is None else surrogate
        if not isinstance(surrogate, Surrogate):
            raise TypeError(f"surrogate must be a Surrogate object such as "
                            f"DampenedTriangle(width=v_th), got {surrogate!r}")
        if surrogate.learnable:
            raise ValueError("RecurrentSNN takes a fixed surrogate; pass learnable=False")
        self.surrogate = surrogate
        self.n_in, self.n_rec, self.n_out, self.n_adaptive = n_in, n_rec, n_out, n_adaptive
        self.w_in = nn.Parameter(torch.randn(n_rec, n_in) * (input_scale / math.sqrt(n_in)))
        if recurrent:
            w_rec = torch.randn(n_rec, n_rec) * (recurrent_scale / math.sqrt(n_rec))
            self.w_rec = nn.Parameter(w_rec.fill_diagonal_(0.0))
            self.register_buffer("rec_mask", 1.0 - torch.eye(n_rec), persistent=False)
        else:
            self.register_parameter("w_rec", None)
            self.rec_mask = None
        self.w_out = nn.Parameter(torch.randn(n_out, n_rec) * (readout_scale / math.sqrt(n_rec)))
        self.b_out = nn.Parameter(torch.zeros(n_out)) if readout_bias else None
        beta = torch.zeros(n_rec)
        beta[n_rec - n_adaptive:] = float(beta_adapt)
        self.register_buffer("beta_adapt", beta)                     # [N], 0 for LIF neurons

    # ------------------------------------------------------------------ physics
    @property
    def recurrent(self) -> bool:
        return self.w_rec is not None

    @property
    def alpha(self) -> float:
        """Membrane decay per step ``exp(-dt / tau_mem)``."""
        return decay(self.tau_mem, self.dt)

    @property
    def rho(self) -> float:
        """Adaptation decay per step ``exp(-dt / tau_adapt)``."""
        return decay(self.tau_adapt, self.dt)

    @property
    def kappa(self) -> float:
        """Readout decay per step ``exp(-dt / tau_out)``."""
        return decay(self.tau_out, self.dt)

    def neuron_params(self) -> ALIFParams:
        return ALIFParams(self.tau_mem, self.tau_adapt, self.beta_adapt, self.v_th,
                          Reset.SUBTRACT, detach_reset=True)

    def recurrent_weight(self) -> Tensor | None:
        """``W_rec`` with its diagonal held at zero (no self-connections), or None."""
        return None if self.w_rec is None else self.w_rec * self.rec_mask

    def init_state(self, batch: int, *, dtype: torch.dtype = torch.float32,
                   device: torch.device | str | None = None) -> RecurrentState:
        """The network at rest for ``batch`` sequences."""
        cells = torch.zeros(batch, self.n_rec, dtype=dtype, device=device)
        return RecurrentState(ALIFState(cells, cells.clone()), cells.clone(),
                              LIState(torch.zeros(batch, self.n_out, dtype=dtype, device=device)))

    # ------------------------------------------------------------------ steps
    def step(self, x: Tensor, state: RecurrentState, *, stop_recurrent_grad: bool = False
             ) -> tuple[RecurrentStep, RecurrentState]:
        """One step. ``x: [B, n_in]``. ``stop_recurrent_grad`` detaches the spikes sent through
        ``W_rec`` (autograd then computes e-prop's gradient, as in the authors' code)."""
        current = x @ self.w_in.t()                                  # [B, N]
        if self.w_rec is not None:
            z_prev = state.z.detach() if stop_recurrent_grad else state.z
            current = current + z_prev @ self.recurrent_weight().t()
        p = self.neuron_params()
        threshold = p.v_th + self.beta_adapt.to(x.dtype) * state.neuron.a    # as in alif_step
        z, neuron = alif_step(current, state.neuron, p, dt=self.dt, surrogate=self.surrogate)
        # v - A before the reset: alif_step leaves v - z A, so this is bitwise its spike argument
        v_rel = (neuron.v - (1.0 - z) * threshold).detach()
        drive = z @ self.w_out.t()                                   # [B, K]
        if self.b_out is not None:
            drive = drive + self.b_out
        y, readout = li_step(drive, state.readout, LIParams(self.tau_out), dt=self.dt)
        return RecurrentStep(z, v_rel, y), RecurrentState(neuron, z, readout)

    def forward(self, x_seq: Tensor, state: RecurrentState | None = None, *,
                stop_recurrent_grad: bool = False) -> tuple[Tensor, Tensor, RecurrentState]:
        """Run a sequence. Returns ``(y_seq [T, B, n_out], z_seq [T, B, n_rec], final state)``."""
        self.check_input(x_seq)
        if state is None:
            state = self.init_state(x_seq.shape[1], dtype=x_seq.dtype, device=x_seq.device)
        ys, zs = [], []
        for x in x_seq.unbind(0):                                   # x: [B, n_in]
            out, state = self.step(x, state, stop_recurrent_grad=stop_recurrent_grad)
            ys.append(out.y)
            zs.append(out.z)
        return torch.stack(ys), torch.stack(zs), state

    def check_input(self, x_seq: Tensor) -> None:
        """Fail with the fix when ``x_seq`` is not a ``[T, B, n_in]`` float sequence."""
        if not isinstance(x_seq, Tensor):
            raise TypeError(f"x_seq must be a tensor [T, B, {self.n_in}], got {type(x_seq).__name__}")
        if x_seq.ndim != 3 or x_seq.shape[0] == 0 or x_seq.shape[2] != self.n_in:
            raise ValueError(f"x_seq must be time-major [T, B, n_in={self.n_in}] with T >= 1, got "
                             f"shape {tuple(x_seq.shape)}; for batch-major data pass "
                             "x.transpose(0, 1)")
        if x_seq.dtype != self.w_in.dtype:
            raise TypeError(f"x_seq is {x_seq.dtype} but the weights are {self.w_in.dtype}; "
                            f"pass x_seq.to({self.w_in.dtype})")

    def extra_repr(self) -> str:
        return (f"n_in={self.n_in}, n_rec={self.n_rec} ({self.n_adaptive} adaptive), "
                f"n_out={self.n_out}, recurrent={self.recurrent}, tau_mem={self.tau_mem:g}, "
                f"tau_adapt={self.tau_adapt:g}, v_th={self.v_th:g}, tau_out={self.tau_out:g}, "
                f"dt={self.dt:g}, surrogate={self.surrogate}")


__all__ = ["RecurrentSNN", "RecurrentState", "RecurrentStep"]
