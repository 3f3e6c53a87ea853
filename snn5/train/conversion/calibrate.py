"""Calibrating a converted SNN on a small labelled set.

- :func:`calibrate_biases`: layer-wise activation matching by bias correction (Li, Deng, Dong,
  Gong & Gu, "A free lunch from ANN: towards efficient, accurate spiking neural networks
  calibration", ICML 2021, "light" calibration): layer by layer in graph order, the bias of
  the weight layer feeding each neuron layer is moved by the per-channel mean difference
  between the ANN activation and the SNN's rate x threshold at the target T, so the SNN's
  mean output matches the ANN's; later layers are measured after earlier ones were corrected.
  The corrected biases are kept only if the calibration accuracy does not drop.
- :func:`hseo`: evolutionary bio-calibration: CMA-ES (Optuna's ``CmaEsSampler``, generations
  of ``population_size`` candidates) over per-layer threshold scale, leak and initial membrane,
  maximising calibration accuracy at the target T. The unchanged network is the first
  candidate, so the result is never worse on the calibration set. Seeded, deterministic.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, fx, nn

from snn5.nn.conversion import ConvertedNeuron, RepeatTime
from snn5.train.conversion.convert import ConvertedSNN
from snn5.train.conversion.ingest import POOLS, WEIGHT_LAYERS, ingest

log = logging.getLogger(__name__)


def snn_accuracy(snn: ConvertedSNN, x: Tensor, y: Tensor, timesteps: int, *,
                 batch_size: int = 500) -> float:
    """Accuracy of ``snn`` at ``timesteps`` on ``(x, y)`` (deterministic for direct encoding;
    Poisson inputs are drawn from a fixed seed)."""
    g = torch.Generator().manual_seed(0)
    correct = 0
    with torch.inference_mode():
        for s in range(0, x.shape[0], batch_size):
            out = snn.sequence(x[s:s + batch_size], timesteps, generator=g).mean(0)
            correct += int((out.argmax(-1) == y[s:s + batch_size]).sum())
    return correct / x.shape[0]


def _channel_mean(t: Tensor) -> Tensor:
    """Mean over every dimension but the channels (dim 1): ``[N, C, ...] -> [C]``."""
    return t.float().transpose(0, 1).flatten(1).mean(1)


def _feeding_layer(gm: fx.GraphModule, node: fx.Node) -> nn.Module | None:
    """The Linear/Conv whose bias shifts the input of neuron ``node`` (through pooling and the
    repetition over time)."""
    prev = node.args[0]
    while isinstance(prev, fx.Node) and prev.op == "call_module":
        m = gm.get_submodule(prev.target)
        if isinstance(m, WEIGHT_LAYERS):
            return m if len(prev.users) == 1 else None
        if isinstance(m, (*POOLS, RepeatTime)) and len(prev.users) == 1:
            prev = prev.args[0]
            continue
        return None
    return None


def _ann_activations(ann: nn.Module, names: set[str], x: Tensor) -> dict[str, Tensor]:
    gm, _ = ingest(ann)
    out: dict[str, Tensor] = {}

    class Rec(fx.Interpreter):
        def run_node(self, n: fx.Node):
            v = super().run_node(n)
            if n.name in names:
                out[n.name] = _channel_mean(v)
            return v

    with torch.inference_mode():
        Rec(gm).run(x)
    return out


@dataclass
class CalibrationReport:
    accuracy_before: float
    accuracy_after: float
    applied: bool
    layers: list[str] = field(default_factory=list)


def calibrate_biases(snn: ConvertedSNN, ann: nn.Module, x: Tensor, y: Tensor, *,
                     timesteps: int) -> CalibrationReport:
    """Bias correction, layer by layer (see the module docstring); in place on ``snn``."""
    gm = snn.graph_module
    order = [(node, gm.get_submodule(node.target)) for node in gm.graph.nodes
             if node.op == "call_module" and isinstance(gm.get_submodule(node.target),
                                                        ConvertedNeuron)]
    ann_means = _ann_activations(ann, {n.name for _, n in order}, x)
    before = snn_accuracy(snn, x, y, timesteps)
    saved = {k: v.clone() for k, v in snn.state_dict().items()}
    done = []
    for node, neuron in order:
        layer = _feeding_layer(gm, node)
        if layer is None or neuron.name not in ann_means:
            continue
        captured: list[Tensor] = []

        def pre(m: ConvertedNeuron, args: tuple) -> None:
            n = m.counts(args[0])                                     # [T*B, ...]
            T = m.timesteps
            rate = n.unflatten(0, (T, n.shape[0] // T)).mean(0)       # [B, ...]
            captured.append(_channel_mean(rate) * m.unit)             # [C], ANN units

        h = neuron.register_forward_pre_hook(pre)
        try:
            with torch.inference_mode():
                snn.sequence(x, timesteps)
        finally:
            h.remove()
        delta = ann_means[neuron.name] - captured[0]                  # [C]
        with torch.no_grad():
            if layer.bias is None:
                layer.bias = nn.Parameter(torch.zeros(layer.weight.shape[0]))
            # the layer's output reaches the neuron in the ANN's units (through average
            # pooling, which keeps a per-channel shift)
            layer.bias.add_(delta.to(layer.bias.dtype))
        done.append(neuron.name)
    after = snn_accuracy(snn, x, y, timesteps)
    applied = after >= before
    if not applied:
        snn.load_state_dict(saved)
        log.info("bias calibration lowered the calibration accuracy (%.4f -> %.4f); undone",
                 before, after)
    return CalibrationReport(before, after if applied else before, applied, done)


# ----------------------------------------------------------------------------- HSEO

@dataclass
class HSEOReport:
    accuracy_before: float
    accuracy_after: float
    evaluations: int
    seconds: float
    best: dict[str, dict[str, float]]
    generations: list[dict[str, float]] = field(default_factory=list)


def hseo(snn: ConvertedSNN, x: Tensor, y: Tensor, *, timesteps: int, population_size: int = 16,
         generations: int = 10, seed: int = 0, scale_range: tuple[float, float] = (0.5, 1.5),
         leak_range: tuple[float, float] = (0.8, 1.0), v_init_range: tuple[float, float] = (0.0, 1.0),
         sigma0: float | None = None,
         progress: Callable[[int, float, float], None] | None = None) -> HSEOReport:
    """Evolutionary bio-calibration (see the module docstring); applies the best candidate to
    ``snn`` in place. ``progress(generation, best, mean)`` is called after each generation."""
    try:
        import optuna
    except ImportError as exc:       # a declared dependency; only a broken install lacks it
        raise ImportError("HSEO needs optuna and cmaes: pip install optuna cmaes") from exc
    if population_size < 2 or generations < 1:
        raise ValueError(f"population_size must be >= 2 and generations >= 1, got "
                         f"{population_size} and {generations}")
    for name, (lo, hi) in (("scale_range", scale_range), ("leak_range", leak_range),
                           ("v_init_range", v_init_range)):
        if not lo < hi:
            raise ValueError(f"{name} must be (low, high) with low < high, got {(lo, hi)}")
    if not (0 < leak_range[0] and leak_range[1] <= 1):
        raise ValueError(f"leak_range must lie in (0, 1], got {leak_range}")
    neurons = list(snn.neurons().items())
    base = {name: (m.v_th.clone(), float(m.leak), float(m.v_init)) for name, m in neurons}
    start = time.perf_counter()

    def apply(params: dict[str, float]) -> None:
        for i, (name, m) in enumerate(neurons):
            v_th, _, _ = base[name]
            m.v_th.copy_(v_th * params[f"s{i}"])
            m.leak.fill_(params[f"l{i}"])
            m.v_init.fill_(params[f"v{i}"])

    baseline = {}
    for i, (name, _) in enumerate(neurons):
        baseline[f"s{i}"] = 1.0
        baseline[f"l{i}"] = min(max(base[name][1], leak_range[0]), leak_range[1])
        baseline[f"v{i}"] = min(max(base[name][2], v_init_range[0]), v_init_range[1])
    before = snn_accuracy(snn, x, y, timesteps)

    def objective(trial: optuna.Trial) -> float:
        params = {}
        for i in range(len(neurons)):
            params[f"s{i}"] = trial.suggest_float(f"s{i}", *scale_range)
            params[f"l{i}"] = trial.suggest_float(f"l{i}", *leak_range)
            params[f"v{i}"] = trial.suggest_float(f"v{i}", *v_init_range)
        apply(params)
        return snn_accuracy(snn, x, y, timesteps)

    gens: list[dict[str, float]] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")              # optuna's experimental-feature notices
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        sampler = optuna.samplers.CmaEsSampler(x0=baseline, sigma0=sigma0, seed=seed,
                                               popsize=population_size, n_startup_trials=0)
        study = optuna.create_study(direction="maximize", sampler=sampler)
        study.enqueue_trial(baseline)
        for g in range(generations):
            study.optimize(objective, n_trials=population_size if g else population_size + 1)
            values = [t.value for t in study.trials[-population_size:]]
            best = study.best_value
            gens.append({"generation": g + 1, "best": best,
                         "mean": sum(values) / len(values)})
            log.info("HSEO generation %d/%d: best %.4f, population mean %.4f", g + 1,
                     generations, best, gens[-1]["mean"])
            if progress is not None:
                progress(g + 1, best, gens[-1]["mean"])
    best_params = study.best_params
    apply(best_params)
    after = snn_accuracy(snn, x, y, timesteps)
    best = {name: {"v_th_scale": best_params[f"s{i}"], "leak": best_params[f"l{i}"],
                   "v_init": best_params[f"v{i}"]} for i, (name, _) in enumerate(neurons)}
    return HSEOReport(before, after, len(study.trials), time.perf_counter() - start, best, gens)


__all__ = ["CalibrationReport", "HSEOReport", "calibrate_biases", "hseo", "snn_accuracy"]
