"""L0 physics: neuron steps and scans, the spike function and its surrogates, resets, encoders,
local plasticity rules as pure updates (``snn5.core.plasticity``) and the spiking E/I reservoir of
a liquid state machine (``snn5.core.reservoir``).

Pure functions of torch tensors: explicit NamedTuple state in, new state out; no I/O.
"""

from snn5.core.encoders import (
    encode_delta, encode_direct, encode_frequency, encode_latency, encode_poisson, encode_population,
    frequency_masks, population_responses, population_shape,
)
from snn5.core.neurons import (
    ALIFParams, ALIFState, IFParams, IFState, LIFParams, LIFState, LIParams, LIState, PLIFParams,
    alif_scan, alif_step, decay, if_scan, if_step, li_scan, li_step, lif_scan, lif_step,
    plif_raw, plif_scan, plif_step, plif_tau, reset_membrane,
)
from snn5.core.neurons_ext import (
    ELLIFParams, ELLIFState, GLIFParams, GLIFState, IntLIFParams, RefractoryLIFParams,
    RefractoryLIFState, TCLIFParams, TCLIFState, el_lif_scan, el_lif_step, glif_scan, glif_step,
    int_lif_binary_scan, int_lif_binary_step, int_lif_scan, int_lif_step, refractory_lif_scan,
    refractory_lif_step, tclif_scan, tclif_step,
)
from snn5.core import plasticity, reservoir
from snn5.core.options import Option, Reset
from snn5.core.surrogate import (
    SURROGATES, ATan, FastSigmoid, Rectangle, Sigmoid, Surrogate, Triangle, spike,
)

__all__ = [
    "ALIFParams", "ALIFState", "ATan", "FastSigmoid", "IFParams", "IFState", "LIFParams",
    "LIFState", "LIParams", "LIState", "Option", "PLIFParams", "Rectangle", "Reset", "SURROGATES",
    "Sigmoid", "Surrogate", "Triangle", "alif_scan", "alif_step", "decay", "encode_delta",
    "encode_direct", "encode_latency", "encode_poisson", "if_scan", "if_step", "li_scan",
    "li_step", "lif_scan", "lif_step", "plasticity", "plif_raw", "plif_scan", "plif_step", "plif_tau",
    "reservoir", "reset_membrane", "spike",
    "ELLIFParams", "ELLIFState", "GLIFParams", "GLIFState", "IntLIFParams",
    "RefractoryLIFParams", "RefractoryLIFState",
    "TCLIFParams", "TCLIFState", "el_lif_scan", "el_lif_step", "glif_scan", "glif_step",
    "int_lif_binary_scan", "int_lif_binary_step", "int_lif_scan", "int_lif_step",
    "refractory_lif_scan", "refractory_lif_step", "tclif_scan", "tclif_step",
    "encode_frequency", "encode_population", "frequency_masks", "population_responses",
    "population_shape",
]
