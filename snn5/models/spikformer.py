"""Spiking transformers: Spikformer (SSA) and the Spike-driven Transformer's SDSA.

Spikformer (Zhou et al., "Spikformer: When Spiking Neural Network Meets Transformer", ICLR
2023): spiking patch splitting (SPS: conv-BN-SN-maxpool stages down to a ``D``-channel map, plus
a conv-BN-SN relative position embedding added to it), the map's pixels as N tokens, ``depth``
encoder blocks ``x + SSA(x)``, ``x + MLP(x)`` (MLP: Linear-BN-SN-Linear-BN-SN), the mean over
tokens and a Linear classification head.

``attention: sdsa`` swaps SSA for the spike-driven self-attention of Yao et al. ("Spike-driven
Transformer", NeurIPS 2023): ``Q ⊗ SN(SUM_c(K ⊗ V))``. Deviation: the Spike-driven Transformer
also moves every residual to the membrane (shortcut before the neuron); here both mixers sit in
Spikformer's spike-adding (SEW ADD) blocks, so SSA and SDSA are compared in the same body.

Deviations from the papers: small configurable sizes (CPU event data); the SPS has as many
stages as ``sps_channels`` entries (each halving the map while it is at least 2 pixels wide),
where Spikformer has four conv stages and two (CIFAR) or four (ImageNet) poolings.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator
from torch import Tensor, nn

from snn5.models.classifier import SpikingClassifier
from snn5.models.common import (
    ClassifierConfig, image_step_input, make_classifier, make_neuron, output_layers,
)
from snn5.models.registry import register_model
from snn5.nn.attention import SelfAttention, TokenBatchNorm, build_self_attention
from snn5.nn.layers import Sequential, TimeDistributed
from snn5.nn.residual import Connect, SEWBlock


class SpikformerConfig(ClassifierConfig):
    """A spiking transformer: SPS with ``sps_channels`` (the last is the embedding dim D),
    ``depth`` blocks of ``heads``-head attention (``ssa`` or ``sdsa``) and an MLP of
    ``mlp_ratio * D`` hidden units."""

    name: Literal["spikformer"] = "spikformer"
    timesteps: int = Field(4, ge=1)
    sps_channels: tuple[int, ...] = Field((16, 32), min_length=1)
    depth: int = Field(1, ge=1)
    heads: int = Field(2, ge=1)
    mlp_ratio: float = Field(4.0, gt=0)
    attention: SelfAttention = SelfAttention.SSA

    @model_validator(mode="after")
    def _heads_divide_dim(self) -> SpikformerConfig:
        dim = self.sps_channels[-1]
        if dim % self.heads:
            raise ValueError(f"the embedding dim (last of sps_channels, {dim}) must be divisible "
                             f"by heads ({self.heads}); change one of them")
        return self


class Tokens(nn.Module):
    """``[T, B, D, H, W] -> [T, B, N, D]``: every pixel a token, N = H*W."""

    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(3).transpose(2, 3)


class TokenMean(nn.Module):
    """``[T, B, N, D] -> [T, B, D]``: the mean over tokens (Spikformer's head input)."""

    def forward(self, x: Tensor) -> Tensor:
        return x.mean(2)


@register_model("spikformer", SpikformerConfig)
def build_spikformer(cfg: SpikformerConfig, input_shape: tuple[int, ...], num_classes: int,
                     *, ann: bool = False) -> SpikingClassifier:
    """Build a Spikformer (SSA) or SDSA transformer; ``ann=True``: ReLU for every neuron, one
    step (the attention products stay)."""
    (c_in, h, w), timesteps, lead = image_step_input(
        cfg, input_shape, ann, model="spikformer",
        otherwise="spiking_ssm for sequences of flat features")

    def neuron(v_th: float | None = None) -> nn.Module:
        if ann or v_th is None:
            return make_neuron(cfg, ann)
        return cfg.neuron.model_copy(update={"v_th": v_th}).build()

    layers: list[nn.Module] = list(lead)
    for c in cfg.sps_channels:                               # SPS: conv-BN-SN(-maxpool)
        layers += [TimeDistributed(nn.Conv2d(c_in, c, 3, padding=1, bias=False)),
                   TimeDistributed(nn.BatchNorm2d(c)), neuron()]
        if min(h, w) >= 2:
            layers.append(TimeDistributed(nn.MaxPool2d(2)))
            h, w = h // 2, w // 2
        c_in = c
    dim = c_in
    rpe = Sequential(TimeDistributed(nn.Conv2d(dim, dim, 3, padding=1, bias=False)),
                     TimeDistributed(nn.BatchNorm2d(dim)), neuron())
    layers += [SEWBlock(rpe, connect=Connect.ADD), Tokens()]      # [T, B, N, D], N = H*W
    hidden = max(1, round(cfg.mlp_ratio * dim))
    for _ in range(cfg.depth):
        attention = build_self_attention(cfg.attention, dim, cfg.heads, neuron)
        mlp = Sequential(nn.Linear(dim, hidden, bias=False), TokenBatchNorm(hidden), neuron(),
                         nn.Linear(hidden, dim, bias=False), TokenBatchNorm(dim), neuron())
        layers += [SEWBlock(attention, connect=Connect.ADD), SEWBlock(mlp, connect=Connect.ADD)]
    layers.append(TokenMean())                                    # [T, B, D]
    if cfg.dropout > 0:
        layers.append(nn.Dropout(cfg.dropout))
    layers.append(nn.Linear(dim, num_classes))                    # token mean: dense input
    tail, readout = output_layers(cfg, ann)
    return make_classifier(cfg, layers + tail, readout, timesteps=timesteps,
                           input_shape=input_shape, ann=ann)
