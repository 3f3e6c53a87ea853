"""L3 models: one file per architecture family, built from configs through a registry."""

from snn5.models import convnet as _convnet  # noqa: F401  (registers conv_snn)
from snn5.models import mlp as _mlp  # noqa: F401  (registers spiking_mlp)
from snn5.models.hybrid import HybridConfig, build_hybrid
from snn5.models.sew_resnet import SEWResNetConfig, build_sew_resnet
from snn5.models.spikformer import SpikformerConfig, build_spikformer
from snn5.models.ssm import SpikingSSMConfig, SSMLayer, build_spiking_ssm
from snn5.models.ann import (
    ANN_MODELS, ANNConfig, MLPANNConfig, ResNet18, ResNet18Config, VGGConfig, build_ann,
    load_ann_weights,
)
from snn5.models.classifier import ClassifierStream, SpikingClassifier
from snn5.models.common import ClassifierConfig
from snn5.models.convnet import ConvSNNConfig, build_conv_snn
from snn5.models.mlp import SpikingMLPConfig, build_spiking_mlp
from snn5.models.reservoir import LiquidStateMachine, ReservoirConfig
from snn5.models.registry import (
    MODELS, ModelEntry, ModelSpec, build_model, parse_model_config, register_model,
)
from snn5.models.spec import NeuronSpec, SurrogateSpec, parse_surrogate

__all__ = [
    "ANNConfig", "ANN_MODELS", "MLPANNConfig", "ResNet18", "ResNet18Config", "VGGConfig",
    "build_ann", "load_ann_weights",
    "ClassifierConfig", "ConvSNNConfig", "LiquidStateMachine", "MODELS", "ModelEntry",
    "ModelSpec", "NeuronSpec", "ReservoirConfig", "SpikingClassifier", "SpikingMLPConfig",
    "SurrogateSpec", "build_conv_snn", "build_model", "build_spiking_mlp", "parse_model_config",
    "parse_surrogate", "register_model",
    "HybridConfig", "SEWResNetConfig", "SSMLayer", "SpikformerConfig", "SpikingSSMConfig",
    "build_hybrid", "build_sew_resnet", "build_spikformer", "build_spiking_ssm",
    "ClassifierStream",
]
