"""Config schema of a conversion run (the ``conversion:`` section of a run config)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from snn5.models.ann import ANNSpec, VGGConfig


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CalibrationConfig(_Strict):
    """The calibration set: the first ``samples`` images of the training split (threshold
    statistics, bias correction, HSEO)."""

    samples: int = Field(1000, ge=1)
    bias_correction: bool = Field(False, description="layer-wise activation matching by bias "
                                  "correction (Li et al. ICML 2021); kept only if it does not "
                                  "lower the calibration accuracy")


class HSEOConfig(_Strict):
    """Evolutionary bio-calibration: CMA-ES over per-layer threshold scale, leak and initial
    membrane, maximising calibration accuracy at ``target_timesteps``."""

    enabled: bool = False
    population_size: int = Field(16, ge=2)
    generations: int = Field(10, ge=1)
    scale_range: tuple[float, float] = (0.5, 1.5)
    leak_range: tuple[float, float] = (0.8, 1.0)
    v_init_range: tuple[float, float] = (0.0, 1.0)


class ConversionConfig(_Strict):
    """How the ANN is built and converted, and what is measured."""

    ann: ANNSpec = VGGConfig()
    ann_weights: str | None = Field(None, description="a state_dict file (.safetensors, or a "
                                    "torch file read with weights_only) to convert instead of "
                                    "training the ANN")
    method: Literal["threshold_balancing", "qcfs", "scale_and_fire", "logic_gated"] = "qcfs"
    timesteps: tuple[int, ...] = Field((1, 2, 4, 8, 16, 32), min_length=1)
    target_timesteps: int = Field(4, ge=1, description="T of the saved model, calibration and "
                                  "HSEO (scale_and_fire: 1)")
    encoding: Literal["direct", "poisson"] = "direct"
    percentile: float = Field(99.99, gt=0, le=100, description="threshold balancing: "
                              "percentile of positive activations (100: max norm)")
    levels: int | None = Field(None, ge=1, description="scale_and_fire: spikes per step "
                               "(default: the QCFS levels, else 8)")
    v_init: float | None = Field(None, ge=0, le=1, description="initial membrane / threshold "
                                 "(default: 0 for threshold balancing, else 0.5)")
    calibration: CalibrationConfig = CalibrationConfig()
    hseo: HSEOConfig = HSEOConfig()
    noise_levels: tuple[float, ...] | None = Field(None, description=(
        "input-noise fractions of robust_accuracy_by_noise (SNN at target_timesteps and ANN); "
        "default: none, logic_gated: 0, 0.1, ..., 0.5"))
    measure_samples: int = Field(1000, ge=1, description="test samples for SynOps/energy per T")

    @model_validator(mode="before")
    @classmethod
    def _logic_gated_defaults(cls, data: Any) -> Any:
        """``logic_gated`` trains a ternary ANN with input noise U(0, 45 %) and measures the
        accuracy under 0-50 % input noise unless told otherwise."""
        if isinstance(data, dict) and data.get("method") == "logic_gated":
            ann = data.get("ann")
            if isinstance(ann, dict):
                ann = dict(ann)
                ann.setdefault("ternary", True)
                ann.setdefault("noise", (0.0, 0.45))
                data = {**data, "ann": ann}
            data.setdefault("noise_levels", (0.0, 0.1, 0.2, 0.3, 0.4, 0.5))
        return data

    @model_validator(mode="after")
    def _consistent(self) -> ConversionConfig:
        if (self.method == "logic_gated") != self.ann.ternary:
            raise ValueError("method logic_gated and ann.ternary: true go together (ternary "
                             "hidden layers are what the logic-gated SNN runs with additions)")
        if self.method in ("qcfs", "logic_gated") and self.ann.activation != "qcfs":
            raise ValueError(f"method {self.method} needs ann.activation: qcfs; use "
                             "threshold_balancing for a ReLU ANN")
        if any(t < 1 for t in self.timesteps):
            raise ValueError(f"timesteps must be >= 1, got {list(self.timesteps)}")
        if self.noise_levels is not None and any(not 0 <= p <= 1 for p in self.noise_levels):
            raise ValueError(f"noise_levels are fractions in [0, 1], got {list(self.noise_levels)}")
        return self

    @property
    def steps(self) -> tuple[int, ...]:
        """The T values measured (scale_and_fire: 1 only)."""
        return (1,) if self.method == "scale_and_fire" else tuple(sorted(set(self.timesteps)))

    @property
    def target(self) -> int:
        return 1 if self.method == "scale_and_fire" else self.target_timesteps


__all__ = ["CalibrationConfig", "ConversionConfig", "HSEOConfig"]
