"""Spiking MLP: flatten -> [Linear -> (BatchNorm) -> neuron -> (dropout)] x L -> Linear -> readout."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from torch import nn

from snn5.models.classifier import SpikingClassifier
from snn5.models.common import (
    ClassifierConfig, make_classifier, make_linear, make_neuron, output_layers, step_input,
)
from snn5.models.registry import register_model
from snn5.nn.encoders import Encoding
from snn5.nn.layers import TimeDistributed


class SpikingMLPConfig(ClassifierConfig):
    """A fully connected SNN. ``hidden`` lists the widths of the hidden layers."""

    name: Literal["spiking_mlp"] = "spiking_mlp"
    hidden: tuple[int, ...] = Field((256,), min_length=0)
    batch_norm: bool = False


@register_model("spiking_mlp", SpikingMLPConfig)
def build_spiking_mlp(cfg: SpikingMLPConfig, input_shape: tuple[int, ...], num_classes: int,
                      *, ann: bool = False) -> SpikingClassifier:
    """Build a spiking MLP (or, with ``ann=True``, the same-size ReLU MLP run for one step)."""
    step_shape, timesteps, lead = step_input(cfg, input_shape, ann)
    in_features = 1
    for d in step_shape:
        in_features *= d
    layers: list[nn.Module] = [*lead, TimeDistributed(nn.Flatten())]     # [T, B, F]
    # is the first layer's input binary spikes? (event frames hold counts: dense)
    spikes = cfg.encoding in (Encoding.POISSON, Encoding.LATENCY)
    for width in cfg.hidden:
        if width < 1:
            raise ValueError(f"hidden widths must be >= 1, got {list(cfg.hidden)}")
        linear = make_linear(in_features, width, spike_input=spikes, ann=ann)
        if cfg.batch_norm:
            linear.register_parameter("bias", None)
        layers.append(linear)
        if cfg.batch_norm:
            layers.append(TimeDistributed(nn.BatchNorm1d(width)))
        layers.append(make_neuron(cfg, ann))
        if cfg.dropout > 0:
            layers.append(nn.Dropout(cfg.dropout))
        in_features, spikes = width, True
    layers.append(make_linear(in_features, num_classes, spike_input=spikes, ann=ann))
    tail, readout = output_layers(cfg, ann)
    return make_classifier(cfg, layers + tail, readout, timesteps=timesteps,
                           input_shape=input_shape, ann=ann)
