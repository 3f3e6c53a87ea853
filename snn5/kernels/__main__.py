"""``python -m snn5.kernels build [--verbose]``: compile the CPU kernels ahead of time."""

import argparse
import logging
import sys

from snn5.kernels.build import cache_dir, kernel_error, load_cpu_kernels


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m snn5.kernels")
    parser.add_argument("command", choices=["build"])
    parser.add_argument("--verbose", action="store_true", help="show the compiler output")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    module = load_cpu_kernels(verbose=args.verbose)
    if module is None:
        print(f"CPU kernels not built: {kernel_error('cpu')}", file=sys.stderr)
        return 1
    print(f"CPU kernels ready in {cache_dir()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
