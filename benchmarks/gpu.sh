#!/usr/bin/env bash
# The paper config's distillation step on one GPU, with its MFU.
#
# configs/paper.py's step: teacher camembert-base's shape (12 layers × 768, 12 heads, FFN 3072,
# vocabulary 32005), student 6 × 768 (DistilCamemBERT), blocks of 512 tokens, bf16 compute with
# fp32 master weights; one micro-batch (the paper config accumulates 16 of 32 sequences). Tries the
# micro-batch sizes in $BATCHES, largest first, and reports the first that fits in GPU memory (an
# out-of-memory error moves on to the next; any other error stops). $ATTENTION picks
# jax.nn.dot_product_attention's implementation (xla | cudnn; empty: JAX chooses). Extra arguments
# go to benchmarks/train_step.py and override the config, e.g. `benchmarks/gpu.sh --seq 128`.
#
#   bash scripts/setup.sh --cuda                 # once: jax with the CUDA 12 plugin
#   bash benchmarks/gpu.sh                       # last line: ms_per_step=… tokens_per_s=… mfu=…
#   ATTENTION=cudnn BATCHES="64 32" bash benchmarks/gpu.sh --steps 50
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python)}
BATCHES=${BATCHES:-"64 32 16 8"}
ATTENTION=${ATTENTION:-}
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.95}

"$PYTHON" -c 'import jax, sys; sys.exit(jax.default_backend() != "gpu")' \
  || { echo "no GPU visible to JAX (backend: $("$PYTHON" -c 'import jax; print(jax.default_backend())'))" >&2; exit 2; }

attention=()
[ -n "$ATTENTION" ] && attention=(--attention "$ATTENTION")
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for batch in $BATCHES; do
  echo "=== configs/paper.py, micro-batch $batch, attention ${ATTENTION:-JAX default} ==="
  "$PYTHON" benchmarks/train_step.py --config configs/paper.py --dtype bfloat16 --batch "$batch" --steps 20 \
      "${attention[@]}" "$@" 2>&1 | tee "$log"
  status=${PIPESTATUS[0]}
  if [ "$status" -eq 0 ]; then
    grep -E "^achieved" "$log"
    tail -n 1 "$log"
    exit 0
  fi
  if ! grep -qE "RESOURCE_EXHAUSTED|[Oo]ut of memory" "$log"; then
    echo "benchmark failed (not an out-of-memory error); stopping" >&2
    exit "$status"
  fi
  echo "micro-batch $batch does not fit in GPU memory; trying a smaller one"
done
echo "no micro-batch size in '$BATCHES' fits" >&2
exit 1
