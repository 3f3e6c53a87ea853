"""Markdown reports of runs and of the quickstart, and the energy tables of a measurement."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from snn5.config import RunConfig
from snn5.metrics import EnergyModel


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
        "macs_per_sample": (metrics["snn_macs_per_sample"] if snn
                            else metrics["ann_macs_per_sample"]),
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


_COST_NAMES = {"synops": "SynOp", "macs": "MAC", "dense_macs": "dense MAC",
               "neuron_updates": "neuron update", "spikes": "spike"}


def _prices(constants: dict[str, Any]) -> str:
    """``"SynOp 0.9 pJ, MAC 4.6 pJ"``: the nonzero costs of an energy model's constants."""
    em = EnergyModel(**constants)
    return ", ".join(f"{_COST_NAMES[key]} {cost * 1e12:.3g} pJ"
                     for key, cost in em.costs.items() if cost > 0)


def energy_model_table(m: dict[str, Any]) -> str:
    """Markdown: energy per sample of the SNN and of its same-size ANN twin on every energy
    model of ``m["energy_by_model"]`` (a :class:`snn5.metrics.Measurement` as a dict), with
    what each model prices and its reference."""
    by_model = m.get("energy_by_model") or {}
    lines = ["| energy model | SNN energy / sample (J) | same-size ANN (J) | SNN / ANN | prices |",
             "|---|---:|---:|---:|---|"]
    for name, e in by_model.items():
        snn, ann = e["energy_j_per_sample"], e["ann_energy_j_per_sample"]
        ratio = snn / ann if ann else None
        lines.append(f"| `{name}` | {snn:.3g} | {_fmt(ann, '.3g')} | {_fmt(ratio, '.3g')} | "
                     f"{_prices(e['constants'])} |")
    lines += ["", "The same-size ANN pays each of its MACs once at the profile's MAC price (its "
              "`MAC` for an event-driven profile, e.g. the 45 nm host of `loihi`, which runs "
              "spikes only; its `dense MAC` for a dense one)."]
    lines += [""] + [f"- `{name}`: {e['constants']['reference']}" for name, e in by_model.items()]
    return "\n".join(lines)


def layer_energy_table(m: dict[str, Any]) -> str:
    """Markdown: per layer and per sample, neurons, firing rate (spikes per neuron update; "-"
    for a neuron that emitted none and is not a spiking layer, e.g. an LI readout), SynOps,
    MACs, dense MACs, neuron updates and the energy on every energy model of
    ``m["energy_by_model"]``; a total row last."""
    counts = m.get("counts_per_layer") or {}
    neurons = m.get("neurons_per_layer") or {}
    spiking = (m.get("firing_rate") or {}).get("per_layer") or {}
    by_model = m.get("energy_by_model") or {}
    keys = ("synops", "macs", "dense_macs", "neuron_updates")
    head = ["layer", "neurons", "firing rate", "SynOps", "MACs", "dense MACs", "neuron updates",
            *(f"{name} (J)" for name in by_model)]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for layer, c in counts.items():
        rate = ""
        if layer in neurons:
            rate = (f"{c['spikes'] / c['neuron_updates']:.3f}"
                    if c["neuron_updates"] and (c["spikes"] or layer in spiking) else "-")
        cells = [f"`{layer}`", str(neurons.get(layer, "")), rate,
                 *(f"{c[k]:.3g}" for k in keys),
                 *(f"{e['per_layer_j'][layer]:.3g}" for e in by_model.values())]
        lines.append("| " + " | ".join(cells) + " |")
    totals = [f"{sum(c[k] for c in counts.values()):.3g}" for k in keys]
    lines.append("| **total** | " + str(sum(neurons.values())) + " |  | " + " | ".join(totals)
                 + " | " + " | ".join(f"{e['energy_j_per_sample']:.3g}"
                                      for e in by_model.values()) + " |")
    return "\n".join(lines)


def _rate_table(cfg: RunConfig, rates: dict[str, float]) -> list[str]:
    """Firing rate per spiking layer; with the firing-rate sparsity regulariser of training
    (``train.rate_penalty``, weight > 0) its target beside each rate and the layers above it."""
    penalty = getattr(getattr(cfg, "train", None), "rate_penalty", None)
    if penalty is None or penalty.weight == 0:
        return (["| spiking layer | firing rate |", "|---|---|"]
                + [f"| {k} | {v:.4f} |" for k, v in rates.items()])
    above = [k for k, v in rates.items() if v > penalty.target]
    return ([f"Sparsity regulariser (`train.rate_penalty`): weight {penalty.weight:g} x "
             f"sum over layers of max(0, rate - {penalty.target:g}); on the test set "
             f"{len(above)} of {len(rates)} spiking layers fire above the target.", "",
             "| spiking layer | firing rate | target | above target by |", "|---|---|---|---|"]
            + [f"| {k} | {v:.4f} | {penalty.target:.4f} | {max(0.0, v - penalty.target):.4f} |"
               for k, v in rates.items()])


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
        f"| energy per sample (`{em['name']}`) | {m['energy_j_per_sample']:.4g} J |",
        f"| same-size ANN energy per sample (`{em['name']}`) | "
        f"{_fmt(m['ann_energy_j_per_sample'])} J |",
        f"| latency | {m['latency_ms_per_sample']:.4g} ms per sample |",
        f"| parameters | {m['parameters']} |",
    ]
    if m.get("energy_by_model"):
        lines += ["", "## Energy per target", "",
                  "Per test sample, on every registered energy model (`docs/energy.md`: formulas, "
                  "constants, what is not counted). Estimates of arithmetic and event handling "
                  "only: memory traffic off the core, static power and host transfers are not "
                  "counted.", "", energy_model_table(m),
                  "", "## Per-layer breakdown", "",
                  "Per test sample; firing rate = spikes per neuron update; MACs: layers fed real "
                  "values; dense MACs: every synapse at every step (what a GPU computes).", "",
                  layer_energy_table(m)]
    else:
        lines += ["", f"Energy model `{em['name']}`: {em['reference']}. Compute only: membrane "
                  "updates, memory traffic and routing are not counted, so the estimate favours "
                  "the SNN."]
    if m["firing_rate"]["per_layer"]:
        lines += ["", *_rate_table(cfg, m["firing_rate"]["per_layer"])]
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
