#!/usr/bin/env bash
# Create benchmarks/.venv with the CPU build of torch 2.13.0, snn5 (editable, from this repo)
# and the peer libraries at the versions the benchmark compares against. Idempotent: re-running
# it reuses the environment and only installs what is missing.
#
# torch stays pinned: every peer is installed with --no-deps (their metadata asks for
# torchvision/torchaudio, which have no CPU build here and which nothing imported needs), and
# their light dependencies are listed explicitly below. Override TORCH_SPEC on a CUDA machine.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-$HERE/.venv}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
PEERS=(spikingjelly==2.0.0 snntorch==1.0.0 norse==1.1.0)
# what the peers import at run time (spikingjelly: loguru, scipy, h5py, tqdm; norse: nir, nirtorch)
PEER_DEPS=(numpy scipy h5py tqdm loguru nir nirtorch)
# pytest: tests/export/test_crosscheck.py runs here (the peers are not in the main venv)
TEST_DEPS=("pytest>=8")

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)

"${PIP[@]}" install --quiet "$TORCH_SPEC"
"${PIP[@]}" install --quiet -e "$REPO"          # torch already satisfies snn5's torch>=2.6
"${PIP[@]}" install --quiet --no-deps "${PEERS[@]}"
echo "(pip may report the peers' unmet torchvision/torchaudio/tensorboard/SciencePlots"
echo " requirements below: expected, nothing the benchmarks import needs them)"
"${PIP[@]}" install --quiet "${PEER_DEPS[@]}" "${TEST_DEPS[@]}" "$TORCH_SPEC"   # pin: torch stays

# Compile snn5's fused CPU kernels now (cached in ~/.cache/snn5/kernels, or
# $SNN5_KERNEL_CACHE) so that no measurement waits for the C++ build.
"$VENV/bin/python" -m snn5.kernels build

echo "--- benchmark environment ($VENV)"
"${PIP[@]}" list 2>/dev/null | grep -i -E '^(torch|snn5|spikingjelly|snntorch|norse|numpy|nir|nirtorch) '
"$VENV/bin/python" - <<'PY'
import torch
if "+cpu" not in torch.__version__ and not torch.cuda.is_available():
    raise SystemExit(f"unexpected torch build {torch.__version__}: reinstall with TORCH_SPEC")
import snntorch, norse, spikingjelly  # noqa: F401  (the peers must import without torchvision)
print("torch", torch.__version__, "| peers import fine")
PY
