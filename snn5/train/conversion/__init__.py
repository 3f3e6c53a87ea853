"""ANN -> SNN conversion: ingest an ANN (torch.fx, BatchNorm folding), convert it with threshold
balancing, QCFS, scale-and-fire or the logic-gated ternary method, calibrate it (bias
correction, evolutionary HSEO) and measure it over timesteps."""

from snn5.train.conversion.calibrate import (
    CalibrationReport, HSEOReport, calibrate_biases, hseo, snn_accuracy,
)
from snn5.train.conversion.convert import (
    ConvertedSNN, NeuronPlan, accuracy_by_timesteps, activation_stats, convert, fold_spike_values,
    gate_ternary_layers, plan_neurons,
)
from snn5.train.conversion.config import CalibrationConfig, ConversionConfig, HSEOConfig
from snn5.train.conversion.ingest import Activation, UnsupportedLayerError, ingest, trace
from snn5.train.conversion.logic_gated import (
    add_only_counts, noise_robustness, reset_counts, to_add_only_, trace_logic_gated,
)

__all__ = [
    "CalibrationConfig", "ConversionConfig", "HSEOConfig", "add_only_counts",
    "gate_ternary_layers", "noise_robustness", "reset_counts", "to_add_only_",
    "trace_logic_gated",
    "Activation", "CalibrationReport", "ConvertedSNN", "HSEOReport", "NeuronPlan",
    "UnsupportedLayerError", "accuracy_by_timesteps", "activation_stats", "calibrate_biases",
    "convert", "fold_spike_values", "hseo", "ingest", "plan_neurons", "snn_accuracy", "trace",
]
