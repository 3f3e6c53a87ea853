"""Diehl & Cook (2015) on MNIST: unsupervised STDP training, labelling, test.

    python examples/diehl_cook_mnist.py --n-e 400 --out runs/dc400          # one epoch
    python examples/diehl_cook_mnist.py --n-e 400 --out runs/dc400 --resume # after a kill

MNIST is read from ``--data-dir`` (or ``$SNN5_DATA``), which must hold ``mnist/*-ubyte.gz``.
The run folder gets ``metrics.json``, ``model.safetensors`` (weights, thresholds, labels) and
``last.safetensors`` (resumable state). See docs/diehl_cook.md.
"""

from __future__ import annotations

import argparse
import json
import logging

from snn5.data import resolve_data_dir
from snn5.train.plasticity.diehl_cook import (DiehlCookConfig, DiehlCookData, DiehlCookTrainer,
                                             load_mnist_data)

SUMMARY = ("n_e", "seed", "samples", "test_accuracy", "test_accuracy_running_labels",
           "train_seconds", "label_seconds", "test_seconds", "train_cpu_seconds",
           "label_cpu_seconds", "test_cpu_seconds", "spikes_per_sample_train", "retries_train",
           "backend", "threads")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-e", type=int, default=100, help="excitatory neurons (100, 400, 1600)")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--samples", type=int, default=None, help="training samples per epoch "
                    "(default: all 60,000)")
    ap.add_argument("--label-samples", type=int, default=None, help="training images of the "
                    "labelling pass (default: all)")
    ap.add_argument("--test-samples", type=int, default=None, help="default: all 10,000")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    ap.add_argument("--checkpoint-every", type=int, default=10_000)
    ap.add_argument("--data-dir", default=None, help="data root with mnist/ (default: "
                    "$SNN5_DATA or ~/.cache/snn5/data)")
    ap.add_argument("--out", required=True, help="run folder")
    ap.add_argument("--resume", action="store_true", help="continue from OUT/last.safetensors")
    ap.add_argument("--progress", action="store_true", help="progress bars even without a TTY")
    ap.add_argument("--holdout", type=int, default=None, metavar="N",
                    help="evaluate on the last N training images instead of the test set, and "
                    "train and label on the others: for choosing --physics without the test set")
    ap.add_argument("--physics", nargs="*", default=[], metavar="NAME=VALUE",
                    help="override constants of DiehlCookParams, SI units (e.g. w_ie=25 "
                    "theta_plus=0.1e-3); the defaults are the reference code's")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    physics = {}
    for item in args.physics:
        name, sep, value = item.partition("=")
        if not sep:
            ap.error(f"--physics takes NAME=VALUE pairs, got {item!r} (e.g. w_ie=25)")
        try:
            physics[name] = float(value)
        except ValueError:
            ap.error(f"--physics {name}: {value!r} is not a number")
    cfg = DiehlCookConfig(n_e=args.n_e, epochs=args.epochs, samples=args.samples,
                          label_samples=args.label_samples, test_samples=args.test_samples,
                          seed=args.seed, threads=args.threads,
                          checkpoint_every=args.checkpoint_every, physics=physics)
    data = load_mnist_data(resolve_data_dir(args.data_dir))
    if args.holdout is not None:
        n = len(data.train_y) - args.holdout
        if not 0 < n < len(data.train_y):
            ap.error(f"--holdout must lie in 1..{len(data.train_y) - 1}, got {args.holdout}")
        data = DiehlCookData(train_x=data.train_x[:n], train_y=data.train_y[:n],
                             test_x=data.train_x[n:], test_y=data.train_y[n:],
                             name="mnist (training images; last ones held out)")
    trainer = DiehlCookTrainer(cfg, data, out=args.out, progress=True if args.progress else None)
    metrics = trainer.fit(resume=args.resume)
    print(json.dumps({k: metrics[k] for k in SUMMARY}, indent=2))
    return metrics


if __name__ == "__main__":
    main()
