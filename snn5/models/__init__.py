"""L3 models: one file per architecture family, built from configs through a registry."""

from snn5.models import convnet as _convnet  # noqa: F401  (registers conv_snn)
from snn5.models import mlp as _mlp  # noqa: F401  (registers spiking_mlp)
from snn5.models.ann import (
    ANN_MODELS, ANNConfig, MLPANNConfig, ResNet18, ResNet18Config, VGGConfig, build_ann,
    load_ann_weights,
)
from snn5.models.classifier import SpikingClassifier
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
]
