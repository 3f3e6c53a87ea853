"""Early exit (SNN cutoff): stop each sample's inference once its output is confident enough.

A classifier SNN builds its answer over ``T`` steps; many inputs are decided long before ``T``.
Early exit runs the model one step at a time (:meth:`snn5.models.SpikingClassifier.stream`) and
lets each sample leave as soon as a confidence rule on its logits so far holds; samples that
never reach the threshold stop at ``T`` (step ``T + 1`` is never computed). Exited samples are
dropped from the batch, so the remaining steps run on fewer samples.

Rules (:class:`ExitRule`), each compared as ``confidence >= threshold`` after every step:

* ``MAX_PROB``: the largest softmax probability of the logits so far, the confidence that
  Dynamic Confidence decodes from the output over time to terminate inference (Li, Jones &
  Furber, "Unleashing the Potential of Spiking Neural Networks with Dynamic Confidence", ICCV
  2023) and the ``ConfCutoff`` rule of the SNN-cutoff authors' code (max softmax of the summed
  outputs >= ``1 - epsilon``). The threshold is calibrated as below, not by Li et al.'s Pareto
  front search.
* ``MARGIN``: top-1 minus top-2 logit so far, the "Top-K gap" ``Y_gap = Top1(Y(t)) -
  Top2(Y(t))`` of SNN cutoff (Wu, Jin, Yu, Yi & Huang, "Optimising Event-Driven Spiking Neural
  Network with Regularisation and Cutoff", Frontiers in Neuroscience 2025, arXiv:2301.09522).
  The authors' ``Y(t)`` is the sum of the outputs so far; here it is the readout's own reduction
  so far (for a mean readout the mean, i.e. their sum over ``t + 1``), the logits the model
  would give had it been built with ``t + 1`` steps.
* ``STABLE``: the number of consecutive steps the arg-max has kept its value (threshold ``k``:
  exit once the prediction is unchanged for ``k`` steps).
* ``FIRST_SPIKE``: with a first-spike readout (:class:`snn5.nn.readout.FirstSpike`), the steps
  since the earliest output spike (0 before it). Once an output neuron has fired no later spike
  can win, so threshold 1 exits at the first output spike with the full-``T`` answer.

Calibration (:func:`calibrate_exit`) picks, per rule, the threshold with the fewest mean
timesteps whose validation accuracy is at least ``full-T accuracy - tolerance`` (or a given
target accuracy). Wu et al. choose the smallest gap ``beta`` whose "confidence rate" (the share
of exited samples whose prediction is right and stays right) reaches ``1 - epsilon``; the
accuracy criterion used here bounds what the user measures directly. Calibration simulates the
rules on the logit trace of a full run (:func:`logit_trace`, :func:`simulate_exit`), which gives
exactly the decisions of the streaming run (:func:`evaluate_early_exit`): a sample's logits do
not depend on the other samples of its batch in eval mode.

Example:
    >>> trace, labels = logit_trace(model, val_batches)
    >>> cal = calibrate_exit(trace, labels, ExitRule.MARGIN, tolerance=0.001)
    >>> result = evaluate_early_exit(model, test_batches, cal.policy)
    >>> result.accuracy, result.mean_timesteps, result.speedup
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from snn5.core.options import Option
from snn5.metrics.ops import eval_mode
from snn5.nn.readout import FirstSpike


class ExitRule(Option):
    """The confidence an early-exit decision compares with its threshold (module docstring)."""

    MAX_PROB = "max_prob"
    MARGIN = "margin"
    STABLE = "stable"
    FIRST_SPIKE = "first_spike"


_COUNTED = (ExitRule.STABLE, ExitRule.FIRST_SPIKE)        # thresholds counted in steps


@dataclass(frozen=True)
class EarlyExit:
    """An exit policy: leave once ``confidence(rule) >= threshold``; ``inf`` never leaves early.

    Args:
        rule: the confidence (:class:`ExitRule`, or its YAML word).
        threshold: ``MAX_PROB`` a probability (above 1 never exits), ``MARGIN`` a logit gap
            (>= 0), ``STABLE`` and ``FIRST_SPIKE`` a number of steps (>= 1).
    """

    rule: ExitRule
    threshold: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "rule", ExitRule.parse(self.rule))
        t = float(self.threshold)
        low = 1.0 if self.rule in _COUNTED else 0.0
        if math.isnan(t) or t < low:
            raise ValueError(f"early-exit threshold of rule '{self.rule.value}' must be >= {low:g}"
                             f" (math.inf: never exit early), got {self.threshold}")
        object.__setattr__(self, "threshold", t)

    def to_dict(self) -> dict[str, Any]:
        """``{"rule": ..., "threshold": ...}``; an infinite threshold as the string ``"inf"``."""
        t = self.threshold
        return {"rule": self.rule.value, "threshold": "inf" if math.isinf(t) else t}


class _Confidence:
    """Per-sample confidence of ``rule`` after each step, with what ``STABLE`` remembers."""

    def __init__(self, rule: ExitRule) -> None:
        self.rule = rule
        self.pred: Tensor | None = None                   # [B] arg-max of the previous step
        self.run: Tensor | None = None                    # [B] steps it has been unchanged

    def __call__(self, logits: Tensor, steps: int) -> Tensor:
        """``logits [B, C]`` after ``steps`` steps -> confidence ``[B]`` (float64)."""
        x = logits.detach().to(torch.float64)
        if self.rule is ExitRule.MAX_PROB:
            return x.softmax(-1).amax(-1)
        if self.rule is ExitRule.MARGIN:
            if x.shape[-1] < 2:
                raise ValueError("the margin rule needs at least 2 classes")
            top = x.topk(2, dim=-1).values                               # [B, 2]
            return top[:, 0] - top[:, 1]
        if self.rule is ExitRule.FIRST_SPIKE:
            return (steps + x.amax(-1)).clamp_min(0.0)       # scores are -t_first, -steps if none
        pred = x.argmax(-1)
        if self.pred is None:
            self.run = torch.ones_like(pred)
        else:
            self.run = torch.where(pred == self.pred, self.run + 1, torch.ones_like(pred))
        self.pred = pred
        return self.run.to(torch.float64)

    def keep(self, mask: Tensor) -> None:
        if self.pred is not None:
            self.pred, self.run = self.pred[mask], self.run[mask]


@dataclass(frozen=True)
class ExitResult:
    """What an early-exit policy did on a set of samples.

    Attributes:
        policy: the policy.
        accuracy: fraction of samples whose exit prediction is the label.
        mean_timesteps: mean number of steps run per sample (1..T).
        timesteps: T.
        exit_histogram: ``exit_histogram[t - 1]`` samples left after ``t`` steps.
        samples: number of samples.
    """

    policy: EarlyExit
    accuracy: float
    mean_timesteps: float
    timesteps: int
    exit_histogram: tuple[int, ...]
    samples: int

    @property
    def speedup(self) -> float:
        """``T / mean_timesteps``: how many times fewer steps than the full run."""
        return self.timesteps / self.mean_timesteps

    def to_dict(self) -> dict[str, Any]:
        return {**self.policy.to_dict(), "accuracy": self.accuracy,
                "mean_timesteps": self.mean_timesteps, "speedup": self.speedup,
                "timesteps": self.timesteps, "exit_histogram": list(self.exit_histogram),
                "samples": self.samples}


def _result(policy: EarlyExit, pred: Tensor, steps: Tensor, labels: Tensor,
            timesteps: int) -> ExitResult:
    return ExitResult(policy, float((pred == labels).double().mean()),
                      float(steps.double().mean()), timesteps,
                      tuple(torch.bincount(steps - 1, minlength=timesteps).tolist()),
                      int(labels.numel()))


def _check_rule(model: nn.Module, policy: EarlyExit) -> None:
    if policy.rule is ExitRule.FIRST_SPIKE and not isinstance(model.readout, FirstSpike):
        raise ValueError(f"the first_spike exit rule needs a first-spike readout (model.readout: "
                         f"first_spike), the model has {type(model.readout).__name__}; use the "
                         "max_prob, margin or stable rule")


@torch.no_grad()
def predict_early_exit(model: nn.Module, x: Tensor, policy: EarlyExit) -> tuple[Tensor, Tensor]:
    """Run ``model`` (a :class:`snn5.models.SpikingClassifier`, in the mode it is in) on one
    batch step by step; each sample leaves at the first step where ``policy`` holds, or at T.

    Returns:
        ``(predictions [B], steps [B])``: each sample's class at its exit and the number of
        steps it ran (1..T), on ``x``'s device.
    """
    _check_rule(model, policy)
    stream = model.stream(x)
    B, T = x.shape[0], model.timesteps
    pred = torch.empty(B, dtype=torch.long, device=x.device)
    steps = torch.empty(B, dtype=torch.long, device=x.device)
    confidence = _Confidence(policy.rule)
    for logits in stream:                                              # [B_active, C]
        leave = confidence(logits, stream.t) >= policy.threshold       # [B_active]
        if stream.t == T:
            leave = torch.ones_like(leave)
        pred[stream.index[leave]] = logits[leave].argmax(-1)
        steps[stream.index[leave]] = stream.t
        stream.keep(~leave)
        confidence.keep(~leave)
    return pred, steps


def _device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def evaluate_early_exit(model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]],
                        policy: EarlyExit) -> ExitResult:
    """Accuracy, mean timesteps, exit histogram and speed-up of ``policy`` over ``batches``
    (``(x, y)`` pairs), streaming in eval mode with exited samples dropped from each batch."""
    device = _device(model)
    preds, steps, labels = [], [], []
    with eval_mode(model):
        for x, y in batches:
            p, s = predict_early_exit(model, x.to(device), policy)
            preds.append(p.cpu())
            steps.append(s.cpu())
            labels.append(y.cpu())
    if not labels:
        raise ValueError("batches is empty; pass at least one (x, y) batch")
    return _result(policy, torch.cat(preds), torch.cat(steps), torch.cat(labels),
                   model.timesteps)


@torch.no_grad()
def logit_trace(model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]]
                ) -> tuple[Tensor, Tensor]:
    """The logits after every step, for every sample: one full streamed run in eval mode.

    Returns:
        ``(trace [T, N, C], labels [N])`` on the CPU; ``trace[t]`` are the logits the model
        gives after ``t + 1`` steps (``trace[T - 1]`` = ``model(x)``).
    """
    device = _device(model)
    traces, labels = [], []
    with eval_mode(model):
        for x, y in batches:
            traces.append(torch.stack([lg.cpu() for lg in model.stream(x.to(device))]))
            labels.append(y.cpu())
    if not labels:
        raise ValueError("batches is empty; pass at least one (x, y) batch")
    return torch.cat(traces, dim=1), torch.cat(labels)                 # [T, N, C], [N]


def simulate_exit(trace: Tensor, labels: Tensor, policy: EarlyExit) -> ExitResult:
    """What ``policy`` does on a logit trace ``[T, N, C]`` (:func:`logit_trace`): the same
    decisions as :func:`evaluate_early_exit`, without running the model again."""
    if trace.ndim != 3 or labels.shape != trace.shape[1:2]:
        raise ValueError(f"expected a trace [T, N, C] and labels [N], got {tuple(trace.shape)} "
                         f"and {tuple(labels.shape)}; pass what logit_trace returns")
    T, N = trace.shape[:2]
    confidence = _Confidence(policy.rule)
    steps = torch.full((N,), T, dtype=torch.long)
    pred = trace[T - 1].argmax(-1)
    open_ = torch.ones(N, dtype=torch.bool)
    for t in range(T - 1):
        leave = open_ & (confidence(trace[t], t + 1) >= policy.threshold)
        steps[leave] = t + 1
        pred[leave] = trace[t, leave].argmax(-1)
        open_ &= ~leave
    return _result(policy, pred, steps, labels, T)


def exit_thresholds(trace: Tensor, rule: ExitRule, *, levels: int = 200) -> list[float]:
    """Candidate thresholds of ``rule`` for a trace ``[T, N, C]``: the steps ``1..T`` for the
    counted rules, else ``levels`` quantiles of the confidences seen before the last step;
    always ending with ``inf`` (never exit early)."""
    rule = ExitRule.parse(rule)
    T = trace.shape[0]
    if rule in _COUNTED:
        return [float(k) for k in range(1, T + 1)] + [math.inf]
    confidence = _Confidence(rule)
    seen = torch.cat([confidence(trace[t], t + 1) for t in range(T - 1)]) if T > 1 else None
    if seen is None:
        return [math.inf]
    q = torch.quantile(seen, torch.linspace(0, 1, levels, dtype=torch.float64))
    return sorted(set(q.tolist())) + [math.inf]


@dataclass(frozen=True)
class Calibration:
    """The threshold :func:`calibrate_exit` chose and the sweep it chose it from.

    Attributes:
        policy: the chosen policy.
        result: its result on the calibration (validation) samples.
        full_accuracy: accuracy of the full ``T``-step run on the same samples.
        required_accuracy: the accuracy the choice had to reach.
        sweep: every candidate's result, by increasing threshold.
    """

    policy: EarlyExit
    result: ExitResult
    full_accuracy: float
    required_accuracy: float
    sweep: tuple[ExitResult, ...] = field(repr=False)


def calibrate_exit(trace: Tensor, labels: Tensor, rule: ExitRule | str, *,
                   tolerance: float = 0.001, target: float | None = None,
                   thresholds: Sequence[float] | None = None) -> Calibration:
    """Choose ``rule``'s threshold on validation data: the fewest mean timesteps among the
    candidates whose accuracy is at least ``full-T accuracy - tolerance`` (or ``target``);
    ties go to the higher accuracy. ``inf`` (the full run) is always a candidate, so a choice
    exists whenever the requirement is the full-T accuracy or below.

    Args:
        trace: ``[T, N, C]`` logits after every step of the validation samples
            (:func:`logit_trace`).
        labels: ``[N]``.
        rule: the exit rule.
        tolerance: accuracy (a fraction: 0.002 = 0.2 percentage points) the exit may lose.
        target: an absolute accuracy to reach instead of the tolerance.
        thresholds: the candidates; None: :func:`exit_thresholds`.
    """
    rule = ExitRule.parse(rule)
    if not 0.0 <= tolerance < 1.0:
        raise ValueError(f"tolerance is a fraction of accuracy in [0, 1), got {tolerance}; "
                         "0.2 percentage points is tolerance=0.002")
    candidates = list(exit_thresholds(trace, rule) if thresholds is None else thresholds)
    if math.inf not in candidates:
        candidates.append(math.inf)
    sweep = tuple(simulate_exit(trace, labels, EarlyExit(rule, t)) for t in sorted(candidates))
    full = sweep[-1].accuracy
    required = full - tolerance if target is None else float(target)
    ok = [r for r in sweep if r.accuracy >= required - 1e-12]
    if not ok:
        raise ValueError(f"no threshold of rule '{rule.value}' reaches accuracy {required:.4f} "
                         f"(the full run gives {full:.4f}); lower the target")
    best = min(ok, key=lambda r: (r.mean_timesteps, -r.accuracy))
    return Calibration(best.policy, best, full, required, sweep)


__all__ = ["Calibration", "EarlyExit", "ExitResult", "ExitRule", "calibrate_exit",
           "evaluate_early_exit", "exit_thresholds", "logit_trace", "predict_early_exit",
           "simulate_exit"]
