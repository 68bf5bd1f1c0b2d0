#!/usr/bin/env bash
# Issue 16's equal-time network trials: each variant trains from scratch for the same wall-clock budget on
# the same data (the four real corpora, the shipped recipe's augmentation), seed and held-out speakers, one
# after another at the same thread count; then bench_quality_real.py scores each on the same held-out
# mixtures. A variant resumes from its checkpoint, so a larger budget extends an earlier trial (the budget
# counts every resume). Usage: bash benchmarks/run_network_trials.sh [SECONDS_PER_VARIANT] [THREADS] [OUT]
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_VARIANT=${1:-600}
THREADS=${2:-1}
OUT=${3:-runs/trials}
C=../shared/corpora
mkdir -p "$OUT"
# name | preset | precision | compile
VARIANTS="blstm2x300-fp32 chimera++ fp32 off
blstm2x300-bf16 chimera++ bf16 on
blstm3x400-bf16 chimera++-3x400 bf16 on
conv2-blstm2x400-bf16 chimera++-conv2 bf16 on"
echo "$VARIANTS" | while read -r name preset precision compile; do
  [ -f "$OUT/$name/model.pt" ] && [ -f "$OUT/$name.done-$SECONDS_PER_VARIANT" ] && continue
  .venv/bin/deepclust train-dynamic --source $C/speechocean762 --source $C/librispeech-speakers \
    --source $C/speech-commands --source $C/arabic-speech-commands --preset "$preset" --precision "$precision" \
    --compile "$compile" --chunk-frames 400 --batch-size 16 --steps-per-epoch 50 --epochs 1000 --patience 1000 \
    --room-probability 0.25 --noise-probability 0.35 --noise-root $C/noise --channel-probability 0.25 \
    --threads "$THREADS" --seed 0 --max-seconds "$SECONDS_PER_VARIANT" --out "$OUT/$name" >> "$OUT/$name.log" 2>&1
  touch "$OUT/$name.done-$SECONDS_PER_VARIANT"
done
