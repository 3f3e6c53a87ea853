"""Compile and load the C++ CPU kernels: once per machine and source version, then cached.

``make setup`` (and ``python -m snn5.kernels build``) compiles ahead of time so the first call
of a model costs no compilation. If the compiler or ninja is missing, or the build fails, the
reference implementation is used and one warning says why.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import sys
from pathlib import Path
from types import ModuleType

import torch

log = logging.getLogger(__name__)

CSRC = Path(__file__).resolve().parent / "csrc"
SOURCES = [CSRC / "neurons_cpu.cpp", CSRC / "event_cpu.cpp", CSRC / "spikes_cpu.cpp",
           CSRC / "diehl_cook_cpu.cpp"]
# -ffp-contract=off: no fused multiply-add, so the rounding matches the reference op by op.
CFLAGS = ["-O3", "-ffp-contract=off", "-fno-math-errno", "-march=native", "-fopenmp"]
LDFLAGS = ["-fopenmp"]
CACHE_ENV = "SNN5_KERNEL_CACHE"
DISABLE_ENV = "SNN5_DISABLE_KERNELS"

_loaded: dict[str, ModuleType | None] = {}
_errors: dict[str, str] = {}


def cache_dir() -> Path:
    """Where compiled kernels live: ``$SNN5_KERNEL_CACHE`` or ``~/.cache/snn5/kernels``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "snn5" / "kernels")


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line
    except OSError:
        pass
    return platform.processor()


def build_key() -> str:
    """Hash of everything the binary depends on: sources, flags, the torch installation and
    interpreter (two environments with the same torch version must not share a build folder:
    their include paths differ and each would make ninja rebuild the other's), CPU features."""
    h = hashlib.sha256()
    parts = [src.read_bytes() for src in SOURCES]
    for part in (*parts, " ".join(CFLAGS).encode(), torch.__version__.encode(),
                 str(Path(torch.__file__).resolve().parent).encode(), sys.prefix.encode(),
                 sys.version.encode(), _cpu_flags().encode()):
        h.update(part)
    return h.hexdigest()[:16]


def load_cpu_kernels(*, verbose: bool = False) -> ModuleType | None:
    """The compiled CPU extension, building it on first use; None if it cannot be built.

    The result is memoised for the process; a failure is logged once.
    """
    if "cpu" in _loaded:
        return _loaded["cpu"]
    module = None
    if os.environ.get(DISABLE_ENV):
        _errors["cpu"] = f"disabled by ${DISABLE_ENV}"
    else:
        try:
            from torch.utils.cpp_extension import load

            name = f"snn5_cpu_{build_key()}"
            build_dir = cache_dir() / name
            build_dir.mkdir(parents=True, exist_ok=True)
            module = load(name=name, sources=[str(src) for src in SOURCES], extra_cflags=CFLAGS,
                          extra_ldflags=LDFLAGS, build_directory=str(build_dir), verbose=verbose)
        except Exception as exc:  # any build problem means: fall back, loudly, once
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            _errors["cpu"] = first
            log.warning("snn5: the fused CPU kernels could not be built (%s); using the "
                        "reference PyTorch implementation. `python -m snn5.kernels build "
                        "--verbose` shows the compiler output.", first)
    _loaded["cpu"] = module
    return module


def kernel_error(name: str) -> str | None:
    """Why a kernel family is not available (None if it loaded or was not tried)."""
    return _errors.get(name)
