"""L2 modules: neurons (sequence + Cell twins), time-distributed layers, readouts, encoders,
and the pieces of ANN-to-SNN conversion (QCFS, converted neurons, ternary and add-only layers)."""

from snn5.nn.conversion import QCFS, ConvertedNeuron, RepeatTime
from snn5.nn.event import EventLinear
from snn5.nn.encoders import (
    DirectEncoder, Encoding, FrequencyEncoder, LatencyEncoder, PoissonEncoder, PopulationEncoder,
    build_encoder,
)
from snn5.nn.layers import Sequential, TimeDistributed, detach_state, is_stateful
from snn5.nn.monitor import SpikeRecorder, spiking_layers
from snn5.nn.neurons import (
    ALIF, IF, LI, LIF, NEURONS, PLIF, ALIFCell, IFCell, LICell, LIFCell, Neuron, NeuronBase,
    NeuronCell, PLIFCell,
)
from snn5.nn.neurons_ext import (
    ELLIF, GLIF, TCLIF, ELLIFCell, GLIFCell, IntLIF, IntLIFCell, RefractoryLIF, RefractoryLIFCell,
    TCLIFCell,
)
from snn5.nn.schedule import ScheduleKind, SurrogateSchedule, anneal_surrogates
from snn5.nn.readout import (
    FirstSpike, MembraneReadout, Readout, SpikeCount, TimeMean, build_readout, first_spike_time,
    readout_is_spiking,
)
from snn5.nn.ternary import (
    AddOnlyConv2d, AddOnlyLinear, InputNoise, OpCounts, TernaryConv2d, TernaryLinear,
)
from snn5.nn.attention import (
    AttentionBridge, DualTemporalChannelAttention, SelfAttention, SpikeDrivenSelfAttention,
    SpikingSelfAttention, TemporalAttention, TemporalAttentionKind,
)
from snn5.nn.residual import Connect, SEWBlock
from snn5.nn.ssm import AttentionSpikingSSMLayer, DiagonalSSM, SpikingSSMLayer
from snn5.nn.quant import MembraneGrid, fake_quant


__all__ = [
    "QCFS", "AddOnlyConv2d", "AddOnlyLinear", "ConvertedNeuron", "InputNoise", "OpCounts",
    "RepeatTime", "TernaryConv2d", "TernaryLinear",
    "ALIF", "ALIFCell", "DirectEncoder", "Encoding", "EventLinear", "IF", "IFCell", "LI", "LICell", "LIF",
    "LIFCell", "LatencyEncoder", "MembraneReadout", "NEURONS", "Neuron", "NeuronBase",
    "NeuronCell", "PLIF", "PLIFCell", "PoissonEncoder", "Readout", "Sequential", "SpikeCount",
    "SpikeRecorder", "TimeDistributed", "TimeMean", "build_encoder", "build_readout",
    "detach_state", "is_stateful", "readout_is_spiking", "spiking_layers",
    "ELLIF", "ELLIFCell", "GLIF", "GLIFCell", "IntLIF", "IntLIFCell", "RefractoryLIF",
    "RefractoryLIFCell", "TCLIF", "TCLIFCell", "FrequencyEncoder", "PopulationEncoder",
    "ScheduleKind", "SurrogateSchedule", "anneal_surrogates",
    "AttentionBridge", "AttentionSpikingSSMLayer", "Connect", "DiagonalSSM",
    "DualTemporalChannelAttention", "SEWBlock", "SelfAttention", "SpikeDrivenSelfAttention",
    "SpikingSSMLayer", "SpikingSelfAttention", "TemporalAttention", "TemporalAttentionKind",
    "FirstSpike", "first_spike_time", "MembraneGrid", "fake_quant",
]
