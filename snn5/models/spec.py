"""Config specs shared by model families: which neuron, with which physics and surrogate."""

from __future__ import annotations

import inspect
from dataclasses import fields
from typing import Annotated, Any

from pydantic import (
    BaseModel, ConfigDict, PlainSerializer, PlainValidator, SerializerFunctionWrapHandler,
    field_validator, model_serializer, model_validator,
)
from torch import nn

from snn5.core.options import Reset
from snn5.core.surrogate import SURROGATES, ATan, Surrogate
from snn5.kernels.dispatch import Backend
from snn5.nn.neurons import NEURONS, Neuron


def parse_surrogate(value: Any) -> Surrogate:
    """``{"name": "atan", "alpha": 2.0, "learnable": false}`` (or just ``"atan"``) -> ``ATan(...)``."""
    if isinstance(value, Surrogate):
        return value
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict):
        raise ValueError("surrogate must be a name or a mapping like {name: atan, alpha: 2.0}, "
                         f"got {value!r}")
    kwargs = dict(value)
    name = kwargs.pop("name", None)
    if name is None:
        raise ValueError(f"surrogate needs a 'name'; valid names: {', '.join(SURROGATES.names())}")
    cls = SURROGATES.get(name)
    valid = {f.name: f for f in fields(cls) if f.init}
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(unknown)} for surrogate '{name}'; "
                         f"valid fields: {', '.join(['name', *sorted(valid)])}")
    for key, val in kwargs.items():
        want_bool = valid[key].type in ("bool", bool)
        if want_bool != isinstance(val, bool) or not isinstance(val, (bool, int, float)):
            kind = "true or false" if want_bool else "a number"
            raise ValueError(f"surrogate field '{key}' must be {kind}, got {val!r}")
    return cls(**kwargs)


SurrogateSpec = Annotated[Surrogate, PlainValidator(parse_surrogate),
                          PlainSerializer(lambda s: s.to_dict())]


def _init_params(cls: type) -> set[str]:
    """Keyword arguments accepted along ``cls``'s constructor chain."""
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or klass is nn.Module:
            continue
        for p in inspect.signature(init).parameters.values():
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self":
                names.add(p.name)
    return names


class NeuronSpec(BaseModel):
    """Which spiking neuron a model uses and its physics (seconds; ``beta = exp(-dt/tau)``).

    Kinds: the registered spiking neurons (``lif``, ``plif``, ``alif``, ``if``, ``glif``,
    ``tc_lif``, ``el_lif``, ``int_lif``, ``refractory_lif``; see docs/neurons.md).
    Fields that a kind does not have (``tau_mem`` for IF, ``tau_adapt`` for LIF, ...) are
    rejected when set explicitly, so no setting is silently ignored, and are left out when the
    spec is written (so a written config loads back).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str = "lif"
    tau_mem: float = 2e-3
    dt: float = 1e-3
    v_th: float = 1.0
    reset: Reset = Reset.SUBTRACT
    detach_reset: bool = False
    learn_v_th: bool = False
    tau_adapt: float = 200e-3
    beta_adapt: float = 1.8
    # glif
    gate_init: float = 0.5
    linear_leak: float = 0.0625
    reset_potential: float = 0.5
    conductance: float = 0.5
    # tc_lif
    coupling_sd: float = 0.5
    coupling_ds: float = 0.5
    dendrite_reset: float = 0.5
    # el_lif
    leak_steps: int = 1
    # int_lif
    max_spike: int = 4
    # refractory_lif
    t_ref: float = 2e-3
    ref_gain: float = 1.0
    surrogate: SurrogateSpec = ATan()
    backend: Backend = Backend.AUTO

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, kind: str) -> str:
        neuron = NEURONS.get(kind)
        if not neuron.spiking:
            spiking = [n for n, c in NEURONS.items() if c.spiking]
            raise ValueError(f"neuron kind '{kind}' does not spike; use one of {', '.join(spiking)}")
        return kind.lower()

    @model_serializer(mode="wrap")
    def _only_used_fields(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        accepted = _init_params(NEURONS.get(self.kind)) | {"kind"}
        return {k: v for k, v in handler(self).items() if k in accepted}

    def _kwargs(self) -> dict[str, Any]:
        accepted = _init_params(NEURONS.get(self.kind))
        set_but_unused = sorted(f for f in self.model_fields_set - {"kind"} if f not in accepted)
        if set_but_unused:
            raise ValueError(f"neuron kind '{self.kind}' has no {', '.join(set_but_unused)}; "
                             "remove the field or pick a kind that uses it")
        return {k: getattr(self, k) for k in type(self).model_fields if k in accepted}

    @model_validator(mode="after")
    def _buildable(self) -> NeuronSpec:
        self.build()      # the module's own checks (tau_mem > dt, v_th > 0, ...) run here
        return self

    def build(self) -> Neuron:
        """A fresh sequence neuron module with these settings."""
        return NEURONS.get(self.kind)(**self._kwargs())
