#!/usr/bin/env bash
# Measure the models of docs/results.md. Usage: bash docs/results/evaluate_models.sh RUNS_DIR OUT_DIR NAME...
# For each NAME (a run directory under RUNS_DIR: horse, horse-reset, pets, pets-reset), write into OUT_DIR:
#   NAME.torch.json, NAME.sync.json, NAME.bernoulli.json, NAME.async.json  IoU on the test split at
#       steps 10, 20, 40, 80, 200, 1000 (PyTorch rollout, then the Numba simulator's schedules);
#   NAME.zarr with its .norms.png and .iou.png  a 2000-step bernoulli run on the test images that
#       swaps to the next image every 40 steps.
set -euo pipefail
RUNS=${1:?usage: evaluate_models.sh RUNS_DIR OUT_DIR NAME...}
OUT=${2:?usage: evaluate_models.sh RUNS_DIR OUT_DIR NAME...}
shift 2
DATA=${NCA_SHARED_DATA:-$(cd "$(dirname "$0")/../../.." && pwd)/shared/data}
STEPS=10,20,40,80,200,1000
mkdir -p "$OUT"

for name in "$@"; do
    case $name in
        horse*) data=$DATA/weizmann-horse; width=0 ;;
        pets*) data=$DATA/oxford-pet-mini; width=2 ;;
        *) echo "unknown run name $name: expected horse... or pets..." >&2; exit 2 ;;
    esac
    run=$RUNS/$name
    nca evaluate "$run" --data "$data" --split test --steps $STEPS --threads 1 --json > "$OUT/$name.torch.json"
    for schedule in sync bernoulli async; do
        nca evaluate "$run" --data "$data" --split test --steps $STEPS --schedule $schedule --json \
            > "$OUT/$name.$schedule.json"
    done
    # The horse rules were trained on binary labels; older rule files do not record that.
    nca simulate --rule "$run/rule.npz" --input "$data" --split test --size 64x64 --steps 2000 \
        --shift-every 40 --change swap --boundary-width $width --overwrite -o "$OUT/$name.zarr"
    nca analyze norms "$OUT/$name.zarr" --json > "$OUT/$name.norms.json"
    nca analyze iou "$OUT/$name.zarr" --json > "$OUT/$name.iou.json"
done
