"""Measurement machinery shared by the benchmark scripts.

* Workers: each (implementation, size, mode) is measured in a fresh interpreter so that its
  peak RSS (``ru_maxrss``) belongs to that measurement alone. ``run_worker`` starts one, with the
  thread count fixed in the environment, and reads back the JSON line it prints.
* Timing (``measure``): one untimed first call (its duration is kept: for ``torch.compile`` it
  includes compilation), then repeats until at least ``min_repeats`` calls and ``min_time``
  seconds (at most ``max_repeats``); the per-process median is reported.
* Memory: peak RSS of the worker and ΔRSS = peak minus the RSS just before the first call;
  "steady" ΔRSS is the same over the repeated calls only (the kernel's peak counter is reset
  after the first call), which leaves out compilation and first-call imports. On CUDA also
  ``torch.cuda.max_memory_allocated`` and its growth over the same interval.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

RESULT_TAG = "@@RESULT "
MIB = 2.0 ** 20
DEFAULT_SIZES = "32x100x512,16x500x1024,128x25x2048"   # B x T x N
REPO = Path(__file__).resolve().parents[1]
PEERS = ("torch", "snn5", "spikingjelly", "snntorch", "norse", "numpy", "nir", "nirtorch")


# ----------------------------------------------------------------------------- worker side

def rss_now_mib() -> float:
    """Current resident set size of this process (Linux), in MiB."""
    rss = _status_mib("VmRSS")
    return peak_rss_mib() if rss is None else rss   # no /proc: the peak so far bounds it


def _status_mib(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Restart the kernel's peak-RSS counter (VmHWM; Linux >= 4.0). ``ru_maxrss`` is not reset."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MIB if sys.platform == "darwin" else peak / 1024.0   # bytes on macOS, KiB else


def worker_device(spec: dict[str, Any]):
    """A worker's start: its thread count, then its ``torch.device``, or None (after emitting
    the error) when CUDA was asked for and is not there."""
    import torch

    torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    if device.type == "cuda" and not torch.cuda.is_available():
        emit({"error": "--device cuda but torch.cuda.is_available() is False"})
        return None
    return device


def measure(call: Callable[[], Any], device: str, *, min_repeats: int = 3,
            min_time: float = 2.0, max_repeats: int = 20) -> dict[str, Any]:
    """Time ``call`` as described in the module docstring; returns times and memory."""
    import torch

    cuda = device == "cuda"

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    sync()
    rss_before = rss_now_mib()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        gpu_before = torch.cuda.memory_allocated() / MIB
    t0 = time.perf_counter()
    call()
    sync()
    first = time.perf_counter() - t0
    # the peak of the repeated calls alone (leaves out compilation and first-call imports)
    steady = reset_peak_rss()
    times: list[float] = []
    while len(times) < max_repeats and (len(times) < min_repeats or sum(times) < min_time):
        sync()
        t0 = time.perf_counter()
        call()
        sync()
        times.append(time.perf_counter() - t0)
    out = {"median_s": statistics.median(times), "times_s": times, "first_call_s": first,
           "peak_rss_mib": peak_rss_mib(), "rss_before_mib": rss_before}
    out["delta_rss_mib"] = out["peak_rss_mib"] - rss_before
    hwm = _status_mib("VmHWM") if steady else None
    out["steady_delta_rss_mib"] = None if hwm is None else hwm - rss_before
    if cuda:
        peak = torch.cuda.max_memory_allocated() / MIB
        out.update(peak_gpu_mib=peak, delta_gpu_mib=peak - gpu_before)
    return out


def emit(result: dict[str, Any]) -> None:
    """Hand a worker's result to the driver (one tagged JSON line on stdout)."""
    print(RESULT_TAG + json.dumps(result), flush=True)


# ----------------------------------------------------------------------------- driver side

def worker_env(threads: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[key] = str(threads)
    env.update(extra or {})
    return env


def run_worker(script: Path, spec: dict[str, Any], *, threads: int, timeout: float,
               env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``script --worker SPEC`` in a fresh interpreter and return its result dict.

    A crash, a timeout or a missing result becomes ``{"error": ...}`` (never an exception), so
    one failing implementation does not stop the run.
    """
    cmd = [sys.executable, str(script), "--worker", json.dumps(spec)]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              env=worker_env(threads, env))
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s", "wall_s": timeout}
    wall = time.perf_counter() - t0
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_TAG):
            result = json.loads(line[len(RESULT_TAG):])
            result["wall_s"] = wall
            return result
    tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
    return {"error": f"worker exited with {proc.returncode}: {tail}", "wall_s": wall,
            "stderr_tail": proc.stderr[-4000:]}


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PEERS:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_commit() -> str:
    """The commit of the repository (``+dirty`` when snn5/ has uncommitted changes)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
    try:
        sha = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--", "snn5")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return sha + ("+dirty" if dirty else "")


def machine_info(device: str, threads: int) -> dict[str, Any]:
    """What the numbers depend on: CPU, memory, load, versions, commit, threads, device."""
    import torch

    info: dict[str, Any] = {
        "platform": platform.platform(), "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
        "threads": threads, "device": device, "versions": versions(),
        "torch_build": torch.__version__, "snn5_git_commit": git_commit(),
        "load_average_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                                "SNN5_KERNEL_CACHE")},
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    }
    try:
        text = Path("/proc/cpuinfo").read_text()
        info["cpu"] = next(line.split(":", 1)[1].strip() for line in text.splitlines()
                           if line.startswith("model name"))
        info["mem_total_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
                                      / 2 ** 30, 1)
    except (OSError, StopIteration, ValueError):
        pass
    if device == "cuda" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    return info


def parse_sizes(text: str) -> list[tuple[int, int, int]]:
    """``"32x100x512,16x500x1024"`` -> ``[(32, 100, 512), (16, 500, 1024)]`` (B x T x N)."""
    sizes = []
    for part in text.split(","):
        try:
            b, t, n = (int(v) for v in part.lower().split("x"))
        except ValueError:
            raise SystemExit(f"--sizes: {part!r} is not BxTxN (for example 32x100x512)") from None
        sizes.append((b, t, n))
    return sizes


def size_name(size: tuple[int, int, int]) -> str:
    return "x".join(str(v) for v in size)


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def fmt_ms(ms: float) -> str:
    return f"{ms:.2f}" if ms < 10 else f"{ms:.1f}" if ms < 1000 else f"{ms:.0f}"


def fmt(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)
