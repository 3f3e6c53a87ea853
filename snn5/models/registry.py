"""Model registry: a name maps to a config schema and a builder."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, PlainSerializer, PlainValidator

from snn5._registry import Registry
from snn5.models.classifier import SpikingClassifier

Builder = Callable[..., SpikingClassifier]


@dataclass(frozen=True)
class ModelEntry:
    """A model family: its pydantic config (with a ``name`` field) and its builder
    ``build(cfg, input_shape, num_classes, *, ann=False) -> SpikingClassifier``."""

    config: type[BaseModel]
    build: Builder


MODELS: Registry[ModelEntry] = Registry("model")


def register_model(name: str, config: type[BaseModel]) -> Callable[[Builder], Builder]:
    """Decorator registering a builder and its config class under ``name``."""
    def wrap(build: Builder) -> Builder:
        MODELS.register(name, ModelEntry(config, build))
        return build
    return wrap


def parse_model_config(value: Any) -> BaseModel:
    """A mapping with ``name`` -> the registered family's validated config."""
    if isinstance(value, BaseModel):
        return value
    if not isinstance(value, dict) or "name" not in value:
        raise ValueError(f"model must be a mapping with a 'name'; valid names: "
                         f"{', '.join(MODELS.names())}")
    return MODELS.get(value["name"]).config.model_validate(value)


ModelSpec = Annotated[BaseModel, PlainValidator(parse_model_config),
                      PlainSerializer(lambda m: m.model_dump(mode="json"))]


def build_model(cfg: BaseModel, input_shape: tuple[int, ...], num_classes: int, *,
                ann: bool = False) -> SpikingClassifier:
    """Build the model that ``cfg`` describes; ``ann=True`` gives the same-size ANN twin
    (ReLU instead of spiking neurons, one step)."""
    cfg = parse_model_config(cfg)
    return MODELS.get(cfg.name).build(cfg, tuple(input_shape), int(num_classes), ann=ann)
