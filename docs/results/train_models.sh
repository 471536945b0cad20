#!/usr/bin/env bash
# Train the models of docs/results.md. Usage: bash docs/results/train_models.sh OUT_DIR [JOB]
# JOB is one of horse, horse-reset, pets, pets-reset, default; without it every job runs in turn.
# horse and default use one cosine learning-rate schedule on 2 PyTorch threads, inside a
# wall-clock budget. horse-reset, pets and pets-reset were trained before the trainer had
# schedules: three learning-rate phases chained with --resume, on one thread each.
set -euo pipefail
OUT=${1:?usage: train_models.sh OUT_DIR [JOB]}
JOB=${2:-all}
DATA=${NCA_SHARED_DATA:-$(cd "$(dirname "$0")/../../.." && pwd)/shared/data}
mkdir -p "$OUT"

# 8.2K parameters (9.8K with the reset gate).
MODEL="--state-channels 24 --hidden-channels 64 --num-layers 3 --perception depthwise --no-residual"

# train_cosine RUN_DIR MINUTES ITERATIONS PEAK_LR MIN_LR OPTIONS...: cosine from PEAK_LR to MIN_LR over
# ITERATIONS, sized to fit in MINUTES on 2 idle cores. The time limit only stops a slower machine.
train_cosine() {
    local run=$1 minutes=$2 iterations=$3 peak=$4 minimum=$5
    shift 5
    nca train --out "$run" "$@" --batch-size 8 --grad-clip 1.0 --lr "$peak" --lr-schedule cosine --min-lr "$minimum" \
        --warmup-iterations 50 --iterations "$iterations" --time-limit "$minutes" --checkpoint-every 250 --threads 2
}

# train_in_phases RUN_DIR MINUTES OPTIONS...: 1e-2 for 1/3 of the budget, 2e-3 for 2/5, 5e-4 for the rest.
train_in_phases() {
    local run=$1 minutes=$2
    shift 2
    local start
    start=$(date +%s)
    nca train --out "$run" "$@" $MODEL --batch-size 8 --grad-clip 1.0 --iterations 1000000 --checkpoint-every 100 \
        --threads 1 --lr 1e-2 --time-limit "$(python3 -c "print($minutes / 3)")"
    nca train --out "$run" --resume --lr 2e-3 --time-limit "$(python3 -c "print($minutes * 0.4)")"
    local left
    left=$(python3 -c "import time; print(round($minutes - (time.time() - $start) / 60 - 0.1, 2))")
    nca train --out "$run" --resume --lr 5e-4 --time-limit "$left"
}

if [[ $JOB == all || $JOB == horse ]]; then
    train_cosine "$OUT/horse" 30 4800 4e-3 2e-5 --data "$DATA/weizmann-horse" --boundary-width 0 $MODEL
fi
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
    # The rule shipped as nca_sim/default_rule/default.npz: 9.8K parameters, the built-in synthetic dataset.
    train_cosine "$OUT/default" 10 1000 1e-2 5e-5 $MODEL --reset-gate
fi
