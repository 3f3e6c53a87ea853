"""A conversion run: train (or load) the ANN, convert it, calibrate, measure over timesteps.

Run folder::

    config.yaml          the fully resolved run config
    model.safetensors    the converted SNN's state (thresholds, weights) + its metadata
    metrics.json         ann_accuracy, snn_accuracy_by_timesteps, SynOps and energy per T, ...
    report.md            a short summary
    plots/               accuracy_vs_timesteps.png (and accuracy_vs_noise.png with noise_levels)
    ann/checkpoints/     the ANN's training checkpoints (when it was trained here)
    ann.safetensors      the trained ANN's bare state_dict (reuse it with conversion.ann_weights)
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from snn5.config import RunConfig, save_config
from snn5.data import ArrayDataset, BatchLoader, SplitData, load_dataset
from snn5.metrics import get_energy_model, measure
from snn5.models.ann import build_ann, load_ann_weights
from snn5.runs import plots
from snn5.runs.provenance import provenance
from snn5.train.checkpoint import load_checkpoint, save_checkpoint, unprefixed
from snn5.train.conversion import (
    ConvertedSNN, accuracy_by_timesteps, calibrate_biases, convert, hseo, snn_accuracy,
)
from snn5.train.conversion.config import ConversionConfig
from snn5.train.device import resolve_device
from snn5.train.surrogate import BEST, Trainer

log = logging.getLogger(__name__)

MODEL = "model.safetensors"
ANN_WEIGHTS = "ann.safetensors"


def _ann_accuracy(ann: nn.Module, loader: BatchLoader) -> float:
    correct = total = 0
    ann.eval()
    with torch.inference_mode():
        for x, y in loader:
            correct += int((ann(x).argmax(-1) == y).sum())
            total += y.shape[0]
    return correct / total


def _calibration_set(data: SplitData, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    n = min(n, len(data.train))
    return data.train.x[:n], data.train.y[:n]


def prepare_ann(cfg: RunConfig, data: SplitData, out: Path, progress: bool | None
                ) -> tuple[nn.Module, dict[str, Any]]:
    """The ANN of a conversion run: trained here (``train:`` section) or loaded from
    ``conversion.ann_weights``."""
    cc: ConversionConfig = cfg.conversion
    torch.manual_seed(cfg.seed)
    ann = build_ann(cc.ann, data.input_shape, data.num_classes)
    if cc.ann_weights is not None:
        report = load_ann_weights(ann, cc.ann_weights, strict=False)
        if report["missing"] or report["unexpected"]:
            log.warning("ANN weights %s: missing %s, unexpected %s", cc.ann_weights,
                        report["missing"], report["unexpected"])
        return ann.eval(), {"ann_weights": cc.ann_weights, "ann_train_seconds": 0.0,
                            "ann_load_report": report}
    augment = cfg.data.augment if cfg.data.augment.active else None
    if augment is not None:
        augment.check_sample_shape(tuple(data.train.x.shape[1:]))
    trainer = Trainer(ann, cfg.train, BatchLoader(data.train, cfg.train.batch_size, shuffle=True,
                                                  seed=cfg.seed, augment=augment),
                      BatchLoader(data.val, cfg.train.eval_batch_size, shuffle=False),
                      checkpoint_dir=out / "ann" / "checkpoints", seed=cfg.seed,
                      progress=progress)
    fit = trainer.fit()
    tensors, _ = load_checkpoint(out / "ann" / "checkpoints" / BEST)
    ann.load_state_dict(unprefixed("model", tensors))
    save_checkpoint(out / ANN_WEIGHTS, ann.state_dict(), {"kind": "ann_state_dict",
                                                           "ann": cc.ann.name})
    return ann.eval(), {"ann_val_accuracy": fit.best_val_accuracy, "ann_best_epoch": fit.best_epoch,
                        "ann_epochs": cfg.train.epochs, "ann_train_seconds": fit.train_seconds,
                        "ann_history": fit.history}


def convert_run(cfg: RunConfig, out: str | os.PathLike, *, progress: bool | None = None
                ) -> dict[str, Any]:
    """Run a conversion config into the folder ``out`` (see the module docstring)."""
    from snn5.runs.run import CONFIG, METRICS, RunExistsError, write_json

    out = Path(out)
    if (out / CONFIG).exists():
        raise RunExistsError(f"{out} already holds a run; choose another --out (nothing was "
                             "changed)")
    cc: ConversionConfig = cfg.conversion
    data = load_dataset(cfg.data)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / CONFIG)
    device = resolve_device("cpu")
    started = provenance(device)
    if cfg.train.threads is not None:
        torch.set_num_threads(cfg.train.threads)
    ann, ann_info = prepare_ann(cfg, data, out, progress)
    ann = ann.cpu()
    test = BatchLoader(data.test, cfg.train.eval_batch_size, shuffle=False)
    ann_acc = _ann_accuracy(ann, test)
    log.info("ANN test accuracy %.4f", ann_acc)

    xc, yc = _calibration_set(data, cc.calibration.samples)
    t0 = time.perf_counter()
    snn = convert(ann, cc.method, calibration=xc, timesteps=cc.target, encoding=cc.encoding,
                  percentile=cc.percentile, levels=cc.levels, v_init=cc.v_init)
    steps = cc.steps
    plain = accuracy_by_timesteps(snn, test, steps, seed=cfg.seed)
    calib: dict[str, Any] = {"samples": int(xc.shape[0])}
    if cc.calibration.bias_correction:
        r = calibrate_biases(snn, ann, xc, yc, timesteps=cc.target)
        calib["bias_correction"] = {"accuracy_before": r.accuracy_before,
                                    "accuracy_after": r.accuracy_after, "applied": r.applied,
                                    "layers": r.layers}
    if cc.hseo.enabled:
        h = cc.hseo
        r = hseo(snn, xc, yc, timesteps=cc.target, population_size=h.population_size,
                 generations=h.generations, seed=cfg.seed, scale_range=h.scale_range,
                 leak_range=h.leak_range, v_init_range=h.v_init_range)
        calib["hseo"] = {"calibration_accuracy_before": r.accuracy_before,
                         "calibration_accuracy_after": r.accuracy_after,
                         "evaluations": r.evaluations, "seconds": r.seconds,
                         "generations": r.generations, "best": r.best}
    tuned = bool(cc.calibration.bias_correction or cc.hseo.enabled)
    by_t = accuracy_by_timesteps(snn, test, steps, seed=cfg.seed) if tuned else plain
    convert_seconds = time.perf_counter() - t0

    energy = get_energy_model(cfg.measure.energy_model)
    per_t: dict[int, dict[str, Any]] = {}
    n_sub = min(cc.measure_samples, len(data.test))
    sub = ArrayDataset(data.test.x[:n_sub], data.test.y[:n_sub])
    for T in steps:
        snn.timesteps = T
        m = measure(snn, BatchLoader(sub, cfg.train.eval_batch_size, shuffle=False),
                    ann_model=ann, energy_model=energy).to_dict()
        per_t[T] = {k: m[k] for k in ("synops_per_sample", "snn_macs_per_sample",
                                      "ann_macs_per_sample", "energy_j_per_sample",
                                      "ann_energy_j_per_sample", "latency_ms_per_sample")}
        per_t[T]["energy_ratio_vs_ann"] = (m["energy_j_per_sample"] / m["ann_energy_j_per_sample"]
                                           if m["ann_energy_j_per_sample"] else None)
    snn.timesteps = cc.target
    target_t = per_t.get(cc.target) or per_t[steps[-1]]
    metrics: dict[str, Any] = {
        "paradigm": "conversion", "method": cc.method, "ann": cc.ann.name, "seed": cfg.seed,
        "dataset": {"name": data.name, "checksum": data.checksum, "description": data.description,
                    "train": len(data.train), "val": len(data.val), "test": len(data.test)},
        "ann_accuracy": ann_acc,
        "snn_accuracy_by_timesteps": {str(t): a for t, a in by_t.items()},
        "snn_accuracy_by_timesteps_plain": {str(t): a for t, a in plain.items()},
        "target_timesteps": cc.target,
        "test_accuracy": by_t[cc.target] if cc.target in by_t else
        snn_accuracy(snn, data.test.x, data.test.y, cc.target),
        "per_timesteps": {str(t): v for t, v in per_t.items()},
        "measured_samples": len(sub),
        # the quickstart table's fields, at the target T
        "model": f"{cc.ann.name} ({cc.method})", "timesteps": cc.target,
        "val_accuracy": ann_info.get("ann_val_accuracy"),
        "firing_rate": {"mean": firing_rate(snn, sub.x, cc.target)},
        "synops_per_sample": target_t["synops_per_sample"],
        "snn_macs_per_sample": target_t["snn_macs_per_sample"],
        "ann_macs_per_sample": target_t["ann_macs_per_sample"],
        "energy_j_per_sample": target_t["energy_j_per_sample"],
        "ann_energy_j_per_sample": target_t["ann_energy_j_per_sample"],
        "latency_ms_per_sample": target_t["latency_ms_per_sample"],
        "train_seconds": ann_info["ann_train_seconds"],
        "calibration": calib,
        "neurons": {name: {"v_th": float(m.v_th.mean()), "leak": float(m.leak),
                           "v_init": float(m.v_init), "levels": m.levels}
                    for name, m in snn.neurons().items()},
        "energy_model": {"name": energy.name, "e_ac_j": energy.e_ac_j, "e_mac_j": energy.e_mac_j,
                         "reference": energy.reference},
        "convert_seconds": convert_seconds, **ann_info,
        **started, "finished_at": provenance(device)["finished_at"],
    }
    if cc.noise_levels is not None:
        metrics.update(_robustness(cfg, snn, ann, data))
    if cc.method == "logic_gated":
        metrics.update(_ternary_ops(cfg, snn, data))
    save_converted(snn, out / MODEL, cfg, data.input_shape, data.num_classes)
    write_json(out / METRICS, metrics)
    _plots_and_report(out, cfg, metrics)
    return metrics


def firing_rate(snn: ConvertedSNN, x: torch.Tensor, timesteps: int) -> float:
    """Spikes per neuron per step over all converted neurons (a multi-level neuron's spikes
    counted by number)."""
    spikes = steps = 0.0

    def hook(m, args, out) -> None:
        nonlocal spikes, steps
        spikes += float(m.counts(args[0]).sum())
        steps += args[0].numel()

    handles = [m.register_forward_hook(hook) for m in snn.neurons().values()]
    try:
        with torch.inference_mode():
            snn(x, timesteps)
    finally:
        for h in handles:
            h.remove()
    return spikes / steps if steps else 0.0


def _robustness(cfg: RunConfig, snn: ConvertedSNN, ann: nn.Module, data: SplitData
                ) -> dict[str, Any]:
    """Test accuracy of the SNN (at the target T) and of the ANN with a fraction of every
    input replaced by uniform noise, per ``conversion.noise_levels``."""
    from snn5.train.conversion.logic_gated import noise_robustness

    cc: ConversionConfig = cfg.conversion
    x, y = data.test.x, data.test.y

    def snn_logits(xb: torch.Tensor) -> torch.Tensor:
        return snn(xb, cc.target)

    return {
        "robust_accuracy_by_noise": {str(k): v for k, v in noise_robustness(
            snn_logits, x, y, cc.noise_levels, seed=cfg.seed).items()},
        "ann_robust_accuracy_by_noise": {str(k): v for k, v in noise_robustness(
            ann, x, y, cc.noise_levels, seed=cfg.seed).items()},
    }


def _ternary_ops(cfg: RunConfig, snn: ConvertedSNN, data: SplitData) -> dict[str, Any]:
    """Additions and multiplications per sample in the add-only (ternary) layers, counted on
    ``measure_samples`` test samples at the target T."""
    from snn5.train.conversion.logic_gated import add_only_counts, reset_counts

    cc: ConversionConfig = cfg.conversion
    x = data.test.x[:cc.measure_samples]
    reset_counts(snn)
    with torch.inference_mode():
        snn(x, cc.target)
    counts = add_only_counts(snn)
    return {"ternary_layer_ops_per_sample": {"additions": counts.additions / len(x),
                                             "multiplications": counts.multiplications}}


def save_converted(snn: ConvertedSNN, path: Path, cfg: RunConfig, input_shape: tuple[int, ...],
                   num_classes: int) -> None:
    """The converted SNN's tensors (safetensors) with the method, timesteps and shapes as
    metadata; rebuild it with :func:`load_converted`."""
    state = {k: v.detach().contiguous() for k, v in snn.state_dict().items()}
    save_checkpoint(path, state, {"method": snn.method, "timesteps": snn.timesteps,
                                  "encoding": snn.encoding, "seed": cfg.seed,
                                  "input_shape": list(input_shape), "num_classes": num_classes})


def load_converted(run_dir: str | os.PathLike) -> ConvertedSNN:
    """Rebuild a run's converted SNN without its data: the ANN from the config, converted the
    same way (every threshold, leak, initial membrane and folded bias then comes from the saved
    tensors), at the saved timesteps."""
    from snn5.config import load_config
    from snn5.runs.run import CONFIG

    run_dir = Path(run_dir)
    cfg = load_config(run_dir / CONFIG)
    cc: ConversionConfig = cfg.conversion
    tensors, meta = load_checkpoint(run_dir / MODEL)
    shape = tuple(int(d) for d in meta["input_shape"])
    ann = build_ann(cc.ann, shape, int(meta["num_classes"])).eval()
    snn = convert(ann, cc.method, calibration=torch.zeros(1, *shape), timesteps=cc.target,
                  encoding=cc.encoding, percentile=cc.percentile, levels=cc.levels,
                  v_init=cc.v_init)
    snn.load_state_dict(tensors)
    snn.timesteps = int(meta["timesteps"])
    return snn.eval()


def _plots_and_report(out: Path, cfg: RunConfig, m: dict[str, Any]) -> None:
    figs = out / "plots"
    made = {"accuracy vs timesteps": plots.accuracy_vs_timesteps(
        {int(k): v for k, v in m["snn_accuracy_by_timesteps"].items()}, m["ann_accuracy"],
        figs / "accuracy_vs_timesteps.png", title=f"{m['method']} on {m['dataset']['name']}")}
    if "robust_accuracy_by_noise" in m:
        made["accuracy vs noise"] = plots.accuracy_vs_noise(
            {"SNN": m["robust_accuracy_by_noise"], "ANN": m["ann_robust_accuracy_by_noise"]},
            figs / "accuracy_vs_noise.png")
    lines = [f"# Conversion: {m['method']} on {m['dataset']['name']}", "",
             f"ANN ({m['ann']}): **{m['ann_accuracy']:.2%}** test accuracy; SNN at "
             f"T = {m['target_timesteps']}: **{m['test_accuracy']:.2%}**. Seed {m['seed']}; "
             f"{m['device']}; snn5 {m['snn5_version']} ({m['git_commit']}).", "",
             "| T | SNN accuracy | SynOps / sample | energy / sample | × ANN energy |",
             "|---:|---:|---:|---:|---:|"]
    for t, acc in m["snn_accuracy_by_timesteps"].items():
        p = m["per_timesteps"].get(t, {})
        ratio = p.get("energy_ratio_vs_ann")
        lines.append(f"| {t} | {acc:.2%} | {p.get('synops_per_sample', 0):.3g} | "
                     f"{p.get('energy_j_per_sample', 0):.3g} J | "
                     f"{'' if ratio is None else f'{ratio:.3f}'} |")
    lines += ["", f"SynOps and energy from the first {m['measured_samples']} test samples; "
              f"energy model {m['energy_model']['name']} ({m['energy_model']['reference']}).", ""]
    if "robust_accuracy_by_noise" in m:
        lines += ["| input noise | SNN | ANN |", "|---:|---:|---:|"]
        for k, v in m["robust_accuracy_by_noise"].items():
            lines.append(f"| {float(k):.0%} | {v:.2%} | {m['ann_robust_accuracy_by_noise'][k]:.2%} |")
        lines.append("")
    if "ternary_layer_ops_per_sample" in m:
        ops = m["ternary_layer_ops_per_sample"]
        lines += ["", f"Ternary layers: {ops['additions']:.3g} additions and "
                  f"{ops['multiplications']} multiplications per sample.", ""]
    lines += [f"![{k}]({v.relative_to(out)})" for k, v in made.items()]
    (out / "report.md").write_text("\n".join(lines) + "\n")


__all__ = ["convert_run", "load_converted", "prepare_ann", "save_converted"]
