"""Surrogate-gradient training: BPTT trainer, losses, regularisers."""

from snn5.train.surrogate.config import (
    OptimizerConfig, RatePenaltyConfig, ScheduleConfig, TrainConfig,
)
from snn5.train.surrogate.losses import layer_rates, mean_rate, rate_penalty, tet_loss
from snn5.train.surrogate.trainer import (
    BEST, LAST, FitResult, NonFiniteError, Trainer, first_nonfinite_module,
)

__all__ = [
    "BEST", "LAST", "FitResult", "NonFiniteError", "OptimizerConfig", "RatePenaltyConfig",
    "ScheduleConfig", "TrainConfig", "Trainer", "first_nonfinite_module", "layer_rates",
    "mean_rate", "rate_penalty", "tet_loss",
]
