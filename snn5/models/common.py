"""Pieces shared by the model families: fields every config has, neuron and readout factories."""

from __future__ import annotations

import inspect
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import Tensor, nn

from snn5.models.classifier import SpikingClassifier
from snn5.models.spec import NeuronSpec
from snn5.nn.encoders import ENCODERS, Encoding, build_encoder
from snn5.nn.event import EventLinear
from snn5.nn.readout import Readout, TimeMean, build_readout, readout_is_spiking


class ClassifierConfig(BaseModel):
    """Fields of every classifier family."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timesteps: int = Field(8, ge=1)
    encoding: Encoding = Encoding.DIRECT
    encoder_options: dict[str, Any] = Field(
        default_factory=dict, description="options of the encoder, e.g. {neurons: 7, latency: "
        "true} for population, {band: true} for frequency, {max_rate: 0.5} for poisson")
    neuron: NeuronSpec = NeuronSpec()
    readout: Readout = Readout.MEAN_MEMBRANE
    readout_tau_mem: float | None = Field(None, gt=0, description="LI readout tau (s); "
                                          "None: the neuron's tau_mem")
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    checkpoint_steps: int | None = Field(None, ge=1, description="train with time-chunked "
                                         "activation checkpointing (long sequences)")

    @model_validator(mode="after")
    def _encoder_builds(self) -> ClassifierConfig:
        if self.encoder_options:
            make_encoder(self.encoding, self.timesteps, self.encoder_options)
        return self


def make_encoder(encoding: Encoding, timesteps: int, options: dict[str, Any]) -> nn.Module:
    """The encoder of a config, with a named error for options the encoder does not take."""
    cls = ENCODERS[encoding]
    accepted = [p for p in inspect.signature(cls.__init__).parameters
                if p not in ("self", "timesteps")]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        valid = ", ".join(accepted) if accepted else "none"
        raise ValueError(f"encoder_options {', '.join(unknown)} do not apply to encoding "
                         f"'{encoding.value}'; its options: {valid}")
    return build_encoder(encoding, timesteps, **options)


class SumTime(nn.Module):
    """The ANN twin's view of an event sequence: ``[1, B, T, *F] -> [1, B, *F]``, the frames
    summed (the event counts of the whole recording)."""

    def forward(self, x: Tensor) -> Tensor:
        return x.sum(dim=2)


def step_input(cfg: ClassifierConfig, input_shape: tuple[int, ...], ann: bool
               ) -> tuple[tuple[int, ...], int, list[nn.Module]]:
    """``(per-step input shape, timesteps, leading layers)`` of a model built for
    ``input_shape``. With ``encoding: events`` the data's first axis is time: the SNN takes one
    frame per step (T from the data; ``timesteps`` is not used) and the ANN twin the frames'
    sum in one step. Otherwise the encoded sample is one step's input, for ``cfg.timesteps``
    (its shape from the encoder's ``out_shape``: a population code multiplies the first axis)."""
    if cfg.encoding is not Encoding.EVENTS:
        if ann:                          # the ANN twin sees the raw input (direct, one step)
            return tuple(input_shape), 1, []
        encoder = make_encoder(cfg.encoding, cfg.timesteps, cfg.encoder_options)
        shape = encoder.out_shape(tuple(input_shape))
        return shape, cfg.timesteps, []  # e.g. population: first axis grows N-fold
    if len(input_shape) < 2:
        raise ValueError(f"encoding: events needs per-sample input [T, ...] (time first), got "
                         f"{list(input_shape)}; use a static encoding for this dataset")
    return tuple(input_shape[1:]), (1 if ann else int(input_shape[0])), ([SumTime()] if ann else [])


def image_step_input(cfg: ClassifierConfig, input_shape: tuple[int, ...], ann: bool, *,
                     model: str, otherwise: str
                     ) -> tuple[tuple[int, int, int], int, list[nn.Module]]:
    """:func:`step_input` for families that need images: ``((C, H, W), timesteps, lead)``,
    or an error naming ``model`` and the family to use ``otherwise``."""
    step_shape, timesteps, lead = step_input(cfg, input_shape, ann)
    if len(step_shape) != 3:
        raise ValueError(f"{model} needs image input [C, H, W] (with encoding: events, "
                         f"[T, C, H, W]), got per-sample shape {list(input_shape)}; use "
                         f"{otherwise}.")
    return step_shape, timesteps, lead


def make_classifier(cfg: ClassifierConfig, layers: list[nn.Module], readout: nn.Module, *,
                    timesteps: int, input_shape: tuple[int, ...], ann: bool
                    ) -> SpikingClassifier:
    """The classifier shell of a family: the config's encoding, encoder options and
    checkpointing for the SNN; direct input and none of them for the ANN twin."""
    return SpikingClassifier(layers, readout, timesteps=timesteps,
                             encoding=Encoding.DIRECT if ann else cfg.encoding,
                             encoder_options=None if ann else cfg.encoder_options,
                             input_shape=input_shape,
                             checkpoint_steps=None if ann else cfg.checkpoint_steps)


def make_neuron(cfg: ClassifierConfig, ann: bool) -> nn.Module:
    """A fresh spiking neuron, or ReLU for the ANN twin."""
    return nn.ReLU() if ann else cfg.neuron.build()


def make_linear(in_features: int, out_features: int, *, spike_input: bool, ann: bool) -> nn.Module:
    """A Linear layer; fed by spikes in an SNN it runs event-driven at sparse inference."""
    if spike_input and not ann:
        return EventLinear(in_features, out_features)
    return nn.Linear(in_features, out_features)


def output_layers(cfg: ClassifierConfig, ann: bool) -> tuple[list[nn.Module], nn.Module]:
    """Layers after the last Linear and the readout: a spiking output layer for the readouts
    that read spikes (spike counts, first-spike times)."""
    if ann:
        return [], TimeMean()
    tau = cfg.readout_tau_mem or cfg.neuron.tau_mem
    readout = build_readout(cfg.readout, tau_mem=tau, dt=cfg.neuron.dt)
    tail = [cfg.neuron.build()] if readout_is_spiking(cfg.readout) else []
    return tail, readout
