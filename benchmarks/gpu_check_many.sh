#!/usr/bin/env bash
# One GPU check of fitting many signals (issue: many signals at once), sized for one device call (~5 minutes on an
# H100 or H200):
#   1. benchmarks/many_images.py, 100 crops of 128 px, SIREN 3x256, 300 steps: one at a time, grouped, and under
#      torchrun with one process; wall, images/s, speed-up, PSNR differences and peak GPU memory
#      (target: grouped >= 10x faster than one at a time, every PSNR within 0.05 dB);
#   2. the same with 32 crops and two torchrun processes sharing the one GPU (the LOCAL_RANK path).
#   3. benchmarks/epoch_order.py: a 99.5 M-point signal's batch order drawn in turn against drawn ahead while
#      the GPU trains (stand-in steps of 5 ms), and whether the batches are the same (~30 s).
# Results go to $OUT (the device tool's output folder) or ./gpu-out.
#
# Nothing needs carrying: what the GPU image lacks (pypng, PyAV, soundfile, trimesh, libigl) only 16-bit colour
# PNGs, audio, video and shapes import, and this check has none. Run:  bash benchmarks/gpu_check_many.sh
set -o pipefail
source benchmarks/gpu_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>&1 | tee "$OUT/gpu.txt"

timeout 330 python3 benchmarks/many_images.py --count 100 --size 128 --steps 300 --hidden 256 --procs 1 \
  --device cuda 2>&1 | tee "$OUT/many_images_100.txt"
timeout 150 python3 benchmarks/many_images.py --count 32 --size 128 --steps 300 --hidden 256 --procs 2 \
  --device cuda 2>&1 | tee "$OUT/many_images_32_two_procs.txt"
timeout 60 python3 benchmarks/epoch_order.py --points 99500000 --batch 262144 --epochs 3 --step-ms 5 \
  --device cuda 2>&1 | tee "$OUT/epoch_order.txt"
