"""SEW-ResNet: spike-element-wise residual networks (Fang et al., NeurIPS 2021).

"Deep Residual Learning in Spiking Neural Networks" (Fang, Yu, Chen, Huang, Masquelier, Tian):
stem conv-BN-SN (-maxpool) -> stages of SEW basic blocks -> global average pool -> Linear.
A basic block is ``g(SN(BN(conv(SN(BN(conv(S)))))), S)`` with the connect function ``g`` (ADD,
AND, IAND; :class:`snn5.nn.Connect`); the first block of a stage halves the map with stride 2
and its shortcut is the paper's downsample conv1x1-BN-SN.

``preset: sew_resnet18`` gives the paper's SEW-ResNet-18 layout (7x7/2 stem with 64 channels and
a 3x3/2 max pool, stages of [2, 2, 2, 2] blocks with 64-128-256-512 channels); any field set
beside it wins. The defaults are a tiny two-stage network for CPU-sized event data.

``temporal_attention: ta | dta`` puts a temporal attention module (TA-SNN, or the DTA-style
dual temporal-channel attention; :mod:`snn5.nn.attention`) on the current before the first
neuron of every block's residual branch. This is an snn5 combination, not part of the SEW paper.

Deviations from the paper: sizes are configurable and small by default; the neuron is the
model's ``neuron`` spec (the paper uses IF/PLIF neurons with a hard reset).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator
from torch import nn

from snn5.models.classifier import SpikingClassifier
from snn5.models.common import (
    ClassifierConfig, image_step_input, make_classifier, make_neuron, output_layers,
)
from snn5.models.registry import register_model
from snn5.nn.attention import TemporalAttentionKind, build_temporal_attention
from snn5.nn.layers import Sequential, TimeDistributed
from snn5.nn.residual import Connect, SEWBlock

PRESETS: dict[str, dict[str, Any]] = {
    "sew_resnet18": {"stem_channels": 64, "stem_kernel": 7, "stem_stride": 2, "stem_pool": True,
                     "channels": (64, 128, 256, 512), "blocks": (2, 2, 2, 2)},
}


class SEWResNetConfig(ClassifierConfig):
    """A SEW-ResNet: ``blocks[i]`` basic blocks of ``channels[i]`` channels per stage."""

    name: Literal["sew_resnet"] = "sew_resnet"
    preset: Literal["sew_resnet18"] | None = Field(None, description="a paper layout; fields "
                                                   "set beside it override it")
    timesteps: int = Field(4, ge=1)
    stem_channels: int = Field(16, ge=1)
    stem_kernel: int = Field(3, ge=1)
    stem_stride: int = Field(1, ge=1)
    stem_pool: bool = False
    channels: tuple[int, ...] = Field((16, 32), min_length=1)
    blocks: tuple[int, ...] = Field((1, 1), min_length=1)
    connect: Connect = Connect.ADD
    temporal_attention: TemporalAttentionKind = TemporalAttentionKind.NONE

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("preset") is not None:
            preset = PRESETS.get(data["preset"])
            if preset is not None:                   # an unknown name fails on the field
                data = {**preset, **data}
        return data

    @model_validator(mode="after")
    def _stages_match(self) -> SEWResNetConfig:
        if len(self.channels) != len(self.blocks):
            raise ValueError(f"channels {list(self.channels)} and blocks {list(self.blocks)} "
                             "need one entry per stage each; give them the same length")
        if min(self.channels) < 1 or min(self.blocks) < 1:
            raise ValueError(f"channels and blocks must be >= 1, got {list(self.channels)}, "
                             f"{list(self.blocks)}")
        return self


def _conv_out(n: int, k: int, s: int) -> int:
    return (n + 2 * (k // 2) - k) // s + 1


@register_model("sew_resnet", SEWResNetConfig)
def build_sew_resnet(cfg: SEWResNetConfig, input_shape: tuple[int, ...], num_classes: int,
                     *, ann: bool = False) -> SpikingClassifier:
    """Build a SEW-ResNet (or, with ``ann=True``, the same ResNet with ReLU, one step)."""
    (c_in, h, w), timesteps, lead = image_step_input(
        cfg, input_shape, ann, model="sew_resnet",
        otherwise="spiking_ssm or spiking_mlp for flat features")

    def conv_bn(c_from: int, c_to: int, k: int, stride: int) -> list[nn.Module]:
        return [TimeDistributed(nn.Conv2d(c_from, c_to, k, stride, k // 2, bias=False)),
                TimeDistributed(nn.BatchNorm2d(c_to))]

    k, s = cfg.stem_kernel, cfg.stem_stride
    layers: list[nn.Module] = [*lead, *conv_bn(c_in, cfg.stem_channels, k, s),
                               make_neuron(cfg, ann)]                  # [T, B, C0, H0, W0]
    h, w, c_in = _conv_out(h, k, s), _conv_out(w, k, s), cfg.stem_channels
    if cfg.stem_pool and min(h, w) >= 2:
        layers.append(TimeDistributed(nn.MaxPool2d(3, 2, 1)))
        h, w = _conv_out(h, 3, 2), _conv_out(w, 3, 2)
    for stage, (c, n) in enumerate(zip(cfg.channels, cfg.blocks)):
        for j in range(n):
            stride = 2 if stage > 0 and j == 0 and min(h, w) >= 2 else 1
            attention = build_temporal_attention(cfg.temporal_attention, c, timesteps)
            residual = Sequential(*conv_bn(c_in, c, 3, stride),
                                  *([attention] if attention is not None else []),
                                  make_neuron(cfg, ann), *conv_bn(c, c, 3, 1),
                                  make_neuron(cfg, ann))
            shortcut = None
            if stride != 1 or c_in != c:                               # downsample S
                shortcut = Sequential(*conv_bn(c_in, c, 1, stride), make_neuron(cfg, ann))
            layers.append(SEWBlock(residual, shortcut, connect=cfg.connect))
            h, w, c_in = _conv_out(h, 3, stride), _conv_out(w, 3, stride), c
    layers += [TimeDistributed(nn.AdaptiveAvgPool2d(1)), TimeDistributed(nn.Flatten())]  # [T, B, C]
    if cfg.dropout > 0:
        layers.append(nn.Dropout(cfg.dropout))
    layers.append(nn.Linear(c_in, num_classes))         # averaged spike counts: dense input
    tail, readout = output_layers(cfg, ann)
    return make_classifier(cfg, layers + tail, readout, timesteps=timesteps,
                           input_shape=input_shape, ann=ann)
