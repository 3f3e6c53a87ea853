"""L4 measurement: accuracy, firing rates, SynOps and MACs, energy models, latency, and the
time-reversal test.

Example:
    >>> from snn5.metrics import measure
    >>> m = measure(snn, test_batches, ann_model=ann, energy_model="45nm")
    >>> m.to_dict()["energy_j_per_sample"], m.firing_rate_per_layer
"""

from snn5.metrics.activity import FiringRates
from snn5.metrics.early_exit import (
    Calibration, EarlyExit, ExitResult, ExitRule, calibrate_exit, evaluate_early_exit,
    exit_thresholds, logit_trace, predict_early_exit, simulate_exit,
)
from snn5.metrics.energy import (
    ENERGY_MODELS, HOROWITZ_45NM, EnergyModel, ann_energy_j, get_energy_model, snn_energy_j,
)
from snn5.metrics.measure import Measurement, accuracy, measure, predict
from snn5.metrics.ops import LayerOps, OpCounter, count_macs, is_spike_tensor
from snn5.metrics.reversal import reverse_time, time_axis, time_reversal_accuracy

__all__ = [
    "Calibration", "EarlyExit", "ExitResult", "ExitRule", "calibrate_exit",
    "evaluate_early_exit", "exit_thresholds", "logit_trace", "predict_early_exit",
    "simulate_exit",
    "ENERGY_MODELS", "HOROWITZ_45NM", "EnergyModel", "FiringRates", "LayerOps", "Measurement",
    "OpCounter", "accuracy", "ann_energy_j", "count_macs", "get_energy_model", "is_spike_tensor",
    "measure", "predict", "reverse_time", "snn_energy_j", "time_axis", "time_reversal_accuracy",
]
