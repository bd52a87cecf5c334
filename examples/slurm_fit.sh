#!/usr/bin/env bash
# Fit a folder of images across the GPUs of several SLURM nodes with torchrun: every GPU takes every K-th image.
# The run folder must be on a filesystem every node sees. Submit with, e.g.:
#   sbatch --nodes=2 --ntasks-per-node=1 --gpus-per-node=4 examples/slurm_fit.sh /data/kodak runs/kodak
#SBATCH --job-name=inr-fit
#SBATCH --time=02:00:00
set -euo pipefail
folder=${1:?usage: slurm_fit.sh FOLDER OUT [inr options...]}
out=${2:?usage: slurm_fit.sh FOLDER OUT [inr options...]}
shift 2
gpus_per_node=${SLURM_GPUS_ON_NODE:-$(nvidia-smi -L | wc -l)}
head_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)

# One torchrun per node (srun starts one per node); they meet at the first node. Whichever process becomes rank 0
# reads the list of inputs from its stdin and shares it, so every node's torchrun reads the same list file.
mkdir -p "$(dirname "$out")"
find "$folder" -maxdepth 1 -type f \( -iname '*.png' -o -iname '*.jpg' \) | sort > "$out.inputs.txt"
srun --kill-on-bad-exit=1 bash -c "torchrun \
  --nnodes=$SLURM_JOB_NUM_NODES --nproc_per_node=$gpus_per_node \
  --rdzv_id=$SLURM_JOB_ID --rdzv_backend=c10d --rdzv_endpoint=$head_node:29500 \
  -m inr_cli fit image - --out '$out' --json --quiet $* < '$out.inputs.txt'" > "$out.jsonl"
echo "reports: $out.jsonl, table: $out/summary.md"
