"""Speed and memory of a two-layer LIF network: snn5 side by side with its peers and the floor.

    x[T,B,N] -> Linear(N,N) -> LIF -> Linear(N,N) -> LIF,  same weights, input and semantics

Every (implementation, size, mode) runs in its own worker process; the driver repeats rounds
round-robin across implementations and reports medians over rounds. See benchmarks/README.md.

    python benchmarks/lif_speed.py                              # all sizes, modes, eager impls
    python benchmarks/lif_speed.py --compile --json results/lif.json
    python benchmarks/lif_speed.py --check                      # same spikes everywhere?
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import harness
from harness import DEFAULT_SIZES, fmt, fmt_ms, median, size_name

HERE = Path(__file__).resolve().parent
MODES = ("infer", "train")


# ----------------------------------------------------------------------------- worker

def worker(spec: dict[str, Any]) -> None:
    """Measure one (implementation, size, mode), or run the check; print the result."""
    import torch

    import lif_nets

    device = harness.worker_device(spec)
    if device is None:
        return
    if spec.get("check"):
        import lif_check

        harness.emit(lif_check.run_check(tuple(spec["size"]), spec["impls"], spec["seed"],
                                         spec["device"]))
        return
    b, t, n = spec["size"]
    t0 = time.perf_counter()
    try:
        built = lif_nets.build(spec["impl"], n, spec["seed"], device)
    except lif_nets.Unavailable as exc:
        harness.emit({"skipped": str(exc)})
        return
    setup_s = time.perf_counter() - t0          # includes any rebuild of snn5's kernels
    x = lif_nets.make_input(t, b, n, spec["seed"], device)            # [T, B, N]
    params = list(built.net.parameters())
    seen: dict[str, float] = {}

    def call() -> None:
        if spec["mode"] == "infer":
            with torch.no_grad():
                out = built.net(x)
        else:
            for p in params:
                p.grad = None
            out = built.net(x)
            out.sum().backward()
        if not seen:                                   # first (untimed) call only
            seen["output_rate"] = out.detach().float().mean().item()

    try:
        result = harness.measure(call, device.type, min_repeats=spec["min_repeats"],
                                 min_time=spec["min_time"], max_repeats=spec["max_repeats"])
    except Exception as exc:  # report, do not crash the driver
        harness.emit({"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"})
        return
    extra = {"note": built.note, "threads": torch.get_num_threads(), "setup_s": setup_s}
    if lif_nets.parse_impl(spec["impl"])[1]:
        from torch._dynamo.utils import counters

        extra.update(graphs=counters["stats"]["unique_graphs"],
                     graph_breaks=dict(counters["graph_break"]))
    harness.emit({**result, **seen, **extra})


# ----------------------------------------------------------------------------- driver

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    import lif_nets

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default=DEFAULT_SIZES, help="BxTxN list (default %(default)s)")
    ap.add_argument("--modes", default="infer,train", help="infer,train (default: both)")
    ap.add_argument("--impls", default=None,
                    help=f"comma list from {', '.join(lif_nets.BUILDERS)}, each optionally "
                         "with '+compile' (default: all eager ones; the floor is always run)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--compile", action="store_true",
                    help="add torch.compile variants of naive, spikingjelly and snn5's fused "
                         "backend")
    ap.add_argument("--rounds", type=int, default=3, help="round-robin rounds (default 3)")
    ap.add_argument("--threads", type=int, default=2, help="torch/OMP/MKL threads (default 2)")
    ap.add_argument("--json", type=Path, default=None, help="write all results here")
    ap.add_argument("--check", action="store_true",
                    help="only verify identical spikes and compare gradients, then exit")
    ap.add_argument("--check-size", default="8x50x256", help="BxTxN of --check")
    ap.add_argument("--event", action="store_true",
                    help="also run the event-driven inference benchmark (event_speed.py)")
    ap.add_argument("--rates", default="0.01,0.05,0.1,0.2", help="input rates of --event")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--min-time", type=float, default=2.0, help="seconds of timed calls")
    ap.add_argument("--min-repeats", type=int, default=3)
    ap.add_argument("--max-repeats", type=int, default=20)
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per worker")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.sizes = harness.parse_sizes(args.sizes)
    args.modes = [m for m in args.modes.split(",") if m]
    args.rates = [float(r) for r in args.rates.split(",") if r]
    if bad := [m for m in args.modes if m not in MODES]:
        ap.error(f"--modes: unknown {bad}; valid: {', '.join(MODES)}")
    if args.impls:
        impls = [i for i in args.impls.split(",") if i]
        if args.compile:
            impls += [i + lif_nets.COMPILE_SUFFIX for i in impls
                      if i in lif_nets.COMPILED_BY_DEFAULT]
    else:
        impls = lif_nets.default_impls(args.device, args.compile)
    try:
        for name in impls:
            lif_nets.parse_impl(name)
    except ValueError as exc:
        ap.error(str(exc))
    args.impls = ["floor"] + [i for i in dict.fromkeys(impls) if i != "floor"]
    return args


def prebuild_kernels(args: argparse.Namespace) -> None:
    """Compile snn5's CPU kernels before any timing (cached; a no-op when already built)."""
    if args.device == "cpu" and any(i.startswith("snn5_cpu") for i in args.impls):
        from snn5.kernels import kernel_error, load_cpu_kernels

        if load_cpu_kernels() is None:
            print(f"warning: snn5 CPU kernels unavailable ({kernel_error('cpu')})",
                  file=sys.stderr)


def spec_for(args: argparse.Namespace, **kw: Any) -> dict[str, Any]:
    return {"device": args.device, "threads": args.threads, "seed": args.seed,
            "min_time": args.min_time, "min_repeats": args.min_repeats,
            "max_repeats": args.max_repeats, **kw}


def run_rounds(args: argparse.Namespace, env: dict[str, str], report: dict[str, Any]
               ) -> list[dict[str, Any]]:
    """All rounds; in each, every (size, mode) runs its implementations in a rotated order."""
    raw: list[dict[str, Any]] = []
    dead: dict[tuple, str] = {}           # failed or skipped once: not retried
    for rnd in range(args.rounds):
        for size in args.sizes:
            for mode in args.modes:
                k = rnd % len(args.impls)
                for impl in args.impls[k:] + args.impls[:k]:
                    key = (size, mode, impl)
                    if key in dead:
                        continue
                    res = harness.run_worker(HERE / "lif_speed.py",
                                             spec_for(args, impl=impl, size=size, mode=mode),
                                             threads=args.threads, timeout=args.timeout,
                                             env=env)
                    res.update(round=rnd, size=size_name(size), mode=mode, impl=impl)
                    raw.append(res)
                    print(progress_line(res, args.rounds), flush=True)
                    if "median_s" not in res:
                        dead[key] = res.get("skipped") or res.get("error", "?")
        if args.json:                      # keep what is done if a long run is interrupted
            write_json(args.json, {**report, "raw": raw})
    return raw


def progress_line(r: dict[str, Any], rounds: int) -> str:
    head = f"[round {r['round'] + 1}/{rounds}] {r['size']} {r['mode']:5s} {r['impl']:22s}"
    if "median_s" not in r:
        return f"{head} {'skipped' if 'skipped' in r else 'ERROR'}: " \
               f"{r.get('skipped') or r.get('error')}"
    return (f"{head} {r['median_s'] * 1e3:9.1f} ms  first {r['first_call_s']:6.2f} s  "
            f"peak RSS {r['peak_rss_mib']:7.0f} MiB  ({len(r['times_s'])} calls, "
            f"{r['wall_s']:.0f} s wall)")


def summarise(raw: list[dict[str, Any]], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Per (size, mode, impl): medians over rounds; ratios to the floor of the same round."""
    floor = {(r["size"], r["mode"], r["round"]): r for r in raw
             if r["impl"] == "floor" and "median_s" in r}
    rows = []
    for size in args.sizes:
        for mode in args.modes:
            fl = [r for r in raw if r["size"] == size_name(size) and r["mode"] == mode
                  and r["impl"] == "floor" and "median_s" in r]
            fl_rss = median([r["peak_rss_mib"] for r in fl])
            fl_drss = median([r["delta_rss_mib"] for r in fl])
            for impl in args.impls:
                rs = [r for r in raw if r["size"] == size_name(size) and r["mode"] == mode
                      and r["impl"] == impl]
                ok = [r for r in rs if "median_s" in r]
                row: dict[str, Any] = {"size": size_name(size), "mode": mode, "impl": impl,
                                       "rounds": len(ok)}
                if not ok:
                    bad = rs[0] if rs else {}
                    row["status"] = bad.get("skipped") or bad.get("error") or "not run"
                    rows.append(row)
                    continue
                ratios = [r["median_s"] / floor[(r["size"], mode, r["round"])]["median_s"]
                          for r in ok if (r["size"], mode, r["round"]) in floor]
                firsts = sorted(ok, key=lambda r: r["round"])
                peak = median([r["peak_rss_mib"] for r in ok])
                drss = median([r["delta_rss_mib"] for r in ok])
                steady = [r["steady_delta_rss_mib"] for r in ok
                          if r.get("steady_delta_rss_mib") is not None]
                row.update(
                    ms=median([r["median_s"] * 1e3 for r in ok]),
                    x_floor=median(ratios), x_floor_min=min(ratios, default=None),
                    x_floor_max=max(ratios, default=None),
                    peak_rss_mib=peak, delta_rss_mib=drss, steady_delta_rss_mib=median(steady),
                    rss_x_floor=peak / fl_rss if fl_rss else None,
                    delta_rss_x_floor=drss / fl_drss if fl_drss else None,
                    first_call_s=firsts[0]["first_call_s"],
                    first_call_later_s=median([r["first_call_s"] for r in firsts[1:]]),
                    output_rate=ok[0].get("output_rate"), note=ok[0].get("note", ""),
                )
                if args.device == "cuda":
                    row.update(peak_gpu_mib=median([r["peak_gpu_mib"] for r in ok]),
                               delta_gpu_mib=median([r["delta_gpu_mib"] for r in ok]))
                rows.append(row)
    return rows


def format_tables(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    gpu = args.device == "cuda"
    mem = "peak GPU MiB | ΔGPU MiB" if gpu else "peak RSS MiB | RSS × floor | ΔRSS MiB " \
                                                 "(steady) | ΔRSS × floor"
    out = []
    for size in args.sizes:
        for mode in args.modes:
            b, t, n = size
            out += ["", f"### B={b}, T={t}, N={n}, {mode} ({args.device}, {args.threads} "
                        f"threads, {args.rounds} rounds)", "",
                    f"| implementation | ms | × floor (min–max) | {mem} | first call s "
                    "(round 1 / later) | output rate |",
                    "|---|---:|---:|" + "---:|" * (2 if gpu else 4) + "---:|---:|"]
            for r in rows:
                if r["size"] != size_name(size) or r["mode"] != mode:
                    continue
                if "ms" not in r:
                    out.append(f"| {r['impl']} | {r['status']} |")
                    continue
                ratio = f"{fmt(r['x_floor'], '.2f')} ({fmt(r['x_floor_min'], '.2f')}–" \
                        f"{fmt(r['x_floor_max'], '.2f')})"
                if gpu:
                    memcols = f"{r['peak_gpu_mib']:.0f} | {r['delta_gpu_mib']:.0f}"
                else:
                    memcols = (f"{r['peak_rss_mib']:.0f} | {fmt(r['rss_x_floor'], '.2f')} | "
                               f"{r['delta_rss_mib']:.0f} ({fmt(r['steady_delta_rss_mib'], '.0f')})"
                               f" | {fmt(r['delta_rss_x_floor'], '.2f')}")
                out.append(f"| {r['impl']} | {fmt_ms(r['ms'])} | {ratio} | {memcols} | "
                           f"{r['first_call_s']:.2f} / {fmt(r['first_call_later_s'], '.2f')} | "
                           f"{fmt(r['output_rate'], '.4f')} |")
    return "\n".join(out)


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    if argv is None and "--worker" in sys.argv:                 # fast path, no driver setup
        worker(json.loads(sys.argv[sys.argv.index("--worker") + 1]))
        return 0
    args = parse_args(argv)
    import torch

    import lif_nets

    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda, but torch sees no CUDA device here", file=sys.stderr)
        return 2

    report: dict[str, Any] = {
        "benchmark": "lif_speed", "semantics": lif_nets.SEMANTICS,
        "machine": harness.machine_info(args.device, args.threads),
        "settings": {k: (v if not isinstance(v, Path) else str(v))
                     for k, v in vars(args).items() if k != "worker"},
    }
    print(f"# lif_speed: {lif_nets.SEMANTICS}")
    m = report["machine"]
    print(f"# {m['cpu']}, {args.threads} threads, device {args.device}; versions "
          + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v)
          + f"; snn5 commit {m['snn5_git_commit']}")
    prebuild_kernels(args)
    # A fresh Inductor cache per run: round 1 of a compiled variant compiles from scratch
    # (first call = full compilation), later rounds show the warm-cache first call.
    cache = tempfile.mkdtemp(prefix="lif_speed_inductor_")
    env = {"TORCHINDUCTOR_CACHE_DIR": cache, "TRITON_CACHE_DIR": cache + "/triton"}
    status = 0
    try:
        if args.check:
            size = harness.parse_sizes(args.check_size)[0]
            res = harness.run_worker(HERE / "lif_speed.py",
                                     spec_for(args, check=True, size=size, impls=args.impls),
                                     threads=args.threads, timeout=args.timeout, env=env)
            if "rows" not in res:
                print(f"check failed to run: {res.get('error')}\n{res.get('stderr_tail', '')}")
                return 2
            import lif_check

            print(lif_check.format_check(res))
            report["check"] = res
            status = 0 if res["all_identical"] else 1
        else:
            t0 = time.time()
            raw = run_rounds(args, env, report)
            report["raw"] = raw
            report["summary"] = summarise(raw, args)
            report["wall_s"] = time.time() - t0
            print(format_tables(report["summary"], args))
            print("\nms: median over rounds of the per-process median; × floor: median over "
                  "rounds of time / floor time in the same round. ΔRSS = peak RSS minus RSS "
                  "just before the first call; (steady): the peak of the timed calls alone "
                  "minus the same baseline (no compilation peak).")
            if args.event:
                import event_speed

                report["event"] = event_speed.run(args, env)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    if args.json:
        write_json(args.json, report)
        print(f"\nwrote {args.json}")
    return status


if __name__ == "__main__":
    sys.exit(main())
