"""Energy per target profile of a finished run: the per-profile and per-layer tables.

Loads a finished `snn5 train` run (its config and best checkpoint), measures it on the first
``--samples`` test samples (SynOps, MACs, dense MACs, neuron updates and spikes per layer) and
prints, per test sample, the energy of the SNN and of its same-size ANN twin on every
registered energy profile (45nm, loihi, gpu_dense; see docs/energy.md), then the per-layer
breakdown. ``--json`` also writes the measurement.

    python examples/energy_table.py runs/mnist_conv_aug --data-dir ../shared/data --samples 1000
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from snn5.config import load_config
from snn5.data import ArrayDataset, BatchLoader, load_dataset
from snn5.metrics import measure
from snn5.runs.report import energy_model_table, layer_energy_table
from snn5.runs.run import CONFIG, build_run_models, load_weights
from snn5.train.surrogate import BEST


def main(argv: list[str] | None = None) -> dict[str, object]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path, help="a run folder of `snn5 train` (config.yaml + "
                    "checkpoints/best.safetensors)")
    ap.add_argument("--data-dir", default=None, help="data root (default: the run's)")
    ap.add_argument("--samples", type=int, default=None, help="first N test samples (all)")
    ap.add_argument("--batch-size", type=int, default=250)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", type=Path, default=None, help="write the measurement here")
    args = ap.parse_args(argv)
    if not (args.run / CONFIG).is_file():
        ap.error(f"{args.run} is not a run folder (no {CONFIG}); pass the --out folder of "
                 "`snn5 train`")
    if args.samples is not None and args.samples < 1:
        ap.error(f"--samples must be >= 1, got {args.samples}")
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(args.run / CONFIG)
    if args.data_dir is not None:
        cfg = cfg.model_copy(update={"data": cfg.data.model_copy(
            update={"data_dir": args.data_dir})})
    data = load_dataset(cfg.data)
    model, ann = build_run_models(cfg, data)
    load_weights(model, args.run / "checkpoints" / BEST)
    n = min(len(data.test), args.samples or len(data.test))
    test = ArrayDataset(data.test.x[:n], data.test.y[:n])
    torch.manual_seed(cfg.seed)
    m = measure(model, BatchLoader(test, args.batch_size, shuffle=False), ann_model=ann,
                energy_model=cfg.measure.energy_model).to_dict()
    print(f"# {args.run}: {cfg.model.name} on {data.name}, T = {m['timesteps']}, "
          f"first {n} test samples, accuracy {m['accuracy']:.2%}\n")
    print("## Energy per test sample on each target\n")
    print(energy_model_table(m) + "\n")
    print("## Per-layer breakdown (per test sample)\n")
    print(layer_energy_table(m))
    if args.json is not None:
        args.json.write_text(json.dumps({"run": str(args.run), **m}, indent=2) + "\n")
    return m


if __name__ == "__main__":
    main()
