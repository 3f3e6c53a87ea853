"""Liquid state machine (Maass et al. 2002) on FSDD spoken digits or the N-MNIST subset.

    python examples/reservoir.py --dataset fsdd --seed 0
    python examples/reservoir.py --dataset nmnist --seed 0
    python examples/reservoir.py --dataset fsdd --seeds 0 1 2 3 4 --out runs/lsm_fsdd.json
    python examples/reservoir.py --dataset fsdd --set w_ee=0 --set w_ei=0 --set w_ie=0 --set w_ii=0

A random spiking E/I liquid is driven by the dataset's events; ridge and logistic readouts are
fitted on its binned, filtered spike trains (regularisation chosen on the validation split, then
refitted on train + validation) and measured on the official test split. ``--baseline`` also
fits the same readouts on the input events binned the same way (no liquid). Data come from
``--data-dir`` (or ``$SNN5_DATA``): ``fsdd/recordings/*.wav``, ``nmnist-subset/`` or ``nmnist/``.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time

import torch

from snn5.data import DataConfig, load_dataset
from snn5.models.reservoir import LiquidStateMachine, ReservoirConfig
from snn5.train.plasticity.reservoir import ReservoirFitConfig, fit_readout, fit_reservoir

PRESETS = {
    # 32 mel bands x ON/OFF, 10 ms frames held for 5 steps of 2 ms; 10 bins of 100 ms
    "fsdd": dict(n_neurons=1000, dt=2e-3, input_dt=10e-3, input_p=0.2, input_weight=5.0,
                 bins=10),
    # 2 x 34 x 34 events in 20 ms frames, topographic input (receptive fields of 4 pixels);
    # 3 bins of 100 ms, one per saccade
    "nmnist": dict(n_neurons=2000, dt=2e-3, input_dt=20e-3, input_p=0.5, input_sigma=4.0,
                   input_weight=2.5, bins=3),
}


def _value(text: str) -> object:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return None if text == "none" else text


def baseline(data, bins: int, fit_cfg: ReservoirFitConfig) -> dict[str, float]:
    """Test accuracy of the readouts on the input events binned into ``bins`` (no liquid)."""
    def feats(x: torch.Tensor) -> torch.Tensor:                      # [N, T, ...] -> [N, bins*F]
        n, t = x.shape[:2]
        idx = torch.arange(t) * bins // t
        out = torch.zeros(n, bins, x[0, 0].numel())
        out.index_add_(1, idx, x.reshape(n, t, -1))
        return out.flatten(1)
    f_tr, f_va, f_te = feats(data.train.x), feats(data.val.x), feats(data.test.x)
    out = {}
    for kind in fit_cfg.readouts:
        grid = fit_cfg.ridge_alphas if kind.value == "ridge" else fit_cfg.logistic_cs
        c = data.num_classes
        val = [fit_readout(f_tr, data.train.y, c, kind=kind, reg=r).accuracy(f_va, data.val.y)
               for r in grid]
        reg = grid[max(range(len(grid)), key=lambda i: val[i])]
        readout = fit_readout(torch.cat([f_tr, f_va]), torch.cat([data.train.y, data.val.y]), c,
                              kind=kind, reg=reg)
        out[kind.value] = readout.accuracy(f_te, data.test.y)
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", choices=sorted(PRESETS), required=True)
    ap.add_argument("--seed", type=int, default=0, help="seed of the liquid's connectivity")
    ap.add_argument("--seeds", type=int, nargs="+", default=None, help="several seeds: mean "
                    "and spread")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="override a ReservoirConfig field, e.g. --set n_neurons=500")
    ap.add_argument("--stdp-samples", type=int, default=0, help="pre-shape the liquid by STDP "
                    "on this many training samples")
    ap.add_argument("--target-rate", type=float, default=None, help="calibrate the input gain "
                    "to this firing rate (Hz) first")
    ap.add_argument("--baseline", action="store_true", help="also fit the readouts on the "
                    "binned input events (no liquid)")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads")
    ap.add_argument("--data-dir", default=None, help="data root (default: $SNN5_DATA or "
                    "~/.cache/snn5/data)")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)

    start = time.perf_counter()
    data = load_dataset(DataConfig(name=args.dataset, data_dir=args.data_dir))
    load_seconds = time.perf_counter() - start
    overrides = dict(kv.split("=", 1) for kv in args.set)
    fit_cfg = ReservoirFitConfig(target_rate=args.target_rate, stdp_samples=args.stdp_samples)
    runs = []
    for seed in args.seeds or [args.seed]:
        cfg = ReservoirConfig(**{**PRESETS[args.dataset], "seed": seed,
                                 **{k: _value(v) for k, v in overrides.items()}})
        start = time.perf_counter()
        lsm = LiquidStateMachine(cfg, data.input_shape[1:])
        fit = fit_reservoir(lsm, data, fit_cfg)
        run = {"seed": seed, "test_accuracy": fit.test_accuracy, "val_accuracy": fit.val_accuracy,
               "chosen_reg": fit.chosen_reg, "firing_rate_hz": round(fit.firing_rate_hz, 2),
               "num_features": fit.num_features, "input_gain": fit.input_gain,
               "seconds": round(time.perf_counter() - start, 1)}
        if fit.shaping is not None:
            run["stdp"] = vars(fit.shaping)
        print(json.dumps(run))
        runs.append(run)
    result = {"dataset": args.dataset, "data": data.description, "checksum": data.checksum,
              "config": {**PRESETS[args.dataset], **overrides}, "threads": args.threads,
              "torch": torch.__version__, "load_seconds": round(load_seconds, 1), "runs": runs}
    for kind in runs[0]["test_accuracy"]:
        accs = [r["test_accuracy"][kind] for r in runs]
        result[f"test_{kind}_mean"] = statistics.mean(accs)
        if len(accs) > 1:
            result[f"test_{kind}_std"] = statistics.stdev(accs)
    if args.baseline:
        result["baseline_no_liquid"] = baseline(data, lsm.cfg.bins, fit_cfg)
    summary = {k: v for k, v in result.items() if k.startswith(("test_", "baseline"))}
    print(json.dumps(summary))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
