"""``snn5 bench SUITE.yaml --out DIR``: train and measure a list of (model, dataset) entries and
write one JSON and a Markdown leaderboard.

A suite file::

    name: first-leaderboard
    description: every architecture on POKER-DVS, seed 0
    entries:
      - name: pokerdvs-conv            # folder name and table label
        config: ../../configs/pokerdvs_conv.yaml   # relative to the suite file
        set: {train.epochs: 50}        # dotted overrides, as `snn5 train --set`
        seeds: [0, 1]

Each (entry, seed) is an ordinary run folder ``DIR/runs/<entry>/seed<k>`` written by
:func:`snn5.runs.train_run`: validation-selected weights, measured on the test split. A suite
stopped part-way resumes: finished runs (``metrics.json`` present and the same config) are
reused, an interrupted one continues from its last checkpoint. After training, the
time-reversal test (:mod:`snn5.metrics.reversal`) evaluates the selected weights on the test
samples with their time axis reversed; static-input models get "n/a".

Outputs in ``DIR``: ``bench.json`` (suite, one row per entry with the seeds' mean and standard
deviation, every run's figures and provenance), ``leaderboard.md``, ``plots/accuracy_vs_energy.png``
and ``plots/firing_rate_per_layer.png``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import statistics
import time
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from snn5.config import ConfigError, RunConfig, config_diff, load_config
from snn5.data import BatchLoader, load_dataset
from snn5.metrics.reversal import time_axis, time_reversal_accuracy
from snn5.runs import plots
from snn5.runs.provenance import provenance
from snn5.runs.run import (
    CONFIG, METRICS, build_run_models, load_weights, train_run, write_json,
)
from snn5.train.device import resolve_device
from snn5.train.surrogate import BEST

log = logging.getLogger(__name__)

BENCH_JSON = "bench.json"
LEADERBOARD = "leaderboard.md"
REVERSAL = "time_reversal.json"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class BenchEntry(BaseModel):
    """One row of the leaderboard: a run config, overrides, and the seeds to run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    config: str
    set: dict[str, Any] = Field(default_factory=dict)
    seeds: tuple[int, ...] = Field((0,), min_length=1)

    @field_validator("name")
    @classmethod
    def _folder_name(cls, name: str) -> str:
        if not _NAME.match(name):
            raise ValueError(f"entry name {name!r} must be a folder name: letters, digits, "
                             "'.', '_' or '-', starting with a letter or digit")
        return name

    def overrides(self) -> list[str]:
        """The ``set`` mapping as ``key=value`` override strings (values as YAML)."""
        def text(value: Any) -> str:
            dumped = yaml.safe_dump(value, default_flow_style=True).strip()
            return dumped.removesuffix("...").strip()      # scalars end with a document marker
        return [f"{k}={text(v)}" for k, v in self.set.items()]


class BenchSuite(BaseModel):
    """A benchmark suite: a name and its entries (unique names)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    entries: tuple[BenchEntry, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> BenchSuite:
        names = [e.name for e in self.entries]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"entry names must be unique; repeated: {', '.join(dup)}")
        return self


def load_suite(path: str | os.PathLike, *, data_dir: str | None = None
               ) -> tuple[BenchSuite, dict[str, RunConfig]]:
    """Read and validate a suite and every entry's run config (before any training starts).

    Returns:
        The suite and ``{entry name: resolved RunConfig}``.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"suite file {path} not found; benchmarks/suites/ has examples")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
        suite = BenchSuite.model_validate(raw)
    except (yaml.YAMLError, ValidationError) as exc:
        raise ConfigError(f"{path}: not a valid suite: {exc}") from None
    configs = {}
    for entry in suite.entries:
        cfg_path = (path.parent / entry.config).resolve()
        overrides = entry.overrides()
        if data_dir is not None:
            overrides.append(f"data.data_dir={data_dir}")
        try:
            cfg = load_config(cfg_path, overrides)
        except ConfigError as exc:
            raise ConfigError(f"suite entry '{entry.name}': {exc}") from None
        if cfg.paradigm == "conversion":
            raise ConfigError(f"suite entry '{entry.name}': conversion runs report accuracy per "
                              "timestep, not one leaderboard row; bench the converted model's "
                              "surrogate or ANN config, or use `snn5 convert`")
        configs[entry.name] = cfg
    return suite, configs


def _run_one(cfg: RunConfig, run_dir: Path, progress: bool | None) -> dict[str, Any]:
    """Train (or reuse, or resume) one run folder; returns its metrics."""
    metrics_path = run_dir / METRICS
    if metrics_path.is_file():
        previous = load_config(run_dir / CONFIG)
        # where the files are read from does not change a run (the dataset checksum is kept)
        previous = previous.model_copy(update={"data": previous.data.model_copy(
            update={"data_dir": cfg.data.data_dir})})
        diff = config_diff(previous, cfg)
        if diff:
            raise ConfigError(f"{run_dir} holds a finished run of another config "
                              f"({'; '.join(diff)}); use a new --out or delete that folder")
        log.info("reusing finished run %s", run_dir)
        return json.loads(metrics_path.read_text())
    resume = (run_dir / "checkpoints").is_dir()
    return train_run(cfg, run_dir, resume=resume, progress=progress)


def _reversal(cfg: RunConfig, run_dir: Path, data_cache: dict[str, Any]) -> dict[str, Any]:
    """The time-reversal test of a finished run (cached in ``time_reversal.json``)."""
    path = run_dir / REVERSAL
    if path.is_file():
        return json.loads(path.read_text())
    key = cfg.data.model_dump_json()
    if key not in data_cache:
        data_cache.clear()                        # keep one dataset in memory at a time
        data_cache[key] = load_dataset(cfg.data)
    data = data_cache[key]
    model, _ = build_run_models(cfg, data)
    device = resolve_device(cfg.train.device)
    model.to(device)
    load_weights(model, run_dir / "checkpoints" / BEST)
    axis = time_axis(model)
    result: dict[str, Any] = {"time_axis": axis, "reversed_accuracy": None}
    if axis is not None:
        tick = time.perf_counter()
        result["reversed_accuracy"] = time_reversal_accuracy(
            model, BatchLoader(data.test, cfg.train.eval_batch_size, shuffle=False),
            axis=axis, device=device)
        result["seconds"] = time.perf_counter() - tick
    write_json(path, result)
    return result


def _mean_sd(values: list[float | None]) -> tuple[float | None, float | None]:
    vals = [v for v in values if v is not None]
    if not vals:
        return None, None
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


def _row(entry: BenchEntry, cfg: RunConfig, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One leaderboard row: the mean (and SD where it matters) over the entry's seeds."""
    def mean(key: str) -> float | None:
        return _mean_sd([r[key] for r in runs])[0]

    acc, acc_sd = _mean_sd([r["test_accuracy"] for r in runs])
    rev, rev_sd = _mean_sd([r["reversed_accuracy"] for r in runs])
    energy, ann_energy = mean("energy_j_per_sample"), mean("ann_energy_j_per_sample")
    layer_names = list(runs[0]["firing_rate"]["per_layer"])
    return {
        "entry": entry.name, "model": cfg.model.name, "dataset": cfg.data.name,
        "paradigm": cfg.paradigm, "seeds": list(entry.seeds),
        "test_accuracy": acc, "test_accuracy_sd": acc_sd,
        "val_accuracy": mean("val_accuracy"),
        "reversed_accuracy": rev, "reversed_accuracy_sd": rev_sd,
        "reversal_drop": None if rev is None else acc - rev,
        "firing_rate": _mean_sd([r["firing_rate"]["mean"] for r in runs])[0],
        "firing_rate_per_layer": {n: statistics.fmean(r["firing_rate"]["per_layer"][n]
                                                      for r in runs) for n in layer_names},
        "synops_per_sample": mean("synops_per_sample"),
        "snn_macs_per_sample": mean("snn_macs_per_sample"),
        "ann_macs_per_sample": mean("ann_macs_per_sample"),
        "energy_j_per_sample": energy, "ann_energy_j_per_sample": ann_energy,
        "energy_vs_ann": None if not ann_energy else energy / ann_energy,
        "timesteps": runs[0]["timesteps"], "latency_ms_per_sample": mean("latency_ms_per_sample"),
        "parameters": runs[0]["parameters"], "size_mb_fp32": runs[0]["parameters"] * 4 / 1e6,
        "epochs": runs[0]["epochs"], "train_seconds": mean("train_seconds"),
        "energy_model": runs[0]["energy_model"]["name"],
    }


COLUMNS = [("entry", "entry", "s"), ("model", "model", "s"), ("dataset", "data", "s"),
           ("test_accuracy", "test acc", "pct"), ("reversed_accuracy", "reversed", "pct"),
           ("reversal_drop", "drop (pp)", "pp"), ("firing_rate", "rate", ".3f"),
           ("synops_per_sample", "SynOps", ".3g"), ("energy_j_per_sample", "energy (J)", ".3g"),
           ("energy_vs_ann", "vs ANN", ".3f"), ("timesteps", "T", "d"),
           ("latency_ms_per_sample", "ms/sample", ".3g"), ("parameters", "params", ",d"),
           ("size_mb_fp32", "MB", ".3f"), ("epochs", "epochs", "d"),
           ("train_seconds", "train s", ".0f")]


def _cell(row: dict[str, Any], key: str, spec: str) -> str:
    value = row.get(key)
    if value is None:
        return "n/a"
    if spec == "pct":
        sd = row.get(f"{key}_sd")
        text = f"{100 * value:.2f}"
        return text + (f" ± {100 * sd:.2f}" if sd is not None and len(row["seeds"]) > 1 else "")
    if spec == "pp":
        return f"{100 * value:+.2f}"
    return format(value, spec)


def leaderboard_table(rows: list[dict[str, Any]]) -> str:
    """The leaderboard as a Markdown table (accuracies in %, the drop in percentage points)."""
    head = "| " + " | ".join(t for _, t, _ in COLUMNS) + " |"
    rule = "|" + "|".join("---" for _ in COLUMNS) + "|"
    body = ["| " + " | ".join(_cell(r, k, s) for k, _, s in COLUMNS) + " |" for r in rows]
    return "\n".join([head, rule, *body])


def _markdown(suite: BenchSuite, suite_path: Path, rows: list[dict[str, Any]],
              prov: dict[str, Any], seconds: float, figures: dict[str, str]) -> str:
    lines = [f"# Leaderboard: {suite.name}", ""]
    if suite.description:
        lines += [suite.description, ""]
    lines += [
        f"Suite `{suite_path}`; {len(rows)} entries; snn5 {prov.get('snn5_version')} at "
        f"{prov.get('git_commit')}; torch {prov.get('torch_version')}; device "
        f"{prov.get('device')}; this invocation {seconds:.0f} s (finished runs are reused; "
        "training time per run is in *train s*).",
        "",
        "Test accuracy of the validation-selected weights (mean ± SD over seeds). *reversed*: "
        "the same weights on the test samples with their time axis reversed; *drop*: the "
        "accuracy lost by reversing (n/a: static input, nothing to reverse). SynOps, energy "
        "(named energy model) and latency per test sample; *vs ANN*: energy of the SNN / energy "
        "of the same-size ANN (MACs). MB: parameters in float32.",
        "",
        leaderboard_table(rows), "",
    ]
    for title, rel in figures.items():
        lines += [f"![{title}]({rel})", ""]
    lines += [f"Reproduce: `snn5 bench {suite_path} --out DIR --data-dir ../shared/data`", ""]
    return "\n".join(lines)


def run_bench(suite_path: str | os.PathLike, out: str | os.PathLike, *,
              data_dir: str | None = None, progress: bool | None = None) -> dict[str, Any]:
    """Run every entry of a suite and write ``bench.json``, ``leaderboard.md`` and plots.

    Args:
        suite_path: the suite YAML.
        out: output folder (run folders go to ``out/runs/<entry>/seed<k>``).
        data_dir: dataset root passed to every entry (``data.data_dir``).
        progress: progress bars (None: only on a terminal).

    Returns:
        The contents of ``bench.json``.
    """
    suite_path, out = Path(suite_path), Path(out)
    suite, configs = load_suite(suite_path, data_dir=data_dir)      # all checked before training
    started = time.perf_counter()
    rows, runs_out, data_cache = [], [], {}
    for entry in suite.entries:
        base = configs[entry.name]
        per_seed = []
        for seed in entry.seeds:
            cfg = base.model_copy(update={"seed": seed})
            run_dir = out / "runs" / entry.name / f"seed{seed}"
            log.info("bench %s: entry %s seed %d -> %s", suite.name, entry.name, seed, run_dir)
            metrics = _run_one(cfg, run_dir, progress)
            reversal = _reversal(cfg, run_dir, data_cache)
            per_seed.append({**metrics, **reversal})
            runs_out.append({"entry": entry.name, "seed": seed, "run_dir": str(run_dir),
                             **{k: v for k, v in metrics.items() if k != "history"}, **reversal})
        rows.append(_row(entry, base, per_seed))
    seconds = time.perf_counter() - started
    figures = {
        "accuracy vs energy": plots.accuracy_vs_energy(rows,
                                                       out / "plots" / "accuracy_vs_energy.png"),
        "firing rate per layer": plots.rates_per_layer(
            {r["entry"]: r["firing_rate_per_layer"] for r in rows},
            out / "plots" / "firing_rate_per_layer.png"),
    }
    rel = {k: str(v.relative_to(out)) for k, v in figures.items()}
    prov = provenance(resolve_device(next(iter(configs.values())).train.device))
    result = {"suite": suite.model_dump(mode="json"), "suite_file": str(suite_path),
              "rows": rows, "runs": runs_out, "seconds": seconds, "plots": rel, **prov}
    write_json(out / BENCH_JSON, result)
    (out / LEADERBOARD).write_text(_markdown(suite, suite_path, rows, prov, seconds, rel))
    return result
