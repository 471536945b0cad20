#!/usr/bin/env bash
# Train the models of docs/results.md. Usage: bash docs/results/train_models.sh OUT_DIR [JOB]
# JOB is one of horse-reset, pets, pets-reset, default; without it every job runs in turn.
# Each job is one training run of three learning-rate phases chained with --resume,
# inside a wall-clock budget, on one PyTorch thread.
set -euo pipefail
OUT=${1:?usage: train_models.sh OUT_DIR [JOB]}
JOB=${2:-all}
DATA=${NCA_SHARED_DATA:-$(cd "$(dirname "$0")/../../.." && pwd)/shared/data}
mkdir -p "$OUT"

# The recipe of the horse run in docs/training.md: 8.2K parameters (9.8K with the reset gate).
MODEL="--state-channels 24 --hidden-channels 64 --num-layers 3 --perception depthwise --no-residual"
COMMON="--batch-size 8 --grad-clip 1.0 --iterations 1000000 --checkpoint-every 100 --threads 1"

# train_in_phases RUN_DIR MINUTES OPTIONS...: 1e-2 for 1/3 of the budget, 2e-3 for 2/5, 5e-4 for the rest.
train_in_phases() {
    local run=$1 minutes=$2
    shift 2
    local start
    start=$(date +%s)
    nca train --out "$run" "$@" $MODEL $COMMON --lr 1e-2 --time-limit "$(python3 -c "print($minutes / 3)")"
    nca train --out "$run" --resume --lr 2e-3 --time-limit "$(python3 -c "print($minutes * 0.4)")"
    local left
    left=$(python3 -c "import time; print(round($minutes - (time.time() - $start) / 60 - 0.1, 2))")
    nca train --out "$run" --resume --lr 5e-4 --time-limit "$left"
}

if [[ $JOB == all || $JOB == horse-reset ]]; then
    train_in_phases "$OUT/horse-reset" 30 --data "$DATA/weizmann-horse" --boundary-width 0 --reset-gate
fi
if [[ $JOB == all || $JOB == pets ]]; then
    train_in_phases "$OUT/pets" 10 --data "$DATA/oxford-pet-mini"
fi
if [[ $JOB == all || $JOB == pets-reset ]]; then
    train_in_phases "$OUT/pets-reset" 10 --data "$DATA/oxford-pet-mini" --reset-gate
fi
if [[ $JOB == all || $JOB == default ]]; then
    train_in_phases "$OUT/default" 8 --reset-gate
fi
