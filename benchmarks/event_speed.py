"""Event-driven inference: snn5's ``event_linear`` against the dense floor of the same layer.

One ``Linear(N, N)`` applied to spike input ``[T*B, N]`` (0/1, Bernoulli(rate)) under
``torch.no_grad``, at input rates 1 %, 5 %, 10 % and 20 %:

* ``dense``: ``torch.nn.functional.linear(spikes, weight, bias)`` (the floor: one GEMM);
* ``event``: ``snn5.kernels.event_linear(spikes, weight, bias)`` (work proportional to the
  number of spikes); its output is checked against the dense one in every worker.

Same worker-per-measurement, timing and round-robin rules as lif_speed.py.

    python benchmarks/event_speed.py --json results/event.json
    python benchmarks/lif_speed.py --event        # the same, after the LIF benchmark
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from pathlib import Path
from typing import Any

import harness
from harness import DEFAULT_SIZES, fmt, fmt_ms, median, size_name

HERE = Path(__file__).resolve().parent
DEFAULT_RATES = "0.01,0.05,0.1,0.2"
IMPLS = ("dense", "event")


def worker(spec: dict[str, Any]) -> None:
    import torch
    import torch.nn.functional as F

    import lif_nets

    device = harness.worker_device(spec)
    if device is None:
        return
    b, t, n = spec["size"]
    w = lif_nets.make_weights(n, spec["seed"])[0].to(device)          # [N_out, N_in]
    bias = torch.zeros(n, device=device)
    g = torch.Generator().manual_seed(spec["seed"] + 2)
    spikes = (torch.rand(t * b, n, generator=g) < spec["rate"]).float().to(device)  # [T*B, N]
    extra: dict[str, Any] = {"input_rate": spikes.mean().item()}
    if spec["impl"] == "dense":
        fn = F.linear
    else:
        try:
            from snn5.kernels import event_linear
        except ImportError as exc:
            harness.emit({"skipped": f"snn5.kernels.event_linear is not available in this "
                                     f"snn5 ({exc}); update snn5 to run the event benchmark"})
            return
        from snn5.kernels import kernel_error, load_cpu_kernels

        if device.type == "cpu" and load_cpu_kernels() is None:
            harness.emit({"skipped": f"snn5 CPU kernels not built ({kernel_error('cpu')}): "
                                     "event_linear would fall back to the dense product"})
            return
        fn = event_linear
        if "packed" in inspect.signature(event_linear).parameters:
            # snn5's event layer caches the weight in the kernel's layout; do the same here
            from snn5.kernels import pack_weight
            wp = pack_weight(w)
            extra["note"] = "packed weight cached"

            def fn(s, w, b):
                return event_linear(s, w, b, packed=wp)
    try:
        with torch.no_grad():
            if spec["impl"] == "event":          # correctness against the dense layer
                ref = F.linear(spikes, w, bias)
                got = fn(spikes, w, bias)
                err = (got - ref).abs().max().item()
                extra.update(max_abs_err=err, max_abs_ref=ref.abs().max().item(),
                             allclose=bool(torch.allclose(got, ref, rtol=1e-5, atol=1e-4)))
                del ref, got
            result = harness.measure(lambda: fn(spikes, w, bias), device.type,
                                     min_repeats=spec["min_repeats"], min_time=spec["min_time"],
                                     max_repeats=spec["max_repeats"])
    except Exception as exc:
        harness.emit({"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"})
        return
    harness.emit({**result, **extra})


def run(args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    """All rounds of the event benchmark; prints its table and returns raw + summary."""
    rates = getattr(args, "rates", None) or [float(r) for r in DEFAULT_RATES.split(",")]
    raw = []
    for rnd in range(args.rounds):
        for size in args.sizes:
            for rate in rates:
                for impl in (IMPLS if rnd % 2 == 0 else IMPLS[::-1]):
                    spec = {"impl": impl, "size": size, "rate": rate, "device": args.device,
                            "threads": args.threads, "seed": args.seed,
                            "min_time": args.min_time, "min_repeats": args.min_repeats,
                            "max_repeats": args.max_repeats}
                    res = harness.run_worker(HERE / "event_speed.py", spec,
                                             threads=args.threads, timeout=args.timeout, env=env)
                    res.update(round=rnd, size=size_name(size), rate=rate, impl=impl)
                    raw.append(res)
                    print(progress_line(res, args.rounds), flush=True)
    summary = summarise(raw, args.sizes, rates)
    print(format_table(summary, args))
    return {"rates": rates, "raw": raw, "summary": summary}


def progress_line(r: dict[str, Any], rounds: int) -> str:
    head = f"[event round {r['round'] + 1}/{rounds}] {r['size']} rate {r['rate']:.2f} " \
           f"{r['impl']:6s}"
    if "median_s" not in r:
        return f"{head} {'skipped' if 'skipped' in r else 'ERROR'}: " \
               f"{r.get('skipped') or r.get('error')}"
    return f"{head} {r['median_s'] * 1e3:9.2f} ms  peak RSS {r['peak_rss_mib']:7.0f} MiB"


def summarise(raw: list[dict[str, Any]], sizes, rates) -> list[dict[str, Any]]:
    rows = []
    for size in sizes:
        for rate in rates:
            sel = [r for r in raw if r["size"] == size_name(size) and r["rate"] == rate]
            dense = {r["round"]: r for r in sel if r["impl"] == "dense" and "median_s" in r}
            ev = [r for r in sel if r["impl"] == "event"]
            ok = [r for r in ev if "median_s" in r]
            row: dict[str, Any] = {
                "size": size_name(size), "rate": rate,
                "dense_ms": median([r["median_s"] * 1e3 for r in dense.values()]),
                "dense_peak_rss_mib": median([r["peak_rss_mib"] for r in dense.values()]),
            }
            if ok:
                ratios = [r["median_s"] / dense[r["round"]]["median_s"] for r in ok
                          if r["round"] in dense]
                row.update(event_ms=median([r["median_s"] * 1e3 for r in ok]),
                           x_dense=median(ratios),
                           event_peak_rss_mib=median([r["peak_rss_mib"] for r in ok]),
                           max_abs_err=max(r["max_abs_err"] for r in ok),
                           allclose=all(r["allclose"] for r in ok))
            else:
                row["event_status"] = (ev[0].get("skipped") or ev[0].get("error")) if ev \
                    else "not run"
            rows.append(row)
    return rows


def format_table(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    out = ["", f"### Event-driven inference, one Linear(N, N) on spikes [T*B, N] "
               f"({args.device}, {args.threads} threads, {args.rounds} rounds)", "",
           "| B x T x N | input rate | dense ms | event ms | event × dense | speed-up | "
           "peak RSS MiB dense / event | max abs err |",
           "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        head = f"| {r['size']} | {r['rate']:.0%} | " \
               f"{fmt_ms(r['dense_ms']) if r['dense_ms'] is not None else '–'} |"
        if "event_ms" not in r:
            out.append(f"{head} {r['event_status']} | | | | |")
            continue
        speedup = 1 / r["x_dense"] if r["x_dense"] else None
        out.append(f"{head} {fmt_ms(r['event_ms'])} | {fmt(r['x_dense'], '.2f')} | "
                   f"{fmt(speedup, '.2f')}× | {fmt(r['dense_peak_rss_mib'], '.0f')} / "
                   f"{r['event_peak_rss_mib']:.0f} | {r['max_abs_err']:.1e}"
                   f"{'' if r['allclose'] else ' MISMATCH'} |")
    return "\n".join(out)


def main() -> int:
    if "--worker" in sys.argv:
        worker(json.loads(sys.argv[sys.argv.index("--worker") + 1]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default=DEFAULT_SIZES, help="BxTxN list (default %(default)s)")
    ap.add_argument("--rates", default=DEFAULT_RATES, help="input spike rates")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--min-time", type=float, default=2.0)
    ap.add_argument("--min-repeats", type=int, default=3)
    ap.add_argument("--max-repeats", type=int, default=20)
    ap.add_argument("--timeout", type=float, default=3600)
    args = ap.parse_args()
    args.sizes = harness.parse_sizes(args.sizes)
    args.rates = [float(r) for r in args.rates.split(",") if r]
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda, but torch sees no CUDA device here", file=sys.stderr)
        return 2
    report = {"benchmark": "event_speed",
              "machine": harness.machine_info(args.device, args.threads),
              "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}
    print(f"# event_speed: {report['machine']['cpu']}, {args.threads} threads, "
          f"snn5 commit {report['machine']['snn5_git_commit']}")
    report.update(run(args, {}))
    if args.json:
        from lif_speed import write_json

        write_json(args.json, report)
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
