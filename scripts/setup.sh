#!/usr/bin/env bash
# One-command set-up: a virtual environment in .venv with jaxdistil and everything its tests need.
#   bash scripts/setup.sh          # CPU (plain jax, CPU torch for HF conversion/parity tests)
#   bash scripts/setup.sh --cuda   # NVIDIA GPU (jax[cuda12])
# VENV=path overrides the location.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${VENV:-.venv}"
python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
# Pin torch first: an unpinned torch would pull a multi-GB CUDA build just to read checkpoints.
"$venv/bin/python" -m pip install -q "torch==2.13.0"
extras="dev,torch"
[ "${1:-}" = "--cuda" ] && extras="$extras,cuda"
"$venv/bin/python" -m pip install -q -e ".[$extras]"
"$venv/bin/python" -c "import jax, flax, optax, orbax.checkpoint, grain, transformers, torch; print('jaxdistil ready:', 'jax', jax.__version__, jax.devices())"
