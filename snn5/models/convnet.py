"""Convolutional SNN: [Conv -> BatchNorm -> neuron -> pool] per stage -> [Linear -> neuron] -> Linear.

With ``pool_before_neuron`` a stage is Conv -> BatchNorm -> pool -> neuron.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from torch import nn

from snn5.models.classifier import SpikingClassifier
from snn5.models.common import (
    ClassifierConfig, image_step_input, make_classifier, make_linear, make_neuron, output_layers,
)
from snn5.models.registry import register_model
from snn5.nn.layers import TimeDistributed


class ConvSNNConfig(ClassifierConfig):
    """A convolutional SNN: one conv-BN-neuron block and a 2x2 pooling per entry of
    ``channels`` (pooling skipped once the map is 1 pixel), then ``fc_hidden`` spiking layers."""

    name: Literal["conv_snn"] = "conv_snn"
    timesteps: int = Field(4, ge=1)
    channels: tuple[int, ...] = Field((32, 64), min_length=1)
    kernel_size: int = Field(3, ge=1)
    pool: Literal["max", "avg"] = "max"
    fc_hidden: tuple[int, ...] = (128,)
    pool_before_neuron: bool = Field(False, description="conv-BN-pool-neuron instead of "
                                     "conv-BN-neuron-pool: the neuron runs on the pooled map "
                                     "(4x fewer neuron updates; the pool sees currents)")


@register_model("conv_snn", ConvSNNConfig)
def build_conv_snn(cfg: ConvSNNConfig, input_shape: tuple[int, ...], num_classes: int,
                   *, ann: bool = False) -> SpikingClassifier:
    """Build a convolutional SNN (or, with ``ann=True``, the same-size ReLU CNN, one step)."""
    (c_in, h, w), timesteps, lead = image_step_input(
        cfg, input_shape, ann, model="conv_snn", otherwise="spiking_mlp for flat features")
    pool = nn.MaxPool2d if cfg.pool == "max" else nn.AvgPool2d
    layers: list[nn.Module] = list(lead)
    for c in cfg.channels:
        block = [TimeDistributed(nn.Conv2d(c_in, c, cfg.kernel_size,
                                           padding=cfg.kernel_size // 2, bias=False)),
                 TimeDistributed(nn.BatchNorm2d(c)), make_neuron(cfg, ann)]
        if min(h, w) >= 2:
            block.insert(2 if cfg.pool_before_neuron else 3, TimeDistributed(pool(2)))
            h, w = h // 2, w // 2
        layers += block
        c_in = c
    layers.append(TimeDistributed(nn.Flatten()))                 # [T, B, C*H*W]
    features = c_in * h * w
    spikes = cfg.pool == "max" or cfg.pool_before_neuron          # avg-pooled spikes are not
    for width in cfg.fc_hidden:
        if cfg.dropout > 0:
            layers.append(nn.Dropout(cfg.dropout))
        layers += [make_linear(features, width, spike_input=spikes, ann=ann), make_neuron(cfg, ann)]
        features, spikes = width, True
    if cfg.dropout > 0:
        layers.append(nn.Dropout(cfg.dropout))
    layers.append(make_linear(features, num_classes, spike_input=spikes, ann=ann))
    tail, readout = output_layers(cfg, ann)
    return make_classifier(cfg, layers + tail, readout, timesteps=timesteps,
                           input_shape=input_shape, ann=ann)
