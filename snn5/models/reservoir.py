"""Liquid state machine: a random recurrent spiking E/I reservoir whose state features feed a
linear readout (Maass, Natschläger & Markram, Neural Comput. 2002).

What follows the paper: LIF neurons with ``tau_mem`` = 30 ms, 80 % excitatory / 20 % inhibitory
neurons with Dale's law, sparse random connections whose probability depends on the pair type
(the paper's ``C``: 0.3 E->E, 0.2 E->I, 0.4 I->E, 0.1 I->I, here scaled by 0.3 unless a 3-D
``grid`` with ``lambda_`` gives the paper's ``C exp(-(D / lambda)^2)``), exponentially decaying
current synapses (3 ms excitatory, 6 ms inhibitory), refractory periods of 3 ms (E) / 2 ms (I),
weights drawn around a mean per pair type, and a readout of spike trains low-pass filtered with
30 ms. What differs: static synapses instead of Markram's dynamic ones, a one-step delay
(``dt``) on every connection, gamma-distributed weights with a coefficient of variation
``weight_cv``, no noise, and (optionally) topographic input: each neuron draws its inputs around
a random centre of the input's spatial map (``input_sigma``), as cortical receptive fields do.

The physics is :mod:`snn5.core.reservoir`; this module builds the connectivity from a seed and
runs it. The weights are ``nn.Parameter``s without gradient, so a plasticity rule can write
``-dw`` into ``.grad`` and any ``torch.optim`` optimizer applies it (see
``snn5.train.plasticity.reservoir.stdp_shape``).

Example:
    >>> cfg = ReservoirConfig(n_neurons=200, bins=4, seed=0)
    >>> lsm = LiquidStateMachine(cfg, input_shape=(2, 32))   # per-step input [2, 32]
    >>> feats, state = lsm(torch.rand(50, 8, 2, 32))          # x: [T=50, B=8, 2, 32]
    >>> feats.shape                                          # [B, bins * n_neurons]
    torch.Size([8, 800])
"""

from __future__ import annotations

import math

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import Tensor, nn

from snn5.core.reservoir import (
    ReservoirOutput, ReservoirParams, ReservoirState, reservoir_features, reservoir_init,
)

__all__ = ["LiquidStateMachine", "ReservoirConfig", "build_connectivity"]


class ReservoirConfig(BaseModel):
    """The liquid: size, E/I split, constants, connectivity, input projection, readout bins.

    Times are in seconds; membrane, currents and weights in units of the threshold distance
    (``v_th = 1`` is the paper's 15 mV; a weight of 1 is a synaptic current jump that would hold
    the membrane at threshold if it lasted).

    Args:
        n_neurons: Reservoir size ``N``.
        exc_fraction: Share of excitatory neurons (the first ``round(exc_fraction N)``).
        dt: Simulation step.
        input_dt: Duration of one input step (a frame); a multiple of ``dt``. Each frame's input
            current is spread evenly over its ``input_dt / dt`` steps. ``None``: ``dt``.
        tau_mem, tau_syn_exc, tau_syn_inh: Time constants.
        t_ref_exc, t_ref_inh: Absolute refractory periods.
        v_reset, bias: Membrane after a spike; constant background current.
        p_ee, p_ei, p_ie, p_ii: Connection probabilities, presynaptic type first (``p_ei``:
            excitatory -> inhibitory). With ``lambda_`` they are the paper's ``C`` factors.
        w_ee, w_ei, w_ie, w_ii: Mean weight magnitudes per pair type (signs follow Dale's law).
        weight_cv: Coefficient of variation of the gamma-distributed weights (0: all equal).
        grid: 3-D grid ``(x, y, z)`` the neurons sit on (product ``n_neurons``), for ``lambda_``.
        lambda_: Length constant of distance-dependent connectivity on ``grid``
            (``p = C exp(-(D / lambda_)^2)``); ``None``: uniform probabilities.
        spectral_radius: Rescale the recurrent weights to this spectral radius (``None``: keep
            the weights as drawn).
        input_p: Input connection probability (at a receptive field's centre if ``input_sigma``).
        input_weight: Mean input weight (excitatory).
        input_sigma: Receptive field width in input pixels/bands over the spatial axes of the
            input (all but the first, the channels); ``None``: inputs drawn uniformly.
        bins: Readout time bins ``K``; the features are ``K * N`` bin means of the filtered
            spike trains.
        tau_readout: Readout filter time constant.
        seed: Seed of the connectivity.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_neurons: int = Field(1000, ge=2)
    exc_fraction: float = Field(0.8, ge=0.0, le=1.0)
    dt: float = Field(2e-3, gt=0)
    input_dt: float | None = Field(None, gt=0)
    tau_mem: float = Field(30e-3, gt=0)
    tau_syn_exc: float = Field(3e-3, gt=0)
    tau_syn_inh: float = Field(6e-3, gt=0)
    t_ref_exc: float = Field(3e-3, ge=0)
    t_ref_inh: float = Field(2e-3, ge=0)
    v_reset: float = 0.0
    bias: float = 0.0
    p_ee: float = Field(0.09, ge=0, le=1)
    p_ei: float = Field(0.06, ge=0, le=1)
    p_ie: float = Field(0.12, ge=0, le=1)
    p_ii: float = Field(0.03, ge=0, le=1)
    w_ee: float = Field(1.0, ge=0)
    w_ei: float = Field(2.0, ge=0)
    w_ie: float = Field(2.0, ge=0)
    w_ii: float = Field(2.0, ge=0)
    weight_cv: float = Field(0.5, ge=0)
    grid: tuple[int, int, int] | None = None
    lambda_: float | None = Field(None, gt=0)
    spectral_radius: float | None = Field(None, gt=0)
    input_p: float = Field(0.1, gt=0, le=1)
    input_weight: float = Field(2.5, ge=0)
    input_sigma: float | None = Field(None, gt=0)
    bins: int = Field(10, ge=1)
    tau_readout: float = Field(30e-3, gt=0)
    seed: int = Field(0, ge=0, lt=2**63)

    @model_validator(mode="after")
    def _consistent(self) -> ReservoirConfig:
        if self.tau_mem <= self.dt:
            raise ValueError(f"tau_mem must exceed dt={self.dt} s, got {self.tau_mem} s. Did you "
                             "pass milliseconds? 30 ms is tau_mem=30e-3.")
        if self.input_dt is not None:
            ratio = self.input_dt / self.dt
            if abs(ratio - round(ratio)) > 1e-6 or round(ratio) < 1:
                raise ValueError(f"input_dt={self.input_dt} s must be a whole multiple of dt="
                                 f"{self.dt} s (e.g. input_dt=10e-3 with dt=2e-3)")
        if self.lambda_ is not None and self.grid is None:
            raise ValueError("lambda_ needs a grid (x, y, z) with x*y*z = n_neurons, e.g. "
                             "grid=(15, 3, 3) for the paper's 135-neuron column")
        if self.grid is not None and math.prod(self.grid) != self.n_neurons:
            raise ValueError(f"grid {self.grid} holds {math.prod(self.grid)} neurons, "
                             f"n_neurons is {self.n_neurons}")
        return self

    @property
    def n_exc(self) -> int:
        """Number of excitatory neurons (indices ``0 .. n_exc - 1``)."""
        return int(round(self.exc_fraction * self.n_neurons))

    @property
    def hold(self) -> int:
        """Simulation steps per input step."""
        return 1 if self.input_dt is None else int(round(self.input_dt / self.dt))

    def params(self) -> ReservoirParams:
        """The core constants (refractory period per neuron: E first, then I)."""
        t_ref = torch.cat([torch.full((self.n_exc,), self.t_ref_exc),
                           torch.full((self.n_neurons - self.n_exc,), self.t_ref_inh)])
        return ReservoirParams(tau_mem=self.tau_mem, tau_syn_exc=self.tau_syn_exc,
                               tau_syn_inh=self.tau_syn_inh, t_ref=t_ref, v_th=1.0,
                               v_reset=self.v_reset, bias=self.bias)


def _gamma(rng: np.random.Generator, mean: np.ndarray, cv: float) -> np.ndarray:
    """Positive weights with the given means and coefficient of variation."""
    if cv == 0:
        return mean.astype(np.float64)
    shape = 1.0 / cv**2
    return rng.gamma(shape, 1.0, size=mean.shape) * mean / shape


def _input_weights(cfg: ReservoirConfig, input_shape: tuple[int, ...],
                   rng: np.random.Generator) -> np.ndarray:
    n, f_in = cfg.n_neurons, math.prod(input_shape)
    if cfg.input_sigma is None:
        prob = np.full((n, f_in), cfg.input_p)
    else:
        if len(input_shape) < 2:
            raise ValueError(f"input_sigma needs a per-step input shape (channels, *space), got "
                             f"{input_shape}; e.g. (2, 32) for ON/OFF x 32 bands")
        space = input_shape[1:]                                              # e.g. (H, W)
        centre = rng.uniform(0.0, 1.0, size=(n, len(space))) * np.array(space)  # [N, D]
        axes = np.meshgrid(*[np.arange(s) + 0.5 for s in space], indexing="ij")
        where = np.stack([a.ravel() for a in axes], axis=1)                 # [prod(space), D]
        d2 = ((centre[:, None, :] - where[None, :, :]) ** 2).sum(-1)         # [N, prod(space)]
        local = cfg.input_p * np.exp(-d2 / (2.0 * cfg.input_sigma**2))
        prob = np.tile(local, (1, input_shape[0]))                           # [N, C * space]
    mask = rng.random((n, f_in)) < prob
    w = _gamma(rng, np.full((n, f_in), cfg.input_weight), cfg.weight_cv)
    return np.where(mask, w, 0.0)


def build_connectivity(cfg: ReservoirConfig, input_shape: tuple[int, ...]
                       ) -> tuple[Tensor, Tensor, Tensor]:
    """Draw the input and recurrent weights of a liquid from ``cfg.seed``.

    Returns:
        ``(w_in [N, F], w_rec [N, N], signs [N])``: input weights (>= 0), recurrent weights in the
        ``nn.Linear`` layout with column ``j`` of sign ``signs[j]`` (+1 for the ``n_exc``
        excitatory neurons, -1 for the inhibitory ones) and no self-connections; float32.
    """
    rng = np.random.default_rng(cfg.seed)
    n, n_exc = cfg.n_neurons, cfg.n_exc
    inh = np.arange(n) >= n_exc                                              # [N] type
    # probability and mean magnitude by (post, pre) type: rows post, columns pre
    p_type = np.array([[cfg.p_ee, cfg.p_ie], [cfg.p_ei, cfg.p_ii]])
    w_type = np.array([[cfg.w_ee, cfg.w_ie], [cfg.w_ei, cfg.w_ii]])
    prob = p_type[inh[:, None].astype(int), inh[None, :].astype(int)]       # [N, N]
    if cfg.lambda_ is not None:
        pos = np.stack(np.unravel_index(rng.permutation(n), cfg.grid), axis=1)  # [N, 3]
        d2 = ((pos[:, None, :] - pos[None, :, :]) ** 2).sum(-1)
        prob = prob * np.exp(-d2 / cfg.lambda_**2)
    mask = rng.random((n, n)) < prob
    np.fill_diagonal(mask, False)
    magnitude = _gamma(rng, w_type[inh[:, None].astype(int), inh[None, :].astype(int)],
                       cfg.weight_cv)
    signs = np.where(inh, -1.0, 1.0)
    w_rec = np.where(mask, magnitude, 0.0) * signs[None, :]
    if cfg.spectral_radius is not None:
        radius = float(np.abs(np.linalg.eigvals(w_rec)).max())
        if radius == 0:
            raise ValueError("spectral_radius is set but the recurrent matrix has no nonzero "
                             "eigenvalue (no connections?); raise the p_* probabilities")
        w_rec = w_rec * (cfg.spectral_radius / radius)
    w_in = _input_weights(cfg, tuple(input_shape), rng)
    as_t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
    return as_t(w_in), as_t(w_rec), as_t(signs)


class LiquidStateMachine(nn.Module):
    """A liquid (recurrent spiking E/I reservoir) whose forward pass returns readout features.

    Args:
        cfg: The liquid (:class:`ReservoirConfig`).
        input_shape: Shape of one input step, e.g. ``(2, 32)`` (ON/OFF x mel bands) or
            ``(2, 34, 34)`` (polarity x event-camera pixels).

    Shape:
        ``x: [T, B, *input_shape]`` (input events or currents per input step of
        ``cfg.input_dt``) -> features ``[B, bins * N]``: bin ``k`` of neuron ``n`` at
        ``k * N + n``.
    """

    def __init__(self, cfg: ReservoirConfig, input_shape: tuple[int, ...]) -> None:
        super().__init__()
        if not isinstance(cfg, ReservoirConfig):
            raise TypeError(f"cfg must be a ReservoirConfig, got {type(cfg).__name__}")
        input_shape = tuple(int(d) for d in input_shape)
        if not input_shape or min(input_shape) < 1:
            raise ValueError(f"input_shape must be a non-empty shape of positive sizes, got "
                             f"{input_shape}")
        self.cfg = cfg
        self.input_shape = input_shape
        w_in, w_rec, signs = build_connectivity(cfg, input_shape)
        self.w_in = nn.Parameter(w_in, requires_grad=False)                  # [N, F]
        self.w_rec = nn.Parameter(w_rec, requires_grad=False)                # [N, N]
        self.register_buffer("signs", signs)                                 # [N] +1 E, -1 I
        self.register_buffer("mask", w_rec != 0)                             # [N, N] synapses
        self.params = cfg.params()

    @property
    def n_neurons(self) -> int:
        return self.cfg.n_neurons

    @property
    def n_exc(self) -> int:
        return self.cfg.n_exc

    @property
    def num_features(self) -> int:
        """Length of a feature vector, ``bins * N``."""
        return self.cfg.bins * self.cfg.n_neurons

    def _check_input(self, x: Tensor) -> None:
        if x.ndim != 2 + len(self.input_shape) or tuple(x.shape[2:]) != self.input_shape:
            raise ValueError(f"expected time-major input [T, B, *{self.input_shape}], got shape "
                             f"{tuple(x.shape)}; a batch [B, T, ...] from a dataset is "
                             "x.transpose(0, 1)")
        if x.shape[0] * self.cfg.hold < self.cfg.bins:
            raise ValueError(f"{x.shape[0]} input steps x {self.cfg.hold} = "
                             f"{x.shape[0] * self.cfg.hold} simulation steps cannot fill "
                             f"bins={self.cfg.bins}; lower bins or pass a longer input")

    def drive(self, x: Tensor) -> Tensor:
        """Input current per simulation step: ``[T, B, *input_shape]`` -> ``[T, B, N]``
        (``x @ w_in.T`` spread evenly over the ``hold`` steps of each input step)."""
        self._check_input(x)
        T, B = x.shape[:2]
        flat = x.reshape(T, B, -1).to(self.w_in.dtype)                       # [T, B, F]
        return (flat @ self.w_in.T) / self.cfg.hold                         # [T, B, N]

    def init_state(self, batch: int) -> ReservoirState:
        """The resting state for ``batch`` samples."""
        return reservoir_init(batch, self.n_neurons, dtype=self.w_rec.dtype,
                              device=self.w_rec.device)

    def run(self, x: Tensor, state: ReservoirState | None = None) -> ReservoirOutput:
        """Features ``[B, bins, N]``, spike counts ``[B, N]`` and the final state."""
        drive = self.drive(x)
        state = self.init_state(x.shape[1]) if state is None else state
        return reservoir_features(drive, state, self.w_rec, self.params, n_exc=self.n_exc,
                                  dt=self.cfg.dt, hold=self.cfg.hold, bins=self.cfg.bins,
                                  tau_readout=self.cfg.tau_readout)

    def forward(self, x: Tensor, state: ReservoirState | None = None
                ) -> tuple[Tensor, ReservoirState]:
        """``x: [T, B, *input_shape]`` -> ``(features [B, bins * N], final state)``."""
        out = self.run(x, state)
        return out.features.flatten(1), out.state                            # [B, K * N]

    def firing_rate(self, counts: Tensor, steps: int) -> Tensor:
        """Mean firing rate in Hz from spike ``counts`` over ``steps`` input steps."""
        return counts.mean() / (steps * self.cfg.hold * self.cfg.dt)
