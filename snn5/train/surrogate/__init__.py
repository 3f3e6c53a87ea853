"""Surrogate-gradient training: BPTT trainer (full or truncated), losses, regularisers."""

from snn5.train.surrogate.config import (
    CELoss, LossConfig, OptimizerConfig, RatePenaltyConfig, ScheduleConfig, SpikeEntropyConfig,
    SurrogateScheduleConfig, TETLoss, TrainConfig, TRTLoss,
)
from snn5.train.surrogate.losses import (
    chunk_loss, layer_rates, mean_rate, rate_penalty, spike_entropy, tet_loss, trt_loss,
    trt_weights,
)
from snn5.train.surrogate.tbptt import TBPTTError, check_tbptt, tbptt_backward
from snn5.train.surrogate.trainer import (
    BEST, LAST, FitResult, NonFiniteError, Trainer, first_nonfinite_module,
)

__all__ = [
    "BEST", "CELoss", "LAST", "FitResult", "LossConfig", "NonFiniteError", "OptimizerConfig",
    "RatePenaltyConfig", "ScheduleConfig", "SpikeEntropyConfig", "SurrogateScheduleConfig",
    "TBPTTError", "TETLoss", "TRTLoss", "TrainConfig", "Trainer", "check_tbptt", "chunk_loss",
    "first_nonfinite_module", "layer_rates", "mean_rate", "rate_penalty", "spike_entropy",
    "tbptt_backward", "tet_loss", "trt_loss", "trt_weights",
]
