"""One-shot pruning of a trained run without retraining: magnitude vs Hessian (SparseGPT).

Loads a finished `snn5 train` run (its config and best checkpoint), prunes every Linear/Conv
layer to each sparsity with both pruners, calibrating the one-shot pruner on the first
``--calibration`` training samples, and reports test accuracy beside the dense model's.

    python examples/prune_mnist.py runs/mnist_conv --data-dir ../shared/data --sparsity 0.5 0.8
"""

from __future__ import annotations

import argparse
import copy
import json

import torch

from snn5.compress import HessianPrune, MagnitudePrune, prune_, sparsity
from snn5.config import load_config
from snn5.data import BatchLoader, load_dataset
from snn5.metrics import predict
from snn5.runs.run import build_run_models, load_weights


def accuracy(model: torch.nn.Module, loader: BatchLoader) -> float:
    pred, labels = predict(model, loader)
    return float((pred == labels).float().mean())


def main(argv: list[str] | None = None) -> dict[str, object]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", help="a run folder of `snn5 train` (config.yaml + checkpoints/)")
    ap.add_argument("--sparsity", type=float, nargs="+", default=[0.5, 0.8])
    ap.add_argument("--calibration", type=int, default=512, help="training samples")
    ap.add_argument("--samples", type=int, default=None, help="first N test samples (all)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(f"{args.run}/config.yaml")
    if args.data_dir is not None:
        cfg = cfg.model_copy(update={"data": cfg.data.model_copy(
            update={"data_dir": args.data_dir})})
    data = load_dataset(cfg.data)
    model, _ = build_run_models(cfg, data)
    load_weights(model, __import__("pathlib").Path(args.run) / "checkpoints" / "best.safetensors")
    model.eval()
    n = len(data.test) if args.samples is None else args.samples
    test = BatchLoader(type(data.test)(data.test.x[:n], data.test.y[:n]), 500, shuffle=False)
    calib = [data.train.x[i:i + 128] for i in range(0, args.calibration, 128)]
    torch.manual_seed(cfg.seed)
    result: dict[str, object] = {"run": args.run, "test_samples": n,
                                 "calibration_samples": args.calibration,
                                 "dense": accuracy(model, test)}
    for s in args.sparsity:
        row = {}
        for name, config in (("magnitude", MagnitudePrune(sparsity=s)),
                             ("one_shot_hessian", HessianPrune(sparsity=s))):
            pruned = copy.deepcopy(model)
            prune_(pruned, config, calibration=calib)
            row[name] = {"accuracy": accuracy(pruned, test), "sparsity": sparsity(pruned)}
        result[f"sparsity_{s:g}"] = row
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
