"""Hybrid SNN-ANN: a spiking front end, an attention-based bridge, a dense ANN head.

Follows Ahmed, Finkbeiner, Neftci, "Efficient Event-Based Object Detection: A Hybrid Neural
Network with Spatial and Temporal Attention" (CVPR 2025, arXiv 2403.10173): SNN blocks extract
low-level spatio-temporal features from event frames with spikes; the attention-based SNN-ANN
bridge (ASAB: spatial-aware temporal attention + event-rate spatial attention,
:class:`snn5.nn.AttentionBridge`) turns the spike tensor ``[T, B, C, H, W]`` into one dense map
``[1, B, C, H, W]``; ANN blocks (conv-BN-ReLU) and a Linear head classify it.

Layout here: ``snn_channels`` stages of conv3x3-BN-SN-maxpool2 -> bridge -> ``ann_channels``
stages of conv3x3-BN-ReLU-maxpool2 -> global average pool -> Linear. The output is one step, so
the readout is the head's logits (``TimeMean`` over that step); ``readout`` and
``readout_tau_mem`` do not apply: a value other than the default is refused.

Deviations: classification instead of the paper's detection head (no DWConvLSTM variant), a
plain grouped convolution for the bridge's deformable one, small configurable sizes.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator
from torch import nn

from snn5.models.classifier import SpikingClassifier
from snn5.models.common import ClassifierConfig, image_step_input, make_classifier, make_neuron
from snn5.models.registry import register_model
from snn5.nn.attention import AttentionBridge
from snn5.nn.layers import TimeDistributed
from snn5.nn.readout import TimeMean


class HybridConfig(ClassifierConfig):
    """A hybrid SNN-ANN classifier: spiking conv stages ``snn_channels``, the attention bridge,
    dense conv stages ``ann_channels`` (may be empty)."""

    name: Literal["hybrid_snn_ann"] = "hybrid_snn_ann"
    timesteps: int = Field(4, ge=1)
    snn_channels: tuple[int, ...] = Field((16, 32), min_length=1)
    ann_channels: tuple[int, ...] = (64,)
    bridge_kernel: int = Field(3, ge=1)

    @model_validator(mode="after")
    def _head_is_dense(self) -> HybridConfig:
        defaults = ClassifierConfig()
        refused = [f for f in ("checkpoint_steps", "readout", "readout_tau_mem")
                   if getattr(self, f) != getattr(defaults, f)]
        if refused:
            raise ValueError(f"hybrid_snn_ann has no {', '.join(refused)}: its ANN head gives "
                             "the logits of one step (and its bridge needs the whole sequence); "
                             "remove the field")
        if self.bridge_kernel % 2 == 0:
            raise ValueError(f"bridge_kernel must be odd, got {self.bridge_kernel}")
        return self


@register_model("hybrid_snn_ann", HybridConfig)
def build_hybrid(cfg: HybridConfig, input_shape: tuple[int, ...], num_classes: int,
                 *, ann: bool = False) -> SpikingClassifier:
    """Build the hybrid network (``ann=True``: ReLU in the front end too, one step)."""
    (c_in, h, w), timesteps, lead = image_step_input(
        cfg, input_shape, ann, model="hybrid_snn_ann", otherwise="spiking_ssm for flat features")
    layers: list[nn.Module] = list(lead)

    def stage(c_from: int, c_to: int, act: nn.Module) -> list[nn.Module]:
        nonlocal h, w
        block = [TimeDistributed(nn.Conv2d(c_from, c_to, 3, padding=1, bias=False)),
                 TimeDistributed(nn.BatchNorm2d(c_to)), act]
        if min(h, w) >= 2:
            block.append(TimeDistributed(nn.MaxPool2d(2)))
            h, w = h // 2, w // 2
        return block

    for c in cfg.snn_channels:                                       # SNN: [T, B, C, H, W]
        layers += stage(c_in, c, make_neuron(cfg, ann))
        c_in = c
    bridge = AttentionBridge(c_in, timesteps, cfg.bridge_kernel)
    layers.append(bridge)                                            # [1, B, C, H, W] dense
    for c in cfg.ann_channels:                                       # ANN: dense maps
        layers += stage(c_in, c, nn.ReLU())
        c_in = c
    layers += [TimeDistributed(nn.AdaptiveAvgPool2d(1)), TimeDistributed(nn.Flatten())]  # [1, B, C]
    if cfg.dropout > 0:
        layers.append(nn.Dropout(cfg.dropout))
    layers.append(nn.Linear(c_in, num_classes))                      # [1, B, classes]
    head = layers[layers.index(bridge) + 1:]
    for m in (m for layer in head for m in layer.modules()):
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            m.dense_only = True          # snn5.metrics counts the ANN head as MACs, always
    return make_classifier(cfg, layers, TimeMean(), timesteps=timesteps,
                           input_shape=input_shape, ann=ann)
