"""A run from config to run folder: train, select on validation, measure on test, report.

Run folder::

    config.yaml        the fully resolved config
    metrics.json       accuracy, firing rates, SynOps, MACs, energy, latency, provenance, history
    report.md          a short human-readable summary
    plots/             training_curves.png, spike_raster.png, firing_rates.png
    checkpoints/       last.safetensors (resumable state), best.safetensors (selected weights)
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from snn5.config import RunConfig, config_diff, load_config, save_config
from snn5.data import BatchLoader, SplitData, load_dataset
from snn5.metrics import get_energy_model, measure
from snn5.models import SpikingClassifier, build_model
from snn5.nn import SpikeRecorder
from snn5.runs import plots
from snn5.runs.provenance import provenance
from snn5.runs.report import write_run_report
from snn5.train.checkpoint import load_checkpoint, unprefixed
from snn5.train.device import resolve_device
from snn5.train.distributed import Dist, init_distributed, launched_by_torchrun, shutdown
from snn5.train.distill import (
    LiveTeacher, SoftTargetLoss, load_teacher, teacher_logits, teacher_weights_path,
)
from snn5.train.plasticity import fit_plasticity
from snn5.train.surrogate import BEST, LAST, Trainer

log = logging.getLogger(__name__)

CONFIG = "config.yaml"
METRICS = "metrics.json"


class RunExistsError(FileExistsError):
    """The output folder already holds a run."""


def write_json(path: Path, data: Any) -> Path:
    """Write JSON atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def build_run_models(cfg: RunConfig, data: SplitData) -> tuple[SpikingClassifier, SpikingClassifier]:
    """The model the run trains (seeded init) and its same-size ANN twin (for MAC counts)."""
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, data.input_shape, data.num_classes,
                        ann=cfg.paradigm == "ann")
    with torch.random.fork_rng():
        ann = build_model(cfg.model, data.input_shape, data.num_classes, ann=True)
    return model, ann


def _prepare_out(cfg: RunConfig, out: Path, resume: bool) -> None:
    saved = out / CONFIG
    if resume:
        if saved.is_file():
            diff = config_diff(load_config(saved), cfg)
            if diff:
                raise ValueError(f"cannot resume {out}: the config differs from its "
                                 f"{CONFIG}:\n  " + "\n  ".join(diff) +
                                 "\nResume with the same config and overrides, or start a new "
                                 "run with another --out.")
        return
    if saved.exists() or (out / "checkpoints" / LAST).exists():
        raise RunExistsError(f"{out} already holds a run; pass --resume to continue it, or "
                             "choose another --out (nothing was changed).")


def train_run(cfg: RunConfig, out: str | os.PathLike, *, resume: bool = False,
              progress: bool | None = None, callbacks=(),
              epoch_callbacks=()) -> dict[str, Any]:
    """Train ``cfg`` into the run folder ``out`` and write its metrics, report and plots.

    Args:
        cfg: the validated run config.
        out: run folder (created; must not hold another run unless ``resume``).
        resume: continue from ``out/checkpoints/last.safetensors`` (same config required).
        progress: progress bars (None: only on a terminal).
        callbacks: passed to the trainer (``cb(trainer)`` after every step).
        epoch_callbacks: ``cb(history)`` after every epoch, for every paradigm that trains in
            epochs (surrogate, ann, distill, plasticity), e.g. a search's pruning reports.

    Started by torchrun with several processes (``torchrun --nproc_per_node=K -m snn5 train``),
    the gradient paradigms (surrogate, ann, distill) train data-parallel
    (:mod:`snn5.train.distributed`); rank 0 writes the run folder and returns the metrics, the
    other ranks return ``{}``.

    Returns:
        The contents of ``metrics.json``.
    """
    out = Path(out)
    if launched_by_torchrun() and cfg.paradigm in ("conversion", "plasticity"):
        raise ValueError(f"paradigm {cfg.paradigm} runs in one process (torchrun started "
                         f"{os.environ['WORLD_SIZE']}); start it without torchrun / --nproc. "
                         "Data-parallel training covers surrogate, ann and distill.")
    if cfg.paradigm == "conversion":
        if resume:
            raise ValueError("a conversion run does not resume; start it again with a new --out")
        from snn5.runs.convert import convert_run
        return convert_run(cfg, out, progress=progress)
    _prepare_out(cfg, out, resume)                # every process checks before any writes
    joined = launched_by_torchrun() and not torch.distributed.is_initialized()
    d = init_distributed(resolve_device(cfg.train.device))    # Dist() outside torchrun
    try:
        return _train_run(cfg, out, d, resume=resume, progress=progress, callbacks=callbacks,
                          epoch_callbacks=epoch_callbacks)
    finally:
        if joined:
            shutdown(d)


def _train_run(cfg: RunConfig, out: Path, d: Dist, *, resume: bool, progress: bool | None,
               callbacks, epoch_callbacks) -> dict[str, Any]:
    d.barrier()                                   # all checked the folder: rank 0 may write
    with d.main_first():                          # rank 0 fills the dataset cache first
        data = load_dataset(cfg.data)             # fail on data/model problems before writing
    model, ann = build_run_models(cfg, data)
    augment = cfg.data.augment if cfg.data.augment.active else None
    if augment is not None:
        augment.check_sample_shape(tuple(data.train.x.shape[1:]))
    with d.main_first():                          # ... and the teacher's logit cache
        soft, distilled = distill_term(cfg, data) if cfg.paradigm == "distill" else (None, {})
    if d.is_main:
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / CONFIG)
    if cfg.paradigm == "plasticity":
        pc = cfg.plasticity
        device = resolve_device(pc.device)
        started = provenance(device)              # the code and machine this process runs on
        fit = fit_plasticity(model, pc, BatchLoader(data.train, pc.batch_size, shuffle=True,
                                                    seed=cfg.seed, augment=augment),
                             BatchLoader(data.val, pc.eval_batch_size, shuffle=False),
                             num_classes=data.num_classes, checkpoint_dir=out / "checkpoints",
                             seed=cfg.seed, progress=progress, resume=resume,
                             epoch_callbacks=epoch_callbacks)
        epochs = pc.epochs
    else:
        trainer = Trainer(model, cfg.train, BatchLoader(data.train, cfg.train.batch_size,
                                                        shuffle=True, seed=cfg.seed,
                                                        augment=augment),
                          BatchLoader(data.val, cfg.train.eval_batch_size, shuffle=False),
                          checkpoint_dir=out / "checkpoints", seed=cfg.seed, callbacks=callbacks,
                          epoch_callbacks=epoch_callbacks, progress=progress, extra_loss=soft,
                          task_weight=1.0 if soft is None else soft.task_weight, dist=d)
        device = trainer.device
        started = provenance(device)              # the code and machine this process runs on
        fit = trainer.fit(resume=resume)
        epochs = cfg.train.epochs
        if not d.is_main:
            return {}
    load_weights(model, out / "checkpoints" / BEST)
    metrics = {
        "paradigm": cfg.paradigm, "model": cfg.model.name, "seed": cfg.seed,
        **measure_run(cfg, model, ann, data, device),
        "val_accuracy": fit.best_val_accuracy, "best_epoch": fit.best_epoch,
        "epochs": epochs, "steps": fit.steps, "train_seconds": fit.train_seconds,
        **started, "finished_at": provenance(device)["finished_at"],
        "history": fit.history,
    }
    if cfg.paradigm == "distill":
        metrics["distill"] = distilled
    if d.active:
        metrics["distributed"] = {"world_size": d.world_size,
                                  "backend": torch.distributed.get_backend()}
    write_outputs(out, cfg, model, data, metrics)
    return metrics


def distill_term(cfg: RunConfig, data: SplitData) -> tuple[SoftTargetLoss, dict[str, Any]]:
    """The soft-target term of ``paradigm: distill`` and what to record of it.

    The teacher (``distill.teacher``) is loaded into a fresh ANN twin of the run's model; its
    logits of the un-augmented training set come from the cache (computed on a miss), or from
    the live teacher on every batch with ``distill.cache: false``.
    """
    dc = cfg.distill
    if cfg.data.augment.active:
        log.info("distill: the teacher's logits are those of the un-augmented training images")
    twin = build_model(cfg.model, data.input_shape, data.num_classes, ann=True)
    teacher = load_teacher(dc.teacher, twin)
    device = resolve_device(cfg.train.device)
    record: dict[str, Any] = {"teacher": str(dc.teacher), "temperature": dc.temperature,
                              "alpha": dc.alpha, "cache": dc.cache}
    if dc.cache:
        source = Path(dc.teacher)
        cache_dir = Path(dc.cache_dir) if dc.cache_dir is not None else (
            (source if source.is_dir() else teacher_weights_path(source).parent) / "logit_cache")
        started = time.perf_counter()
        logits = teacher_logits(teacher, data.train, cache_dir, dataset_checksum=data.checksum,
                                batch_size=cfg.train.eval_batch_size, device=device)
        record.update(cache_file=str(logits.path), cache_hit=logits.hit,
                      teacher_seconds=time.perf_counter() - started)
    else:
        logits = LiveTeacher(teacher, data.train, device)
    return SoftTargetLoss(logits, temperature=dc.temperature, alpha=dc.alpha), record


def load_weights(model: nn.Module, path: Path) -> None:
    """Load the ``model.*`` tensors of a checkpoint into ``model``."""
    tensors, _ = load_checkpoint(path, device=next(model.parameters()).device)
    model.load_state_dict(unprefixed("model", tensors))


def measure_run(cfg: RunConfig, model: nn.Module, ann: nn.Module, data: SplitData,
                device: torch.device) -> dict[str, Any]:
    """Test-set measurement with the run's energy model, as metrics.json fields."""
    with torch.random.fork_rng():
        torch.manual_seed(cfg.seed)
        m = measure(model.to(device), BatchLoader(data.test, cfg.train.eval_batch_size,
                                                  shuffle=False),
                    ann_model=ann.to(device), energy_model=cfg.measure.energy_model).to_dict()
    energy = get_energy_model(cfg.measure.energy_model)
    return {
        "dataset": {"name": data.name, "checksum": data.checksum, "description": data.description,
                    "train": len(data.train), "val": len(data.val), "test": len(data.test)},
        "test_accuracy": m.pop("accuracy"), "test_loss": m.pop("loss"),
        "parameters": sum(p.numel() for p in model.parameters()),
        **m,
        "energy_model": energy.to_dict(),           # every cost of the profile, and its source
    }


def write_outputs(out: Path, cfg: RunConfig, model: nn.Module, data: SplitData,
                  metrics: dict[str, Any]) -> None:
    """metrics.json, plots and report.md of a finished run."""
    write_json(out / METRICS, metrics)
    figs = out / "plots"
    made = {}
    if metrics.get("history"):
        made["training curves"] = plots.training_curves(metrics["history"],
                                                        figs / "training_curves.png")
    index = min(cfg.measure.raster_sample, len(data.test) - 1)
    x = data.test.x[index:index + 1].to(next(model.parameters()).device)
    model.eval()
    with torch.inference_mode(), SpikeRecorder(model) as rec:
        model(x)
    if rec.spikes:
        made["spike raster"] = plots.spike_raster(
            {k: v.cpu() for k, v in rec.spikes.items()}, figs / "spike_raster.png",
            title=f"test sample {index} (label {int(data.test.y[index])})")
        made["firing rates"] = plots.firing_rates(metrics["firing_rate"]["per_layer"],
                                                  figs / "firing_rates.png")
    write_run_report(out / "report.md", cfg, metrics, {k: v.relative_to(out) for k, v in made.items()})


class LoadedRun(NamedTuple):
    """A finished run: its resolved config, its data, the model with the selected (best)
    weights in eval mode, and the same-size ANN twin (untrained, for MAC counts)."""

    cfg: RunConfig
    data: SplitData
    model: SpikingClassifier
    ann: SpikingClassifier


def load_run(run_dir: str | os.PathLike, *, data_dir: str | None = None,
             device: str | torch.device = "cpu") -> LoadedRun:
    """Load a finished run folder of ``snn5 train`` (config.yaml + checkpoints/best).

    Args:
        run_dir: the ``--out`` folder of ``snn5 train``.
        data_dir: where the run's dataset lives, if not where the run found it.
        device: where the model goes (``"auto"``: the best available).
    """
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG).is_file():
        raise FileNotFoundError(f"{run_dir} is not a run folder (no {CONFIG}); pass the --out "
                                "folder of `snn5 train`.")
    cfg = load_config(run_dir / CONFIG)
    if data_dir is not None:
        cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"data_dir": data_dir})})
    data = load_dataset(cfg.data)                          # also gives the shapes
    model, ann = build_run_models(cfg, data)
    dev = resolve_device(device)
    model.to(dev)
    load_weights(model, run_dir / "checkpoints" / BEST)
    return LoadedRun(cfg, data, model.eval(), ann)


def evaluate_run(run_dir: str | os.PathLike, *, data_dir: str | None = None,
                 device: str = "auto") -> dict[str, Any]:
    """Re-measure a finished run's selected weights on its test set; writes evaluation.json."""
    run_dir = Path(run_dir)
    cfg, data, model, ann = load_run(run_dir, data_dir=data_dir, device=device)
    dev = next(model.parameters()).device
    result = {"run": str(run_dir), "paradigm": cfg.paradigm, "model": cfg.model.name,
              **measure_run(cfg, model, ann, data, dev), **provenance(dev)}
    write_json(run_dir / "evaluation.json", result)
    return result
