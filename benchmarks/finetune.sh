#!/bin/bash
# Fine-tuning against training from scratch at noise levels the shipped models never saw
# (issue 18): BSD68's 396 training images at sigma 10 and 50, PSNR on its 68 test images at
# the same sigma after every 250 steps, then the learning curves (results/finetune/sigmaS).
#
#     bash benchmarks/finetune.sh [RUNS_FOLDER]     # default runs/; ~2.6 h on 2 cores
#
# Each run resumes where it stopped (rerun the script); a run already in curve.csv is skipped. Fine-tuning:
# --init-from a shipped model, --lr 1e-4 cosine, 2000 steps; scratch: width 32, lr 4e-4 cosine,
# 8000 steps; both batch 16, mixed_bfloat16, patches 64x64. Step times for the time axis were
# measured with nothing else running (Intel Xeon AVX-512 BF16, 2 cores); change them for yours.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
RUNS=${1:-runs}
COMMON="--dataset bsd68 --precision mixed_bfloat16 --batch-size 16 --lr-schedule cosine
        --keep-checkpoints 0 --save-steps 250 --model-dir $RUNS"

OUT=results/finetune
# step times for the time axis (seconds per step, alone on the CPU above)
SECONDS_PER_STEP="scratch=0.2276 N2S=0.2245 N2SP=0.235 w64=0.5875"

run() {  # sigma name steps start script args...: train, then score every 250th checkpoint.
  # Skipped when curve.csv already has the run's last step (its checkpoints may be gone).
  local sigma=$1 name=$2 steps=$3 start=$4 script=$5; shift 5
  local csv="$OUT/sigma$sigma/curve.csv" seconds="" pair
  if [ -e "$csv" ] && grep -q "^$name,$steps," "$csv"; then echo "$name: done"; return; fi
  $PY "$script" $COMMON --data-dir "Denoising_data/sigma$sigma" --noise-sigma "$sigma" \
      --steps "$steps" --name "$name" "$@"
  for pair in $SECONDS_PER_STEP; do seconds="$seconds s$sigma-$pair"; done
  $PY -m benchmarks.curve "$name" --model-dir "$RUNS" --data-dir "Denoising_data/sigma$sigma" \
      ${start:+--start "$name=$start"} --seconds-per-step $seconds --out "$OUT/sigma$sigma" \
      --title "BSD68 at sigma $sigma (68 test images): fine-tuned from shipped models vs scratch"
}

for sigma in 10 50; do
  [ -e "Denoising_data/sigma$sigma/BSD68/noise.json" ] ||
    $PY download.py --dataset bsd68 --from ../shared/data/bsd68 --sigma "$sigma"
  run $sigma s$sigma-N2S 2000 trained_models/bsd68-N2S train.py \
      --init-from trained_models/bsd68-N2S --lr 1e-4
  run $sigma s$sigma-N2SP 2000 trained_models/bsd68-N2SP train_pro.py --pro-steps 2000 \
      --init-from trained_models/bsd68-N2SP --lr 1e-4
  run $sigma s$sigma-w64 2000 trained_models/bsd68-w64-N2S train.py \
      --init-from trained_models/bsd68-w64-N2S --lr 1e-4
  run $sigma s$sigma-scratch 8000 "" train.py --filters 32
done
