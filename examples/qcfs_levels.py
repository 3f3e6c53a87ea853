"""The ANN of a QCFS conversion run evaluated with other quantization levels (same lambdas).

An IF-neuron SNN run for T steps approaches the same ANN with T levels, so this shows what the
SNN tends to beyond T = L when the ANN was trained with L levels (docs/conversion.md, "QCFS
beyond T = L").

    python examples/qcfs_levels.py runs/mnist_qcfs --data-dir ../shared/data --samples 3000
"""

from __future__ import annotations

import argparse
import json

import torch

from snn5.config import load_config
from snn5.data import load_dataset
from snn5.models.ann import build_ann, load_ann_weights
from snn5.nn.conversion import QCFS


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", help="a conversion run folder (config.yaml + ann.safetensors)")
    ap.add_argument("--levels", type=int, nargs="+", default=[4, 8, 16, 32, 1000])
    ap.add_argument("--samples", type=int, default=None, help="first N test samples (all)")
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args(argv)
    cfg = load_config(f"{args.run}/config.yaml")
    data_cfg = cfg.data if args.data_dir is None else cfg.data.model_copy(
        update={"data_dir": args.data_dir})
    data = load_dataset(data_cfg)
    ann = build_ann(cfg.conversion.ann, data.input_shape, data.num_classes)
    load_ann_weights(ann, f"{args.run}/ann.safetensors")
    ann.eval()
    x, y = data.test.x[:args.samples], data.test.y[:args.samples]
    result = {}
    for levels in args.levels:
        for m in ann.modules():
            if isinstance(m, QCFS):
                m.levels = levels
        with torch.no_grad():
            result[str(levels)] = float((ann(x).argmax(-1) == y).float().mean())
    print(json.dumps({"run": args.run, "test_samples": len(y), "accuracy_by_levels": result}))
    return result


if __name__ == "__main__":
    main()
