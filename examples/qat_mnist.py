"""Quantization-aware fine-tuning of a finished run: float vs post-training vs QAT accuracy.

Loads a finished `snn5 train` run (its config and best checkpoint), measures the float model on
the test set, quantizes it in place (``WeightQuant(bits)`` per-channel, or ``TernaryQuant()``,
plus ``MembraneQuant`` with ``--membrane-bits``), measures the post-training quantized model
(PTQ, no retraining), then fine-tunes it for ``--epochs`` epochs on the run's training split
with the run's optimizer, batch size, augmentation and clipping at ``--lr`` (default: the run's
lr / 10; cosine schedule without warm-up). The model kept is the one of highest validation
accuracy among the PTQ model and the fine-tuned epochs; its test accuracy is reported with the
float one, and everything goes to ``--out`` as JSON.

    python examples/qat_mnist.py runs/mnist_conv --data-dir ../shared/data --bits 4 \\
        --epochs 2 --threads 1 --out runs/mnist_conv_qat4.json
    python examples/qat_mnist.py runs/mnist_conv --data-dir ../shared/data --ternary \\
        --epochs 3 --threads 1 --out runs/mnist_conv_ternary.json

``--epochs 0`` reports post-training quantization only. Membrane quantization makes the
neurons step the reference loop instead of the fused kernel (slower epochs).
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from pathlib import Path

import torch

from snn5.compress import (
    MembraneQuant, TernaryQuant, WeightQuant, export_quantized, quantize_,
)
from snn5.compress.quantize import QUANTIZABLE
from snn5.data import ArrayDataset, BatchLoader
from snn5.metrics import predict
from snn5.nn.schedule import SurrogateSchedule, anneal_surrogates
from snn5.runs.run import load_run, load_weights
from snn5.train.surrogate import BEST, Trainer


def accuracy(model: torch.nn.Module, loader: BatchLoader, seed: int) -> float:
    with torch.random.fork_rng():                  # the same Poisson inputs for every model
        torch.manual_seed(seed)
        pred, labels = predict(model, loader)
    return int((pred == labels).sum()) / len(labels)      # as the trainer counts


def first(split: ArrayDataset, n: int | None) -> ArrayDataset:
    return split if n is None else type(split)(split.x[:n], split.y[:n])


def size_bits(model: torch.nn.Module, bits: int) -> dict[str, int]:
    """Bits of the quantized layers' weights: float32 vs ``bits``-bit codes plus float32
    scales (ternary codes count 2 bits)."""
    ints = export_quantized(model)
    weights = sum(codes.numel() for codes, _ in ints.values())
    scales = sum(scale.numel() for _, scale in ints.values())
    return {"weights": weights, "float32_bits": 32 * weights,
            "quantized_bits": bits * weights + 32 * scales}


def main(argv: list[str] | None = None) -> dict[str, object]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", help="a run folder of `snn5 train` (config.yaml + checkpoints/)")
    ap.add_argument("--bits", type=int, default=4, choices=(2, 4, 8), help="weight bits")
    ap.add_argument("--ternary", action="store_true", help="ternary weights instead of --bits")
    ap.add_argument("--per-layer", action="store_true",
                    help="one scale per layer instead of one per output channel")
    ap.add_argument("--keep-first-last", action="store_true",
                    help="keep the first and the last Linear/Conv layer in float")
    ap.add_argument("--membrane-bits", type=int, default=None, help="also quantize membranes")
    ap.add_argument("--membrane-range", type=float, default=1.0, help="in units of v_th")
    ap.add_argument("--exclude", nargs="*", default=[],
                    help="names of layers kept in float (module names, e.g. stem.0.module)")
    ap.add_argument("--epochs", type=int, default=2, help="QAT epochs (0: PTQ only)")
    ap.add_argument("--lr", type=float, default=None, help="default: the run's lr / 10")
    ap.add_argument("--samples", type=int, default=None, help="first N test samples (all)")
    ap.add_argument("--train-samples", type=int, default=None, help="first N training samples")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", default=None, help="JSON file for the results")
    args = ap.parse_args(argv)
    if args.epochs < 0:
        ap.error("--epochs must be >= 0")
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    cfg, data, model, _ = load_run(args.run, data_dir=args.data_dir)
    tc = cfg.train
    if tc.surrogate_schedule is not None:          # the surrogate the run ended with
        s = tc.surrogate_schedule
        anneal_surrogates(model, 1.0, SurrogateSchedule(s.start, s.end, s.kind))
    test = BatchLoader(first(data.test, args.samples), tc.eval_batch_size, shuffle=False)
    val = BatchLoader(data.val, tc.eval_batch_size, shuffle=False)
    result: dict[str, object] = {"run": args.run, "test_samples": len(test.dataset),
                                 "float": {"test_accuracy": accuracy(model, test, cfg.seed),
                                           "val_accuracy": accuracy(model, val, cfg.seed)}}

    weights = (TernaryQuant(per_channel=not args.per_layer) if args.ternary
               else WeightQuant(args.bits, per_channel=not args.per_layer))
    layers = [n for n, m in model.named_modules() if isinstance(m, QUANTIZABLE)]
    keep = set(args.exclude) | ({layers[0], layers[-1]} if args.keep_first_last else set())
    quantize_(model, weights, lambda m, name: name not in keep)
    if args.membrane_bits is not None:
        quantize_(model, MembraneQuant(args.membrane_bits, args.membrane_range))
    result["config"] = {"weights": repr(weights), "excluded": sorted(keep),
                        "membrane": None if args.membrane_bits is None else
                        repr(MembraneQuant(args.membrane_bits, args.membrane_range))}
    ptq_val = accuracy(model, val, cfg.seed)
    result["ptq"] = {"test_accuracy": accuracy(model, test, cfg.seed), "val_accuracy": ptq_val}
    result["size_bits"] = size_bits(model, 2 if args.ternary else args.bits)

    if args.epochs > 0:
        lr = args.lr if args.lr is not None else tc.optimizer.lr / 10
        ft = tc.model_copy(update={
            "epochs": args.epochs, "threads": args.threads, "surrogate_schedule": None,
            "optimizer": tc.optimizer.model_copy(update={"lr": lr}),
            "schedule": tc.schedule.model_copy(update={"warmup_epochs": 0.0})})
        augment = cfg.data.augment if cfg.data.augment.active else None
        ptq_state = copy.deepcopy(model.state_dict())
        with tempfile.TemporaryDirectory() as tmp:
            trainer = Trainer(model, ft, BatchLoader(first(data.train, args.train_samples),
                                                     tc.batch_size, shuffle=True, seed=cfg.seed,
                                                     augment=augment),
                              val, checkpoint_dir=tmp, seed=cfg.seed, progress=False)
            fit = trainer.fit()
            if fit.best_val_accuracy > ptq_val:
                load_weights(model, Path(tmp) / BEST)
                chosen = fit.best_epoch
            else:
                model.load_state_dict(ptq_state)
                chosen = -1
        result["qat"] = {"test_accuracy": accuracy(model, test, cfg.seed),
                         "val_accuracy": max(fit.best_val_accuracy, ptq_val),
                         "chosen_epoch": chosen, "lr": lr, "epochs": args.epochs,
                         "train_seconds": fit.train_seconds, "history": fit.history}
    result["seconds"] = time.perf_counter() - started
    text = json.dumps(result, indent=2)
    if args.out is not None:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    print(text)
    return result


if __name__ == "__main__":
    main()
