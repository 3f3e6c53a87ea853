"""Run ``train_run`` under torchrun for tests/train/test_distributed.py, optionally stopping
every process right after an epoch's checkpoint (as a kill at that moment would).

    python -m torch.distributed.run --standalone --nproc_per_node 2 ddp_run.py CONFIG OUT \
        [--stop-after-epoch E] [--resume]
"""

from __future__ import annotations

import argparse
import sys

from snn5.config import load_config
from snn5.runs import train_run


class Stop(Exception):
    pass


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("config")
    p.add_argument("out")
    p.add_argument("--stop-after-epoch", type=int, default=None)
    p.add_argument("--resume", action="store_true")
    args = p.parse_args()

    def stop(history: list[dict]) -> None:
        if len(history) == args.stop_after_epoch:
            raise Stop

    try:
        train_run(load_config(args.config), args.out, resume=args.resume, progress=False,
                  epoch_callbacks=[stop] if args.stop_after_epoch else [])
    except Stop:
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
