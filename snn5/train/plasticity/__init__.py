"""Plasticity learners: local rules (STDP, triplet, reward-modulated STDP, BCM, Hebbian, BCPNN)
attached to the layers of an snn5 model, writing ``-dw`` into ``.grad``; weight constraints."""

from snn5.train.plasticity.config import PlasticityConfig
from snn5.train.plasticity.fit import PlasticityFit, fit_plasticity, hidden_layers, ridge_fit
from snn5.train.plasticity.learner import (
    Constraint, Dale, Homeostasis, Normalize, PlasticityLearner, Synapse, WeightBounds,
)
from snn5.train.plasticity.rules import (
    BCM, BCPNN, RULES, STDP, HebbianDecay, RewardSTDP, Rule, TripletSTDP, build_rule,
)

__all__ = [
    "BCM", "BCPNN", "Constraint", "Dale", "HebbianDecay", "Homeostasis", "Normalize",
    "PlasticityConfig", "PlasticityFit", "PlasticityLearner", "RULES", "RewardSTDP", "Rule", "STDP", "Synapse", "TripletSTDP",
    "WeightBounds", "build_rule", "fit_plasticity", "hidden_layers", "ridge_fit",
]
