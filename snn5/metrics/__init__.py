"""L4 measurement: accuracy, firing rates, SynOps, MACs, neuron updates and spikes, energy per
target profile, latency, and the time-reversal test.

Example:
    >>> from snn5.metrics import energy_breakdown, measure
    >>> m = measure(snn, test_batches, ann_model=ann, energy_model="45nm")
    >>> m.to_dict()["energy_j_per_sample"], m.firing_rate_per_layer
    >>> energy_breakdown(m.counts_per_layer, "loihi").per_layer_j
"""

from snn5.metrics.activity import FiringRates
from snn5.metrics.early_exit import (
    Calibration, EarlyExit, ExitResult, ExitRule, calibrate_exit, evaluate_early_exit,
    exit_thresholds, logit_trace, predict_early_exit, simulate_exit,
)
from snn5.metrics.energy import (
    COUNT_KEYS, ENERGY_MODELS, GPU_DENSE, HOROWITZ_45NM, LOIHI, EnergyBreakdown, EnergyModel,
    ann_energy_j, energy_breakdown, energy_j, get_energy_model,
)
from snn5.metrics.measure import Measurement, accuracy, measure, predict
from snn5.metrics.ops import LayerOps, OpCounter, count_macs, is_spike_tensor
from snn5.metrics.reversal import reverse_time, time_axis, time_reversal_accuracy

__all__ = [
    "Calibration", "EarlyExit", "ExitResult", "ExitRule", "calibrate_exit",
    "evaluate_early_exit", "exit_thresholds", "logit_trace", "predict_early_exit",
    "simulate_exit",
    "COUNT_KEYS", "ENERGY_MODELS", "GPU_DENSE", "HOROWITZ_45NM", "LOIHI", "EnergyBreakdown",
    "EnergyModel", "FiringRates", "LayerOps", "Measurement", "OpCounter", "accuracy",
    "ann_energy_j", "count_macs", "energy_breakdown", "energy_j", "get_energy_model",
    "is_spike_tensor", "measure", "predict", "reverse_time", "time_axis",
    "time_reversal_accuracy",
]
