"""``snn5 tune``: an Optuna study whose trials are runs of the base config with sampled overrides.

Output folder::

    study.db           SQLite storage (default; any SQLAlchemy URL can be given instead)
    trials/NNNN/       the run folder of trial NNNN (config.yaml, metrics.json, ...)
    trials.csv         one row per trial: number, state, value, parameters, run folder, error
    best.yaml          the resolved config of the best trial (a plain run config)
    plots/             optimization_history.png, param_importances.png (Optuna's matplotlib
                       visualisation; importances need two finished trials that differ)

The objective is the run's best validation accuracy (``val_accuracy`` of metrics.json),
maximised. Surrogate and ANN runs report each epoch's validation accuracy to the pruner. Workers
share the storage; a worker's heartbeat marks its trials alive, and a trial whose worker died is
queued again with the same parameters (Optuna's heartbeat and retry callback). A trial that
raises is recorded FAIL with the error; one stopped by Ctrl-C is queued again on ``resume``.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import warnings
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from snn5.config import RunConfig, config_from_dict, config_to_dict
from snn5.config.io import SEARCH_SPACE, read_config_file
from snn5.hpo.report import TRIALS, write_study_outputs
from snn5.hpo.space import ParamSpec, SearchSpaceError, parse_search_space, with_values
from snn5.runs import train_run

log = logging.getLogger(__name__)

STORAGE = "study.db"
DONE = (TrialState.COMPLETE, TrialState.PRUNED)


class StudyError(RuntimeError):
    """A study stopped: too many failed trials, or a worker process died."""


class Sampler(StrEnum):
    """Optuna sampler: TPE (Bergstra et al., NeurIPS 2011), CMA-ES (Hansen, 2016), random."""

    TPE = "tpe"
    CMAES = "cmaes"
    RANDOM = "random"


class Pruner(StrEnum):
    """Optuna pruner: median stopping rule (Golovin et al., KDD 2017), Hyperband (Li et al.,
    JMLR 2018), or none."""

    MEDIAN = "median"
    HYPERBAND = "hyperband"
    NONE = "none"


@dataclass(frozen=True)
class TuneSpec:
    """Everything a worker needs (picklable: passed to spawned worker processes).

    Args:
        base_data: the base run config as a resolved mapping (overrides applied).
        space: the parsed search space.
        out: the study's output folder.
        storage: SQLAlchemy URL of the study storage.
        study_name: name of the study in the storage.
        sampler, pruner: the Optuna sampler and pruner.
        heartbeat_s: heartbeat interval of running trials; a trial silent for twice as long
            counts as dead and is queued again.
        max_retry: how many times a dead trial is queued again.
    """

    base_data: dict[str, Any]
    space: tuple[ParamSpec, ...]
    out: Path
    storage: str
    study_name: str
    sampler: Sampler = Sampler.TPE
    pruner: Pruner = Pruner.MEDIAN
    heartbeat_s: int = 10
    max_retry: int = 3

    def epochs(self) -> int:
        cfg = config_from_dict(self.base_data)
        return cfg.plasticity.epochs if cfg.paradigm == "plasticity" else cfg.train.epochs


def load_tune_config(path: str | os.PathLike, overrides: list[str] = ()
                     ) -> tuple[RunConfig, tuple[ParamSpec, ...]]:
    """The base run config (overrides applied) and the parsed ``search_space:`` of a YAML."""
    data = read_config_file(path)
    if not isinstance(data, dict) or SEARCH_SPACE not in data:
        raise SearchSpaceError(f"{path} has no top-level {SEARCH_SPACE}: mapping; add one, e.g. "
                               "configs/digits_mlp_tune.yaml")
    raw = data.pop(SEARCH_SPACE)
    base = config_from_dict(data, overrides, source=str(path))
    return base, parse_search_space(raw, base)


def make_storage(spec: TuneSpec) -> RDBStorage:
    """The RDB storage with heartbeats and the retry of dead trials."""
    with warnings.catch_warnings():
        # heartbeats and their retry callback are marked experimental by Optuna
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return RDBStorage(
            spec.storage, engine_kwargs=({"connect_args": {"timeout": 60}}
                                         if spec.storage.startswith("sqlite") else None),
            heartbeat_interval=spec.heartbeat_s,
            heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(spec.max_retry))


def _sampler(spec: TuneSpec, seed: int) -> optuna.samplers.BaseSampler:
    if spec.sampler is Sampler.CMAES:
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    if spec.sampler is Sampler.RANDOM:
        return optuna.samplers.RandomSampler(seed=seed)
    with warnings.catch_warnings():
        # constant_liar (parallel workers do not sample the same point) is experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True)


def _pruner(spec: TuneSpec) -> optuna.pruners.BasePruner:
    if spec.pruner is Pruner.MEDIAN:
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)
    if spec.pruner is Pruner.HYPERBAND:
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(spec.epochs(), 1))
    return optuna.pruners.NopPruner()


def open_study(spec: TuneSpec, *, create: bool = False, resume: bool = False,
               seed: int = 0) -> optuna.Study:
    """Create (``create``) or load the study; an existing study needs ``resume``."""
    storage = make_storage(spec)
    exists = False
    if create:
        exists = spec.study_name in {s.study_name for s in optuna.get_all_study_summaries(storage)}
        if exists and not resume:
            raise FileExistsError(f"study '{spec.study_name}' already exists in {spec.storage}; "
                                  "pass --resume to continue it, or choose another --out")
    study = optuna.create_study(storage=storage, study_name=spec.study_name,
                                sampler=_sampler(spec, seed), pruner=_pruner(spec),
                                direction="maximize", load_if_exists=True)
    if create:
        _check_same_study(study, spec, exists)
    return study


def _definition(spec: TuneSpec) -> dict[str, Any]:
    """What a study is about (JSON): the base config and the search space."""
    space = [{**asdict(p), "kind": str(p.kind), "choices": list(p.choices)} for p in spec.space]
    return json.loads(json.dumps({"base_config": spec.base_data, "search_space": space}))


def _check_same_study(study: optuna.Study, spec: TuneSpec, exists: bool) -> None:
    """Record the study's definition; a resumed study must keep it (trials stay comparable)."""
    new = _definition(spec)
    if not exists:
        for key, value in new.items():
            study.set_user_attr(key, value)
        return
    for key, value in new.items():
        if study.user_attrs.get(key) != value:
            raise SearchSpaceError(f"cannot resume the study in {spec.storage}: its {key} "
                                   "differs from this config's; resume with the same config, "
                                   "search_space and --set overrides, or choose another --out")


class _EpochReporter:
    """Epoch callback ``cb(history)``: reports each finished epoch's validation accuracy to the
    trial (every paradigm that trains in epochs) and stops it when the pruner says so."""

    def __init__(self, trial: optuna.Trial) -> None:
        self.trial, self.seen = trial, 0

    def report(self, history: list[dict[str, float]]) -> None:
        for record in history[self.seen:]:
            self.trial.report(record["val_accuracy"], step=int(record["epoch"]))
            self.seen += 1
            if self.trial.should_prune():
                raise optuna.TrialPruned(f"epoch {int(record['epoch']) + 1}: val accuracy "
                                         f"{record['val_accuracy']:.4f}")

    def __call__(self, history: list[dict[str, float]]) -> None:
        self.report(history)


def trial_config(spec: TuneSpec, values: dict[str, Any]) -> RunConfig:
    """The run config of a trial: the base config with ``values`` at their dotted paths."""
    return config_from_dict(with_values(spec.base_data, values), source="trial config")


def objective(spec: TuneSpec, trial: optuna.Trial) -> float:
    """Run the base config with the trial's sampled values; its best validation accuracy."""
    values = {p.path: p.suggest(trial) for p in spec.space}
    run_dir = spec.out / "trials" / f"{trial.number:04d}"
    trial.set_user_attr("run_dir", str(run_dir))
    trial.set_user_attr("pid", os.getpid())      # which worker process ran it
    trial.set_user_attr("error", None)         # a retried trial inherits its original's attrs
    reporter = _EpochReporter(trial)
    try:
        metrics = train_run(trial_config(spec, values), run_dir, progress=False,
                            epoch_callbacks=[reporter])
        reporter.report(metrics.get("history") or [])   # paradigms without epochs (conversion)
    except optuna.TrialPruned:
        raise
    except (Exception, KeyboardInterrupt) as exc:
        trial.set_user_attr("error", f"{type(exc).__name__}: {exc}")
        raise
    value = metrics.get("val_accuracy")
    if value is None:
        raise ValueError(f"run {run_dir} has no validation accuracy in metrics.json (a "
                         "conversion run with given ANN weights trains nothing); tune another "
                         "paradigm")
    trial.set_user_attr("test_accuracy", metrics.get("test_accuracy"))
    return float(value)


def requeue_interrupted(study: optuna.Study, max_retry: int) -> int:
    """Queue again the trials stopped by Ctrl-C (FAIL with a KeyboardInterrupt) not yet queued."""
    trials = study.get_trials(deepcopy=False)
    with warnings.catch_warnings():
        # the retry callback and its helpers are marked experimental by Optuna
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = RetryHeartbeatStaleTrialCallback(max_retry)
        queued = {n for t in trials for n in RetryHeartbeatStaleTrialCallback.retry_history(t)}
        count = 0
        for t in trials:
            error = t.user_attrs.get("error") or ""
            if (t.state is TrialState.FAIL and error.startswith("KeyboardInterrupt")
                    and t.number not in queued):
                retry(study, t)
                count += 1
    return count


def run_worker(spec: TuneSpec, n_trials: int, worker: int = 0,
               threads: int | None = None) -> None:
    """Run trials until the study holds ``n_trials`` finished (complete or pruned) trials.

    Args:
        spec: the study.
        n_trials: finished trials to reach (those of every worker count).
        worker: index of this worker (varies the sampler seed).
        threads: torch intra-op threads of this process (None: unchanged).

    Raises:
        StudyError: more than ``n_trials`` trials failed.
    """
    if threads is not None:
        torch.set_num_threads(threads)
    existing = optuna.load_study(study_name=spec.study_name, storage=make_storage(spec)).trials
    seed = config_from_dict(spec.base_data).seed + 1000 * worker + len(existing)
    study = open_study(spec, seed=seed)             # new points after a resume, per worker
    while True:
        states = [t.state for t in study.get_trials(deepcopy=False)]
        if sum(s in DONE for s in states) >= n_trials:
            return
        if states.count(TrialState.FAIL) > n_trials:
            raise StudyError(f"{states.count(TrialState.FAIL)} trials failed (see the error "
                             f"column of {spec.out / TRIALS}); fix the config or the search "
                             "space and resume")
        study.optimize(lambda trial: objective(spec, trial), n_trials=1, catch=(Exception,))


def _spawned(spec: TuneSpec, n_trials: int, worker: int, threads: int) -> None:
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s w{worker} %(message)s",
                        datefmt="%H:%M:%S")
    run_worker(spec, n_trials, worker, threads)


def tune(config: str | os.PathLike, out: str | os.PathLike, *, n_trials: int,
         workers: int = 1, overrides: list[str] = (), sampler: Sampler = Sampler.TPE,
         pruner: Pruner = Pruner.MEDIAN, storage: str | None = None, resume: bool = False,
         heartbeat_s: int = 10) -> dict[str, Any]:
    """Tune the ``search_space:`` of a run config and write the study's outputs.

    Args:
        config: YAML run config with a top-level ``search_space:``.
        out: output folder (storage, trial run folders, best.yaml, trials.csv, plots).
        n_trials: finished (complete or pruned) trials the study should hold; on ``resume``
            the trials already finished count.
        workers: processes sharing the storage (``> 1``: spawned, threads split between them).
        overrides: dotted ``key=value`` overrides of the base config.
        sampler, pruner: Optuna sampler and pruner.
        storage: SQLAlchemy URL (default: SQLite file ``OUT/study.db``).
        resume: continue the existing study in the storage.
        heartbeat_s: heartbeat interval; a trial silent for twice as long is queued again.

    Returns:
        Summary: best value, params and trial number, counts by state, output paths.
    """
    if n_trials < 1 or workers < 1:
        raise ValueError(f"--n-trials ({n_trials}) and --workers ({workers}) must be >= 1")
    base, space = load_tune_config(config, list(overrides))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    spec = TuneSpec(config_to_dict(base), space, out.resolve(),
                    storage or f"sqlite:///{(out / STORAGE).resolve()}", "snn5", Sampler(sampler),
                    Pruner(pruner), heartbeat_s)
    study = open_study(spec, create=True, resume=resume, seed=base.seed)
    if resume:
        requeued = requeue_interrupted(study, spec.max_retry)
        if requeued:
            log.info("queued %d interrupted trial(s) again", requeued)
    if workers == 1:
        run_worker(spec, n_trials)
    else:
        ctx = multiprocessing.get_context("spawn")
        threads = max(1, (os.cpu_count() or 1) // workers)
        procs = [ctx.Process(target=_spawned, args=(spec, n_trials, w, threads))
                 for w in range(workers)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        if any(p.exitcode for p in procs):
            raise StudyError(f"worker exit codes {[p.exitcode for p in procs]}; the study is "
                               "kept in the storage: fix the cause and pass --resume")
    return write_study_outputs(study, spec)
