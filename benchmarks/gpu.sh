#!/usr/bin/env bash
# Paper-sized distillation step on one GPU, with its MFU.
#
# Teacher CamemBERT-base shape (12 layers × 768, 12 heads, FFN 3072, vocabulary 32005),
# student 6 × 768 (DistilCamemBERT), sequences of 128 tokens, bf16 compute (fp32 params).
# Tries the batch sizes in $BATCHES, largest first, and reports the first that fits in GPU
# memory (an out-of-memory error moves on to the next; any other error stops). Extra
# arguments go to benchmarks/train_step.py, e.g. `benchmarks/gpu.sh --steps 50`.
#
#   pip install -e '.[cuda]'      # once: jax with the CUDA 12 plugin
#   benchmarks/gpu.sh             # last line: ms_per_step=… tokens_per_s=… mfu=…
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python)}
BATCHES=${BATCHES:-"512 256 128 64 32"}
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.95}

"$PYTHON" -c 'import jax, sys; sys.exit(jax.default_backend() != "gpu")' \
  || { echo "no GPU visible to JAX (backend: $("$PYTHON" -c 'import jax; print(jax.default_backend())'))" >&2; exit 2; }

log=$(mktemp)
trap 'rm -f "$log"' EXIT
for batch in $BATCHES; do
  echo "=== batch $batch × 128 ==="
  "$PYTHON" benchmarks/train_step.py --teacher-layers 12 --student-layers 6 --hidden 768 --heads 12 \
      --ffn 3072 --vocab 32005 --seq 128 --dtype bfloat16 --batch "$batch" --steps 20 "$@" 2>&1 | tee "$log"
  status=${PIPESTATUS[0]}
  if [ "$status" -eq 0 ]; then
    grep -E "^achieved" "$log"
    exit 0
  fi
  if ! grep -qE "RESOURCE_EXHAUSTED|[Oo]ut of memory" "$log"; then
    echo "benchmark failed (not an out-of-memory error); stopping" >&2
    exit "$status"
  fi
  echo "batch $batch does not fit in GPU memory; trying a smaller one"
done
echo "no batch size in '$BATCHES' fits" >&2
exit 1
