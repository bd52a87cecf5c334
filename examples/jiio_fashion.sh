#!/usr/bin/env bash
# Train a JIIO-MDEQ decoder on Fashion-MNIST (installed offline: apt-get install dataset-fashion-mnist), then run
# every inverse task on 64 test images, compare JIIO with the Adam baseline, inpaint under a mask of our own,
# and draw samples with FID.
# About 7 minutes on two CPU cores; add --device cuda to each command on a GPU.
# Rerunnable: a rerun continues the decoder's training where it stopped (--resume; EPOCHS=N to train on to N
# epochs), then restores again, replacing the earlier restorations (--overwrite).
set -euo pipefail
FASHION=${FASHION:-/usr/share/datasets/fashion-mnist}
OUT=${1:-runs/fashion}
EPOCHS=${EPOCHS:-10}

# Train (decoder.pt after every epoch, so an interrupted run continues from its last one), then reconstruct.
resume=()
if [ -f "$OUT/decoder.pt" ]; then resume=(--resume); fi
inr jiio-invert --task reconstruct --data "$FASHION/train-images-idx3-ubyte.gz" --train-count 2000 \
    --epochs "$EPOCHS" "${resume[@]}" --images "$FASHION/t10k-images-idx3-ubyte.gz" --count 64 --out "$OUT"
for task in inpaint denoise; do
    inr jiio-invert --task "$task" --decoder "$OUT/decoder.pt" --images "$FASHION/t10k-images-idx3-ubyte.gz" \
        --count 64 --method both --out "$OUT/$task" --overwrite --json --quiet |
        python3 -c 'import json, sys; r = json.load(sys.stdin); j = r["methods"]["jiio"]; c = r["comparison"]
masked = r["task"] == "inpaint"  # inpainting: PSNR of the hidden square; denoising: of the whole image
before, after = (r["corrupted_psnr_masked"], j["psnr_masked"]) if masked else (r["corrupted_psnr"], j["psnr"])
print("%s: PSNR%s %.2f -> %.2f dB | JIIO vs Adam %.1fx (equal iterations), %.1fx (equal loss)" % (r["task"],
      " of the hidden square" if masked else "", before, after, c["equal_iterations"]["time_ratio"],
      c["equal_loss"]["time_ratio"]))'
done
# Inpaint what a mask of your own marks white: a cross, one mask for every image (or give one per image).
python3 -c 'import sys, numpy as np; from PIL import Image
mask = np.zeros((28, 28), np.uint8); mask[6:22, 12:15] = 255; mask[13:16, 4:24] = 255
Image.fromarray(mask).save(sys.argv[1])' "$OUT/cross.png"
inr jiio-invert --task inpaint --decoder "$OUT/decoder.pt" --images "$FASHION/t10k-images-idx3-ubyte.gz" \
    --count 8 --mask "$OUT/cross.png" --out "$OUT/cross" --overwrite --quiet
inr sample "$OUT/decoder.pt" -n 64 --fid "$FASHION/t10k-images-idx3-ubyte.gz" --fid-count 1000
