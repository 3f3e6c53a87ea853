"""The run config: one validated document for a whole run (data, model, training, measuring).

Each section's schema belongs to the package that uses it; this module composes them. Unknown
keys are rejected everywhere, and names (datasets, models, surrogates, energy models) are checked
against their registries, whose errors list the valid names.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from snn5.data import DataConfig
from snn5.metrics import ENERGY_MODELS
from snn5.models import ModelSpec, SpikingMLPConfig
from snn5.train.conversion.config import ConversionConfig
from snn5.train.distill import DistillConfig
from snn5.train.plasticity import PlasticityConfig
from snn5.train.surrogate import TrainConfig

Paradigm = Literal["surrogate", "ann", "plasticity", "conversion", "distill"]


class MeasureConfig(BaseModel):
    """What is measured after training."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    energy_model: str = Field("45nm", description="name in snn5.metrics.ENERGY_MODELS")
    raster_sample: int = Field(0, ge=0, description="test sample shown in the spike raster")

    @field_validator("energy_model")
    @classmethod
    def _known(cls, name: str) -> str:
        ENERGY_MODELS.get(name)
        return name


class RunConfig(BaseModel):
    """A complete, reproducible description of a training run.

    ``paradigm: surrogate`` trains the model by BPTT with surrogate gradients; ``ann`` trains the
    same-size ANN twin of the model (ReLU, one step), the reference for accuracy and energy;
    ``plasticity`` learns the hidden layers by a local rule (``plasticity:`` section) and fits
    the class readout in closed form; ``conversion`` trains the ANN of the ``conversion:``
    section with the ``train:`` settings and converts it to an SNN; ``distill`` trains the model
    like ``surrogate`` with the soft targets of an ANN teacher added (``distill:`` section).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = Field(0, ge=0)
    paradigm: Paradigm = "surrogate"
    data: DataConfig = DataConfig()
    model: ModelSpec = SpikingMLPConfig()
    train: TrainConfig = TrainConfig()
    plasticity: PlasticityConfig = PlasticityConfig()
    conversion: ConversionConfig = ConversionConfig()
    distill: DistillConfig = DistillConfig()
    measure: MeasureConfig = MeasureConfig()

    @model_validator(mode="after")
    def _distill_has_teacher(self) -> RunConfig:
        if self.paradigm == "distill" and self.distill.teacher is None:
            raise ValueError("paradigm: distill needs distill.teacher: the run folder of an ANN "
                             "run of the same model (paradigm: ann) or a checkpoint of it.")
        if self.paradigm == "distill" and self.train.tbptt_steps is not None:
            raise ValueError("paradigm: distill needs the logits of the whole sequence; unset "
                             "train.tbptt_steps.")
        return self
