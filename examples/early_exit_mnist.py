"""Early exit (SNN cutoff) on a finished run: test accuracy vs mean timesteps for each rule.

Loads a finished `snn5 train` run (its config and best checkpoint), records the logits after
every step on the run's validation split, calibrates each exit rule there (the threshold with
the fewest mean timesteps whose validation accuracy is within ``--tolerance`` of the full-T
accuracy, see snn5.metrics.calibrate_exit), then reports on the test split, for each rule and
a range of thresholds, accuracy against mean timesteps (simulated on the test logit trace,
which gives the streamed run's decisions), and re-runs each chosen operating point for real,
streaming with exited samples dropped from the batch. Prints a table and writes JSON.

    OMP_NUM_THREADS=1 python examples/early_exit_mnist.py runs/mnist_conv_aug \\
        --data-dir ../shared/data --samples 2000 --threads 1
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from snn5.data import ArrayDataset, BatchLoader
from snn5.metrics import (
    ExitRule, calibrate_exit, evaluate_early_exit, logit_trace, simulate_exit,
)
from snn5.nn.readout import FirstSpike
from snn5.runs.run import load_run


def first(ds: ArrayDataset, n: int | None) -> ArrayDataset:
    return ds if n is None else ArrayDataset(ds.x[:n], ds.y[:n])


def rules_for(model: torch.nn.Module) -> list[ExitRule]:
    rules = [ExitRule.MAX_PROB, ExitRule.MARGIN, ExitRule.STABLE]
    return rules + [ExitRule.FIRST_SPIKE] if isinstance(model.readout, FirstSpike) else rules


def fmt(threshold: float) -> str:
    return "inf" if math.isinf(threshold) else f"{threshold:.4g}"


def main(argv: list[str] | None = None) -> dict[str, object]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", help="a run folder of `snn5 train` (config.yaml + checkpoints/)")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--samples", type=int, default=None, help="first N test samples (all)")
    ap.add_argument("--val-samples", type=int, default=None, help="first N validation samples")
    ap.add_argument("--tolerance", type=float, default=0.001,
                    help="validation accuracy the exit may lose (0.001 = 0.1 pp)")
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", default=None, help="write the result here (default: print only)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg, data, model, _ = load_run(args.run, data_dir=args.data_dir)
    val = BatchLoader(first(data.val, args.val_samples), args.batch_size, shuffle=False)
    test = BatchLoader(first(data.test, args.samples), args.batch_size, shuffle=False)

    torch.manual_seed(cfg.seed)                      # spike encoders draw from the global RNG
    tick = time.perf_counter()
    val_trace, val_y = logit_trace(model, val)
    test_trace, test_y = logit_trace(model, test)
    trace_s = time.perf_counter() - tick
    T = model.timesteps
    accuracy = lambda trace, y: float((trace.argmax(-1) == y).double().mean())  # noqa: E731
    full_acc = accuracy(test_trace[-1], test_y)
    result: dict[str, object] = {
        "run": args.run, "timesteps": T, "val_samples": len(val_y), "test_samples": len(test_y),
        "tolerance": args.tolerance,
        "full_T": {"val_accuracy": accuracy(val_trace[-1], val_y), "test_accuracy": full_acc},
        "accuracy_per_step": [accuracy(test_trace[t], test_y) for t in range(T)],
        "trace_seconds": trace_s, "rules": {}}
    print(f"{args.run}: T = {T}, {len(val_y)} validation / {len(test_y)} test samples; full-T "
          f"test accuracy {full_acc:.4%}")
    print("test accuracy after t steps: "
          + ", ".join(f"t={t + 1}: {a:.4%}" for t, a in enumerate(result["accuracy_per_step"])))
    header = f"{'rule':<11} {'threshold':>10} {'val acc':>8} {'val steps':>9} " \
             f"{'test acc':>8} {'test steps':>10} {'speed-up':>8}"
    print(header)
    for rule in rules_for(model):
        cal = calibrate_exit(val_trace, val_y, rule, tolerance=args.tolerance)
        sweep = list(cal.sweep)
        picks = sorted({round(i * (len(sweep) - 1) / 7) for i in range(8)})   # 8 for the table
        rows = []
        for i, v in enumerate(sweep):
            t = simulate_exit(test_trace, test_y, v.policy)
            rows.append({"threshold": v.policy.to_dict()["threshold"],
                         "val_accuracy": v.accuracy, "val_mean_timesteps": v.mean_timesteps,
                         "test_accuracy": t.accuracy, "test_mean_timesteps": t.mean_timesteps,
                         "test_speedup": t.speedup})
            if i in picks:
                print(f"{rule.value:<11} {fmt(v.policy.threshold):>10} {v.accuracy:>8.4f} "
                      f"{v.mean_timesteps:>9.3f} {t.accuracy:>8.4f} {t.mean_timesteps:>10.3f} "
                      f"{t.speedup:>7.2f}x")
        tick = time.perf_counter()
        streamed = evaluate_early_exit(model, test, cal.policy)   # for real, samples dropped
        stream_s = time.perf_counter() - tick
        print(f"{rule.value:<11} {fmt(cal.policy.threshold):>10} {cal.result.accuracy:>8.4f} "
              f"{cal.result.mean_timesteps:>9.3f} {streamed.accuracy:>8.4f} "
              f"{streamed.mean_timesteps:>10.3f} {streamed.speedup:>7.2f}x  <- chosen "
              f"(streamed, {stream_s:.1f} s; exits per step {list(streamed.exit_histogram)})")
        result["rules"][rule.value] = {
            "chosen": {**streamed.to_dict(), "val_accuracy": cal.result.accuracy,
                       "val_mean_timesteps": cal.result.mean_timesteps,
                       "accuracy_drop_pp": 100 * (full_acc - streamed.accuracy),
                       "stream_seconds": stream_s},
            "sweep": rows}
    # the operating point is chosen on validation: the rule with the fewest validation steps
    best = min(result["rules"].items(), key=lambda kv: kv[1]["chosen"]["val_mean_timesteps"])
    result["operating_point"] = {"rule": best[0], **best[1]["chosen"]}
    c = result["operating_point"]
    print(f"operating point: {best[0]} >= {c['threshold']}: test {c['accuracy']:.4%} "
          f"({-c['accuracy_drop_pp']:+.2f} pp) at {c['mean_timesteps']:.3f} mean steps "
          f"({c['speedup']:.2f}x fewer than T = {T})")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
