#!/usr/bin/env bash
# Fit every PNG in a folder with one model and print a PSNR table, using `inr fit image --json`.
# Usage: examples/batch_fit.sh FOLDER [MODEL] [extra inr options...]
set -euo pipefail
folder=${1:?usage: batch_fit.sh FOLDER [MODEL] [inr options...]}
model=${2:-gabor-mfn}
shift $(( $# >= 2 ? 2 : 1 ))
out="runs/batch-${model}-$(date +%Y%m%d-%H%M%S)"

find "$folder" -maxdepth 1 -type f -iname '*.png' | sort \
  | inr fit image - --model "$model" --out "$out" --json --quiet "$@" \
  | python3 -c '
import json, sys
rows = [json.loads(line) for line in sys.stdin]
for r in rows:
    print(f"{r[\"input\"]:<40} {r[\"psnr\"]:7.2f} dB  SSIM {r[\"ssim\"]:.4f}  {r[\"steps_per_second\"]:7.1f} steps/s")
if rows:
    mean = sum(r["psnr"] for r in rows) / len(rows)
    print(f"{len(rows)} images, mean PSNR {mean:.2f} dB -> '"$out"'")
'
