"""bench/gpu.py runs its whole course on the tiny models, and says what a CPU cannot do.

Its figures are a GPU's business; what is checked here is that the script measures
every section and that its correctness line holds: a batched picture matches the same
request made alone, and the same seed gives the same picture.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


def _bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu.py"), *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_the_bench_runs_every_section_on_the_tiny_models() -> None:
    run = _bench("--tiny", "--train-steps", "3", "--users", "1", "2", "--reps", "1")
    assert run.returncode == 0, run.stderr[-2000:]
    out = run.stdout
    for section in ("engine/baseline", "engine cold", "engine hot", "LoRA switch p50"):
        assert out.count(section) == 2, section  # tiny and tiny-flux
    assert len(re.findall(r"2 users: .* batched/one-by-one \d+\.\d+x", out)) == 2
    checks = re.findall(r"largest pixel difference (\d+)/255; same seed twice: (\w+)", out)
    assert len(checks) == 2
    for worst, same in checks:
        assert int(worst) <= 2 and same == "True"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_without_cuda_the_full_size_bench_says_so() -> None:
    run = _bench("--family", "sd15")
    assert run.returncode == 2
    assert "needs a CUDA GPU" in run.stdout and "--tiny" in run.stdout
