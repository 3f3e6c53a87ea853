"""snn5: spiking neural networks on one engine.

Local plasticity, ANN-to-SNN conversion and surrogate-gradient training share the same
time-major modules (``[T, B, ...]``), explicit neuron state and physical parameters (seconds).

The top level re-exports the building blocks; runs, configs and measurements live in
``snn5.runs``, ``snn5.config`` and ``snn5.metrics``.

Example:
    >>> import torch, snn5
    >>> lif = snn5.LIF(tau_mem=20e-3, dt=1e-3, surrogate=snn5.ATan(alpha=2.0))
    >>> z, state = lif(torch.rand(100, 8, 32))      # spikes [100, 8, 32], final state
"""

from snn5._version import __version__
from snn5.core import ATan, FastSigmoid, Rectangle, Reset, Sigmoid, Surrogate, Triangle, spike
from snn5.models import SpikingClassifier, build_model
from snn5.nn import (
    ALIF, IF, LI, LIF, PLIF, ALIFCell, Encoding, IFCell, LICell, LIFCell, PLIFCell, Readout,
    Sequential, SpikeRecorder, TimeDistributed,
)

__all__ = [
    "ALIF", "ALIFCell", "ATan", "Encoding", "FastSigmoid", "IF", "IFCell", "LI", "LICell", "LIF",
    "LIFCell", "PLIF", "PLIFCell", "Readout", "Rectangle", "Reset", "Sequential", "Sigmoid",
    "SpikeRecorder", "SpikingClassifier", "Surrogate", "TimeDistributed", "Triangle",
    "__version__", "build_model", "spike",
]
