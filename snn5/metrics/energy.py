"""Energy per target: named energy profiles that turn per-layer operation counts into joules.

A profile (:class:`EnergyModel`) prices five counts, each per layer and in the same unit of work
(per sample, per batch, in total):

- ``synops``: accumulates triggered by spikes (one per synaptic event);
- ``macs``: multiply-accumulates of layers fed real values (the analog first layer of a
  direct-encoded network, an ANN head), counted where an event-driven machine computes them;
- ``dense_macs``: every synapse at every call, spikes or not (``fan_in * outputs``, T times):
  what a dense machine (a GPU running matmuls) computes;
- ``neuron_updates``: neurons x steps of every layer that holds a membrane;
- ``spikes``: spikes emitted (the sources of the synaptic events; one message each).

The energy is linear in the counts::

    E = synops * e_ac + macs * e_mac + dense_macs * e_dense_mac
        + neuron_updates * e_neuron_update + spikes * e_spike

A profile prices either the event-driven counts (``synops``, ``macs``) or ``dense_macs``,
never both: ``dense_macs`` already contains every synapse of the other two. The ANN twin of a
model performs ``macs = dense_macs`` (every layer is fed real values), so
:func:`ann_energy_j` prices its MACs with ``e_mac + e_dense_mac``.

Registered profiles (``docs/energy.md`` has the derivations):

- ``"45nm"`` (default): digital 45 nm CMOS, 32-bit float arithmetic only (Horowitz, ISSCC 2014);
  the convention of Spikformer (Zhou et al., ICLR 2023) and the Spike-driven Transformer (Yao
  et al., NeurIPS 2023): synaptic arithmetic only.
- ``"loihi"``: Intel Loihi's energy per synaptic spike op, per neuron update and per spike
  (Davies et al., IEEE Micro 2018, Table 2). Loihi takes spikes only: the MACs of a layer fed
  real values are priced as on a 45 nm digital host (Horowitz's 4.6 pJ).
- ``"gpu_dense"``: an NVIDIA A100 (SXM4) running every layer as dense TF32 tensor-core
  matmuls: 400 W / 78e12 MAC/s (datasheet TDP over peak dense throughput) per dense MAC.

All are estimates of arithmetic (and, for Loihi, of the core's event handling): memory traffic
off the core, idle and static power and host transfers are not counted, so read the numbers as
bounds for comparing models on one target, not as measurements.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from snn5._registry import Registry

COUNT_KEYS: tuple[str, ...] = ("synops", "macs", "dense_macs", "neuron_updates", "spikes")
"""The per-layer counts a profile prices, in the order of :attr:`EnergyModel.costs`."""


@dataclass(frozen=True)
class EnergyModel:
    """A target's energy per counted event (an *energy profile*).

    Args:
        name: registry name, e.g. ``"45nm"``.
        e_ac_j: joules per SynOp (an accumulate triggered by a spike).
        e_mac_j: joules per multiply-accumulate of a layer fed real values (the ANN twin pays
            ``e_mac_j + e_dense_mac_j`` per MAC, see :func:`ann_energy_j`).
        reference: where the numbers come from.
        e_dense_mac_j: joules per dense MAC (every synapse at every call, spikes or not);
            nonzero only when ``e_ac_j`` and ``e_mac_j`` are zero.
        e_neuron_update_j: joules per neuron and step.
        e_spike_j: joules per spike emitted.
    """

    name: str
    e_ac_j: float
    e_mac_j: float
    reference: str
    e_dense_mac_j: float = 0.0
    e_neuron_update_j: float = 0.0
    e_spike_j: float = 0.0

    def __post_init__(self) -> None:
        for field in ("e_ac_j", "e_mac_j", "e_dense_mac_j", "e_neuron_update_j", "e_spike_j"):
            value = getattr(self, field)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"EnergyModel.{field} must be a number of joules >= 0 "
                                 f"(e.g. 0.9e-12 for 0.9 pJ), got {value!r}")
        if self.e_dense_mac_j > 0 and (self.e_ac_j > 0 or self.e_mac_j > 0):
            raise ValueError(f"energy model '{self.name}' prices both dense MACs and SynOps/MACs; "
                             "dense_macs already holds every synapse, so set e_dense_mac_j=0 "
                             "(event-driven target) or e_ac_j=e_mac_j=0 (dense target)")
        if self.e_mac_j + self.e_dense_mac_j <= 0:
            raise ValueError(f"energy model '{self.name}' gives a MAC no energy; set e_mac_j "
                             "(event-driven target) or e_dense_mac_j (dense target) > 0, so "
                             "that real-valued layers and the ANN twin are priced")

    @property
    def costs(self) -> dict[str, float]:
        """Joules per unit of each count of :data:`COUNT_KEYS`."""
        return {"synops": self.e_ac_j, "macs": self.e_mac_j, "dense_macs": self.e_dense_mac_j,
                "neuron_updates": self.e_neuron_update_j, "spikes": self.e_spike_j}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return dataclasses.asdict(self)


ENERGY_MODELS: Registry[EnergyModel] = Registry("energy model")

HOROWITZ_45NM = EnergyModel(
    name="45nm",
    e_ac_j=0.9e-12,     # 32-bit float add (Horowitz 2014)
    e_mac_j=4.6e-12,    # 32-bit float mult (3.7 pJ) + add (0.9 pJ) (Horowitz 2014)
    reference=("M. Horowitz, 'Computing's energy problem (and what we can do about it)', "
               "ISSCC 2014: 45 nm, 32-bit float, 0.9 pJ per add, 3.7 pJ per multiply"),
)

LOIHI = EnergyModel(
    name="loihi",
    e_ac_j=23.6e-12,             # energy per synaptic spike op (min) (Davies 2018, Table 2)
    e_mac_j=4.6e-12,             # real-valued layers on a 45 nm host: Horowitz 2014 MAC
    e_neuron_update_j=81e-12,    # energy per neuron update, active (inactive: 52 pJ) (Table 2)
    e_spike_j=1.7e-12,           # within-tile spike energy (tile hops: 3.0 / 4.0 pJ each)
    reference=("M. Davies et al., 'Loihi: A neuromorphic manycore processor with on-chip "
               "learning', IEEE Micro 38(1), 2018, Table 2 (14 nm, pre-silicon SPICE "
               "estimates): 23.6 pJ per synaptic spike op (min), 81 pJ per active neuron "
               "update, 1.7 pJ per spike within a tile; real-valued layers as 45 nm MACs "
               "(Horowitz, ISSCC 2014, 4.6 pJ)"),
)

A100_TDP_W = 400.0
"""NVIDIA A100 SXM4 maximum thermal design power (A100 datasheet)."""
A100_TF32_DENSE_FLOPS = 156e12
"""NVIDIA A100 peak TF32 tensor-core throughput without sparsity, FLOP/s (A100 datasheet)."""

GPU_DENSE = EnergyModel(
    name="gpu_dense",
    e_ac_j=0.0,
    e_mac_j=0.0,
    e_dense_mac_j=A100_TDP_W / (A100_TF32_DENSE_FLOPS / 2),     # 1 MAC = 2 FLOP: 5.13 pJ
    reference=("NVIDIA A100 Tensor Core GPU datasheet (SXM4): 400 W max TDP, 156 TFLOPS TF32 "
               "tensor core (dense), PyTorch's default for float32 convolutions on A100; "
               "400 W / 78e12 MAC/s = 5.13 pJ per MAC at full utilisation"),
)

for _model in (HOROWITZ_45NM, LOIHI, GPU_DENSE):
    ENERGY_MODELS.register(_model.name, _model)


def get_energy_model(model: EnergyModel | str) -> EnergyModel:
    """``model`` itself, or the registered energy model of that name (error lists the names)."""
    if isinstance(model, EnergyModel):
        return model
    return ENERGY_MODELS.get(model)


def _check_count(name: str, value: float) -> float:
    if isinstance(value, bool) or not (isinstance(value, (int, float)) and math.isfinite(value)
                                       and value >= 0):
        raise ValueError(f"{name} must be a finite count >= 0, got {value!r}")
    return float(value)


def energy_j(counts: Mapping[str, float], model: EnergyModel | str = "45nm", *,
             layer: str = "") -> float:
    """Joules of one set of counts (one layer, or a whole model's totals) on ``model``.

    Args:
        counts: ``{"synops": .., "macs": .., "dense_macs": .., "neuron_updates": ..,
            "spikes": ..}``; a count the model does not price may be missing; other keys
            (e.g. ``"neurons"``) are ignored.
        model: an :class:`EnergyModel` or a registered name.
        layer: the layer's name, for error messages.

    Returns:
        Joules, in the unit of work of the counts (per sample if they are per sample).
    """
    em = get_energy_model(model)
    where = f" of layer '{layer}'" if layer else ""
    total = 0.0
    for key, cost in em.costs.items():
        if key not in counts:
            if cost > 0:
                raise ValueError(f"the counts{where} have no '{key}', which energy model "
                                 f"'{em.name}' prices; count it (snn5.metrics.OpCounter "
                                 f"records {', '.join(COUNT_KEYS)}) or pick a model that does "
                                 "not use it")
            continue
        total += _check_count(f"{key}{where}", counts[key]) * cost
    return total


@dataclass(frozen=True)
class EnergyBreakdown:
    """Energy of every layer on one profile.

    Attributes:
        model: the profile's name.
        per_layer_j: joules of each layer, in the order of the counts given.
        total_j: their sum.
    """

    model: str
    per_layer_j: dict[str, float]
    total_j: float


def energy_breakdown(per_layer_counts: Mapping[str, Mapping[str, float]],
                     model: EnergyModel | str = "45nm") -> EnergyBreakdown:
    """Price per-layer counts on one profile, for a run or an exported graph alike.

    Args:
        per_layer_counts: ``{layer_name: {"synops": .., "macs": .., "dense_macs": ..,
            "neuron_updates": .., "spikes": ..}}``, as :attr:`snn5.metrics.OpCounter.
            counts_per_layer` and the event-driven NIR runtime return them.
        model: an :class:`EnergyModel` or a registered name.

    Returns:
        An :class:`EnergyBreakdown` (joules per layer and in total, in the counts' unit).

    Example:
        >>> energy_breakdown({"fc": {"synops": 1e6, "macs": 0, "neuron_updates": 400,
        ...                          "spikes": 30}}, "loihi").total_j
    """
    em = get_energy_model(model)
    per_layer = {name: energy_j(counts, em, layer=name)
                 for name, counts in per_layer_counts.items()}
    return EnergyBreakdown(model=em.name, per_layer_j=per_layer, total_j=sum(per_layer.values()))


def ann_energy_j(macs: float, model: EnergyModel | str = "45nm") -> float:
    """Energy of an ANN forward of ``macs`` multiply-accumulates: every layer is fed real
    values, so its MACs are both ``macs`` and ``dense_macs``; it has no SynOps, no neuron
    updates and no spikes."""
    macs = _check_count("macs", macs)
    return energy_j({**dict.fromkeys(COUNT_KEYS, 0.0), "macs": macs, "dense_macs": macs}, model)


__all__ = ["A100_TDP_W", "A100_TF32_DENSE_FLOPS", "COUNT_KEYS", "ENERGY_MODELS", "GPU_DENSE",
           "HOROWITZ_45NM", "LOIHI", "EnergyBreakdown", "EnergyModel", "ann_energy_j",
           "energy_breakdown", "energy_j", "get_energy_model"]
