"""Attention for SNNs: spiking self-attention (SSA, SDSA), temporal attention (TA, DTA) and the
attention-based SNN-to-ANN bridge of a hybrid network.

Token mixers (time-major tokens ``[T, B, N, D]``):

- :class:`SpikingSelfAttention` (SSA; Zhou et al., "Spikformer: When Spiking Neural Network
  Meets Transformer", ICLR 2023): ``Q, K, V`` are spike tensors (Linear-BN-SN each); the
  attention is ``SN(Q K^T V * scale)`` with no softmax (the product of non-negative spikes needs
  no normalising), then a Linear-BN-SN projection.
- :class:`SpikeDrivenSelfAttention` (SDSA; Yao et al., "Spike-driven Transformer", NeurIPS
  2023): ``Q ⊗ SN(SUM_c(K ⊗ V))``: a Hadamard mask ``K ⊗ V``, a column sum over the tokens, a
  spiking neuron and a second mask by ``Q``; only masks and additions, linear in ``N`` and ``D``.

Temporal attention over ``[T, B, C, ...]`` (stateless, but it sees the whole window; it
rescales currents, so place it before a neuron):

- :class:`TemporalAttention` (TA; Yao et al., "Temporal-wise Attention Spiking Neural Networks
  for Event Streams Classification", ICCV 2021): per-step weights from squeezed activity.
- :class:`DualTemporalChannelAttention` (DTA-style; Kim, Kim, Yang, "DTA: Dual
  Temporal-channel-wise Attention for Spiking Neural Networks", WACV 2025, arXiv 2503.10052).

Bridge: :class:`AttentionBridge` (Ahmed, Finkbeiner, Neftci, "Efficient Event-Based Object
Detection: A Hybrid Neural Network with Spatial and Temporal Attention", CVPR 2025, arXiv
2403.10173): spikes ``[T, B, C, H, W]`` -> one dense map ``[1, B, C, H, W]``.

The spike-by-spike products run in :class:`SpikeMatmul` / :class:`MaskedTokenSum`, small
modules so that :class:`snn5.metrics.OpCounter` sees their operands and counts the additions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from snn5.core.options import Option
from snn5.nn.layers import is_stateful

NeuronFactory = Callable[..., nn.Module]
"""``factory(v_th=None) -> module``: a fresh spiking neuron (or ReLU in an ANN twin); ``v_th``
overrides the threshold where a layer needs its own (the attention neurons)."""


class SelfAttention(Option):
    """Token mixer of a spiking transformer: SSA (Spikformer) or SDSA (Spike-driven Transformer)."""

    SSA = "ssa"
    SDSA = "sdsa"


class TemporalAttentionKind(Option):
    """Temporal attention inserted before a neuron: none, TA (TA-SNN) or DTA (dual
    temporal-channel)."""

    NONE = "none"
    TA = "ta"
    DTA = "dta"


def _act(module: nn.Module, x: Tensor, state: Any) -> tuple[Tensor, Any]:
    """A neuron (stateful) or the ANN twin's ReLU (stateless)."""
    if is_stateful(module):
        return module(x, state)
    return module(x), None


class TokenBatchNorm(nn.BatchNorm1d):
    """BatchNorm over the last (feature) axis of ``[..., D]``: statistics over every other axis
    (time, batch, tokens), as Spikformer's BN after each Linear."""

    def forward(self, x: Tensor) -> Tensor:
        y = super().forward(x.reshape(-1, x.shape[-1]))   # [T*B*N, D]
        return y.view(x.shape)                             # [T, B, N, D]


class SpikeMatmul(nn.Module):
    """``a @ b`` as a module (no parameters), so operation counters see both operands."""

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return a @ b


class MaskedTokenSum(nn.Module):
    """``SUM_c(K ⊗ V)``: the Hadamard mask of ``k`` and ``v: [..., N, d]`` summed over the
    tokens ``N`` -> ``[..., 1, d]``. With spikes, one addition per surviving (both-1) entry."""

    def forward(self, k: Tensor, v: Tensor) -> Tensor:
        return (k * v).sum(dim=-2, keepdim=True)


class _QKVAttention(nn.Module):
    """Q, K, V projections (Linear-BN-SN), the mixer of the subclass, an output projection."""

    stateful = True
    _neurons = ("q", "k", "v", "mix", "proj")

    def __init__(self, dim: int, heads: int, neuron: NeuronFactory, *,
                 attn_v_th: float = 0.5) -> None:
        super().__init__()
        if dim < 1 or heads < 1 or dim % heads:
            raise ValueError(f"dim ({dim}) must be a positive multiple of heads ({heads}); "
                             "choose embed_dim divisible by heads")
        self.dim, self.heads = dim, heads
        for name in ("q", "k", "v", "proj"):
            setattr(self, f"{name}_linear", nn.Linear(dim, dim, bias=False))
            setattr(self, f"{name}_bn", TokenBatchNorm(dim))
            setattr(self, f"{name}_sn", neuron())
        self.mix_sn = neuron(v_th=attn_v_th)

    def _branch(self, name: str, x: Tensor, state: Any) -> tuple[Tensor, Any]:
        y = getattr(self, f"{name}_bn")(getattr(self, f"{name}_linear")(x))   # [T, B, N, D]
        return _act(getattr(self, f"{name}_sn"), y, state)

    def _heads(self, x: Tensor) -> Tensor:
        T, B, N, _ = x.shape
        return x.view(T, B, N, self.heads, -1).transpose(2, 3)    # [T, B, h, N, d]

    def forward(self, x: Tensor, state: tuple[Any, ...] | None = None
                ) -> tuple[Tensor, tuple[Any, ...]]:
        if x.ndim != 4 or x.shape[-1] != self.dim:
            raise ValueError(f"{type(self).__name__} takes tokens [T, B, N, {self.dim}], got "
                             f"{tuple(x.shape)}")
        state = (None,) * 5 if state is None else tuple(state)
        if len(state) != 5:
            raise ValueError(f"{type(self).__name__} state has one entry per neuron "
                             f"{self._neurons}; pass the state this module returned")
        T, B, N, D = x.shape
        q, s_q = self._branch("q", x, state[0])
        k, s_k = self._branch("k", x, state[1])
        v, s_v = self._branch("v", x, state[2])
        y, s_mix = self._mix(self._heads(q), self._heads(k), self._heads(v), state[3])
        y = y.transpose(2, 3).reshape(T, B, N, D)                   # [T, B, N, D] heads merged
        out, s_proj = self._branch("proj", y, state[4])
        return out, (s_q, s_k, s_v, s_mix, s_proj)

    def _mix(self, q: Tensor, k: Tensor, v: Tensor, state: Any) -> tuple[Tensor, Any]:
        raise NotImplementedError


class SpikingSelfAttention(_QKVAttention):
    """Spikformer's SSA: ``SN(Q K^T V * scale)`` on spike ``Q, K, V``, no softmax.

    Args:
        dim: token features D (divisible by ``heads``).
        heads: attention heads.
        neuron: factory of the spiking neurons (see :data:`NeuronFactory`).
        scale: the fixed scale of the paper (0.125), folded before the attention neuron.
        attn_v_th: threshold of the attention neuron (the paper uses 0.5).

    Shape:
        ``x: [T, B, N, D] -> ([T, B, N, D] spikes, state)``; state: the five neuron states.
    """

    def __init__(self, dim: int, heads: int, neuron: NeuronFactory, *, scale: float = 0.125,
                 attn_v_th: float = 0.5) -> None:
        super().__init__(dim, heads, neuron, attn_v_th=attn_v_th)
        self.scale = float(scale)
        self.qk = SpikeMatmul()
        self.av = SpikeMatmul()

    def _mix(self, q: Tensor, k: Tensor, v: Tensor, state: Any) -> tuple[Tensor, Any]:
        attn = self.qk(q, k.transpose(-2, -1))          # [T, B, h, N, N] integer overlaps
        y = self.av(attn, v) * self.scale                # [T, B, h, N, d]
        return _act(self.mix_sn, y, state)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, heads={self.heads}, scale={self.scale:g}"


class SpikeDrivenSelfAttention(_QKVAttention):
    """SDSA of the Spike-driven Transformer: ``Q ⊗ SN(SUM_c(K ⊗ V))``.

    ``K ⊗ V`` masks V by K, ``SUM_c`` sums each column over the N tokens (one ``[1, d]`` vector
    per head), a spiking neuron (threshold ``attn_v_th``, 0.5 in the paper) binarises it over
    time, and Q masks the result: every token keeps the channels that both it and the summary
    fire on.

    Args and Shape as :class:`SpikingSelfAttention` (no ``scale``).
    """

    def __init__(self, dim: int, heads: int, neuron: NeuronFactory, *,
                 attn_v_th: float = 0.5) -> None:
        super().__init__(dim, heads, neuron, attn_v_th=attn_v_th)
        self.kv = MaskedTokenSum()

    def _mix(self, q: Tensor, k: Tensor, v: Tensor, state: Any) -> tuple[Tensor, Any]:
        kv = self.kv(k, v)                               # [T, B, h, 1, d] column sums
        kv, s = _act(self.mix_sn, kv, state)             # [T, B, h, 1, d] spikes
        return q * kv, s                                 # [T, B, h, N, d] mask of Q

    def extra_repr(self) -> str:
        return f"dim={self.dim}, heads={self.heads}"


def build_self_attention(kind: SelfAttention | str, dim: int, heads: int,
                         neuron: NeuronFactory) -> _QKVAttention:
    """The token mixer ``kind`` (``ssa`` or ``sdsa``)."""
    if SelfAttention.parse(kind) is SelfAttention.SSA:
        return SpikingSelfAttention(dim, heads, neuron)
    return SpikeDrivenSelfAttention(dim, heads, neuron)


# ----------------------------------------------------------------------------- temporal

def _check_steps(module: nn.Module, x: Tensor, timesteps: int) -> None:
    if x.ndim < 3 or x.shape[0] != timesteps:
        raise ValueError(f"{type(module).__name__} was built for T={timesteps} steps "
                         f"[T, B, C, ...], got {tuple(x.shape)}; build it with the model's "
                         "timesteps (event data: the number of frames)")


class TemporalAttention(nn.Module):
    """TA-SNN: weight each step of ``x: [T, B, *F]`` by ``sigmoid(MLP(avg) + MLP(max))``.

    The squeeze pools every feature of a step (average and maximum); a shared two-layer MLP
    ``T -> T / reduction -> T`` scores the steps; the score rescales the step (Yao et al., ICCV
    2021). Deviation: the paper's inference-time dropping of low-score frames is not applied.

    Args:
        timesteps: T.
        reduction: the MLP's reduction ratio r.
    """

    def __init__(self, timesteps: int, reduction: int = 4) -> None:
        super().__init__()
        if timesteps < 1 or reduction < 1:
            raise ValueError(f"timesteps and reduction must be >= 1, got {timesteps}, {reduction}")
        self.timesteps = int(timesteps)
        hidden = max(1, timesteps // reduction)
        self.mlp = nn.Sequential(nn.Linear(timesteps, hidden, bias=False), nn.ReLU(),
                                 nn.Linear(hidden, timesteps, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        _check_steps(self, x, self.timesteps)
        flat = x.flatten(2)                                       # [T, B, F]
        avg, top = flat.mean(-1).t(), flat.amax(-1).t()           # [B, T] each
        w = torch.sigmoid(self.mlp(avg) + self.mlp(top)).t()      # [T, B]
        return x * w.view(*w.shape, *([1] * (x.ndim - 2)))       # [T, B, *F]


class DualTemporalChannelAttention(nn.Module):
    """DTA-style attention: ``x * sigmoid(XA(p)) * sigmoid(NA(p))`` on ``x: [T, B, C, *S]``.

    ``p: [B, T, C]`` is the spatially averaged activity. The *identical* branch (T-XA in the
    paper) applies one shared ``k x k`` convolution everywhere on the ``[T, C]`` map (the same
    operation for every step and channel, local temporal-channel correlation); the
    *non-identical* branch (T-NA) has separate weights per step and per channel: a ``T x T``
    mixing of the steps of each channel plus a ``C -> C/r -> C`` channel MLP. The two sigmoid
    maps multiply. Deviation: the paper's branch internals (LTCA/GTCA) are reduced to these
    three small layers, and the module is used before a neuron rather than as the single block
    of an MS-ResNet.

    Args:
        channels: C.
        timesteps: T.
        reduction: the channel MLP's reduction ratio.
        kernel_size: odd size of the identical branch's convolution.
    """

    def __init__(self, channels: int, timesteps: int, reduction: int = 4,
                 kernel_size: int = 3) -> None:
        super().__init__()
        if min(channels, timesteps, reduction) < 1 or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError("channels, timesteps, reduction must be >= 1 and kernel_size odd, "
                             f"got {channels}, {timesteps}, {reduction}, {kernel_size}")
        self.channels, self.timesteps = int(channels), int(timesteps)
        self.identical = nn.Conv2d(1, 1, kernel_size, padding=kernel_size // 2)
        self.temporal = nn.Linear(timesteps, timesteps)
        hidden = max(1, channels // reduction)
        self.channel = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(),
                                     nn.Linear(hidden, channels))

    def forward(self, x: Tensor) -> Tensor:
        _check_steps(self, x, self.timesteps)
        if x.shape[2] != self.channels:
            raise ValueError(f"DualTemporalChannelAttention was built for C={self.channels}, "
                             f"got {tuple(x.shape)}")
        p = x.flatten(3).mean(-1) if x.ndim > 3 else x            # [T, B, C]
        p = p.transpose(0, 1)                                     # [B, T, C]
        xa = self.identical(p.unsqueeze(1)).squeeze(1)            # [B, T, C] shared kernel
        na = self.temporal(p.transpose(1, 2)).transpose(1, 2) + self.channel(p)   # [B, T, C]
        w = (torch.sigmoid(xa) * torch.sigmoid(na)).transpose(0, 1)             # [T, B, C]
        return x * w.view(*w.shape, *([1] * (x.ndim - 3)))        # [T, B, C, *S]


def build_temporal_attention(kind: TemporalAttentionKind | str, channels: int,
                             timesteps: int) -> nn.Module | None:
    """The temporal attention ``kind`` for ``channels`` and ``timesteps``; None for ``none``."""
    kind = TemporalAttentionKind.parse(kind)
    if kind is TemporalAttentionKind.TA:
        return TemporalAttention(timesteps)
    if kind is TemporalAttentionKind.DTA:
        return DualTemporalChannelAttention(channels, timesteps)
    return None


# ----------------------------------------------------------------------------- bridge

class AttentionBridge(nn.Module):
    """Attention-based SNN-ANN bridge (ASAB): spikes ``[T, B, C, H, W]`` -> ``[1, B, C, H, W]``.

    Following Ahmed et al. (CVPR 2025):

    - *spatial-aware temporal* (SAT) attention: channel-wise temporal grouping (each channel's
      T maps side by side, ``[B, C*T, H, W]``), a time-wise separable convolution (one group per
      channel, mixing that channel's steps and neighbourhood), and temporal attention: per
      channel, softmax weights over the T steps from the pooled responses; the weighted sum over
      time is the dense map.
    - *event-rate spatial* (ERS) attention: the spike rate of every pixel (over steps and
      channels) through a ``k x k`` convolution and a sigmoid scales the dense map.

    Deviation: the paper's deformable convolution is a plain (grouped) convolution here.

    Args:
        channels: C.
        timesteps: T.
        kernel_size: odd size of both convolutions.
    """

    def __init__(self, channels: int, timesteps: int, kernel_size: int = 3) -> None:
        super().__init__()
        if min(channels, timesteps) < 1 or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"channels and timesteps must be >= 1 and kernel_size odd, got "
                             f"{channels}, {timesteps}, {kernel_size}")
        self.channels, self.timesteps = int(channels), int(timesteps)
        ct = channels * timesteps
        self.sat_conv = nn.Conv2d(ct, ct, kernel_size, padding=kernel_size // 2, groups=channels,
                                  bias=False)
        self.sat_score = nn.Linear(timesteps, timesteps)
        self.ers_conv = nn.Conv2d(1, 1, kernel_size, padding=kernel_size // 2)

    def forward(self, x: Tensor) -> Tensor:
        _check_steps(self, x, self.timesteps)
        T, B, C, H, W = x.shape
        g = x.permute(1, 2, 0, 3, 4).reshape(B, C * T, H, W)     # [B, C*T, H, W] c-major groups
        y = self.sat_conv(g).view(B, C, T, H, W)                 # [B, C, T, H, W]
        a_t = torch.softmax(self.sat_score(y.mean((-2, -1))), dim=-1)   # [B, C, T]
        dense = (y * a_t[..., None, None]).sum(2)                # [B, C, H, W]
        rate = x.mean(dim=(0, 2)).unsqueeze(1)                   # [B, 1, H, W] event rate
        a_s = torch.sigmoid(self.ers_conv(rate))                 # [B, 1, H, W]
        return (dense * a_s).unsqueeze(0)                        # [1, B, C, H, W]

    def extra_repr(self) -> str:
        return f"channels={self.channels}, timesteps={self.timesteps}"


__all__ = ["AttentionBridge", "DualTemporalChannelAttention", "MaskedTokenSum", "NeuronFactory",
           "SelfAttention", "SpikeDrivenSelfAttention", "SpikeMatmul", "SpikingSelfAttention",
           "TemporalAttention", "TemporalAttentionKind", "TokenBatchNorm", "build_self_attention",
           "build_temporal_attention"]
