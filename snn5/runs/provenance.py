"""Where a result came from: versions, commit, device, threads."""

from __future__ import annotations

import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from snn5._version import __version__


def git_commit() -> str:
    """The commit of the snn5 source tree (``+dirty`` with uncommitted changes), or "unknown"."""
    root = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--",
                                "snn5"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return sha + ("+dirty" if dirty.strip() else "")


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_device(device: torch.device) -> str:
    """A human-readable device name, e.g. ``cpu (AMD EPYC ..., 2 threads)``."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({cpu_name()}, {torch.get_num_threads()} threads)"


def provenance(device: torch.device) -> dict[str, Any]:
    """Versions, commit and hardware of this process, for metrics.json (read it when the work
    starts: the source tree may change while a long run trains)."""
    return {
        "snn5_version": __version__,
        "git_commit": git_commit(),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "device": describe_device(device),
        "threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
