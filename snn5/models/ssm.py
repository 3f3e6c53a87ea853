"""Spiking state-space models for sequences (audio features, event frames).

Each step's features are flattened and projected to ``d_model`` channels (Linear-BN-SN), then
``layers`` residual blocks ``x + layer(x)`` (spike-element-wise ADD, as SEW-ResNet) of

- ``layer: ssm``: :class:`snn5.nn.SpikingSSMLayer`, an S4D diagonal SSM over time whose output
  drives spiking neurons, then a pointwise Linear-BN-SN (SpikingSSMs, Shen et al., AAAI 2025,
  arXiv 2408.14909; S4D, Gu et al., NeurIPS 2022), or
- ``layer: attention``: :class:`snn5.nn.AttentionSpikingSSMLayer`, the same with a spiking
  attention gate that masks the SSM's spikes (snn5's design, see its docstring),

and a Linear readout layer over time. Event data (``encoding: events``) is fed one frame per
step; a static input (direct encoding) is the same current at every step.

Deviations: the paper's surrogate dynamic network (parallel reset prediction) is replaced by the
model's ordinary neurons run step by step; sizes are small and configurable.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Literal

from pydantic import Field, model_validator
from torch import nn

from snn5.core.options import Option
from snn5.models.classifier import SpikingClassifier
from snn5.models.common import (
    ClassifierConfig, make_classifier, make_linear, make_neuron, output_layers, step_input,
)
from snn5.models.registry import register_model
from snn5.nn.attention import TokenBatchNorm
from snn5.nn.encoders import Encoding
from snn5.nn.layers import Sequential, TimeDistributed
from snn5.nn.residual import Connect, SEWBlock
from snn5.nn.ssm import AttentionSpikingSSMLayer, SpikingSSMLayer


class SSMLayer(Option):
    """The sequence layer of a spiking SSM: plain (``ssm``) or gated (``attention``)."""

    SSM = "ssm"
    ATTENTION = "attention"


class SpikingSSMConfig(ClassifierConfig):
    """A spiking SSM classifier: ``layers`` blocks of ``d_model`` channels with ``state_size``
    complex modes each; ``dt_min``/``dt_max``: the S4D step range."""

    name: Literal["spiking_ssm"] = "spiking_ssm"
    d_model: int = Field(64, ge=1)
    state_size: int = Field(16, ge=1)
    layers: int = Field(2, ge=1)
    layer: SSMLayer = SSMLayer.SSM
    dt_min: float = Field(1e-3, gt=0)
    dt_max: float = Field(1e-1, gt=0)

    @model_validator(mode="after")
    def _dt_range(self) -> SpikingSSMConfig:
        if self.dt_min > self.dt_max:
            raise ValueError(f"dt_min ({self.dt_min}) must not exceed dt_max ({self.dt_max}); "
                             "swap them")
        return self


@register_model("spiking_ssm", SpikingSSMConfig)
def build_spiking_ssm(cfg: SpikingSSMConfig, input_shape: tuple[int, ...], num_classes: int,
                      *, ann: bool = False) -> SpikingClassifier:
    """Build a spiking SSM (``ann=True``: the same network with ReLU, one step)."""
    step_shape, timesteps, lead = step_input(cfg, input_shape, ann)
    features = math.prod(step_shape)
    layer_cls = AttentionSpikingSSMLayer if cfg.layer is SSMLayer.ATTENTION else SpikingSSMLayer
    spikes = cfg.encoding in (Encoding.POISSON, Encoding.LATENCY)

    neuron = partial(make_neuron, cfg, ann)
    layers: list[nn.Module] = [*lead, TimeDistributed(nn.Flatten()),          # [T, B, F]
                               make_linear(features, cfg.d_model, spike_input=spikes, ann=ann),
                               TokenBatchNorm(cfg.d_model), make_neuron(cfg, ann)]  # [T, B, H]
    for _ in range(cfg.layers):
        block = layer_cls(cfg.d_model, cfg.state_size, neuron, dt_min=cfg.dt_min,
                          dt_max=cfg.dt_max)
        layers.append(SEWBlock(Sequential(block), connect=Connect.ADD))      # [T, B, H] counts
    if cfg.dropout > 0:
        layers.append(nn.Dropout(cfg.dropout))
    layers.append(nn.Linear(cfg.d_model, num_classes))
    tail, readout = output_layers(cfg, ann)
    return make_classifier(cfg, layers + tail, readout, timesteps=timesteps,
                           input_shape=input_shape, ann=ann)
