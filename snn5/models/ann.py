"""Plain ANNs for ANN-to-SNN conversion: an MLP, a VGG-style CNN and ResNet-18.

They are ordinary ``torch.nn`` modules (``x [B, ...] -> logits [B, C]``), traceable by
``torch.fx``, with the activation chosen by the config: ``relu`` (for threshold balancing),
``qcfs`` (quantization-clip-floor-shift, Bu et al. ICLR 2022, for low-latency conversion).
``ternary: true`` makes every weight layer but the first and the last ternary (the logic-gated
SNN; the first layer sees the analog input and the last one produces the scores).

``resnet18`` follows torchvision's module layout and state_dict keys (``conv1``, ``bn1``,
``layer1.0.conv1``, ..., ``fc``), so standard ResNet-18 weights load with
:func:`load_ann_weights`; ``stem: cifar`` swaps the ImageNet stem (7x7 stride 2 + max pool) for
a 3x3 stride-1 convolution, the usual choice for 32x32 or smaller inputs.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, PlainValidator
from torch import Tensor, nn

from snn5._registry import Registry
from snn5.nn.conversion import QCFS
from snn5.nn.ternary import InputNoise, TernaryConv2d, TernaryLinear


class ANNConfig(BaseModel):
    """Fields every conversion ANN has."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    activation: Literal["relu", "qcfs"] = "qcfs"
    levels: int = Field(8, ge=1, description="QCFS quantization steps L")
    init_lambda: float = Field(8.0, gt=0, description="initial QCFS clip lambda")
    ternary: bool = Field(False, description="ternary hidden weight layers (logic-gated SNN)")
    noise: tuple[float, float] | None = Field(
        None, description="hyper-robust training: replace a U(low, high) fraction of each "
        "training input by uniform noise (e.g. [0.0, 0.45]); None: off")
    dropout: float = Field(0.0, ge=0, lt=1)


def _act(cfg: ANNConfig) -> nn.Module:
    return QCFS(cfg.levels, cfg.init_lambda) if cfg.activation == "qcfs" else nn.ReLU()


def _linear(cfg: ANNConfig, n_in: int, n_out: int, hidden: bool) -> nn.Module:
    return (TernaryLinear if cfg.ternary and hidden else nn.Linear)(n_in, n_out)


def _conv(cfg: ANNConfig, c_in: int, c_out: int, k: int, hidden: bool, **kw: Any) -> nn.Module:
    return (TernaryConv2d if cfg.ternary and hidden else nn.Conv2d)(c_in, c_out, k, **kw)


def _head(cfg: ANNConfig) -> list[nn.Module]:
    layers: list[nn.Module] = []
    if cfg.noise is not None:
        lo, hi = cfg.noise
        layers.append(InputNoise(lo, hi))
    return layers


class MLPANNConfig(ANNConfig):
    """Flatten -> [Linear -> BatchNorm -> act] per hidden width -> Linear."""

    name: Literal["mlp"] = "mlp"
    hidden: tuple[int, ...] = (256,)
    batch_norm: bool = True


class VGGConfig(ANNConfig):
    """VGG-style CNN: per stage, ``[Conv3x3 -> BN -> act]`` per width, the stage's last
    activation preceded by a 2x2 pooling (``pool_before_act``: every weight layer of the SNN
    then receives spikes, not pooled averages of spikes); then ``fc_hidden`` layers and the
    class layer."""

    name: Literal["vgg"] = "vgg"
    stages: tuple[tuple[int, ...], ...] = ((32, 32), (64, 64))
    fc_hidden: tuple[int, ...] = (256,)
    pool: Literal["avg", "max"] = "avg"
    pool_before_act: bool = True


class ResNet18Config(ANNConfig):
    """ResNet-18 with torchvision's layout; ``width`` scales the channels (64 as torchvision)."""

    name: Literal["resnet18"] = "resnet18"
    stem: Literal["imagenet", "cifar"] = "cifar"
    width: int = Field(64, ge=1)


@dataclass(frozen=True)
class ANNEntry:
    config: type[ANNConfig]
    build: Callable[[Any, tuple[int, ...], int], nn.Module]


ANN_MODELS: Registry[ANNEntry] = Registry("ANN model")


def _register(name: str, config: type[ANNConfig]):
    def wrap(fn):
        ANN_MODELS.register(name, ANNEntry(config, fn))
        return fn
    return wrap


@_register("mlp", MLPANNConfig)
def build_mlp(cfg: MLPANNConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    n_in = 1
    for d in input_shape:
        n_in *= d
    layers = [*_head(cfg), nn.Flatten()]
    for i, width in enumerate(cfg.hidden):
        layers.append(_linear(cfg, n_in, width, hidden=i > 0))
        if cfg.batch_norm:
            layers.append(nn.BatchNorm1d(width))
        layers.append(_act(cfg))
        if cfg.dropout:
            layers.append(nn.Dropout(cfg.dropout))
        n_in = width
    layers.append(nn.Linear(n_in, num_classes))
    return nn.Sequential(*layers)


@_register("vgg", VGGConfig)
def build_vgg(cfg: VGGConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    if len(input_shape) != 3:
        raise ValueError(f"vgg needs image input [C, H, W], got per-sample shape "
                         f"{list(input_shape)}; use the mlp ANN for flat features")
    c_in, h, w = input_shape
    pool = nn.AvgPool2d if cfg.pool == "avg" else nn.MaxPool2d
    layers, first = _head(cfg), True
    for stage in cfg.stages:
        for j, c in enumerate(stage):
            layers += [_conv(cfg, c_in, c, 3, hidden=not first, padding=1, bias=False),
                       nn.BatchNorm2d(c)]
            last = j == len(stage) - 1 and min(h, w) >= 2
            if last and cfg.pool_before_act:
                layers.append(pool(2))
            layers.append(_act(cfg))
            if last and not cfg.pool_before_act:
                layers.append(pool(2))
            c_in, first = c, False
        if min(h, w) >= 2:
            h, w = h // 2, w // 2
    layers.append(nn.Flatten())
    n_in = c_in * h * w
    for width in cfg.fc_hidden:
        if cfg.dropout:
            layers.append(nn.Dropout(cfg.dropout))
        layers += [_linear(cfg, n_in, width, hidden=True), _act(cfg)]
        n_in = width
    if cfg.dropout:
        layers.append(nn.Dropout(cfg.dropout))
    layers.append(nn.Linear(n_in, num_classes))
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock (same attribute names), with a separate activation
    module per use (torchvision calls one ``relu`` twice; conversion needs one neuron each)."""

    expansion = 1

    def __init__(self, cfg: ANNConfig, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = _conv(cfg, c_in, c_out, 3, True, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu = _act(cfg)
        self.conv2 = _conv(cfg, c_out, c_out, 3, True, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu2 = _act(cfg)
        self.downsample: nn.Module | None = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(
                _conv(cfg, c_in, c_out, 1, True, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + identity)


class ResNet18(nn.Module):
    """ResNet-18 (He et al. 2016) in torchvision's layout."""

    def __init__(self, cfg: ResNet18Config, in_channels: int, num_classes: int) -> None:
        super().__init__()
        w = cfg.width
        self.noise = _head(cfg)[0] if cfg.noise is not None else nn.Identity()
        if cfg.stem == "imagenet":
            self.conv1 = nn.Conv2d(in_channels, w, 7, stride=2, padding=3, bias=False)
            self.maxpool: nn.Module = nn.MaxPool2d(3, stride=2, padding=1)
        else:
            self.conv1 = nn.Conv2d(in_channels, w, 3, stride=1, padding=1, bias=False)
            self.maxpool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(w)
        self.relu = _act(cfg)
        widths = (w, 2 * w, 4 * w, 8 * w)
        c_in = w
        for i, c in enumerate(widths):
            stride = 1 if i == 0 else 2
            setattr(self, f"layer{i + 1}", nn.Sequential(BasicBlock(cfg, c_in, c, stride),
                                                         BasicBlock(cfg, c, c, 1)))
            c_in = c
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(self.noise(x)))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


@_register("resnet18", ResNet18Config)
def build_resnet18(cfg: ResNet18Config, input_shape: tuple[int, ...], num_classes: int
                   ) -> nn.Module:
    if len(input_shape) != 3:
        raise ValueError(f"resnet18 needs image input [C, H, W], got {list(input_shape)}")
    return ResNet18(cfg, input_shape[0], num_classes)


def parse_ann_config(value: Any) -> ANNConfig:
    """A mapping with ``name`` -> the registered ANN family's validated config."""
    if isinstance(value, ANNConfig):
        return value
    if not isinstance(value, dict) or "name" not in value:
        raise ValueError(f"the ANN must be a mapping with a 'name'; valid names: "
                         f"{', '.join(ANN_MODELS.names())}")
    return ANN_MODELS.get(value["name"]).config.model_validate(value)


ANNSpec = Annotated[ANNConfig, PlainValidator(parse_ann_config),
                    PlainSerializer(lambda m: m.model_dump(mode="json"))]


def build_ann(cfg: ANNConfig | dict, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Build the ANN that ``cfg`` describes."""
    cfg = parse_ann_config(cfg)
    return ANN_MODELS.get(cfg.name).build(cfg, tuple(input_shape), int(num_classes))


def load_ann_weights(model: nn.Module, path: str | os.PathLike, *, strict: bool = True
                     ) -> dict[str, list[str]]:
    """Load a state_dict file into ``model``: ``.safetensors``, or a torch file read with
    ``weights_only=True`` (never unpickling code). ``strict=False`` tolerates the activation
    parameters a ReLU checkpoint lacks (QCFS lambdas keep their initial value); the returned
    ``{"missing": [...], "unexpected": [...]}`` lists every key that did not match. A file
    sharing no key with the model is an error either way (a prefixed checkpoint, say)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        state = load_file(str(path))
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:       # pickled code or a corrupt file
            raise ValueError(f"cannot read {path} as a state_dict with weights_only=True "
                             f"({exc}); save the weights with torch.save(model.state_dict()) "
                             "or as .safetensors") from exc
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a state_dict")
    own = set(model.state_dict())
    if own and not own & set(state):
        raise ValueError(f"{path} shares no key with the model (file: {sorted(state)[:3]}..., "
                         f"model: {sorted(own)[:3]}...); save the bare model.state_dict() "
                         "(a run's ann.safetensors is one) rather than a prefixed checkpoint")
    result = model.load_state_dict(state, strict=strict)
    return {"missing": list(result.missing_keys), "unexpected": list(result.unexpected_keys)}


__all__ = ["ANNConfig", "ANNSpec", "ANN_MODELS", "BasicBlock", "MLPANNConfig", "ResNet18",
           "ResNet18Config", "VGGConfig", "build_ann", "load_ann_weights", "parse_ann_config"]
