"""PNG plots of a run: training curves, a spike raster, per-layer firing rates, comparisons.

Uses matplotlib's object API with the Agg canvas (no pyplot, no global backend switch).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from torch import Tensor


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def training_curves(history: Sequence[dict[str, float]], path: Path) -> Path:
    """Loss (when the paradigm has one) and accuracy per epoch (train and validation)."""
    epochs = [h["epoch"] + 1 for h in history]
    has_loss = all("train_loss" in h for h in history)
    fig = Figure(figsize=(9 if has_loss else 4.8, 3.4))
    axes = fig.subplots(1, 2 if has_loss else 1, squeeze=False)[0]
    if has_loss:
        axes[0].plot(epochs, [h["train_loss"] for h in history], label="train")
        axes[0].plot(epochs, [h["val_loss"] for h in history], label="validation")
        axes[0].set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    acc = axes[-1]
    acc.plot(epochs, [h["train_accuracy"] for h in history], label="train")
    acc.plot(epochs, [h["val_accuracy"] for h in history], label="validation")
    acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend()
    return _save(fig, path)


def spike_raster(spikes: dict[str, Tensor], path: Path, *, max_neurons: int = 256,
                 title: str = "") -> Path:
    """One panel per spiking layer: neuron index against time step for one sample.

    ``spikes[name]`` is ``[T, 1, *F]``; at most ``max_neurons`` neurons per layer are drawn.
    """
    names = list(spikes)
    fig = Figure(figsize=(8, 1.9 * max(len(names), 1) + 0.4))
    axes = fig.subplots(max(len(names), 1), 1, squeeze=False)[:, 0]
    for ax, name in zip(axes, names):
        layer = spikes[name][:, 0]                                      # [T, *F]
        z = layer.flatten(1)[:, :max_neurons].float()                   # [T, N]
        t, n = z.nonzero(as_tuple=True)
        ax.scatter(t.numpy(), n.numpy(), s=4, marker="|", color="k")
        shown = "" if z.shape[1] == layer[0].numel() else f", first {z.shape[1]} shown"
        ax.set(xlim=(-0.5, z.shape[0] - 0.5), ylim=(-0.5, z.shape[1] - 0.5), ylabel="neuron",
               title=f"{name} {list(layer.shape[1:])}: {int(layer.sum())} spikes{shown}")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[-1].set_xlabel("time step")
    if not names:
        axes[0].text(0.5, 0.5, "no spiking layers", ha="center", va="center")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def firing_rates(per_layer: dict[str, float], path: Path) -> Path:
    """Bar chart of the mean firing rate of each spiking layer."""
    fig = Figure(figsize=(7, 3.2))
    ax = fig.subplots()
    names = list(per_layer)
    ax.bar(range(len(names)), [per_layer[n] for n in names], color="tab:blue")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set(ylabel="spikes / neuron / step", title="firing rate per layer")
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def comparison(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """Accuracy and energy per sample of each paradigm side by side."""
    labels = [r["paradigm"] for r in rows]
    fig = Figure(figsize=(8, 3.2))
    ax1, ax2 = fig.subplots(1, 2)
    ax1.bar(labels, [100 * r["test_accuracy"] for r in rows], color="tab:green")
    ax1.set(ylabel="test accuracy (%)", title="accuracy",
            ylim=(max(0, min(100 * r["test_accuracy"] for r in rows) - 5), 100))
    ax2.bar(labels, [1e9 * r["energy_j_per_sample"] for r in rows], color="tab:orange")
    ax2.set(ylabel="nJ per sample", title="energy estimate per sample")
    for ax in (ax1, ax2):
        ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def accuracy_vs_timesteps(acc: dict[int, float], ann_accuracy: float, path: Path, *,
                          title: str = "") -> Path:
    """SNN accuracy per number of timesteps (log axis), the ANN's as a line."""
    fig = Figure(figsize=(5, 3.4))
    ax = fig.subplots()
    steps = sorted(acc)
    ax.plot(steps, [100 * acc[t] for t in steps], "o-", color="tab:blue", label="SNN")
    ax.axhline(100 * ann_accuracy, color="tab:gray", ls="--", label="ANN")
    if len(steps) > 1:
        ax.set_xscale("log", base=2)
    ax.set_xticks(steps, [str(t) for t in steps])
    ax.set(xlabel="timesteps T", ylabel="test accuracy (%)", title=title or "accuracy vs T")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def accuracy_vs_noise(curves: dict[str, dict[str, float]], path: Path) -> Path:
    """Accuracy per input-noise fraction, one line per model."""
    fig = Figure(figsize=(5, 3.4))
    ax = fig.subplots()
    for label, acc in curves.items():
        xs = sorted(acc, key=float)
        ax.plot([100 * float(k) for k in xs], [100 * acc[k] for k in xs], "o-", label=label)
    ax.set(xlabel="input noise (% of pixels replaced)", ylabel="test accuracy (%)",
           title="accuracy vs input noise")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def accuracy_vs_energy(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """One point per benchmark entry: test accuracy against estimated energy per sample (log
    axis); hollow markers at the same-size ANN's energy and the same accuracy for reference."""
    fig = Figure(figsize=(9, 4.4))
    ax = fig.subplots()
    for i, r in enumerate(rows):
        color, marker = f"C{i % 10}", "osD^v"[(i // 10) % 5]
        acc = 100 * r["test_accuracy"]
        ax.scatter([r["energy_j_per_sample"]], [acc], color=color, marker=marker,
                   label=r["entry"], zorder=3)
        if r.get("ann_energy_j_per_sample"):
            ax.scatter([r["ann_energy_j_per_sample"]], [acc], facecolors="none",
                       edgecolors=color, marker=marker, zorder=2)
    ax.set_xscale("log")
    ax.set(xlabel="energy per sample (J, log; hollow: same-size ANN)", ylabel="test accuracy (%)",
           title="accuracy vs energy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(fig, path)


def rates_per_layer(rates: dict[str, dict[str, float]], path: Path) -> Path:
    """Firing rate of each spiking layer (in network order), one line per model."""
    fig = Figure(figsize=(9, 4.4))
    ax = fig.subplots()
    for i, (label, per_layer) in enumerate(rates.items()):
        values = list(per_layer.values())
        ax.plot(range(1, len(values) + 1), values, marker="osD^v"[(i // 10) % 5],
                color=f"C{i % 10}", label=label)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="spiking layer (network order)", ylabel="spikes / neuron / step",
           title="firing rate per layer")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(fig, path)
