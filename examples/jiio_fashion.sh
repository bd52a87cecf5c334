#!/usr/bin/env bash
# Train a JIIO-MDEQ decoder on Fashion-MNIST (installed offline: apt-get install dataset-fashion-mnist), then run
# every inverse task on 64 test images, compare JIIO with the Adam baseline, and draw samples with FID.
# About 6 minutes on two CPU cores; add --device cuda to each command on a GPU.
set -euo pipefail
FASHION=${FASHION:-/usr/share/datasets/fashion-mnist}
OUT=${1:-runs/fashion}

# Train (decoder.pt after every epoch; rerun with --resume --epochs N to continue), then reconstruct.
if [ ! -f "$OUT/decoder.pt" ]; then
    inr jiio-invert --task reconstruct --data "$FASHION/train-images-idx3-ubyte.gz" --train-count 2000 \
        --epochs 10 --images "$FASHION/t10k-images-idx3-ubyte.gz" --count 64 --out "$OUT"
fi
for task in inpaint denoise; do
    inr jiio-invert --task "$task" --decoder "$OUT/decoder.pt" --images "$FASHION/t10k-images-idx3-ubyte.gz" \
        --count 64 --method both --out "$OUT/$task" --json --quiet |
        python3 -c 'import json, sys; r = json.load(sys.stdin); j = r["methods"]["jiio"]
print(r["task"], "masked PSNR", r["corrupted_psnr_masked"] or r["corrupted_psnr"], "->", j["psnr_masked"] or j["psnr"],
      "| JIIO vs Adam x%.1f (equal iterations), x%.1f (equal loss)" % (r["comparison"]["equal_iterations"]["time_ratio"],
      r["comparison"]["equal_loss"]["time_ratio"]))'
done
inr sample "$OUT/decoder.pt" -n 64 --fid "$FASHION/t10k-images-idx3-ubyte.gz" --fid-count 1000
