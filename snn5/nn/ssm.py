"""Spiking state-space layers: a diagonal (S4D) SSM, spiking neurons on its output, and a
variant gated by a spiking attention mask.

The SSM is S4D (Gu, Gupta, Goel, Ré, "On the Parameterization and Initialization of Diagonal
State Space Models", NeurIPS 2022): every channel ``h`` of ``u: [T, B, H]`` drives N complex
modes,

    x_t = Ā x_{t-1} + B̄ u_t,      y_t = 2 Re(C x_t) + D u_t,

with ``Ā = exp(Δ A)`` and ``B̄ = (Ā - 1) / A`` (zero-order hold, ``B = 1``), ``A = -exp(a) + iπn``
(S4D-Lin) and ``Δ`` learned per channel. Over a whole sequence the output is the causal
convolution of ``u`` with the kernel ``K_l = 2 Re(C B̄ Ā^l)`` (computed in parallel by FFT)
plus the response to the initial state; :class:`DiagonalSSM` returns the final state, so a
stream split in chunks gives the same outputs.

The spiking layers follow SpikingSSMs (Shen et al., "SpikingSSMs: Learning Long Sequences with
Sparse and Parallel Spiking State Space Models", AAAI 2025, arXiv 2408.14909): the SSM output is
the input current of spiking neurons, whose spikes feed a pointwise Linear, so the synaptic
computation is sparse. Deviation: the neurons are the model's ordinary LIF/IF neurons run step
by step, not the paper's surrogate dynamic network that predicts the reset membrane in parallel.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from snn5.nn.attention import NeuronFactory, TokenBatchNorm, _act


class SSMState(NamedTuple):
    """State of a :class:`DiagonalSSM`."""

    x: Tensor                                     # [B, H, N] complex modes


class DiagonalSSM(nn.Module):
    """S4D diagonal state-space model over ``u: [T, B, H]``, channel by channel.

    Args:
        channels: H.
        modes: N complex modes per channel.
        dt_min, dt_max: range of the initial step ``Δ`` (log-uniform; in units of the
            continuous-time dynamics of ``A``, as in S4D).

    Shape:
        ``u: [T, B, H] -> (y [T, B, H], SSMState(x [B, H, N]))``.

    Example:
        >>> ssm = DiagonalSSM(32, modes=16)
        >>> y, state = ssm(u)                      # u: [T, B, 32]
        >>> y2, state = ssm(u_next, state)         # continue the stream
    """

    stateful = True

    def __init__(self, channels: int, modes: int = 16, *, dt_min: float = 1e-3,
                 dt_max: float = 1e-1) -> None:
        super().__init__()
        if channels < 1 or modes < 1:
            raise ValueError(f"channels and modes must be >= 1, got {channels}, {modes}")
        if not 0 < dt_min <= dt_max:
            raise ValueError(f"need 0 < dt_min <= dt_max, got {dt_min}, {dt_max}")
        self.channels, self.modes = int(channels), int(modes)
        u = torch.rand(channels)
        self.log_dt = nn.Parameter(math.log(dt_min) + u * (math.log(dt_max) - math.log(dt_min)))
        self.log_a_real = nn.Parameter(torch.full((channels, modes), math.log(0.5)))
        self.a_imag = nn.Parameter(math.pi * torch.arange(modes).float().expand(channels, -1)
                                   .clone())
        self.c_real = nn.Parameter(torch.randn(channels, modes) * math.sqrt(0.5))
        self.c_imag = nn.Parameter(torch.randn(channels, modes) * math.sqrt(0.5))
        self.d = nn.Parameter(torch.randn(channels))

    def discretize(self) -> tuple[Tensor, Tensor, Tensor]:
        """``(Ā, B̄, C)``, each ``[H, N]`` complex (zero-order hold)."""
        a = torch.complex(-torch.exp(self.log_a_real), self.a_imag)      # [H, N]
        dt_a = a * torch.exp(self.log_dt)[:, None]                       # [H, N]
        a_bar = torch.exp(dt_a)
        b_bar = (a_bar - 1) / a
        return a_bar, b_bar, torch.complex(self.c_real, self.c_imag)

    def kernel(self, length: int) -> Tensor:
        """``K: [H, length]``, ``K_l = 2 Re(C B̄ Ā^l)``: the response to a unit input at step 0."""
        a_bar, b_bar, c = self.discretize()
        steps = torch.arange(length, device=a_bar.device)
        powers = torch.exp(torch.log(a_bar)[..., None] * steps)           # [H, N, L] Ā^l
        return 2 * torch.einsum("hn,hnl->hl", c * b_bar, powers).real

    def init_state(self, u0: Tensor) -> SSMState:
        """Resting state for one step's input ``u0: [B, H]``."""
        dtype = torch.complex128 if u0.dtype == torch.float64 else torch.complex64
        return SSMState(torch.zeros(u0.shape[0], self.channels, self.modes, dtype=dtype,
                                    device=u0.device))

    def forward(self, u: Tensor, state: SSMState | None = None) -> tuple[Tensor, SSMState]:
        if u.ndim != 3 or u.shape[-1] != self.channels:
            raise ValueError(f"DiagonalSSM takes [T, B, {self.channels}], got {tuple(u.shape)}; "
                             "flatten the per-step features and project them to the channels")
        T, B, H = u.shape
        if state is None:
            state = self.init_state(u[0])
        elif state.x.shape != (B, H, self.modes):
            raise ValueError(f"SSM state has shape {tuple(state.x.shape)}, expected "
                             f"{(B, H, self.modes)}; pass the state returned for this batch")
        a_bar, b_bar, c = self.discretize()
        log_a = torch.log(a_bar)
        steps = torch.arange(T + 1, device=u.device)
        powers = torch.exp(log_a[..., None] * steps)                     # [H, N, T+1] Ā^l
        k = 2 * torch.einsum("hn,hnl->hl", c * b_bar, powers[..., :T]).real   # [H, T] kernel
        # zero-state response: causal convolution of u with K along time (FFT, length 2T)
        u_f = torch.fft.rfft(u.permute(1, 2, 0), n=2 * T)               # [B, H, T+1] spectrum
        k_f = torch.fft.rfft(k, n=2 * T)                                 # [H, T+1]
        y = torch.fft.irfft(u_f * k_f, n=2 * T)[..., :T]                 # [B, H, T]
        y = y.permute(2, 0, 1).to(u.dtype)                               # [T, B, H]
        x0 = state.x.to(powers.dtype)                                    # [B, H, N]
        y = y + 2 * torch.einsum("hn,hnt,bhn->tbh", c, powers[..., 1:], x0).real   # from x0
        y = y + self.d * u
        # final state: Ā^T x0 + sum_l Ā^(T-1-l) B̄ u_l
        x_t = powers[..., T] * x0 + b_bar * torch.einsum(
            "hnl,lbh->bhn", powers[..., :T].flip(-1), u.to(powers.dtype))
        return y.to(u.dtype), SSMState(x_t)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, modes={self.modes}"


class SpikingSSMLayer(nn.Module):
    """``x -> SSM -> SN -> Linear -> BN -> SN``: an S4D mixer over time whose output drives
    spiking neurons, then a pointwise (spike-driven) Linear across channels.

    Args:
        channels: H.
        modes: SSM modes per channel.
        neuron: factory of the spiking neurons (ReLU in an ANN twin).

    Shape:
        ``x: [T, B, H] -> ([T, B, H] spikes, state)``; state: ``(ssm, sn, out_sn)``.
    """

    stateful = True
    _n_states = 3

    def __init__(self, channels: int, modes: int, neuron: NeuronFactory, *,
                 dt_min: float = 1e-3, dt_max: float = 1e-1) -> None:
        super().__init__()
        self.ssm = DiagonalSSM(channels, modes, dt_min=dt_min, dt_max=dt_max)
        self.sn = neuron()
        self.linear = nn.Linear(channels, channels, bias=False)
        self.bn = TokenBatchNorm(channels)
        self.out_sn = neuron()

    def _mix(self, x: Tensor, state: tuple[Any, ...]) -> tuple[Tensor, list[Any]]:
        y, s_ssm = self.ssm(x, state[0])                 # [T, B, H] current
        z, s_sn = _act(self.sn, y, state[1])             # [T, B, H] spikes
        return z, [s_ssm, s_sn]

    def forward(self, x: Tensor, state: tuple[Any, ...] | None = None
                ) -> tuple[Tensor, tuple[Any, ...]]:
        n = self._n_states
        state = (None,) * n if state is None else tuple(state)
        if len(state) != n:
            raise ValueError(f"{type(self).__name__} state has {n} entries; pass the state "
                             "this layer returned")
        z, states = self._mix(x, state)
        out, s_out = _act(self.out_sn, self.bn(self.linear(z)), state[-1])   # [T, B, H]
        return out, (*states, s_out)


class AttentionSpikingSSMLayer(SpikingSSMLayer):
    """:class:`SpikingSSMLayer` with a spiking attention gate: the SSM's spikes pass only where
    a gate neuron driven by the layer input fires,

        z = SN(SSM(x)) ⊗ SN(BN(W_g x)),

    a mask as in spike-driven attention (Yao et al., NeurIPS 2023): the input decides, step by
    step and channel by channel, which of the sequence-mixed features go on. This layer is
    snn5's design (no single paper); its state adds the gate neuron's.
    """

    _n_states = 4

    def __init__(self, channels: int, modes: int, neuron: NeuronFactory, *,
                 dt_min: float = 1e-3, dt_max: float = 1e-1) -> None:
        super().__init__(channels, modes, neuron, dt_min=dt_min, dt_max=dt_max)
        self.gate_linear = nn.Linear(channels, channels, bias=False)
        self.gate_bn = TokenBatchNorm(channels)
        self.gate_sn = neuron()

    def _mix(self, x: Tensor, state: tuple[Any, ...]) -> tuple[Tensor, list[Any]]:
        z, states = super()._mix(x, state)
        g, s_gate = _act(self.gate_sn, self.gate_bn(self.gate_linear(x)), state[2])
        return z * g, [*states, s_gate]                  # [T, B, H] masked spikes


__all__ = ["AttentionSpikingSSMLayer", "DiagonalSSM", "SSMState", "SpikingSSMLayer"]
