#!/usr/bin/env bash
# Fit every PNG in a folder with one model and print a PSNR table, using `inr fit image --json`.
# Usage: examples/batch_fit.sh FOLDER [MODEL] [extra inr options...]
#   e.g. examples/batch_fit.sh photos/ siren --steps 500 --hidden 128
# (inr also writes the run's own table, OUT/summary.md; this shows how a script reads the --json lines.)
set -euo pipefail
folder=${1:?usage: batch_fit.sh FOLDER [MODEL] [inr options...]}
model=${2:-gabor-mfn}
shift $(( $# >= 2 ? 2 : 1 ))
out="runs/batch-${model}-$(date +%Y%m%d-%H%M%S)"

# One JSON line per input, in input order; a failed input's line is {"input", "status": "failed", "error"}.
# inr's exit code is 1 when any input failed, and pipefail hands it on after the table is printed.
find "$folder" -maxdepth 1 -type f -iname '*.png' | sort \
  | inr fit image - --model "$model" --out "$out" --json --quiet "$@" \
  | python3 -c '
import json, sys
rows = [json.loads(line) for line in sys.stdin]
fitted = [r for r in rows if r.get("status") != "failed"]
for r in rows:  # (str.format with the report as keywords: no quotes inside this single-quoted program)
    line = "{input:<40} {psnr:7.2f} dB  SSIM {ssim:.4f}  {steps_per_second:7.1f} steps/s" if r in fitted else \
        "{input:<40} failed: {error}"
    print(line.format(**r))
if fitted:
    mean = sum(r["psnr"] for r in fitted) / len(fitted)
    print("{} of {} images fitted, mean PSNR {:.2f} dB -> {}".format(len(fitted), len(rows), mean, sys.argv[1]))
' "$out"
