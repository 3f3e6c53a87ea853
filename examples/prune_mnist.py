"""One-shot pruning of a trained run without retraining: magnitude vs spike-activity vs Hessian.

Loads a finished `snn5 train` run (its config and best checkpoint), prunes its Linear/Conv
layers to each overall sparsity with each pruner and each per-layer allocation (uniform, or
ERK: large layers pruned harder, small ones kept dense), calibrating the data-aware pruners on
the first ``--calibration`` training samples, and reports test accuracy beside the dense
model's, the sparsity reached per layer, and the firing rate, SynOps and energy per sample on
every energy profile, measured on the first ``--measure`` test samples (a pruned synapse sends
no SynOp; dense MACs, the GPU profile's count, keep every weight).

    python examples/prune_mnist.py runs/mnist_conv --data-dir ../shared/data --sparsity 0.8 \\
        --pruners magnitude activity hessian --allocation uniform erk --out prune.json
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import torch
from torch import nn

from snn5.compress.prune import (
    ActivityPrune, HessianPrune, MagnitudePrune, PRUNABLE, prune_, sparsity,
)
from snn5.data import BatchLoader
from snn5.metrics import measure, predict
from snn5.runs.run import load_run

PRUNERS = {"magnitude": MagnitudePrune, "activity": ActivityPrune, "hessian": HessianPrune}


def accuracy(model: nn.Module, loader: BatchLoader) -> float:
    pred, labels = predict(model, loader)
    return float((pred == labels).float().mean())


def per_layer_sparsity(model: nn.Module) -> dict[str, float]:
    return {name: round(float((m.weight == 0).float().mean()), 4)
            for name, m in model.named_modules() if isinstance(m, PRUNABLE)}


def activity(model: nn.Module, loader: BatchLoader) -> dict[str, object]:
    m = measure(model, loader)
    return {"firing_rate_mean": m.firing_rate_mean, "synops_per_sample": m.synops_per_sample,
            "energy_j_per_sample": {name: e["energy_j_per_sample"]
                                    for name, e in m.energy_by_model.items()}}


def main(argv: list[str] | None = None) -> dict[str, object]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", help="a run folder of `snn5 train` (config.yaml + checkpoints/)")
    ap.add_argument("--sparsity", type=float, nargs="+", default=[0.8])
    ap.add_argument("--pruners", nargs="+", choices=sorted(PRUNERS),
                    default=["magnitude", "activity", "hessian"])
    ap.add_argument("--allocation", nargs="+", choices=["uniform", "erk"],
                    default=["uniform", "erk"])
    ap.add_argument("--only", nargs="+", default=None, metavar="LAYER",
                    help="prune only these layers (module names, e.g. stem.0.module)")
    ap.add_argument("--calibration", type=int, default=512, help="training samples")
    ap.add_argument("--samples", type=int, default=None, help="first N test samples (all)")
    ap.add_argument("--measure", type=int, default=1000,
                    help="first N test samples for firing rates and SynOps")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", default=None, help="write the result as JSON here")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg, data, model, _ = load_run(args.run, data_dir=args.data_dir)
    n = len(data.test) if args.samples is None else args.samples
    test_set = type(data.test)
    test = BatchLoader(test_set(data.test.x[:n], data.test.y[:n]), 500, shuffle=False)
    probe = BatchLoader(test_set(data.test.x[:args.measure], data.test.y[:args.measure]), 500,
                        shuffle=False)
    calib = [data.train.x[i:i + 128] for i in range(0, args.calibration, 128)]
    layers = None if args.only is None else (lambda m, name: name in args.only)
    torch.manual_seed(cfg.seed)
    result: dict[str, object] = {
        "run": args.run, "test_samples": n, "calibration_samples": args.calibration,
        "layers": args.only or "all Linear/Conv",
        "dense": {"accuracy": accuracy(model, test), **activity(model, probe)}}
    print(f"dense: {result['dense']}", flush=True)
    for s in args.sparsity:
        for alloc in args.allocation:
            for name in args.pruners:
                pruned = copy.deepcopy(model)
                start = time.perf_counter()
                prune_(pruned, PRUNERS[name](sparsity=s, allocation=alloc), layers,
                       calibration=calib)
                row = {"pruner": name, "allocation": alloc, "target_sparsity": s,
                       "prune_seconds": round(time.perf_counter() - start, 2),
                       "accuracy": accuracy(pruned, test), "sparsity": sparsity(pruned),
                       "per_layer_sparsity": per_layer_sparsity(pruned),
                       **activity(pruned, probe)}
                print(json.dumps(row), flush=True)
                result[f"{name}_{alloc}_{s:g}"] = row
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
