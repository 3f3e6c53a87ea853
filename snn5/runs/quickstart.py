"""The quickstart: a surrogate-gradient SNN, its same-size ANN, a plasticity-trained SNN and an
SNN converted from a QCFS ANN, trained and measured side by side on bundled data, with a table, summary.json, report.md and
plots."""

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

PARADIGMS = ("surrogate", "ann", "plasticity", "conversion")

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


# The plasticity row: an MLP whose hidden layer learns by STDP (potentiation-dominated, as the
# rule of Diehl & Cook's code: depression 1/100 of potentiation) with synaptic normalisation,
# competition and homeostasis, on Poisson spikes; the class readout is fitted by ridge
# regression. About 5 s on digits.
QUICKSTART_PLASTICITY = {
    "digits": {
        "model": {"name": "spiking_mlp", "hidden": [100], "timesteps": 16, "encoding": "poisson",
                  "readout": "mean_membrane", "neuron": {"kind": "lif", "tau_mem": 2e-3,
                                                         "dt": 1e-3}},
        "plasticity": {"epochs": 3, "batch_size": 16,
                       "rule": {"name": "stdp", "a_plus": 0.005, "a_minus": 5e-5},
                       "normalize": 4.0, "homeostasis_target": 0.1, "winners": 3},
    },
    "mnist": {
        "model": {"name": "spiking_mlp", "hidden": [400], "timesteps": 16, "encoding": "poisson",
                  "readout": "mean_membrane", "neuron": {"kind": "lif", "tau_mem": 2e-3,
                                                         "dt": 1e-3}},
        "plasticity": {"epochs": 1, "batch_size": 32,
                       "rule": {"name": "stdp", "a_plus": 0.005, "a_minus": 5e-5},
                       "normalize": 10.0, "homeostasis_target": 0.1, "winners": 3},
    },
}
# The conversion row: a VGG-style CNN trained with QCFS activations (L = 4), converted to an
# IF-neuron SNN run for T = 4 (accuracy for T = 1..8 in its metrics). About 10 s on digits.
QUICKSTART_CONVERSION = {
    "digits": {
        "train": {"epochs": 20, "batch_size": 32,
                  "optimizer": {"name": "adamw", "lr": 3e-3, "weight_decay": 0.01}},
        "conversion": {"ann": {"name": "vgg", "activation": "qcfs", "levels": 4,
                               "stages": [[16], [32]], "fc_hidden": [64]},
                       "method": "qcfs", "timesteps": [1, 2, 4, 8], "target_timesteps": 4,
                       "calibration": {"samples": 500, "bias_correction": True}},
    },
    "mnist": {
        "train": {"epochs": 1, "batch_size": 64,
                  "optimizer": {"name": "adamw", "lr": 2e-3, "weight_decay": 0.01}},
        "conversion": {"ann": {"name": "vgg", "activation": "qcfs", "levels": 4,
                               "stages": [[32], [64]], "fc_hidden": [128]},
                       "method": "qcfs", "timesteps": [1, 2, 4, 8], "target_timesteps": 4},
    },
}
# --set overrides that the plasticity row takes (the others concern the BPTT model and training)
_SHARED_PREFIXES = ("seed", "data.", "measure.", "plasticity.")
_CONVERSION_PREFIXES = ("seed", "data.", "measure.", "train.", "conversion.")


def quickstart_config(dataset: str = "digits", *, data_dir: str | None = None,
                      overrides: list[str] = (), paradigm: str = "surrogate") -> RunConfig:
    """The quickstart's run config for ``dataset`` and ``paradigm``.

    ``surrogate`` and ``ann`` share one config (the ANN is the SNN's same-size twin);
    ``plasticity`` has its own model, and takes only the ``seed``, ``data.*``, ``measure.*`` and
    ``plasticity.*`` overrides.
    """
    if dataset not in QUICKSTART:
        raise ValueError(f"the quickstart runs on {' or '.join(QUICKSTART)}, not '{dataset}'")
    if paradigm not in PARADIGMS:
        raise ValueError(f"the quickstart's paradigms are {', '.join(PARADIGMS)}, not '{paradigm}'")
    overrides = list(overrides)
    if paradigm == "plasticity":
        base = {**QUICKSTART[dataset], **QUICKSTART_PLASTICITY[dataset]}
        base.pop("train", None)
        overrides = [o for o in overrides if o.startswith(_SHARED_PREFIXES)]
    elif paradigm == "conversion":
        base = {"data": QUICKSTART[dataset]["data"], **QUICKSTART_CONVERSION[dataset]}
        overrides = [o for o in overrides if o.startswith(_CONVERSION_PREFIXES)]
    else:
        base = dict(QUICKSTART[dataset])
    base.update({"seed": 0, "paradigm": paradigm})
    if data_dir is not None:
        base["data"] = {**base["data"], "data_dir": str(data_dir)}
    return config_from_dict(base, overrides, source=f"quickstart ({dataset}, {paradigm})")


def quickstart(out: str | os.PathLike = "runs/quickstart", *, dataset: str = "digits",
               data_dir: str | None = None, overrides: list[str] = (), overwrite: bool = False,
               progress: bool | None = None) -> dict[str, Any]:
    """Train the SNN and the same-size ANN, measure both, write ``out/summary.json`` & report.

    Returns:
        The summary: ``rows`` (one per paradigm: accuracy, timesteps, firing rate, SynOps or
        MACs, energy, train seconds) and provenance.
    """
    out = Path(out)
    cfgs = {p: quickstart_config(dataset, data_dir=data_dir, overrides=overrides, paradigm=p)
            for p in PARADIGMS}                    # all validated before anything runs
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
        metrics = train_run(cfgs[paradigm], out / paradigm, progress=progress)
        rows.append(summary_row(metrics))
        runs[paradigm] = str(Path(paradigm) / METRICS)
    last = metrics
    summary = {
        "dataset": last["dataset"]["name"], "description": last["dataset"]["description"],
        "seed": cfgs["surrogate"].seed, "rows": rows, "runs": runs,
        "energy_model": last["energy_model"]["name"],
        "device": last["device"], "snn5_version": last["snn5_version"],
        "git_commit": last["git_commit"], "torch_version": last["torch_version"],
        "total_seconds": time.perf_counter() - start,
    }
    write_json(out / "summary.json", summary)
    figure = plots.comparison(rows, out / "plots" / "comparison.png")
    write_quickstart_report(out / "report.md", summary, figure.relative_to(out))
    return summary
