"""``snn5`` command line: parse, call the library, print. Nothing else happens here."""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
from collections.abc import Sequence

log = logging.getLogger("snn5.cli")

EXIT_USER_ERROR = 2


def _add_data_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", default=None,
                   help="dataset root (default: $SNN5_DATA, else ~/.cache/snn5/data)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="snn5", description="Spiking neural networks: "
                                     "train, convert, learn locally, measure, export.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and results")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train a run config into a run folder")
    p.add_argument("config", help="YAML run config (see configs/)")
    p.add_argument("--out", required=True, help="run folder to create (or to resume)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="dotted override, e.g. --set train.epochs=3 (repeatable)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last checkpoint")
    p.add_argument("--nproc", type=int, default=1, metavar="K",
                   help="train data-parallel in K processes on this machine (torchrun; gloo on "
                   "CPU, one GPU per process with NCCL); see docs/distributed.md")
    _add_data_dir(p)

    p = sub.add_parser("convert", help="train (or load) an ANN and convert it to an SNN")
    p.add_argument("config", help="YAML run config with a conversion: section (see configs/)")
    p.add_argument("--out", required=True, help="run folder to create")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="dotted override, e.g. --set conversion.method=qcfs (repeatable)")
    _add_data_dir(p)

    p = sub.add_parser("evaluate", help="re-measure a finished run on its test split")
    p.add_argument("run_dir", help="a run folder written by `snn5 train`")
    p.add_argument("--device", default="auto")
    _add_data_dir(p)

    p = sub.add_parser("quickstart", help="BPTT SNN, same-size ANN and STDP SNN, trained and measured "
                       "side by side")
    p.add_argument("--out", default="runs/quickstart")
    p.add_argument("--dataset", choices=["digits", "mnist"], default="digits")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a previous quickstart in --out")
    _add_data_dir(p)

    p = sub.add_parser("bench", help="train and measure a suite of (model, dataset) entries; "
                       "writes bench.json and a Markdown leaderboard")
    p.add_argument("suite", help="suite YAML (see benchmarks/suites/)")
    p.add_argument("--out", required=True, help="output folder (an interrupted suite resumes)")
    _add_data_dir(p)

    p = sub.add_parser("tune", help="hyper-parameter search over a config's search_space: "
                       "(Optuna; see docs/hpo.md)")
    p.add_argument("config", help="YAML run config with a top-level search_space: mapping")
    p.add_argument("--out", required=True, help="study folder (storage, trials/, best.yaml, "
                   "trials.csv, plots/)")
    p.add_argument("--n-trials", type=int, required=True,
                   help="finished (complete or pruned) trials the study should hold")
    p.add_argument("--workers", type=int, default=1, help="processes sharing the storage")
    p.add_argument("--sampler", choices=["tpe", "cmaes", "random"], default="tpe")
    p.add_argument("--pruner", choices=["median", "hyperband", "none"], default="median")
    p.add_argument("--storage", default=None,
                   help="SQLAlchemy URL (default: sqlite:///OUT/study.db)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="dotted override of the base config (repeatable)")
    p.add_argument("--resume", action="store_true",
                   help="continue the study in the storage (finished trials count)")
    _add_data_dir(p)

    p = sub.add_parser("export", help="write a finished run's selected model as a NIR graph")
    p.add_argument("run_dir", help="a run folder written by `snn5 train`")
    p.add_argument("--to", choices=["nir"], default="nir", help="format (NIR: neuromorphic "
                   "hardware and simulators, see docs/deployment.md)")
    p.add_argument("--out", required=True, help="file to write, e.g. model.nir")
    _add_data_dir(p)

    sub.add_parser("info", help="versions, device, threads, registered components, kernels")

    p = sub.add_parser("download", help="download a dataset's original files (needs internet)")
    p.add_argument("dataset", choices=["mnist"])
    _add_data_dir(p)
    return parser


def _setup_logging(quiet: bool) -> None:
    rank = int(os.environ.get("RANK", "0") or 0)      # torchrun: only rank 0 reports progress
    logging.basicConfig(level=logging.WARNING if quiet or rank > 0 else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")


def _torchrun(nproc: int, argv: Sequence[str]) -> int:
    """Run ``snn5 <argv>`` in ``nproc`` processes under torchrun (one machine)."""
    import subprocess

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={nproc}", "-m", "snn5", *argv]
    log.info("starting %d processes: %s", nproc, " ".join(cmd))
    return subprocess.call(cmd)


def cmd_train(args: argparse.Namespace) -> int:
    from snn5.config import load_config
    from snn5.runs import train_run

    overrides = list(args.overrides)
    if args.data_dir is not None:
        overrides.append(f"data.data_dir={args.data_dir}")
    cfg = load_config(args.config, overrides)
    if args.nproc != 1:
        if args.nproc < 1:
            raise ValueError(f"--nproc must be >= 1, got {args.nproc}")
        if "WORLD_SIZE" in os.environ:
            raise ValueError("--nproc inside a torchrun launch; give the process count to "
                             "torchrun (--nproc_per_node) and drop --nproc")
        argv = [*(["--debug"] if args.debug else []), *(["-q"] if args.quiet else []),
                "train", args.config, "--out", args.out,
                *(f"--set={o}" for o in args.overrides), *(["--resume"] if args.resume else []),
                *([f"--data-dir={args.data_dir}"] if args.data_dir is not None else [])]
        return _torchrun(args.nproc, argv)
    m = train_run(cfg, args.out, resume=args.resume)
    if not m:                                   # a rank other than 0 of a distributed run
        return 0
    print(f"test accuracy {m['test_accuracy']:.2%} (val {m['val_accuracy']:.2%}, best epoch "
          f"{m['best_epoch'] + 1}); firing rate {m['firing_rate']['mean']}; "
          f"energy {m['energy_j_per_sample']:.3g} J/sample; run folder {args.out}")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from snn5.config import load_config
    from snn5.runs.convert import convert_run

    overrides = ["paradigm=conversion", *args.overrides]
    if args.data_dir is not None:
        overrides.append(f"data.data_dir={args.data_dir}")
    cfg = load_config(args.config, overrides)
    m = convert_run(cfg, args.out)
    by_t = ", ".join(f"T={t}: {a:.2%}" for t, a in m["snn_accuracy_by_timesteps"].items())
    print(f"{m['method']}: ANN {m['ann_accuracy']:.2%}; SNN {by_t}; run folder {args.out}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from snn5.runs import evaluate_run

    r = evaluate_run(args.run_dir, data_dir=args.data_dir, device=args.device)
    keys = ("test_accuracy", "test_loss", "firing_rate", "synops_per_sample",
            "ann_macs_per_sample", "energy_j_per_sample", "ann_energy_j_per_sample",
            "timesteps", "latency_ms_per_sample", "device")
    print(json.dumps({k: r[k] for k in keys}, indent=2))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    import nir

    from snn5.export import export_nir
    from snn5.runs.run import load_run

    run = load_run(args.run_dir, data_dir=args.data_dir)
    graph = export_nir(run.model)
    nir.write(args.out, graph)
    meta = graph.metadata["snn5"]
    print(f"wrote {args.out}: {len(graph.nodes)} NIR nodes ({run.cfg.model.name}, "
          f"T={meta['timesteps']}, dt={meta['dt']:g} s, readout {meta['readout']})")
    return 0


def cmd_quickstart(args: argparse.Namespace) -> int:
    from snn5.runs import quickstart, text_table

    s = quickstart(args.out, dataset=args.dataset, data_dir=args.data_dir,
                   overrides=args.overrides, overwrite=args.overwrite)
    print(f"\nsnn5 quickstart on {s['description']}; device {s['device']}\n")
    print(text_table(s["rows"]))
    print(f"\ntotal {s['total_seconds']:.1f} s; summary: {os.path.join(args.out, 'summary.json')}, "
          f"report: {os.path.join(args.out, 'report.md')}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from snn5.runs.bench import LEADERBOARD, leaderboard_table, run_bench

    result = run_bench(args.suite, args.out, data_dir=args.data_dir)
    print(leaderboard_table(result["rows"]))
    print(f"\n{len(result['rows'])} entries in {result['seconds']:.0f} s; "
          f"leaderboard: {os.path.join(args.out, LEADERBOARD)}")
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from snn5.hpo import StudyError, tune

    overrides = list(args.overrides)
    if args.data_dir is not None:
        overrides.append(f"data.data_dir={args.data_dir}")
    try:
        s = tune(args.config, args.out, n_trials=args.n_trials, workers=args.workers,
                 overrides=overrides, sampler=args.sampler, pruner=args.pruner,
                 storage=args.storage, resume=args.resume)
    except StudyError as exc:
        print(f"snn5 tune: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    counts = ", ".join(f"{n} {state.lower()}" for state, n in s["trials"].items())
    print(f"trials: {counts}; table {s['trials_csv']}")
    if "best_value" in s:
        values = ", ".join(f"{k}={v!r}" for k, v in s["best_values"].items())
        print(f"best: trial {s['best_trial']}, val accuracy {s['best_value']:.2%} ({values}); "
              f"config {s['best_yaml']}; run folder {s['best_run_dir']}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    import numpy
    import torch

    from snn5 import __version__
    from snn5.core import SURROGATES
    from snn5.data import DATASETS, resolve_data_dir
    from snn5.kernels import active_backends
    from snn5.metrics import ENERGY_MODELS
    from snn5.models import MODELS
    from snn5.nn import NEURONS
    from snn5.runs.provenance import cpu_name, git_commit
    from snn5.train.plasticity import RULES

    cuda = (f"yes: {torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
            if torch.cuda.is_available() else "no")
    rows = [
        ("snn5", f"{__version__} ({git_commit()})"),
        ("python", platform.python_version()),
        ("torch", torch.__version__),
        ("numpy", numpy.__version__),
        ("cpu", cpu_name()),
        ("threads", f"{torch.get_num_threads()} (torch intra-op)"),
        ("cuda", cuda),
        ("data dir", str(resolve_data_dir(None))),
        *((f"kernels ({device})", what) for device, what in active_backends().items()),
        ("neurons", ", ".join(NEURONS.names())),
        ("surrogates", ", ".join(SURROGATES.names())),
        ("models", ", ".join(MODELS.names())),
        ("plasticity rules", ", ".join(RULES.names())),
        ("datasets", ", ".join(DATASETS.names())),
        ("energy models", ", ".join(ENERGY_MODELS.names())),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key.ljust(width)}  {value}")
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    from snn5.data import download_mnist, resolve_data_dir

    root = resolve_data_dir(args.data_dir)
    download_mnist(root)
    print(f"MNIST files are in {root / 'mnist'}")
    return 0


COMMANDS = {"train": cmd_train, "convert": cmd_convert, "evaluate": cmd_evaluate,
            "export": cmd_export, "quickstart": cmd_quickstart, "bench": cmd_bench,
            "tune": cmd_tune,
            "info": cmd_info,
            "download": cmd_download}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.quiet)
    from snn5._registry import UnknownNameError
    from snn5.train.checkpoint import CheckpointError
    from snn5.train.surrogate import NonFiniteError

    user_errors = (ValueError, OSError, UnknownNameError, CheckpointError, NonFiniteError)
    try:
        return COMMANDS[args.command](args)
    except user_errors as exc:
        if args.debug:
            raise
        print(f"snn5 {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        how = {"tune": "`snn5 tune ... --resume` continues the study (the interrupted trial is "
                       "run again)",
               "bench": "running the same `snn5 bench` again continues the suite"}.get(
            args.command, "`snn5 train ... --resume` continues a training run from its last "
                          "checkpoint")
        print(f"snn5 {args.command}: interrupted; {how}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
