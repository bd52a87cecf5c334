"""Benchmark: how glibc's allocator is set up for CPU fits whose tensors are over 32 MiB (inr_core/host_memory.py).

Each case is an `inr fit` command run three ways, interleaved over --repeats rounds:

- 4 KiB pages: ``GLIBC_TUNABLES=glibc.malloc.hugetlb=0``. Each large tensor is mapped afresh every step and
  faulted in page by page (what `inr` did before it asked for huge pages);
- huge pages: the `inr` command as it starts by default (it starts itself again with
  ``glibc.malloc.hugetlb=1`` where the kernel gives transparent huge pages on request);
- heap only: 4 KiB pages and ``MALLOC_MMAP_MAX_=0``. Nothing is mapped afresh, so nothing is faulted in again,
  but the heap fragments: the alternative that was measured and not taken.

For each run it prints the training seconds (from the report), the whole command's wall, the kernel's seconds,
the page faults and the peak resident memory of the process, then the median of each mode with its speed-up on
the 4 KiB-page runs.

    python benchmarks/host_allocator.py                 # camera 256 px and an SDF, about 5 minutes on 2 cores
    python benchmarks/host_allocator.py --large         # also Gabor-iMFN 1L-256D on camera 512 px
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_args import at_least
from inr_core.host_memory import environment_with_huge_pages

MODES = {
    "4 KiB pages": {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"},
    "huge pages": {},
    "heap only": {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0", "MALLOC_MMAP_MAX_": "0"},
}


def cases(folder: Path, large: bool) -> dict[str, list[str]]:
    import trimesh

    torus = folder / "torus.obj"
    trimesh.creation.torus(1.0, 0.35).export(torus)
    chosen = {
        "SIREN 3x256, camera 256 px, 40 steps": ["image", "--resize", "256", "--steps", "40"],
        "SIREN 3x256, SDF of a torus, 60 steps": ["sdf", str(torus), "--steps", "60"],
    }
    if large:
        chosen["Gabor-iMFN 1L-256D, camera 512 px, 6 steps"] = [
            "image", "--model", "gabor-imfn", "--hidden", "256", "--layers", "1", "--steps", "6"]
    return chosen


def run(args: list[str], mode: dict[str, str], out: Path) -> dict:
    """One `inr fit` in a fresh process: its report's training seconds and the process's own resource use."""
    env = {key: value for key, value in os.environ.items() if key not in ("GLIBC_TUNABLES", "MALLOC_MMAP_MAX_")}
    env.update(mode)
    command = [sys.executable, "-m", "inr_cli", "fit", *args, "--device", "cpu", "--eval-every", "0", "--json",
               "--quiet", "--out", str(out)]
    with tempfile.TemporaryFile("w+") as errors:
        started = time.perf_counter()
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=errors, text=True)
        stdout = process.stdout.read()
        # Reaped by wait4, not by Popen.wait: wait4 also reports the child's own resource use.
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        process.stdout.close()
        if process.returncode != 0:
            errors.seek(0)
            raise SystemExit(f"{' '.join(command)} failed:\n{errors.read()}")
    report = json.loads(stdout.splitlines()[-1])
    return {"train": report["seconds"], "wall": wall, "kernel": usage.ru_stime, "faults": usage.ru_minflt,
            "rss_mb": usage.ru_maxrss / 1024, "tunables": report["versions"].get("glibc_tunables")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2, help="interleaved rounds of the three modes")
    parser.add_argument("--large", action="store_true",
                        help="also a 512-px Gabor-iMFN fit (about 7 GB of memory in heap-only mode)")
    args = parser.parse_args()
    at_least(parser, "--repeats", args.repeats, 1)
    if environment_with_huge_pages({}) is None:
        print("note: here glibc is older than 2.35 or the kernel's transparent huge pages are not in madvise mode, "
              "so the `inr` command does not start itself again: 'huge pages' runs as '4 KiB pages' does")
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        for name, fit_args in cases(folder, args.large).items():
            print(f"\n{name}")
            print(f"{'mode':<13}{'train s':>9}{'wall s':>8}{'kernel s':>10}{'faults':>12}{'peak MB':>9}"
                  "  GLIBC_TUNABLES")
            results: dict[str, list[dict]] = {mode: [] for mode in MODES}
            for round_ in range(args.repeats):
                for mode, env in MODES.items():
                    out = folder / f"{name}-{mode}-{round_}".replace(" ", "_").replace(",", "")
                    result = run(fit_args, env, out)
                    results[mode].append(result)
                    print(f"{mode:<13}{result['train']:>9.1f}{result['wall']:>8.1f}{result['kernel']:>10.1f}"
                          f"{result['faults']:>12,}{result['rss_mb']:>9,.0f}  {result['tunables']}", flush=True)
            base = statistics.median(r["train"] for r in results["4 KiB pages"])
            for mode, runs in results.items():
                train = statistics.median(r["train"] for r in runs)
                wall = statistics.median(r["wall"] for r in runs)
                peak = max(r["rss_mb"] for r in runs)
                print(f"  median {mode:<12} train {train:.1f} s ({base / train:.2f}x), wall {wall:.1f} s, "
                      f"peak {peak:,.0f} MB")


if __name__ == "__main__":
    main()
