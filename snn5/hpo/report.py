"""Outputs of a study: best.yaml, trials.csv and Optuna's matplotlib plots."""

from __future__ import annotations

import csv
import logging
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from snn5.config import config_from_dict, save_config
from snn5.hpo.space import ParamSpec, with_values

log = logging.getLogger(__name__)

BEST = "best.yaml"
TRIALS = "trials.csv"


def _values(space: tuple[ParamSpec, ...], trial: FrozenTrial) -> dict[str, Any]:
    return {p.path: p.value_of(trial.params) for p in space if p.path in trial.params}


def write_trials_csv(path: Path, trials: list[FrozenTrial], space: tuple[ParamSpec, ...]) -> Path:
    """One row per trial: number, state, value, the config values, seconds, run folder, error."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["number", "state", "value", *(p.path for p in space), "seconds",
                    "test_accuracy", "retry_of", "run_dir", "error"])
        for t in trials:
            values = _values(space, t)
            seconds = (t.datetime_complete - t.datetime_start).total_seconds() \
                if t.datetime_complete and t.datetime_start else ""
            w.writerow([t.number, t.state.name, "" if t.value is None else t.value,
                        *(values.get(p.path, "") for p in space), seconds,
                        t.user_attrs.get("test_accuracy", ""),
                        t.system_attrs.get("failed_trial", ""), t.user_attrs.get("run_dir", ""),
                        t.user_attrs.get("error") or ""])
    return path


def _importances_possible(trials: list[FrozenTrial]) -> bool:
    complete = [t for t in trials if t.state is TrialState.COMPLETE]
    varying = any(len({repr(t.params.get(name)) for t in complete}) > 1
                  for name in (complete[0].params if complete else {}))
    return len(complete) >= 2 and varying


def write_plots(study: optuna.Study, folder: Path) -> dict[str, Path]:
    """optimization_history.png and (when computable) param_importances.png."""
    from matplotlib import pyplot             # Optuna's matplotlib plots draw through pyplot
    from optuna.visualization import matplotlib as ovm

    folder.mkdir(parents=True, exist_ok=True)
    made: dict[str, Path] = {}
    plots = {"optimization_history": ovm.plot_optimization_history}
    if _importances_possible(study.get_trials(deepcopy=False)):
        plots["param_importances"] = ovm.plot_param_importances
    else:
        log.info("no parameter importances: they need two complete trials that differ")
    for name, plot in plots.items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ax = plot(study)
        for w in caught:      # experimental-API notices, and remarks such as equal importances
            if not issubclass(w.category, optuna.exceptions.ExperimentalWarning):
                log.info("%s: %s", name, w.message)
        fig = ax.figure
        fig.tight_layout()
        fig.savefig(folder / f"{name}.png", dpi=120)
        pyplot.close(fig)
        made[name] = folder / f"{name}.png"
    return made


def write_study_outputs(study: optuna.Study, spec: Any) -> dict[str, Any]:
    """Write best.yaml, trials.csv and plots of ``study`` into ``spec.out``; a summary."""
    trials = study.get_trials(deepcopy=False)
    out = Path(spec.out)
    counts = {s.name: sum(t.state is s for t in trials) for s in TrialState}
    summary: dict[str, Any] = {"trials": {k: v for k, v in counts.items() if v},
                               "trials_csv": str(write_trials_csv(out / TRIALS, trials,
                                                                  spec.space))}
    if not counts["COMPLETE"]:
        log.warning("no complete trial: no best.yaml and no plots")
        return summary
    best = study.best_trial
    cfg = config_from_dict(with_values(spec.base_data, _values(spec.space, best)),
                           source=f"best trial {best.number}")
    summary.update(best_value=best.value, best_trial=best.number,
                   best_values=_values(spec.space, best),
                   best_yaml=str(save_config(cfg, out / BEST)),
                   best_run_dir=best.user_attrs.get("run_dir"),
                   plots={k: str(v) for k, v in write_plots(study, out / "plots").items()})
    return summary
