"""The ``distill:`` section of a run config (``paradigm: distill``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator


class DistillConfig(BaseModel):
    """Knowledge distillation from an ANN teacher into the run's SNN (Hinton et al., 2015).

    The student's objective is ``alpha * T^2 * KL(softmax(t / T) || softmax(s / T))
    + (1 - alpha) * CE(s, y)`` (plus the ``train:`` regularisers), with the teacher's logits
    ``t`` of the training set computed once and cached on disk.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    teacher: str | None = Field(
        None, description="a finished `snn5 train` run folder of paradigm: ann, or a "
                          ".safetensors / .pt (weights_only) checkpoint of the model's ANN twin")
    temperature: float = Field(4.0, description="softmax temperature T of both logit sets, > 0")
    alpha: float = Field(0.9, description="weight of the soft (teacher) term, in [0, 1]")
    cache_dir: str | None = Field(
        None, description="where the teacher's logits are cached (None: <teacher>/logit_cache "
                          "for a run folder, the checkpoint's folder/logit_cache otherwise)")
    cache: bool = Field(True, description="false: run the teacher on every batch (live), "
                                          "for timing comparisons")

    @field_validator("temperature")
    @classmethod
    def _positive_temperature(cls, value: float) -> float:
        if not value > 0:
            raise ValueError(f"distill.temperature must be > 0, got {value}; Hinton et al. use "
                             "T between 1 and 20 (try 4).")
        return value

    @field_validator("alpha")
    @classmethod
    def _alpha_in_unit_interval(cls, value: float) -> float:
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"distill.alpha must be in [0, 1] (the weight of the teacher "
                             f"term; 1 - alpha weighs the label loss), got {value}.")
        return value
