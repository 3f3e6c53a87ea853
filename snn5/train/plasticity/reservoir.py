"""Train the readout of a liquid state machine, optionally after shaping the liquid by STDP.

Following Maass, Natschläger & Markram (Neural Comput. 2002), the liquid
(:class:`snn5.models.reservoir.LiquidStateMachine`) is fixed and only a memoryless linear readout
is trained, here on the liquid's state features (spike trains low-pass filtered with 30 ms and
averaged in time bins, the bins concatenated). Two readouts: ridge regression on one-hot targets
(closed form, this module) and multinomial logistic regression (scikit-learn). Their
regularisation is chosen on the validation split, then the readout is refitted on train +
validation and measured once on the test split.

Before the readout, the liquid can be pre-shaped without labels (:func:`stdp_shape`): an
unsupervised rule of :mod:`snn5.train.plasticity.rules` (pair STDP by default) updates the
excitatory recurrent synapses and/or the input synapses on training inputs. The change is
written as ``-dw`` into the weights' ``.grad`` and applied by ``torch.optim.SGD``; then Dale's
law, the weight bounds and the connectivity mask (only existing synapses change) are restored.
Inhibitory synapses stay fixed.

Example:
    >>> lsm = LiquidStateMachine(ReservoirConfig(input_dt=10e-3), data.input_shape[1:])
    >>> result = fit_reservoir(lsm, data, ReservoirFitConfig())
    >>> result.test_accuracy["ridge"]
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from snn5.core import plasticity as P
from snn5.core.options import Option
from snn5.core.reservoir import reservoir_scan
from snn5.data.base import SplitData
from snn5.models.reservoir import LiquidStateMachine
from snn5.train.plasticity.rules import STDP, Rule

__all__ = [
    "FeatureScaler", "LinearReadout", "ReadoutKind", "ReservoirFit", "ReservoirFitConfig",
    "ShapingStats", "calibrate_input_gain", "fit_readout", "fit_reservoir", "liquid_features",
    "stdp_shape",
]

log = logging.getLogger(__name__)


class ReadoutKind(Option):
    """The linear readout trained on the liquid's features."""

    RIDGE = "ridge"              # least squares on one-hot targets with an L2 penalty
    LOGISTIC = "logistic"        # multinomial logistic regression (scikit-learn, lbfgs)


def _check_model(model: object) -> None:
    if not isinstance(model, LiquidStateMachine):
        raise TypeError(f"expected a LiquidStateMachine, got {type(model).__name__}; build one "
                        "with snn5.models.reservoir.LiquidStateMachine(cfg, input_shape)")


def _check_samples(model: LiquidStateMachine, x: Tensor) -> None:
    if not isinstance(x, Tensor) or x.ndim != 2 + len(model.input_shape) \
            or tuple(x.shape[2:]) != model.input_shape or x.shape[0] == 0:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"expected samples [N, T, *{model.input_shape}] (a dataset's x, batch "
                         f"first), got {shape}; the liquid was built for per-step input "
                         f"{model.input_shape}")


# ----------------------------------------------------------------------------- features

@torch.no_grad()
def liquid_features(model: LiquidStateMachine, x: Tensor, *, batch_size: int = 256
                    ) -> tuple[Tensor, float]:
    """The liquid's state features of every sample, computed in batches.

    Args:
        model: The liquid.
        x: ``[N, T, *input_shape]`` samples (a dataset's ``x``: batch first).
        batch_size: Samples simulated at once.

    Returns:
        ``(features [N, bins * n_neurons], mean firing rate in Hz)``.
    """
    _check_model(model)
    _check_samples(model, x)
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    feats, spikes = [], 0.0
    device = model.w_rec.device
    for start in range(0, x.shape[0], batch_size):
        xb = x[start:start + batch_size].to(device).transpose(0, 1)         # [T, B, ...]
        out = model.run(xb)
        feats.append(out.features.flatten(1).cpu())                          # [B, K * N]
        spikes += float(out.counts.sum())
    seconds = x.shape[1] * model.cfg.hold * model.cfg.dt
    rate = spikes / (x.shape[0] * model.n_neurons * seconds)
    return torch.cat(feats), rate


# ----------------------------------------------------------------------------- readout

@dataclass(frozen=True)
class FeatureScaler:
    """``(f - mean) / (std + mean(std))``, statistics of the training features.

    The floor ``mean(std)`` keeps features of rarely firing neurons (tiny variance) from being
    blown up into noise, which a plain standardisation does with spike-count features.
    """

    mean: Tensor                                 # [F]
    scale: Tensor                                # [F]

    @classmethod
    def fit(cls, f: Tensor) -> FeatureScaler:
        f = f.double()
        std = f.std(0, unbiased=False)
        floor = float(std.mean()) or 1.0
        return cls(f.mean(0), std + floor)

    def __call__(self, f: Tensor) -> Tensor:
        return (f.double() - self.mean) / self.scale


@dataclass(frozen=True)
class LinearReadout:
    """Scores ``scaler(f) @ weight.T + bias``; the class is the argmax."""

    weight: Tensor                               # [C, F] float64
    bias: Tensor                                 # [C]
    scaler: FeatureScaler
    kind: ReadoutKind
    reg: float                                   # ridge alpha or logistic C

    def scores(self, f: Tensor) -> Tensor:
        """``[N, F]`` features -> ``[N, C]`` class scores."""
        if f.ndim != 2 or f.shape[1] != self.weight.shape[1]:
            raise ValueError(f"expected features [N, {self.weight.shape[1]}], got "
                             f"{tuple(f.shape)}")
        return self.scaler(f) @ self.weight.T + self.bias

    def predict(self, f: Tensor) -> Tensor:
        """Predicted classes ``[N]``."""
        return self.scores(f).argmax(1)

    def accuracy(self, f: Tensor, y: Tensor) -> float:
        """Share of samples classified correctly."""
        return float((self.predict(f) == y).double().mean())


def _ridge(a: Tensor, y: Tensor, num_classes: int, alpha: float) -> tuple[Tensor, Tensor]:
    """Ridge regression of one-hot targets on centred features, solved in the primal
    (``F <= N``) or the dual (``F > N``: ``W = A^T (A A^T + alpha I)^-1 Y``)."""
    n, f = a.shape
    target = torch.nn.functional.one_hot(y, num_classes).double()           # [N, C]
    mu_a, mu_y = a.mean(0), target.mean(0)
    a, target = a - mu_a, target - mu_y
    if f <= n:
        gram = a.T @ a
        gram.diagonal().add_(alpha)
        w = torch.linalg.solve(gram, a.T @ target).T                        # [C, F]
    else:
        gram = a @ a.T
        gram.diagonal().add_(alpha)
        w = (a.T @ torch.linalg.solve(gram, target)).T                      # [C, F]
    return w, mu_y - w @ mu_a


def _logistic(a: Tensor, y: Tensor, num_classes: int, c: float, max_iter: int
              ) -> tuple[Tensor, Tensor]:
    from sklearn.exceptions import ConvergenceWarning                        # slow import
    from sklearn.linear_model import LogisticRegression

    if int(y.unique().numel()) != num_classes:
        raise ValueError(f"logistic readout needs samples of all {num_classes} classes, got "
                         f"{int(y.unique().numel())}")
    clf = LogisticRegression(C=c, max_iter=max_iter)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        clf.fit(a.numpy(), y.numpy())
    if any(issubclass(w.category, ConvergenceWarning) for w in caught):
        log.warning("logistic readout (C=%g) did not converge in %d iterations; raise "
                    "max_iter or lower C", c, max_iter)
    return torch.from_numpy(clf.coef_).double(), torch.from_numpy(clf.intercept_).double()


def fit_readout(f: Tensor, y: Tensor, num_classes: int, *, kind: ReadoutKind | str,
                reg: float, max_iter: int = 2000) -> LinearReadout:
    """Fit a linear readout on features ``f [N, F]`` and labels ``y [N]``.

    Args:
        f: Training features.
        y: int64 labels in ``0 .. num_classes - 1``.
        num_classes: ``C``.
        kind: ``ridge`` (``reg`` = alpha, the L2 penalty on the scaled features) or
            ``logistic`` (``reg`` = C, the inverse L2 strength of scikit-learn).
        reg: Regularisation (> 0).
        max_iter: Iterations of the logistic solver.

    Returns:
        The fitted :class:`LinearReadout`.
    """
    kind = ReadoutKind.parse(kind)
    if f.ndim != 2 or y.ndim != 1 or f.shape[0] != y.shape[0] or f.shape[0] < 2:
        raise ValueError(f"expected features [N, F] and labels [N] with N >= 2, got "
                         f"{tuple(f.shape)} and {tuple(y.shape)}")
    if y.dtype != torch.int64 or int(y.min()) < 0 or int(y.max()) >= num_classes:
        raise ValueError(f"labels must be int64 in 0..{num_classes - 1}, got {y.dtype} in "
                         f"{int(y.min())}..{int(y.max())}")
    if not (math.isfinite(reg) and reg > 0):
        raise ValueError(f"reg must be a positive number (ridge alpha or logistic C), got {reg}")
    if not bool(torch.isfinite(f).all()):
        raise ValueError("features contain NaN or Inf; check the input data and the liquid's "
                         "parameters")
    scaler = FeatureScaler.fit(f)
    a = scaler(f)
    if kind is ReadoutKind.RIDGE:
        w, b = _ridge(a, y, num_classes, reg)
    else:
        w, b = _logistic(a, y, num_classes, reg, max_iter)
    return LinearReadout(w, b, scaler, kind, float(reg))


# ----------------------------------------------------------------------------- shaping

@torch.no_grad()
def calibrate_input_gain(model: LiquidStateMachine, x: Tensor, target_rate: float, *,
                         iterations: int = 12, batch_size: int = 256) -> float:
    """Scale the input weights so that the liquid fires at ``target_rate`` Hz on ``x``.

    Bisection on the log of a common factor of ``w_in`` (the rate grows with the input gain).

    Args:
        model: The liquid; its ``w_in`` is scaled in place.
        x: ``[N, T, *input_shape]`` calibration samples (a few dozen suffice).
        target_rate: Mean firing rate to reach, Hz.
        iterations: Bisection steps (each runs the liquid on ``x``).

    Returns:
        The factor applied to ``w_in``.
    """
    _check_model(model)
    if not (math.isfinite(target_rate) and target_rate > 0):
        raise ValueError(f"target_rate must be a positive rate in Hz, got {target_rate}")
    base = model.w_in.detach().clone()
    lo, hi = math.log(1e-2), math.log(1e2)
    rate = 0.0
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        model.w_in.copy_(base * math.exp(mid))
        _, rate = liquid_features(model, x, batch_size=batch_size)
        lo, hi = (mid, hi) if rate < target_rate else (lo, mid)
    gain = math.exp(0.5 * (lo + hi))
    model.w_in.copy_(base * gain)
    log.info("input gain x%.3g: %.1f Hz (target %.1f Hz)", gain, rate, target_rate)
    return gain


@dataclass
class ShapingStats:
    """What :func:`stdp_shape` changed."""

    batches: int
    rel_change_rec: float                        # ||W_E after - before|| / ||W_E before||
    rel_change_in: float
    rate_hz: float                               # firing rate during shaping


def stdp_shape(model: LiquidStateMachine, x: Tensor, *, rule: Rule | None = None,
               recurrent: bool = True, inputs: bool = False, epochs: int = 1,
               batch_size: int = 16, lr: float = 1.0) -> ShapingStats:
    """Unsupervised pre-shaping of the liquid by a local rule, before the readout is fitted.

    For each batch the liquid runs with fixed weights and its spikes are recorded; the rule
    (``rule.update(pre [T, B, in], post [T, B, out], w)``, pair STDP by default) gives ``dw``
    for the excitatory recurrent synapses (``pre`` = excitatory spikes, ``post`` = all spikes)
    and, with ``inputs``, for the input synapses (``pre`` = input events per step). ``-dw`` goes
    into ``.grad``, ``torch.optim.SGD(lr)`` applies it, then the weights are projected back:
    only existing synapses (the connectivity mask), bounds ``[rule.w_min, rule.w_max]`` for
    the plastic magnitudes, Dale's law (:func:`snn5.core.plasticity.apply_dale`).

    Args:
        model: The liquid (changed in place).
        x: ``[N, T, *input_shape]`` training samples (labels are not used).
        rule: An unsupervised rule of :mod:`snn5.train.plasticity.rules`; default
            ``STDP(a_plus=1e-3, a_minus=1.05e-3, w_max=4 * max(w_ee, w_ei))``.
        recurrent, inputs: Which synapses learn.
        epochs, batch_size: Passes over ``x`` and samples per update.
        lr: SGD learning rate applied to ``-dw`` (summed over the batch).

    Returns:
        :class:`ShapingStats`.
    """
    _check_model(model)
    _check_samples(model, x)
    cfg = model.cfg
    rule = STDP(a_plus=1e-3, a_minus=1.05e-3, w_max=4 * max(cfg.w_ee, cfg.w_ei, 1e-6)) \
        if rule is None else rule
    if not isinstance(rule, Rule) or rule.needs_reward:
        raise ValueError(f"rule must be an unsupervised snn5.train.plasticity rule (stdp, "
                         f"triplet, ...), got {rule!r}")
    if not (recurrent or inputs):
        raise ValueError("nothing to shape: set recurrent=True and/or inputs=True")
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if not (isinstance(value, int) and value >= 1):
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    w_min = getattr(rule, "w_min", 0.0)
    w_max = getattr(rule, "w_max", math.inf)
    n_exc, hold, dt = model.n_exc, cfg.hold, cfg.dt
    rec0 = model.w_rec.detach()[:, :n_exc].clone()
    in0 = model.w_in.detach().clone()
    params = [p for p, on in ((model.w_rec, recurrent), (model.w_in, inputs)) if on]
    opt = torch.optim.SGD(params, lr=lr)
    batches, spikes, steps_seen = 0, 0.0, 0
    device = model.w_rec.device
    for _ in range(epochs):
        for start in range(0, x.shape[0], batch_size):
            xb = x[start:start + batch_size].to(device).transpose(0, 1)     # [T, B, ...]
            with torch.no_grad():
                drive = model.drive(xb).repeat_interleave(hold, 0)           # [T * hold, B, N]
                z, _ = reservoir_scan(drive, model.init_state(xb.shape[1]), model.w_rec,
                                      model.params, n_exc=n_exc, dt=dt)      # [T * hold, B, N]
                opt.zero_grad(set_to_none=False)
                for p in params:
                    if p.grad is None:
                        p.grad = torch.zeros_like(p)
                if recurrent:
                    w_exc = model.w_rec[:, :n_exc]
                    dw = rule.update(z[:, :, :n_exc], z, w_exc, {}, dt=dt)   # [N, n_exc]
                    model.w_rec.grad[:, :n_exc] = -dw * model.mask[:, :n_exc]
                if inputs:
                    pre = xb.reshape(xb.shape[0], xb.shape[1], -1).to(drive.dtype)
                    pre = pre.repeat_interleave(hold, 0) / hold              # [T * hold, B, F]
                    dw = rule.update(pre, z, model.w_in, {}, dt=dt)          # [N, F]
                    model.w_in.grad.copy_(-dw * (model.w_in != 0))
                opt.step()
                _project(model, w_min, w_max, recurrent, inputs)
            batches += 1
            spikes += float(z.sum())
            steps_seen += z.shape[0] * z.shape[1]
    rate = spikes / (steps_seen * model.n_neurons * dt) if steps_seen else 0.0
    stats = ShapingStats(
        batches=batches,
        rel_change_rec=float((model.w_rec[:, :n_exc] - rec0).norm() / rec0.norm().clamp_min(1e-12)),
        rel_change_in=float((model.w_in - in0).norm() / in0.norm().clamp_min(1e-12)),
        rate_hz=rate)
    log.info("STDP shaping: %d batches, recurrent E weights changed by %.1f %%, input by "
             "%.1f %%, %.1f Hz", batches, 100 * stats.rel_change_rec, 100 * stats.rel_change_in,
             rate)
    return stats


@torch.no_grad()
def _project(model: LiquidStateMachine, w_min: float, w_max: float, recurrent: bool,
             inputs: bool) -> None:
    """Restore the connectivity mask, the bounds of the plastic weights and Dale's law."""
    n_exc = model.n_exc
    if recurrent:
        w = model.w_rec
        w[:, :n_exc] = w[:, :n_exc].clamp(max(w_min, 0.0), w_max)
        w.copy_(P.apply_dale(w * model.mask, model.signs))
    if inputs:
        alive = model.w_in != 0
        model.w_in.copy_(model.w_in.clamp(max(w_min, 0.0), w_max) * alive)


# ----------------------------------------------------------------------------- whole fit

@dataclass(frozen=True)
class ReservoirFitConfig:
    """How :func:`fit_reservoir` trains and selects the readouts.

    Args:
        readouts: Which readouts to fit.
        ridge_alphas: Ridge penalties tried (on the scaled features).
        logistic_cs: Inverse penalties of the logistic readout tried.
        batch_size: Samples simulated at once.
        refit: Refit the chosen readout on train + validation before the test.
        target_rate: If set, first scale the input weights to this firing rate (Hz) on
            ``calibration_samples`` training samples (:func:`calibrate_input_gain`).
        calibration_samples: Samples used by the calibration.
        stdp_samples: If > 0, pre-shape the liquid by :func:`stdp_shape` on this many training
            samples (recurrent excitatory synapses, default rule) before the features are taken.
        max_iter: Iterations of the logistic solver.
    """

    readouts: Sequence[ReadoutKind | str] = (ReadoutKind.RIDGE, ReadoutKind.LOGISTIC)
    ridge_alphas: Sequence[float] = (1.0, 10.0, 100.0, 1000.0)
    logistic_cs: Sequence[float] = (0.01, 0.1, 1.0)
    batch_size: int = 256
    refit: bool = True
    target_rate: float | None = None
    calibration_samples: int = 64
    stdp_samples: int = 0
    max_iter: int = 2000

    def __post_init__(self) -> None:
        object.__setattr__(self, "readouts", tuple(ReadoutKind.parse(k) for k in self.readouts))
        if not self.readouts:
            raise ValueError("readouts is empty; pick ridge and/or logistic")
        for name in ("ridge_alphas", "logistic_cs"):
            values = tuple(float(v) for v in getattr(self, name))
            if not values or not all(math.isfinite(v) and v > 0 for v in values):
                raise ValueError(f"{name} must be a non-empty list of positive numbers, got "
                                 f"{list(values)}")
            object.__setattr__(self, name, values)
        for name in ("batch_size", "calibration_samples", "max_iter"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 1):
                raise ValueError(f"{name} must be an int >= 1, got {getattr(self, name)!r}")
        if not (isinstance(self.stdp_samples, int) and self.stdp_samples >= 0):
            raise ValueError(f"stdp_samples must be an int >= 0, got {self.stdp_samples!r}")


@dataclass
class ReservoirFit:
    """What :func:`fit_reservoir` measured (accuracies are fractions in [0, 1])."""

    val_accuracy: dict[str, float]               # readout -> best validation accuracy
    test_accuracy: dict[str, float]              # readout -> test accuracy of the chosen readout
    chosen_reg: dict[str, float]                 # readout -> chosen alpha / C
    readouts: dict[str, LinearReadout]
    firing_rate_hz: float
    num_features: int
    seconds: dict[str, float] = field(default_factory=dict)
    shaping: ShapingStats | None = None
    input_gain: float = 1.0


def fit_reservoir(model: LiquidStateMachine, data: SplitData,
                  cfg: ReservoirFitConfig = ReservoirFitConfig()) -> ReservoirFit:
    """Fit and measure linear readouts of a liquid on a split dataset.

    Steps: optional rate calibration and STDP shaping on training samples; the liquid's features
    of train, validation and test; per readout kind, the regularisation with the best
    validation accuracy; the readout refitted on train + validation (``cfg.refit``); test
    accuracy.

    Args:
        model: The liquid, built for ``data.input_shape[1:]`` (one time step of a sample).
        data: Samples ``[N, T, ...]`` (e.g. ``load_dataset(DataConfig(name="fsdd"))``).
        cfg: Readout choices.

    Returns:
        :class:`ReservoirFit`.
    """
    _check_model(model)
    if not isinstance(data, SplitData):
        raise TypeError(f"data must be a SplitData (snn5.data.load_dataset), got "
                        f"{type(data).__name__}")
    if tuple(data.input_shape[1:]) != model.input_shape:
        raise ValueError(f"the liquid takes per-step input {model.input_shape} but "
                         f"{data.name} samples are {tuple(data.input_shape)} = [T, ...]; build "
                         f"it with input_shape=data.input_shape[1:]")
    seconds: dict[str, float] = {}
    gain, shaping = 1.0, None
    start = time.perf_counter()
    if cfg.target_rate is not None:
        gain = calibrate_input_gain(model, data.train.x[:cfg.calibration_samples],
                                    cfg.target_rate, batch_size=cfg.batch_size)
    if cfg.stdp_samples:
        shaping = stdp_shape(model, data.train.x[:cfg.stdp_samples])
    seconds["shaping"] = time.perf_counter() - start

    start = time.perf_counter()
    f_train, rate = liquid_features(model, data.train.x, batch_size=cfg.batch_size)
    f_val, _ = liquid_features(model, data.val.x, batch_size=cfg.batch_size)
    f_test, _ = liquid_features(model, data.test.x, batch_size=cfg.batch_size)
    seconds["features"] = time.perf_counter() - start
    log.info("liquid features %s at %.1f Hz in %.1f s", tuple(f_train.shape), rate,
             seconds["features"])

    start = time.perf_counter()
    val_acc, test_acc, chosen, fitted = {}, {}, {}, {}
    f_all, y_all = torch.cat([f_train, f_val]), torch.cat([data.train.y, data.val.y])
    for kind in cfg.readouts:
        grid = cfg.ridge_alphas if kind is ReadoutKind.RIDGE else cfg.logistic_cs
        scores = []
        for reg in grid:
            readout = fit_readout(f_train, data.train.y, data.num_classes, kind=kind, reg=reg,
                                  max_iter=cfg.max_iter)
            scores.append(readout.accuracy(f_val, data.val.y))
            log.info("%s reg=%g: val %.4f", kind.value, reg, scores[-1])
        stronger = 1.0 if kind is ReadoutKind.RIDGE else -1.0               # ties: more penalty
        best = max(range(len(grid)), key=lambda i: (scores[i], stronger * grid[i]))
        readout = fit_readout(f_all, y_all, data.num_classes, kind=kind, reg=grid[best],
                              max_iter=cfg.max_iter) if cfg.refit else \
            fit_readout(f_train, data.train.y, data.num_classes, kind=kind, reg=grid[best],
                        max_iter=cfg.max_iter)
        val_acc[kind.value], chosen[kind.value] = scores[best], grid[best]
        test_acc[kind.value] = readout.accuracy(f_test, data.test.y)
        fitted[kind.value] = readout
    seconds["readout"] = time.perf_counter() - start
    return ReservoirFit(val_accuracy=val_acc, test_accuracy=test_acc, chosen_reg=chosen,
                        readouts=fitted, firing_rate_hz=rate, num_features=f_train.shape[1],
                        seconds=seconds, shaping=shaping, input_gain=gain)
