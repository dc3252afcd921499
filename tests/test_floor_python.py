"""The oldest Python condatainer claims to support (`requires-python`) really runs it.

HPC users run condatainer with the system Python of their login nodes: RHEL 9's is 3.9.  This
test runs the package tiers (base, image, run, jobs, hook, cli; without the tests that need
root or SLURM, which the main run covers) with `.venv-floor`, which .ci/setup-test-deps.sh
makes from a Python 3.9.  The floor is read from pyproject.toml, so raising `requires-python`
moves the check with it.  Missing: skipped locally, a failure under CI.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.conftest import _missing

REPO = Path(__file__).resolve().parents[1]
FLOOR_PYTHON = REPO / ".venv-floor" / "bin" / "python"
TIERS = ("tests/base", "tests/image", "tests/run", "tests/jobs", "tests/hook", "tests/cli")


def floor() -> tuple[int, int]:
    text = (REPO / "pyproject.toml").read_text()
    m = re.search(r'^requires-python = ">=(\d+)\.(\d+)"', text, re.M)
    assert m, "pyproject.toml names no requires-python floor"
    return int(m.group(1)), int(m.group(2))


def test_the_package_tiers_pass_on_the_floor_python() -> None:
    if not FLOOR_PYTHON.exists():
        _missing(f"no {FLOOR_PYTHON.parent.parent.name}: run .ci/setup-test-deps.sh")
    version = subprocess.run(
        [str(FLOOR_PYTHON), "-c", "import sys; print(*sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert tuple(map(int, version)) == floor(), f"{FLOOR_PYTHON} is Python {'.'.join(version)}"
    res = subprocess.run(
        [
            str(FLOOR_PYTHON),
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-m",
            "not root and not slurm",
            *TIERS,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=3000,
        check=False,
    )
    tail = "\n".join((res.stdout + res.stderr).splitlines()[-40:])
    assert res.returncode == 0, f"on Python {'.'.join(version)}:\n{tail}"
