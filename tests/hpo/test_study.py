"""Studies on SQLite: 4 trials complete, an interrupted study resumes without losing trials,
a failing trial is recorded, two workers share the storage."""

import csv
import subprocess
import sys
import time

import optuna
import pytest
import sqlalchemy
import yaml
from optuna.trial import TrialState

from snn5.config import load_config
from snn5.hpo import study as hpo_study
from snn5.hpo import SearchSpaceError, tune

SPACE = """\
seed: 0
data: {name: digits, train_subset: 120}
model: {name: spiking_mlp, hidden: [16], timesteps: 2}
train: {epochs: 2, batch_size: 60, optimizer: {lr: 5.0e-3}}
search_space:
  train.optimizer.lr: {low: 1.0e-3, high: 3.0e-2, log: true}
  model.hidden: {choices: [[8], [16]]}
"""


def _config(tmp_path, text=SPACE):
    path = tmp_path / "tune.yaml"
    path.write_text(text)
    return path


def _rows(out):
    return list(csv.DictReader((out / "trials.csv").read_text().splitlines()))


def _trials(out):
    return optuna.load_study(study_name="snn5", storage=f"sqlite:///{out / 'study.db'}").trials


def test_four_trials_complete_with_outputs(tmp_path):
    out = tmp_path / "study"
    summary = tune(_config(tmp_path), out, n_trials=4, pruner="none")
    trials = _trials(out)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    assert {t.number for t in trials} == {0, 1, 2, 3}
    for t in trials:
        assert (out / "trials" / f"{t.number:04d}" / "metrics.json").is_file()
        assert sorted(t.intermediate_values) == [0, 1]        # one report per epoch
        assert t.value == max(t.intermediate_values.values())  # the best epoch's val accuracy
    best = load_config(out / "best.yaml")                     # a plain run config
    assert "search_space" not in yaml.safe_load((out / "best.yaml").read_text())
    assert best.train.optimizer.lr == summary["best_values"]["train.optimizer.lr"]
    assert summary["best_value"] == max(t.value for t in trials)
    rows = _rows(out)
    assert [r["state"] for r in rows] == ["COMPLETE"] * 4 and "model.hidden" in rows[0]
    assert (out / "plots" / "optimization_history.png").stat().st_size > 0
    assert (out / "plots" / "param_importances.png").stat().st_size > 0
    with pytest.raises(FileExistsError, match="--resume"):
        tune(_config(tmp_path), out, n_trials=4)
    with pytest.raises(SearchSpaceError, match="its search_space differs"):
        tune(_config(tmp_path, SPACE.replace("3.0e-2", "5.0e-2")), out, n_trials=5, resume=True)
    with pytest.raises(SearchSpaceError, match="its base_config differs"):
        tune(_config(tmp_path), out, n_trials=5, resume=True, overrides=["train.epochs=3"])
    assert len(_trials(out)) == 4                             # nothing ran


def test_interrupted_study_resumes_without_losing_trials(tmp_path, monkeypatch):
    out = tmp_path / "study"
    real = hpo_study.train_run

    def interrupt_third(cfg, run_dir, **kw):
        if run_dir.name == "0002":
            raise KeyboardInterrupt                           # Ctrl-C during the third trial
        return real(cfg, run_dir, **kw)

    monkeypatch.setattr(hpo_study, "train_run", interrupt_third)
    with pytest.raises(KeyboardInterrupt):
        tune(_config(tmp_path), out, n_trials=4, pruner="none")
    first = _trials(out)
    assert [t.state for t in first] == [TrialState.COMPLETE] * 2 + [TrialState.FAIL]
    monkeypatch.setattr(hpo_study, "train_run", real)
    tune(_config(tmp_path), out, n_trials=4, pruner="none", resume=True)
    trials = _trials(out)
    complete = [t for t in trials if t.state is TrialState.COMPLETE]
    assert len(complete) == 4                                 # the 2 before count toward 4
    assert [t.value for t in trials[:2]] == [t.value for t in first[:2]]   # kept, not re-run
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == 2]
    assert len(retried) == 1 and retried[0].params == first[2].params
    assert retried[0].state is TrialState.COMPLETE


def test_a_failing_trial_is_recorded_with_its_error(tmp_path, monkeypatch):
    text = SPACE.replace("model.hidden: {choices: [[8], [16]]}",
                         "train.grad_clip: {choices: [1.0]}")
    out = tmp_path / "study"
    path = _config(tmp_path, text)
    original = hpo_study.train_run

    def failing(cfg, run_dir, **kw):
        if run_dir.name == "0001":
            raise ValueError("boom in trial 1")
        return original(cfg, run_dir, **kw)

    monkeypatch.setattr(hpo_study, "train_run", failing)
    tune(path, out, n_trials=2, pruner="none", sampler="random")
    trials = _trials(out)
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL,
                                         TrialState.COMPLETE]
    assert trials[1].user_attrs["error"] == "ValueError: boom in trial 1"
    rows = _rows(out)
    assert rows[1]["state"] == "FAIL" and "boom" in rows[1]["error"]


@pytest.mark.slow
def test_two_workers_share_the_storage(tmp_path):
    out = tmp_path / "study"
    tune(_config(tmp_path), out, n_trials=4, workers=2, pruner="none")
    trials = _trials(out)
    complete = [t for t in trials if t.state is TrialState.COMPLETE]
    assert 4 <= len(complete) <= 5                 # a worker may finish one in flight
    assert len({t.number for t in trials}) == len(trials)
    assert all((out / "trials" / f"{t.number:04d}").is_dir() for t in complete)
    assert len({t.user_attrs["pid"] for t in trials}) == 2    # both workers ran trials


KILLABLE = """\
import sys
from snn5.hpo import SearchSpaceError, tune
tune(sys.argv[1], sys.argv[2], n_trials=4, pruner="none", heartbeat_s=1)
"""


@pytest.mark.slow
def test_a_killed_study_resumes_and_retries_the_dead_trial(tmp_path):
    cfg = _config(tmp_path, SPACE.replace("epochs: 2", "epochs: 6"))
    out = tmp_path / "study"
    script = tmp_path / "run.py"
    script.write_text(KILLABLE)
    proc = subprocess.Popen([sys.executable, str(script), str(cfg), str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        states = []                           # wait for 2 complete trials and a third running
        while not (states.count(TrialState.COMPLETE) >= 2 and TrialState.RUNNING in states):
            assert proc.poll() is None, "the study ended before it could be killed"
            time.sleep(0.2)
            if not (out / "study.db").is_file():
                continue
            try:
                states = [t.state for t in _trials(out)]
            except (KeyError, sqlalchemy.exc.OperationalError):   # storage being created
                continue
    finally:
        proc.kill()                                           # SIGKILL: no cleanup at all
        proc.wait()
    killed = [t for t in _trials(out) if t.state is TrialState.RUNNING]
    assert len(killed) == 1
    time.sleep(3)                             # past the grace period (2 heartbeats) of the trial
    tune(cfg, out, n_trials=4, pruner="none", heartbeat_s=1, resume=True)
    trials = _trials(out)
    assert sum(t.state is TrialState.COMPLETE for t in trials) == 4
    assert trials[killed[0].number].state is TrialState.FAIL          # recorded, not lost
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == killed[0].number]
    assert len(retried) == 1 and retried[0].state is TrialState.COMPLETE
    assert retried[0].params == killed[0].params


PLASTIC = """\
seed: 0
paradigm: plasticity
data: {name: digits, train_subset: 120}
model: {name: spiking_mlp, hidden: [16], timesteps: 4, encoding: poisson}
plasticity: {epochs: 2, batch_size: 60, rule: {name: stdp, a_plus: 0.005}, threads: 1}
search_space:
  plasticity.rule.a_plus: {low: 1.0e-3, high: 1.0e-2, log: true}
  plasticity.rule.tau_plus: {low: 5.0e-3, high: 4.0e-2, log: true}
"""


def test_a_plasticity_study_tunes_rule_constants(tmp_path):
    out = tmp_path / "study"
    tune(_config(tmp_path, PLASTIC), out, n_trials=2, sampler="random")
    trials = _trials(out)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    assert sorted(trials[0].intermediate_values) == [0, 1]   # each epoch reported after the run
    best = load_config(out / "best.yaml")
    assert best.paradigm == "plasticity"
    assert best.plasticity.rule["tau_plus"] in {t.params["plasticity.rule.tau_plus"]
                                                for t in trials}


def test_cmaes_with_hyperband_runs_under_warnings_as_errors(tmp_path):
    out = tmp_path / "study"
    tune(_config(tmp_path), out, n_trials=3, sampler="cmaes", pruner="hyperband")
    trials = _trials(out)
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials) == 3
    assert all(1e-3 <= t.params["train.optimizer.lr"] <= 3e-2 for t in trials)
