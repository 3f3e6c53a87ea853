"""Markdown reports of runs and of the quickstart."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from snn5.config import RunConfig


def _fmt(value: Any, spec: str = ".4g") -> str:
    return "n/a" if value is None else format(value, spec)


def summary_row(metrics: dict[str, Any]) -> dict[str, Any]:
    """The quickstart table's fields of one run."""
    snn = metrics["paradigm"] != "ann"
    return {
        "paradigm": metrics["paradigm"],
        "model": metrics["model"],
        "test_accuracy": metrics["test_accuracy"],
        "val_accuracy": metrics["val_accuracy"],
        "timesteps": metrics["timesteps"],
        "firing_rate": metrics["firing_rate"]["mean"] if snn else None,
        "synops_per_sample": metrics["synops_per_sample"] if snn else None,
        "macs_per_sample": metrics["snn_macs_per_sample"] if snn else metrics["ann_macs_per_sample"],
        "energy_j_per_sample": metrics["energy_j_per_sample"],
        "latency_ms_per_sample": metrics["latency_ms_per_sample"],
        "train_seconds": metrics["train_seconds"],
    }


TABLE_COLUMNS = [("paradigm", "paradigm", "s"), ("model", "model", "s"),
                 ("test_accuracy", "test acc", ".2%"),
                 ("timesteps", "T", "d"), ("firing_rate", "rate", ".3f"),
                 ("synops_per_sample", "SynOps/sample", ".3g"),
                 ("macs_per_sample", "MACs/sample", ".3g"),
                 ("energy_j_per_sample", "energy/sample (J)", ".3g"),
                 ("train_seconds", "train s", ".1f")]


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    head = "| " + " | ".join(title for _, title, _ in TABLE_COLUMNS) + " |"
    rule = "|" + "|".join("---" for _ in TABLE_COLUMNS) + "|"
    body = ["| " + " | ".join(_fmt(r.get(k), spec) for k, _, spec in TABLE_COLUMNS) + " |"
            for r in rows]
    return "\n".join([head, rule, *body])


def text_table(rows: Sequence[dict[str, Any]]) -> str:
    """The same table in fixed-width text, for the terminal."""
    cells = [[title for _, title, _ in TABLE_COLUMNS]]
    cells += [[_fmt(r.get(k), spec) for k, _, spec in TABLE_COLUMNS] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(TABLE_COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_run_report(path: Path, cfg: RunConfig, m: dict[str, Any],
                     figures: dict[str, Path]) -> Path:
    """report.md of one run."""
    ds = m["dataset"]
    em = m["energy_model"]
    lines = [
        f"# {m['paradigm']} run: {m['model']} on {ds['name']}",
        "",
        f"- data: {ds['description']} (sha256 {ds['checksum'][:12]})",
        f"- seed {m['seed']}, {m['epochs']} epochs ({m['steps']} steps), best epoch "
        f"{m['best_epoch'] + 1} selected on validation",
        f"- device: {m['device']}; snn5 {m['snn5_version']} ({m['git_commit'][:12]}), "
        f"torch {m['torch_version']}; train time {m['train_seconds']:.1f} s",
        "",
        "| metric | value |",
        "|---|---|",
        f"| test accuracy | {m['test_accuracy']:.2%} |",
        f"| validation accuracy (selection) | {m['val_accuracy']:.2%} |",
        f"| timesteps | {m['timesteps']} |",
        f"| mean firing rate (spikes/neuron/step) | {_fmt(m['firing_rate']['mean'], '.4f')} |",
        f"| SynOps per sample | {m['synops_per_sample']:.4g} |",
        f"| dense MACs per sample (real-valued inputs) | {m['snn_macs_per_sample']:.4g} |",
        f"| same-size ANN MACs per sample | {_fmt(m['ann_macs_per_sample'])} |",
        f"| energy per sample | {m['energy_j_per_sample']:.4g} J |",
        f"| same-size ANN energy per sample | {_fmt(m['ann_energy_j_per_sample'])} J |",
        f"| latency | {m['latency_ms_per_sample']:.4g} ms per sample |",
        f"| parameters | {m['parameters']} |",
        "",
        f"Energy model `{em['name']}`: {em['e_ac_j'] * 1e12:g} pJ per accumulate, "
        f"{em['e_mac_j'] * 1e12:g} pJ per multiply-accumulate ({em['reference']}). Compute only: "
        "membrane updates, memory traffic and routing are not counted, so the estimate favours "
        "the SNN.",
    ]
    if m["firing_rate"]["per_layer"]:
        lines += ["", "| spiking layer | firing rate |", "|---|---|"]
        lines += [f"| {k} | {v:.4f} |" for k, v in m["firing_rate"]["per_layer"].items()]
    if figures:
        lines += [""] + [f"![{name}]({p.as_posix()})" for name, p in figures.items()]
    lines += ["", "Resolved config: `config.yaml`; all numbers: `metrics.json`.", ""]
    path.write_text("\n".join(lines))
    return path


def write_quickstart_report(path: Path, summary: dict[str, Any], figure: Path | None) -> Path:
    """report.md of the quickstart: the side-by-side table."""
    lines = [f"# snn5 quickstart on {summary['dataset']}", "",
             f"{summary['description']}; seed {summary['seed']}; device {summary['device']}; "
             f"total {summary['total_seconds']:.1f} s.", "",
             markdown_table(summary["rows"]), "",
             "Accuracy is on the test split with the checkpoint selected on validation. Energy "
             f"uses the `{summary['energy_model']}` model (compute only). Each run's folder has "
             "its own report, metrics.json and plots.", ""]
    if figure is not None:
        lines += [f"![comparison]({figure.as_posix()})", ""]
    path.write_text("\n".join(lines))
    return path
