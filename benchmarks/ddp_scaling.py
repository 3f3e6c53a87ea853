"""One config trained three ways on this machine's CPU, side by side:

1. one process, one thread;
2. one process, K threads (what a single process can get from the same cores);
3. K processes of one thread each under torchrun (``snn5 train --nproc K``: DDP over gloo,
   each process trains its part of every global batch).

Printed and written: the wall time of each ``snn5 train`` command (start to exit, process
start-up, data loading, test measurement and report included), the training seconds the run
recorded, ratios against (1), test and validation accuracy, and the largest difference of any
final weight of (3), and of (2), from (1). Runs 1 and 3 see the same global batches; their
weights agree to rounding until a membrane within rounding of the threshold fires in one and
not the other, after which the runs drift apart as two thread counts do (see
docs/distributed.md). This is a
scaling measurement of snn5 alone: the peer libraries have no data-parallel launcher of their
own (their users call torch's DDP directly, as snn5 does here).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ddp_scaling.py configs/digits_mlp.yaml \\
        --nproc 2 --out runs/ddp_digits --json benchmarks/results/ddp_scaling_digits.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

from snn5.runs.provenance import cpu_name, git_commit
from snn5.train.checkpoint import load_checkpoint, unprefixed


def train(config: str, out: Path, overrides: list[str], *, threads: int, nproc: int) -> float:
    """Run ``snn5 train``; returns its wall seconds."""
    cmd = [sys.executable, "-m", "snn5", "-q", "train", config, "--out", str(out),
           f"--set=train.threads={threads}", *(f"--set={o}" for o in overrides)]
    if nproc > 1:
        cmd.append(f"--nproc={nproc}")
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env)
    return time.perf_counter() - start


def final_weights(run: Path) -> dict[str, torch.Tensor]:
    tensors, _ = load_checkpoint(run / "checkpoints" / "last.safetensors")
    return unprefixed("model", tensors)


def largest_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """Largest absolute difference of any entry of two state dicts (same keys)."""
    return max(float((a[n].double() - b[n].double()).abs().max()) for n in a if a[n].numel())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("config")
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--out", required=True, help="folder for the three run folders (new)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--json", default=None, help="write the results here")
    args = p.parse_args()
    overrides = list(args.overrides)
    if args.data_dir is not None:
        overrides.append(f"data.data_dir={args.data_dir}")
    out = Path(args.out)
    k = args.nproc
    ways = {"1 process, 1 thread": (1, 1), f"1 process, {k} threads": (k, 1),
            f"{k} processes x 1 thread (DDP, gloo)": (1, k)}
    rows = []
    for i, (name, (threads, nproc)) in enumerate(ways.items()):
        run = out / f"run{i}"
        wall = train(args.config, run, overrides, threads=threads, nproc=nproc)
        m = json.loads((run / "metrics.json").read_text())
        rows.append({"way": name, "run": str(run), "wall_seconds": wall,
                     "train_seconds": m["train_seconds"], "test_accuracy": m["test_accuracy"],
                     "val_accuracy": m["val_accuracy"], "best_epoch": m["best_epoch"] + 1,
                     "epochs": m["epochs"]})
    base, threads, ddp = (final_weights(Path(r["run"])) for r in rows)
    diff, diff_threads = largest_difference(base, ddp), largest_difference(base, threads)
    print(f"{args.config} {' '.join(overrides)}: {rows[0]['epochs']} epochs, "
          f"{cpu_name()}, {os.cpu_count()} logical CPUs")
    print(f"{'way':40s} {'wall s':>8s} {'train s':>8s} {'speed-up':>8s} {'test':>8s} {'val':>8s}")
    for r in rows:
        r["speedup_wall"] = rows[0]["wall_seconds"] / r["wall_seconds"]
        r["speedup_train"] = rows[0]["train_seconds"] / r["train_seconds"]
        print(f"{r['way']:40s} {r['wall_seconds']:8.1f} {r['train_seconds']:8.1f} "
              f"{r['speedup_wall']:7.2f}x {r['test_accuracy']:8.2%} {r['val_accuracy']:8.2%}")
    print(f"largest final-weight difference from 1 process, 1 thread: DDP {diff:.3g}, "
          f"{k} threads {diff_threads:.3g}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({
            "config": args.config, "overrides": overrides, "nproc": k, "rows": rows,
            "max_weight_difference": diff, "max_weight_difference_threads": diff_threads,
            "commit": git_commit(), "cpu": cpu_name(),
            "logical_cpus": os.cpu_count(), "torch": torch.__version__,
            "python": platform.python_version()}, indent=2) + "\n")


if __name__ == "__main__":
    main()
