"""Config schema of plasticity training (``paradigm: plasticity``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from snn5.train.plasticity.rules import Rule, build_rule


class PlasticityConfig(BaseModel):
    """How the hidden layers learn by a local rule and how the class readout is fitted.

    Every hidden ``Linear -> neuron`` layer of the model (or those named in ``layers``) learns
    by ``rule``: one update per batch of presentations, applied by SGD with ``lr``, then the
    constraints (bounds, normalisation, homeostasis). The last ``Linear`` (hidden -> classes) is
    then fitted in closed form by ridge regression on the hidden layer's readout-filtered spikes,
    so no gradient reaches the network.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: int = Field(1, ge=1)
    batch_size: int = Field(32, ge=1)
    eval_batch_size: int = Field(500, ge=1)
    rule: dict[str, Any] = Field(default_factory=lambda: {"name": "stdp"},
                                 description="{name: stdp|triplet|bcm|hebbian|bcpnn, ...fields}")
    layers: tuple[str, ...] | None = Field(None, description="layer names (model.named_modules); "
                                           "None: every hidden Linear followed by a neuron")
    lr: float = Field(1.0, gt=0, description="SGD learning rate applied to -dw")
    bounds: tuple[float, float] | None = Field((0.0, 1.0), description="weight clip [min, max]")
    normalize: float | None = Field(None, gt=0, description="afferent weight sum per neuron")
    homeostasis_target: float | None = Field(None, ge=0, le=1,
                                             description="target rate, spikes per step")
    homeostasis_eta: float = Field(1.0, gt=0, description="threshold step per batch per unit of "
                                   "rate error")
    winners: int | None = Field(None, ge=1, description="competitive learning: per sample only "
                                "the k most active neurons of a layer learn; None: all")
    init: Literal["uniform", "default"] = Field(
        "uniform", description="uniform: plastic weights U(bounds) scaled by 'init_scale', "
        "biases 0; default: the layer's own initialisation")
    init_scale: float = Field(0.3, gt=0, le=1)
    ridge_alpha: float = Field(1e-2, gt=0, description="ridge penalty, relative to the mean "
                               "feature energy")
    device: str = Field("auto", description="auto, cpu, cuda, ...")
    threads: int | None = Field(None, ge=1)

    @field_validator("rule")
    @classmethod
    def _rule(cls, spec: dict[str, Any]) -> dict[str, Any]:
        rule = build_rule(spec)
        if rule.needs_reward:
            raise ValueError(f"rule '{spec['name']}' learns from a reward; the plasticity "
                             "paradigm's readout is fitted by ridge regression and gives none. "
                             "Use stdp, triplet, bcm, hebbian or bcpnn for the hidden layers.")
        return spec

    @model_validator(mode="after")
    def _bounds(self) -> PlasticityConfig:
        if self.bounds is not None and not self.bounds[0] < self.bounds[1]:
            raise ValueError(f"bounds must be [min, max] with min < max, got {list(self.bounds)}")
        return self

    def build_rule(self) -> Rule:
        return build_rule(self.rule)
