#!/usr/bin/env bash
# One GPU check of the speed work, sized for one device call (under 10 minutes on an H100 or H200):
#   1. benchmarks/speed_modes.py at 512 px, 2000 steps: every model in every precision, eager and compiled,
#      against the plain fp32 loop (rows that would start past a 210 s budget are skipped and listed);
#   2. `inr fit image --steps 2000` (the default model) and `--model gabor-imfn --layers 1`, whole-command wall;
#   3. eight scikit-image photos at 128 px, 300 steps each, in one process through stdin, whole wall;
#   4. Gabor-iMFN 1L-256D in fp32 at seeds 1 and 2 (seed 0 is the benchmark's fp32 eager row): the spread that
#      the implicit-layer paper's single-seed 29.85 dB @2000 should be read against;
#   5. benchmarks/recipe_sweep.py: SIREN 3x256 at 512 px, two learning rates, constant and cosine (time to 30 dB,
#      PSNR @2000).
# Results go to $OUT (the device tool's output folder) or ./gpu-out, each step's as it finishes. Every step has
# its own time limit (about 570 s in all), so a step that hangs or runs long costs only its own share of the call.
#
# Nothing needs carrying: what the GPU image lacks (pypng, PyAV, soundfile, trimesh, libigl) only 16-bit colour
# PNGs, audio, video and shapes import, and this check has none. Run:  bash benchmarks/gpu_check.sh
set -o pipefail
source benchmarks/gpu_env.sh
RUNS=$(mktemp -d)

{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
} 2>&1 | tee "$OUT/gpu.txt"

timeout 270 python3 benchmarks/speed_modes.py --size 512 --steps 2000 --device cuda --budget-seconds 210 \
  --json "$OUT/speed_modes.json" 2>&1 | tee "$OUT/speed_modes.txt"

wall() {  # wall seconds of a command, appended to fits.txt with the command
  local start end
  start=$(date +%s.%N)
  "$@" > "$RUNS/last.jsonl" 2>>"$OUT/fits.txt"
  end=$(date +%s.%N)
  echo "$* : $(python3 -c "print(f'{$end - $start:.1f}')") s wall" | tee -a "$OUT/fits.txt"
  python3 - "$RUNS/last.jsonl" <<'PY' | tee -a "$OUT/fits.txt"
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    history = {h["step"]: h["psnr"] for h in r["history"]}
    print(f"  {r['input']}: {r['model']} psnr {r['psnr']:.2f} dB, {1e3 / r['steps_per_second']:.2f} ms/step, "
          f"train {r['seconds']:.2f} s, eval {r['eval_seconds']:.2f} s, compile {r['compile_seconds']:.1f} s, "
          f"startup {r['startup_seconds']:.1f} s, {r['precision']}, compiled {r['compiled']}, notes {r['notes']}")
PY
}

wall timeout 60 python3 -m inr_cli fit image --steps 2000 --json --quiet --out "$RUNS/camera"
cp "$RUNS/camera/report.json" "$OUT/camera_report.json" 2>/dev/null
wall timeout 60 python3 -m inr_cli fit image --model gabor-imfn --hidden 256 --layers 1 --steps 2000 --json \
  --quiet --out "$RUNS/gabor"
printf 'skimage:%s\n' astronaut camera coffee chelsea rocket coins moon page > "$RUNS/photos.txt"
wall timeout 40 sh -c "python3 -m inr_cli fit image - --resize 128 --steps 300 --json --quiet --out $RUNS/batch \
  < $RUNS/photos.txt"
wall timeout 80 sh -c "for seed in 1 2; do python3 -m inr_cli fit image --model gabor-imfn --layers 1 --steps 2000 \
  --precision fp32 --no-compile --seed \$seed --json --quiet --out $RUNS/gabor-seed\$seed; done"
timeout 60 python3 benchmarks/recipe_sweep.py --size 512 --steps 2000 --device cuda --lrs 1e-4,5e-4 \
  --schedules constant,cosine 2>&1 \
  | tee "$OUT/recipe_sweep.txt"
