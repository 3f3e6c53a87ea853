"""Measure a classifier SNN in one call: accuracy, loss, activity, operations, energy on every
registered target profile, latency."""

from __future__ import annotations

import copy
import dataclasses
import itertools
import logging
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from snn5.metrics.activity import FiringRates
from snn5.metrics.energy import (
    ENERGY_MODELS, EnergyModel, ann_energy_j, energy_breakdown, get_energy_model,
)
from snn5.metrics.ops import OpCounter, count_macs, eval_mode
from snn5.nn import SpikeRecorder

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Measurement:
    """What :func:`measure` found; all counts and energies are per sample.

    Attributes:
        accuracy: fraction of samples whose arg-max logit is the label.
        loss: mean cross-entropy of the logits.
        firing_rate_mean: spikes per neuron per step over all spiking layers (None without any).
        firing_rate_per_layer: the same for each spiking layer.
        synops_per_sample: accumulates triggered by spikes.
        synops_per_layer: SynOps per sample of each Linear/Conv layer.
        snn_macs_per_sample: dense MACs of the SNN's layers fed real values (encoding layer).
        ann_macs_per_sample: MACs of the same-size ANN, or None when none was given.
        energy_j_per_sample: the energy on ``energy_model`` (for ``"45nm"``:
            ``synops * e_ac + snn_macs * e_mac``).
        ann_energy_j_per_sample: ``ann_macs`` priced on ``energy_model``, or None.
        energy_model: name of the energy model.
        counts_per_layer: ``{layer: {"synops", "macs", "dense_macs", "neuron_updates",
            "spikes"}}`` per sample, every synaptic layer and neuron in model order.
        neurons_per_layer: neurons (``prod(F)``) of each neuron layer.
        energy_by_model: for every registered energy model (and ``energy_model``):
            ``{"energy_j_per_sample", "ann_energy_j_per_sample", "per_layer_j",
            "constants"}``.
        timesteps: the model's ``timesteps`` attribute, or None.
        latency_ms_per_sample: wall milliseconds per sample of plain forward passes.
        samples: number of samples measured.
    """

    accuracy: float
    loss: float
    firing_rate_mean: float | None
    firing_rate_per_layer: dict[str, float]
    synops_per_sample: float
    synops_per_layer: dict[str, float]
    snn_macs_per_sample: float
    ann_macs_per_sample: float | None
    energy_j_per_sample: float
    ann_energy_j_per_sample: float | None
    energy_model: str
    timesteps: int | None
    latency_ms_per_sample: float
    samples: int
    counts_per_layer: dict[str, dict[str, float]]
    neurons_per_layer: dict[str, int]
    energy_by_model: dict[str, dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready plain types; ``firing_rate`` is ``{"mean": ..., "per_layer": {...}}``."""
        out: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            out[field.name] = copy.deepcopy(value)
        out["firing_rate"] = {"mean": out.pop("firing_rate_mean"),
                              "per_layer": out.pop("firing_rate_per_layer")}
        order = ("accuracy", "loss", "firing_rate", "synops_per_sample", "synops_per_layer",
                 "snn_macs_per_sample", "ann_macs_per_sample", "energy_j_per_sample",
                 "ann_energy_j_per_sample", "energy_model", "timesteps",
                 "latency_ms_per_sample", "samples", "counts_per_layer", "neurons_per_layer",
                 "energy_by_model")
        return {key: out[key] for key in order}


def accuracy(logits: Tensor, y: Tensor) -> float:
    """Fraction of rows of ``logits: [B, C]`` whose arg-max equals ``y: [B]``."""
    _check_logits(logits, y)
    return (logits.argmax(-1) == y).to(torch.float64).mean().item()


def _check_logits(logits: Tensor, y: Tensor) -> None:
    if logits.ndim != 2 or y.ndim != 1 or logits.shape[0] != y.shape[0] or y.shape[0] == 0:
        raise ValueError(f"expected logits [B, C] and labels [B] with B >= 1, got "
                         f"{tuple(logits.shape)} and {tuple(y.shape)}; a classifier returns "
                         "[B, C] scores (reduce over time with a readout)")


def _model_device(model: nn.Module) -> torch.device | None:
    for t in itertools.chain(model.parameters(), model.buffers()):
        return t.device
    return None


def _resolve_device(model: nn.Module, device: torch.device | str | None, what: str
                    ) -> torch.device:
    have = _model_device(model)
    if device is None:
        return have if have is not None else torch.device("cpu")
    device = torch.device(device)
    if have is not None and (have.type != device.type or
                             (device.index is not None and have.index != device.index)):
        raise ValueError(f"{what} is on {have} but device={device}; move it first "
                         f"({what}.to('{device}')) or leave device=None")
    return have if have is not None else device


def _split(batch: Any, device: torch.device) -> tuple[Tensor, Tensor]:
    if not isinstance(batch, Sequence) or len(batch) < 2:
        raise TypeError(f"each batch must be a pair (x [B, *input_shape], y [B]), got "
                        f"{type(batch).__name__}")
    x, y = batch[0], batch[1]
    if not isinstance(x, Tensor) or not isinstance(y, Tensor):
        raise TypeError("each batch must hold tensors (x, y)")
    if y.is_floating_point() or y.is_complex():
        raise TypeError(f"labels y must be integer class ids (int64), got dtype {y.dtype}")
    return x.to(device), y.to(device=device, dtype=torch.int64)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed_forward(model: nn.Module, x: Tensor, device: torch.device) -> float:
    """Seconds of one plain forward pass (no hooks)."""
    _sync(device)
    start = time.perf_counter()
    model(x)
    _sync(device)
    return time.perf_counter() - start


def measure(model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]], *,
            ann_model: nn.Module | None = None, energy_model: EnergyModel | str = "45nm",
            device: torch.device | str | None = None) -> Measurement:
    """Measure a classifier on labelled batches, in eval mode under ``torch.inference_mode()``.

    For every batch, one plain forward pass is timed (after a warm-up pass on the first batch)
    and one more pass, with :class:`OpCounter` and :class:`snn5.nn.SpikeRecorder` attached,
    gives the logits, the per-layer counts (SynOps, MACs, dense MACs, neuron updates, spikes)
    and firing rates. The counts are priced on every registered energy model
    (:data:`snn5.metrics.ENERGY_MODELS`) and on ``energy_model``, the headline one.
    ``batches`` is iterated once, so a generator works. The training flags of all submodules
    are restored afterwards.

    Args:
        model: the SNN; ``model(x) -> logits [B, C]``.
        batches: pairs ``(x [B, *input_shape], y [B] int64)``.
        ann_model: the same-size ANN; its MACs are counted on the first batch.
        energy_model: the headline :class:`EnergyModel` or a registered name (``"45nm"``).
        device: where to run; None uses the model's device. Models are not moved.

    Returns:
        A :class:`Measurement` (per-sample counts and energies; ``to_dict()`` for JSON).
    """
    em = get_energy_model(energy_model)                      # fail before any work
    device = _resolve_device(model, device, "model")
    if ann_model is not None:
        _resolve_device(ann_model, device, "ann_model")
    counter = OpCounter(model, infer_samples=False)
    rates = FiringRates()
    samples = correct = 0
    loss_sum = seconds = 0.0
    x_first: Tensor | None = None
    with eval_mode(model), torch.inference_mode():
        for batch in batches:
            x, y = _split(batch, device)
            if x_first is None:
                x_first = x
                model(x)                                     # warm-up, not timed
            seconds += _timed_forward(model, x, device)
            with counter, SpikeRecorder(model) as recorder:
                logits = model(x)
            rates.update(recorder.spikes)
            _check_logits(logits, y)
            counter.add_samples(y.shape[0])
            loss_sum += F.cross_entropy(logits.float(), y, reduction="sum").item()
            correct += int((logits.argmax(-1) == y).sum())
            samples += y.shape[0]
    if x_first is None:
        raise ValueError("batches is empty; pass at least one (x, y) batch")
    ann_macs = count_macs(ann_model, x_first) if ann_model is not None else None

    rate_mean = rates.mean
    synops = counter.synops_per_sample
    counts = counter.counts_per_layer
    by_model = {name: _priced(counts, ann_macs, m) for name, m in ENERGY_MODELS.items()}
    by_model[em.name] = _priced(counts, ann_macs, em)
    timesteps = getattr(model, "timesteps", None)
    result = Measurement(
        accuracy=correct / samples,
        loss=loss_sum / samples,
        firing_rate_mean=None if math.isnan(rate_mean) else rate_mean,
        firing_rate_per_layer=rates.per_layer,
        synops_per_sample=synops,
        synops_per_layer=counter.synops_per_layer,
        snn_macs_per_sample=counter.macs_per_sample,
        ann_macs_per_sample=ann_macs,
        energy_j_per_sample=by_model[em.name]["energy_j_per_sample"],
        ann_energy_j_per_sample=by_model[em.name]["ann_energy_j_per_sample"],
        energy_model=em.name,
        timesteps=None if timesteps is None else int(timesteps),
        latency_ms_per_sample=1e3 * seconds / samples,
        samples=samples,
        counts_per_layer=counts,
        neurons_per_layer=counter.neurons_per_layer,
        energy_by_model=by_model,
    )
    log.debug("measured %d samples: accuracy %.4f, %.4g SynOps/sample, %.4g J/sample",
              samples, result.accuracy, synops, result.energy_j_per_sample)
    return result


def _priced(counts: dict[str, dict[str, float]], ann_macs: float | None, em: EnergyModel
            ) -> dict[str, Any]:
    """The per-sample energy of the counts and of the ANN twin's MACs on ``em``."""
    breakdown = energy_breakdown(counts, em)
    return {"energy_j_per_sample": breakdown.total_j,
            "ann_energy_j_per_sample": None if ann_macs is None else ann_energy_j(ann_macs, em),
            "per_layer_j": breakdown.per_layer_j, "constants": em.to_dict()}


def predict(model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]], *,
            device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
    """Predicted class ids and labels over all batches, in eval mode (modes restored).

    Returns:
        ``(predictions [N], labels [N])``, int64 on the CPU.
    """
    device = _resolve_device(model, device, "model")
    preds, labels = [], []
    with eval_mode(model), torch.inference_mode():
        for batch in batches:
            x, y = _split(batch, device)
            logits = model(x)
            _check_logits(logits, y)
            preds.append(logits.argmax(-1).cpu())
            labels.append(y.cpu())
    if not preds:
        raise ValueError("batches is empty; pass at least one (x, y) batch")
    return torch.cat(preds), torch.cat(labels)


__all__ = ["Measurement", "accuracy", "measure", "predict"]
