"""Plasticity learners: local rules (STDP, triplet, reward-modulated STDP, BCM, Hebbian, BCPNN)
attached to the layers of an snn5 model, writing ``-dw`` into ``.grad``; weight constraints; the
``paradigm: plasticity`` fit; a decision layer trained by reward alone (R-STDP) and the
STDP-learned convolutional feature extractor it reads (``.conv_stdp``); e-prop for recurrent
LIF/ALIF networks; the liquid-state-machine readout (``.reservoir``)."""

from snn5.train.plasticity.config import PlasticityConfig
from snn5.train.plasticity.conv_stdp import (
    ConvLayerConfig, ConvSTDPConfig, ConvSTDPNetwork, train_conv_layer,
)
from snn5.train.plasticity.eprop import (
    EpropLearner, EpropResult, Feedback, RateRegularization, TaskLoss, rate_regularization,
    sequence_loss, time_weights_for,
)
from snn5.train.plasticity.fit import PlasticityFit, fit_plasticity, hidden_layers, ridge_fit
from snn5.train.plasticity.learner import (
    Constraint, Dale, Homeostasis, Normalize, PlasticityLearner, Synapse, WeightBounds,
)
from snn5.train.plasticity.reservoir import (
    FeatureScaler, LinearReadout, ReadoutKind, ReservoirFit, ReservoirFitConfig, ShapingStats,
    calibrate_input_gain, fit_readout, fit_reservoir, liquid_features, stdp_shape,
)
from snn5.train.plasticity.rstdp import (
    RSTDPConfig, RSTDPReadout, latency_times, rstdp_accuracy, train_rstdp,
)
from snn5.train.plasticity.rules import (
    BCM, BCPNN, RULES, STDP, HebbianDecay, RewardSTDP, Rule, TripletSTDP, build_rule,
)

__all__ = [
    "BCM", "BCPNN", "Constraint", "ConvLayerConfig", "ConvSTDPConfig", "ConvSTDPNetwork", "Dale",
    "EpropLearner", "EpropResult", "FeatureScaler",
    "Feedback", "HebbianDecay", "LinearReadout", "ReadoutKind", "ReservoirFit",
    "ReservoirFitConfig", "ShapingStats", "calibrate_input_gain", "fit_readout", "fit_reservoir",
    "liquid_features", "stdp_shape", "Homeostasis", "Normalize",
    "PlasticityConfig", "PlasticityFit", "PlasticityLearner", "RSTDPConfig", "RSTDPReadout", "RULES",
    "RateRegularization", "TaskLoss", "RewardSTDP", "Rule", "STDP", "Synapse", "TripletSTDP",
    "WeightBounds", "build_rule", "fit_plasticity", "hidden_layers", "latency_times", "ridge_fit",
    "rate_regularization", "rstdp_accuracy", "sequence_loss", "time_weights_for",
    "train_conv_layer", "train_rstdp",
]
