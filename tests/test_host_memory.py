"""keep_freed_host_memory: a training step's freed tensors are reused instead of being faulted in afresh (glibc)."""

import json
import subprocess
import sys

import pytest

from helpers import cli_env
from inr_cli.app import does_work, started_as_inr
from inr_core.host_memory import environment_with_huge_pages, restart_command

# Backward passes of a stacked sine network (32 signals, 1,024 points, 64 wide: (32, 1024, 64) activations of
# 8 MiB) in a fresh process; prints whether the setting took and the page faults of the measured steps.
STEPS = """
import resource, sys, torch
from inr_core.host_memory import keep_freed_host_memory
applied = keep_freed_host_memory() if sys.argv[1] == "keep" else None
torch.manual_seed(0)
coords = torch.rand(1024, 2).expand(32, 1024, 2)
weights = [torch.randn(32, 2, 64, requires_grad=True)] + [
    (torch.randn(32, 64, 64) / 64).requires_grad_() for _ in range(3)]
def step():
    z = coords
    for weight in weights:
        z = torch.sin(30 * torch.bmm(z, weight))
    (z ** 2).sum().backward()
for _ in range(6):  # the heap reaches its working size
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    step()
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _page_faults(mode: str) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", STEPS, mode], capture_output=True, text=True, check=True)
    applied, faults = out.stdout.split()
    return applied, int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_a_training_step_reuses_freed_memory_instead_of_faulting_it_in_again():
    applied, kept = _page_faults("keep")
    _, default = _page_faults("default")
    assert applied == "True"
    # glibc's defaults fault in 3,000-7,000 pages a step (a fresh 8 MiB tensor is 2,048); kept, a few whole tensors
    # over the run (0-8,500 pages measured over 10 steps), when the heap grows as freed blocks fragment. Over 20
    # steps the default's faults double and the kept ones hardly grow, so the margin is wide. (glibc's default
    # also adapts its mmap threshold to freed blocks, by the process's history: one run in a full suite measured
    # 32,512 default faults, 1,600 a step, so the floor below asks for half a fresh tensor a step.)
    assert default > 10 * 2048
    assert kept * 4 < default


def _mode_file(tmp_path, text):
    path = tmp_path / "enabled"
    path.write_text(text + "\n")
    return path


def test_huge_pages_are_asked_for_only_where_the_kernel_gives_them_on_request(tmp_path):
    madvise = _mode_file(tmp_path, "always [madvise] never")
    assert environment_with_huge_pages({"HOME": "/root"}, madvise, (2, 36)) == {
        "HOME": "/root", "GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}
    # Other tunables are kept; one naming huge pages already (the user's choice, or an earlier relaunch) wins.
    assert environment_with_huge_pages({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}, madvise, (2, 36)) == {
        "GLIBC_TUNABLES": "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"}
    assert environment_with_huge_pages({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}, madvise, (2, 36)) is None
    assert environment_with_huge_pages({}, madvise, (2, 34)) is None  # the tunable came with glibc 2.35
    for mode in ("[always] madvise never", "always madvise [never]"):
        assert environment_with_huge_pages({}, _mode_file(tmp_path, mode), (2, 36)) is None
    assert environment_with_huge_pages({}, tmp_path / "missing", (2, 36)) is None


def test_only_the_inr_command_running_a_command_starts_itself_again():
    assert started_as_inr("/venv/bin/inr") and started_as_inr("/repo/inr_cli/__main__.py")
    assert not started_as_inr("-c") and not started_as_inr("/usr/bin/pytest") and not started_as_inr("train.py")
    assert does_work(["fit", "image"]) and not does_work([]) and not does_work(["fit", "image", "--help"])


@pytest.mark.skipif(environment_with_huge_pages({}) is None,
                    reason="glibc before 2.35, or transparent huge pages not in madvise mode")
def test_a_fit_runs_with_huge_pages_unless_the_environment_decides_otherwise(tmp_path, camera_u8):
    from PIL import Image

    Image.fromarray(camera_u8[:16, :16]).save(tmp_path / "tiny.png")
    for tunables, expected in ((None, "glibc.malloc.hugetlb=1"), ("glibc.malloc.hugetlb=0", "glibc.malloc.hugetlb=0")):
        env = cli_env()
        env.pop("GLIBC_TUNABLES", None)
        if tunables:
            env["GLIBC_TUNABLES"] = tunables
        # Paths from stdin: the process started again still reads them all.
        done = subprocess.run([sys.executable, "-m", "inr_cli", "fit", "image", "-", "--steps", "2", "--hidden", "8",
                               "--device", "cpu", "--json", "--quiet", "--out", str(tmp_path / f"run-{expected}")],
                              input="tiny.png\ntiny.png\n", cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
        reports = [json.loads(line) for line in done.stdout.splitlines()]
        assert len(reports) == 2
        assert all(report["versions"]["glibc_tunables"] == expected for report in reports)


def test_a_script_is_started_again_through_its_own_name(tmp_path):
    script = tmp_path / "inr"
    script.write_text("#!/usr/bin/env python3\n")
    script.chmod(0o755)
    python = sys.executable
    # Started through its #! line: the script itself, so `ps`, `pgrep inr` and `killall inr` still find it.
    assert restart_command([python, str(script), "fit", "image"], str(script), python) == (
        str(script), [str(script), "fit", "image"])
    # python -m inr_cli, interpreter options, or a file that cannot be executed: the interpreter, as started.
    module = [python, "-m", "inr_cli", "fit"]
    assert restart_command(module, "/repo/inr_cli/__main__.py", python) == (python, module)
    options = [python, "-X", "importtime", str(script), "fit"]
    assert restart_command(options, str(script), python) == (python, options)
    script.chmod(0o644)
    assert restart_command([python, str(script), "fit"], str(script), python) == (python, [python, str(script), "fit"])
