"""MNIST with STDP-learned convolutional features and a decision layer trained by reward alone
(Mozafari et al. 2019, Kheradpisheh et al. 2018).

    python examples/rstdp_mnist.py --seed 0 --out runs/rstdp_mnist_s0
    python examples/rstdp_mnist.py --seed 0 --epochs 2 --train-samples 5000 --out runs/rstdp_quick

Steps: (1) S1 then S2 kernels learn by STDP with k-winners-take-all on ``--l1-samples`` /
``--l2-samples`` training images (no labels); (2) the frozen network turns every image into C2
spike times; (3) the R-STDP decision layer (200 neurons, 20 per digit) learns from reward and
punishment only, ``--epochs`` passes over the training split, its validation accuracy logged
after each; (4) the 10,000 test images are classified once, by the readout of the last epoch and
by the one of the best validation epoch. No gradient, no ridge or logistic classifier.

MNIST is read from ``--data-dir`` (or ``$SNN5_DATA``), which must hold ``mnist/*-ubyte.gz``.
The run folder gets ``metrics.json`` and ``model.safetensors``. See docs/rstdp.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

from snn5.data import resolve_data_dir
from snn5.data.mnist import MNIST_FILES, load_mnist
from snn5.runs.provenance import provenance
from snn5.train.checkpoint import save_checkpoint
from snn5.train.plasticity.conv_stdp import ConvSTDPConfig, ConvSTDPNetwork, train_conv_layer
from snn5.train.plasticity.rstdp import RSTDPConfig, RSTDPReadout, rstdp_accuracy, train_rstdp

log = logging.getLogger("rstdp_mnist")


def clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def since(start: tuple[float, float]) -> dict[str, float]:
    wall, cpu = clock()
    return {"wall_s": round(wall - start[0], 1), "cpu_s": round(cpu - start[1], 1)}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--l1-samples", type=int, default=8192, help="STDP images for S1")
    ap.add_argument("--l2-samples", type=int, default=8192, help="STDP images for S2")
    ap.add_argument("--epochs", type=int, default=30, help="R-STDP passes over the train split")
    ap.add_argument("--n-per-class", type=int, default=20)
    ap.add_argument("--dropout", type=float, default=0.0, help="decision neurons switched off "
                    "per training sample (after Mozafari et al. 2018); 0: none (the 2019 network)")
    ap.add_argument("--train-samples", type=int, default=None, help="readout training images "
                    "(default: the whole train split; fewer = a shortened run)")
    ap.add_argument("--val-fraction", type=float, default=0.1, help="share of the 60,000 "
                    "training images held out for validation")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data-dir", default=None, help="data root with mnist/ (default: "
                    "$SNN5_DATA or ~/.cache/snn5/data)")
    ap.add_argument("--out", required=True, help="run folder")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    prov = provenance(torch.device("cpu"))
    start = clock()

    data = load_mnist(resolve_data_dir(args.data_dir), val_fraction=args.val_fraction,
                      split_seed=args.seed)
    x_train, y_train = data.train.x, data.train.y
    if args.train_samples is not None:
        x_train, y_train = x_train[:args.train_samples], y_train[:args.train_samples]

    # (1) STDP feature extractor, layer by layer, no labels
    cfg = ConvSTDPConfig()
    net = ConvSTDPNetwork(cfg, generator=torch.Generator().manual_seed(args.seed))
    t = clock()
    stdp = [train_conv_layer(net, x_train, i, samples=n, seed=args.seed + 1 + i)
            for i, n in enumerate((args.l1_samples, args.l2_samples))]
    stdp_time = since(t)

    # (2) C2 spike times of every image (presence is all a final-potential decision reads)
    t = clock()
    feats = {name: net.features(x, timing=False).half()
             for name, x in (("train", x_train), ("val", data.val.x), ("test", data.test.x))}
    feature_time = since(t)
    rate = {name: float(torch.isfinite(f).float().mean()) for name, f in feats.items()}
    with torch.no_grad():
        sample = x_train[:500]
        activity = {"retina": float(torch.isfinite(net(sample, upto=0)).float().mean()),
                    "C1": float(torch.isfinite(net(sample, upto=1, timing=False)).float().mean()),
                    "C2": rate["train"]}

    # (3) decision layer trained by reward and punishment only
    rcfg = RSTDPConfig(n_per_class=args.n_per_class, dropout=args.dropout)
    readout = RSTDPReadout(feats["train"].shape[1], 10, rcfg)
    history: list[dict[str, float]] = []
    best = {"val_accuracy": -1.0, "epoch": -1, "weight": readout.weight.detach().clone()}

    def after_epoch(record: dict[str, float]) -> None:
        acc = rstdp_accuracy(readout, feats["val"].float(), data.val.y, spike_times=True)
        record = {**record, "epoch": len(history) + 1, "val_accuracy": acc}
        history.append(record)
        log.info("epoch %d: train hit %.4f, val %.4f", record["epoch"], record["hit"], acc)
        if acc > best["val_accuracy"]:
            best.update(val_accuracy=acc, epoch=record["epoch"],
                        weight=readout.weight.detach().clone())

    t = clock()
    train_rstdp(readout, feats["train"], y_train, epochs=args.epochs, seed=args.seed,
                spike_times=True, callback=after_epoch)
    readout_time = since(t)

    # (4) the test set, once per readout
    test_last = rstdp_accuracy(readout, feats["test"].float(), data.test.y, spike_times=True)
    last_weight = readout.weight.detach().clone()
    with torch.no_grad():
        readout.weight.copy_(best["weight"])
    test_best = rstdp_accuracy(readout, feats["test"].float(), data.test.y, spike_times=True)

    metrics = {
        "model": "stdp_conv_rstdp", "dataset": "mnist",
        "dataset_md5": {name: md5 for name, (md5, _) in MNIST_FILES.items()},
        "seed": args.seed, "command": " ".join(["python examples/rstdp_mnist.py",
                                                *(sys.argv[1:] if argv is None else argv)]),
        "train_images": len(y_train), "val_images": len(data.val.y),
        "test_images": len(data.test.y),
        "shortened": args.train_samples is not None,
        "stdp_samples": [args.l1_samples, args.l2_samples], "readout_epochs": args.epochs,
        "test_accuracy": test_last, "test_accuracy_best_val_epoch": test_best,
        "best_val_epoch": best["epoch"], "best_val_accuracy": best["val_accuracy"],
        "final_val_accuracy": history[-1]["val_accuracy"] if history else None,
        "history": history, "stdp": stdp, "spike_fraction": activity,
        "c2_spike_fraction": rate, "features": feats["train"].shape[1],
        "time": {"stdp": stdp_time, "features": feature_time, "readout": readout_time,
                 "total": since(start)},
        "conv_config": asdict(cfg), "readout_config": {**asdict(rcfg),
                                                       "rates": rcfg.rates._asdict()},
        **prov,
    }
    save_checkpoint(out / "model.safetensors",
                    {**{f"conv.{k}": v for k, v in net.state_dict().items()},
                     "readout.weight": last_weight, "readout_best.weight": best["weight"]},
                    {"kind": "stdp_conv_rstdp", "test_accuracy": test_last})
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str) + "\n")
    log.info("test accuracy %.4f (last epoch), %.4f (best validation epoch %d); total %.0f s",
             test_last, test_best, best["epoch"], metrics["time"]["total"]["wall_s"])
    return metrics


if __name__ == "__main__":
    main()
