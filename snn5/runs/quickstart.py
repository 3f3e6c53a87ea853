"""The quickstart: one surrogate-gradient SNN and its same-size ANN, trained and measured side by
side on bundled data, with a table, summary.json, report.md and plots."""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

from snn5.config import RunConfig, config_from_dict
from snn5.runs import plots
from snn5.runs.report import summary_row, write_quickstart_report
from snn5.runs.run import METRICS, train_run, write_json

log = logging.getLogger(__name__)

PARADIGMS = ("surrogate", "ann")

QUICKSTART = {
    # digits (8x8): a small conv SNN, 4 steps; about 10-20 s per paradigm on 2 CPU cores.
    "digits": {
        "data": {"name": "digits"},
        "model": {"name": "conv_snn", "channels": [16, 32], "fc_hidden": [128], "timesteps": 4,
                  "neuron": {"kind": "lif", "tau_mem": 2e-3, "dt": 1e-3}},
        "train": {"epochs": 30, "batch_size": 32,
                  "optimizer": {"name": "adamw", "lr": 2e-3, "weight_decay": 0.01},
                  "schedule": {"warmup_epochs": 1}},
    },
    # MNIST (28x28): the same family at MNIST size, one epoch (a short run, not the best result;
    # configs/mnist_conv.yaml is the full recipe).
    "mnist": {
        "data": {"name": "mnist"},
        "model": {"name": "conv_snn", "channels": [32, 64], "fc_hidden": [128], "timesteps": 4,
                  "neuron": {"kind": "lif", "tau_mem": 2e-3, "dt": 1e-3}},
        "train": {"epochs": 1, "batch_size": 64,
                  "optimizer": {"name": "adamw", "lr": 2e-3, "weight_decay": 0.01},
                  "schedule": {"warmup_epochs": 0.1}},
    },
}


def quickstart_config(dataset: str = "digits", *, data_dir: str | None = None,
                      overrides: list[str] = ()) -> RunConfig:
    """The quickstart's surrogate-gradient run config for ``dataset``."""
    if dataset not in QUICKSTART:
        raise ValueError(f"the quickstart runs on {' or '.join(QUICKSTART)}, not '{dataset}'")
    base = {**QUICKSTART[dataset], "seed": 0}
    if data_dir is not None:
        base["data"] = {**base["data"], "data_dir": str(data_dir)}
    return config_from_dict(base, list(overrides), source=f"quickstart ({dataset})")


def quickstart(out: str | os.PathLike = "runs/quickstart", *, dataset: str = "digits",
               data_dir: str | None = None, overrides: list[str] = (), overwrite: bool = False,
               progress: bool | None = None) -> dict[str, Any]:
    """Train the SNN and the same-size ANN, measure both, write ``out/summary.json`` & report.

    Returns:
        The summary: ``rows`` (one per paradigm: accuracy, timesteps, firing rate, SynOps or
        MACs, energy, train seconds) and provenance.
    """
    out = Path(out)
    cfg = quickstart_config(dataset, data_dir=data_dir, overrides=overrides)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out} is not empty; pass --overwrite to replace the previous "
                                  "quickstart there, or choose another --out")
        for name in (*PARADIGMS, "summary.json", "report.md", "plots"):
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    start = time.perf_counter()
    rows, runs = [], {}
    for paradigm in PARADIGMS:
        log.info("quickstart: training the %s model", paradigm)
        run_cfg = cfg.model_copy(update={"paradigm": paradigm})
        metrics = train_run(run_cfg, out / paradigm, progress=progress)
        rows.append(summary_row(metrics))
        runs[paradigm] = str(Path(paradigm) / METRICS)
    last = metrics
    summary = {
        "dataset": last["dataset"]["name"], "description": last["dataset"]["description"],
        "seed": cfg.seed, "rows": rows, "runs": runs,
        "energy_model": last["energy_model"]["name"],
        "device": last["device"], "snn5_version": last["snn5_version"],
        "git_commit": last["git_commit"], "torch_version": last["torch_version"],
        "total_seconds": time.perf_counter() - start,
    }
    write_json(out / "summary.json", summary)
    figure = plots.comparison(rows, out / "plots" / "comparison.png")
    write_quickstart_report(out / "report.md", summary, figure.relative_to(out))
    return summary
