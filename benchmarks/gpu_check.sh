#!/usr/bin/env bash
# The CUDA path, proved in one short run (under 8 minutes on one GPU): the paper preset (2 x 300 BLSTM, D = 20,
# 100- then 400-frame chunks, k-means) on the demo corpus at a tenth of the paper's sizes (2,000 / 500 / 300
# two-speaker mixtures and 300 three-speaker test mixtures), a fixed number of training steps in each curriculum
# phase with mixed precision (precision "auto": autocast on CUDA), then separation of the whole test set on the
# GPU (batched torch k-means) and its evaluation. Prints training steps/s, separation x real time and SDRi.
#
#   bash benchmarks/gpu_check.sh [OUT]           # default OUT: /tmp/dpcl-gpu-check (use a fresh one for figures)
#   GPU_CHECK_STEPS=500 bash benchmarks/gpu_check.sh /tmp/gpu-2
#   GPU_CHECK_DEVICE=cpu GPU_CHECK_SCALE=0.01 GPU_CHECK_STEPS=2 bash benchmarks/gpu_check.sh /tmp/x  # the script
#                                                        # itself, checked on a machine without a GPU (no figures)
#
# It runs the stages by hand (`python -m deepclust reproduce --no-prefect`), so it needs no Prefect server, only
# the project's environment with a CUDA build of torch (PYTHON=... to name another interpreter). Nothing in CI
# needs a GPU: this script is run by hand where one is lent, and its figures go to benchmarks/RESULTS.md with the
# GPU's name, which it prints first. The 100-frame steps/s it prints is what
# `benchmarks/bench_paper_size.py --gpu-steps-per-second` projects a WSJ0 run from.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
OUT=${1:-/tmp/dpcl-gpu-check}
STEPS=${GPU_CHECK_STEPS:-300}
DEVICE=${GPU_CHECK_DEVICE:-cuda}
SCALE=${GPU_CHECK_SCALE:-0.1}
export PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1

"$PY" - "$DEVICE" <<'EOF'
import sys

import torch

if sys.argv[1] == "cpu":
    print("gpu_check: on the CPU (GPU_CHECK_DEVICE=cpu): a check of this script, not a GPU figure")
elif not torch.cuda.is_available():
    sys.exit(f"gpu_check: no CUDA device (torch {torch.__version__}, CUDA build {torch.version.cuda}): "
             "nothing to check")
else:
    print(f"gpu_check: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}")
EOF

began=$(date +%s)
"$PY" -m deepclust reproduce --preset paper --out "$OUT/run" --no-prefect --history "$OUT/history.parquet" \
  --set "mix.scale=$SCALE" \
  --set train.max_epochs=1 --set "train.steps_per_epoch=$STEPS" \
  --set "train.device=$DEVICE" --set train.precision=auto --set train.amp=true \
  --set "separate.device=$DEVICE" --set separate.kmeans=torch
elapsed=$(( $(date +%s) - began ))

"$PY" - "$OUT/run/run.json" "$elapsed" <<'EOF'
import json
import sys

import pandas as pd

from deepclust.reports.paper import paper_table
from deepclust.reports.summary import markdown_table

record = json.load(open(sys.argv[1]))
elapsed = int(sys.argv[2])
history = pd.read_csv(record["stages"]["train"]["folder"] + "/history.csv")
for row in history.itertuples():
    train_seconds = row.seconds - row.val_seconds
    print(f"training: {row.steps / train_seconds:.1f} steps/s of {record['config']['train']['batch_size']} x "
          f"{row.chunk_frames} frames ({row.steps} steps in {train_seconds:.1f} s; cv pass {row.val_seconds:.1f} s)")
separated = pd.read_parquet(record["stages"]["separate"]["manifest"])
done = separated[separated["status"] == "done"]
audio = float(done["duration"].sum())
stage = float(record["stage_seconds"]["separate"])
# The stage's wall time (model load included): items separated in one batch each record the batch's time.
print(f"separation: {len(done)} of {len(separated)} test mixtures, {audio / 60:.1f} min of audio in {stage:.1f} s: "
      f"{audio / stage:.1f}x real time")
summary = pd.read_parquet(record["summary"])
table, condition = paper_table(summary)
print(f"SDRi (dB, {condition}-speaker test mixtures):")
print(markdown_table(table))
print(f"stage seconds: {json.dumps(record['stage_seconds'])}")
print(f"gpu_check: {elapsed} s in all ({'within' if elapsed <= 480 else 'OVER'} the 8-minute budget)")
EOF
