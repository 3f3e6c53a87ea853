"""e-prop against BPTT on row-by-row sequential MNIST, same network, optimizer, data and seed.

    python examples/eprop_vs_bptt.py --seeds 0 1 2 --data-dir ../shared/data --out runs/eprop

With the defaults (10,000 training images, 5 epochs, 200 neurons of which 100 ALIF) this gave
test accuracies of 89.66 / 90.12 / 88.55 % for e-prop and 92.24 / 92.51 / 91.07 % for BPTT
(seeds 0 / 1 / 2; gap 2.50 pp on average) in about 3 min (e-prop) and 0.5 min (BPTT) of
training per seed on one CPU thread; see docs/eprop.md.

Each image is a sequence of its 28 rows (28 steps x 28 analog inputs) fed to a recurrent
LIF/ALIF network (snn5.models.recurrent.RecurrentSNN) with a leaky readout; the loss is the
cross-entropy of the readout at the last ``--loss-steps`` steps (prediction: the argmax of the
readout summed over those steps). e-prop trains online (snn5.train.plasticity.eprop); BPTT
backpropagates through the same network (same pseudo-derivative, same detached reset) with
torch autograd. Both start from the same initial weights and see the same batches; Adam
applies both. MNIST is read from ``--data-dir`` (or ``$SNN5_DATA``) with ``mnist/*-ubyte.gz``.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import time
from pathlib import Path

import torch

import snn5
from snn5.data import resolve_data_dir
from snn5.data.mnist import load_mnist
from snn5.models.recurrent import RecurrentSNN
from snn5.train.plasticity.eprop import (
    EpropLearner, Feedback, RateRegularization, rate_regularization, sequence_loss,
)

log = logging.getLogger("eprop_vs_bptt")


def _commit() -> str | None:
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).resolve().parent, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return done.stdout.strip()


def rows(images: torch.Tensor) -> torch.Tensor:
    """``[B, 1, 28, 28]`` images -> ``[T=28, B, 28]`` row sequences."""
    return images[:, 0].transpose(0, 1).contiguous()


def build(args: argparse.Namespace, seed: int) -> RecurrentSNN:
    torch.manual_seed(seed)
    return RecurrentSNN(28, args.n_rec, 10, n_adaptive=args.n_adaptive, tau_mem=args.tau_mem,
                        tau_adapt=args.tau_adapt, beta_adapt=args.beta_adapt, v_th=args.v_th,
                        tau_out=args.tau_out, input_scale=args.input_scale,
                        recurrent_scale=args.recurrent_scale, readout_scale=args.readout_scale)


@torch.no_grad()
def accuracy(net: RecurrentSNN, x: torch.Tensor, y: torch.Tensor, weights: torch.Tensor,
             batch: int = 1000) -> float:
    correct = 0
    for i in range(0, len(y), batch):
        y_seq, _, _ = net(rows(x[i:i + batch]))                     # [T, B, 10]
        score = (weights[:, None, None] * y_seq).sum(0)              # [B, 10]
        correct += int((score.argmax(1) == y[i:i + batch]).sum())
    return correct / len(y)


def train(algo: str, args: argparse.Namespace, data, seed: int) -> dict:
    start = time.perf_counter()
    net = build(args, seed)
    T = 28
    weights = torch.zeros(T)
    weights[T - args.loss_steps:] = 1.0 / args.loss_steps
    reg = RateRegularization(args.c_reg, args.target_rate) if args.c_reg > 0 else None
    learner = None
    if algo == "eprop":
        learner = EpropLearner(net, feedback=Feedback(args.feedback), rate_reg=reg, seed=seed)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    steps = args.epochs * -(-min(args.train_samples, len(data.train.y)) // args.batch_size)
    schedule = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
                if args.cosine else None)
    x_train, y_train = data.train.x[:args.train_samples], data.train.y[:args.train_samples]
    history = []
    seconds = 0.0
    for epoch in range(args.epochs):
        shuffle = torch.Generator().manual_seed(1000 * seed + epoch)
        order = torch.randperm(len(y_train), generator=shuffle)
        tick = time.perf_counter()
        loss_sum = rate_sum = 0.0
        n_batches = 0
        for i in range(0, len(order), args.batch_size):
            idx = order[i:i + args.batch_size]
            x, y = rows(x_train[idx]), y_train[idx]
            opt.zero_grad(set_to_none=True)
            if learner is not None:
                result = learner.step(x, y, time_weights=weights)
                loss, rate = result.loss, float(result.rates.mean())
            else:
                y_seq, z_seq, _ = net(x)
                loss_t = sequence_loss(y_seq, y, time_weights=weights)
                if reg is not None:
                    loss_t = loss_t + rate_regularization(z_seq, reg, dt=net.dt)
                loss_t.backward()
                loss, rate = float(loss_t), float(z_seq.mean()) / net.dt
            opt.step()
            if schedule is not None:
                schedule.step()
            loss_sum += loss
            rate_sum += rate
            n_batches += 1
        seconds += time.perf_counter() - tick
        val = accuracy(net, data.val.x, data.val.y, weights)
        history.append({"epoch": epoch + 1, "train_loss": loss_sum / n_batches,
                        "rate_hz": rate_sum / n_batches, "val_accuracy": val,
                        "train_seconds": seconds})
        log.info("seed %d %s epoch %d: loss %.4f  rate %.1f Hz  val %.4f  (%.0f s)", seed, algo,
                 epoch + 1, loss_sum / n_batches, rate_sum / n_batches, val, seconds)
    test = accuracy(net, data.test.x, data.test.y, weights)
    log.info("seed %d %s test accuracy %.4f", seed, algo, test)
    return {"algo": algo, "seed": seed, "test_accuracy": test, "train_seconds": seconds,
            "wall_seconds": time.perf_counter() - start, "history": history}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--algo", choices=["eprop", "bptt", "both"], default="both")
    ap.add_argument("--train-samples", type=int, default=10_000)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--cosine", action=argparse.BooleanOptionalAction, default=True,
                    help="cosine decay of the learning rate to 0 over the run (per batch)")
    ap.add_argument("--seeds", "--seed", type=int, nargs="+", default=[0],
                    help="one run per seed (weights, batch order, random feedback)")
    ap.add_argument("--n-rec", type=int, default=200)
    ap.add_argument("--n-adaptive", type=int, default=100)
    ap.add_argument("--tau-mem", type=float, default=5e-3)
    ap.add_argument("--tau-adapt", type=float, default=50e-3)
    ap.add_argument("--beta-adapt", type=float, default=1.8)
    ap.add_argument("--v-th", type=float, default=0.1)
    ap.add_argument("--tau-out", type=float, default=20e-3)
    ap.add_argument("--input-scale", type=float, default=1.0)
    ap.add_argument("--recurrent-scale", type=float, default=1.0)
    ap.add_argument("--readout-scale", type=float, default=20.0)
    ap.add_argument("--loss-steps", type=int, default=5, help="cross-entropy on the last k steps")
    ap.add_argument("--feedback", choices=[f.value for f in Feedback], default="symmetric")
    ap.add_argument("--c-reg", type=float, default=0.0)
    ap.add_argument("--target-rate", type=float, default=10.0, help="Hz")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", default=None, help="write results.json here")
    args = ap.parse_args(argv)
    if not 1 <= args.loss_steps <= 28:
        ap.error("--loss-steps must be in 1..28")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    data = load_mnist(resolve_data_dir(args.data_dir))
    algos = ["eprop", "bptt"] if args.algo == "both" else [args.algo]
    results = {"config": vars(args), "snn5": snn5.__version__, "commit": _commit(),
               "torch": torch.__version__, "data": data.description,
               "data_checksum": data.checksum, "runs": []}
    for seed in args.seeds:
        for algo in algos:
            results["runs"].append(train(algo, args, data, seed))
    summary = {}
    for algo in algos:
        acc = [r["test_accuracy"] for r in results["runs"] if r["algo"] == algo]
        sec = [r["train_seconds"] for r in results["runs"] if r["algo"] == algo]
        summary[algo] = {"test_accuracy": acc, "mean": sum(acc) / len(acc),
                         "train_seconds": [round(s, 1) for s in sec]}
    if len(algos) == 2:
        gaps = [100 * (b - e) for e, b in zip(summary["eprop"]["test_accuracy"],
                                              summary["bptt"]["test_accuracy"])]
        summary["gap_pp"] = [round(g, 2) for g in gaps]
        summary["mean_gap_pp"] = round(sum(gaps) / len(gaps), 2)
    results["summary"] = summary
    print(json.dumps(summary, indent=2))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
