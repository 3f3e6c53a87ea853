"""Energy models: operation counts -> joules.

An SNN layer whose input is spikes performs one accumulate (AC) per synaptic event that a spike
triggers (a *SynOp*); a layer with real-valued input (the first layer of a direct-encoded
network, every layer of an ANN) performs one multiply-accumulate (MAC) per weight and output:

    E_snn = synops * e_ac + macs_snn * e_mac
    E_ann = macs_ann * e_mac

Convention (the one of Spikformer, Zhou et al. ICLR 2023, and the Spike-driven Transformer, Yao
et al. NeurIPS 2023): only the arithmetic of the synaptic layers is counted. Membrane updates,
threshold comparisons, memory traffic (weights, activations, membrane state) and spike routing
are *not* counted, and biases are ignored. On real hardware memory access often costs more than
the arithmetic, and an SNN reads its weights and state once per timestep, so compute-only
estimates overstate the savings of an SNN over an ANN; read them as an optimistic bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from snn5._registry import Registry


@dataclass(frozen=True)
class EnergyModel:
    """The energy of one accumulate and of one multiply-accumulate on some technology.

    Args:
        name: registry name, e.g. ``"45nm"``.
        e_ac_j: joules per accumulate (one SynOp).
        e_mac_j: joules per multiply-accumulate.
        reference: where the numbers come from.
    """

    name: str
    e_ac_j: float
    e_mac_j: float
    reference: str

    def __post_init__(self) -> None:
        for field in ("e_ac_j", "e_mac_j"):
            value = getattr(self, field)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"EnergyModel.{field} must be a positive number of joules "
                                 f"(e.g. 0.9e-12 for 0.9 pJ), got {value!r}")


ENERGY_MODELS: Registry[EnergyModel] = Registry("energy model")

HOROWITZ_45NM = EnergyModel(
    name="45nm",
    e_ac_j=0.9e-12,     # 32-bit float add
    e_mac_j=4.6e-12,    # 32-bit float mult (3.7 pJ) + add (0.9 pJ)
    reference=("M. Horowitz, 'Computing's energy problem (and what we can do about it)', "
               "ISSCC 2014: 45 nm, 32-bit float, 0.9 pJ per add, 3.7 pJ per multiply"),
)
ENERGY_MODELS.register(HOROWITZ_45NM.name, HOROWITZ_45NM)


def get_energy_model(model: EnergyModel | str) -> EnergyModel:
    """``model`` itself, or the registered energy model of that name (error lists the names)."""
    if isinstance(model, EnergyModel):
        return model
    return ENERGY_MODELS.get(model)


def _check_count(name: str, value: float) -> float:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite count >= 0, got {value!r}")
    return float(value)


def snn_energy_j(synops: float, macs: float, model: EnergyModel | str = "45nm") -> float:
    """Energy of an SNN forward: ``synops * e_ac + macs * e_mac`` joules.

    Args:
        synops: accumulates triggered by spikes (per sample, or in total).
        macs: dense multiply-accumulates of layers fed real values (e.g. the encoding layer).
        model: an :class:`EnergyModel` or a registered name.

    Returns:
        Joules, in the same unit of work as the counts (per sample if they are per sample).
    """
    em = get_energy_model(model)
    return _check_count("synops", synops) * em.e_ac_j + _check_count("macs", macs) * em.e_mac_j


def ann_energy_j(macs: float, model: EnergyModel | str = "45nm") -> float:
    """Energy of an ANN forward: ``macs * e_mac`` joules."""
    return _check_count("macs", macs) * get_energy_model(model).e_mac_j


__all__ = ["ENERGY_MODELS", "HOROWITZ_45NM", "EnergyModel", "ann_energy_j", "get_energy_model",
           "snn_energy_j"]
