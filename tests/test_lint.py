"""The lint gate runs inside pytest, so the one test command (.ci/run) covers it too.

ruff (rules in pyproject.toml) and its formatter over the whole repository, mypy --strict over
the package (its `files` setting), shellcheck over the shell scripts we ship or run.  ruff and
mypy come with the `test` extra, so nothing here is skipped for a missing linter; shellcheck
follows the `need` rule (skip locally, fail in CI).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHELL_SCRIPTS = (
    "install.sh",
    ".ci/run",
    ".ci/setup-test-deps.sh",
    # checked together: the up/down scripts source the common file
    "tests/slurm/slurm-common.sh",
    "tests/slurm/slurm-up.sh",
    "tests/slurm/slurm-down.sh",
    "bench/floor_exec.sh",
    "bench/yardstick_create.sh",
    "bench/yardstick_direnv.sh",
)


def run(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False, timeout=600)


def test_ruff_is_clean() -> None:
    res = run([sys.executable, "-m", "ruff", "check", "--no-cache", "."])
    assert res.returncode == 0, res.stdout + res.stderr


def test_ruff_format_is_applied() -> None:
    res = run([sys.executable, "-m", "ruff", "format", "--check", "--no-cache", "."])
    assert res.returncode == 0, res.stdout + res.stderr + "\nrun: ruff format ."


def test_mypy_strict_is_clean() -> None:
    res = run([sys.executable, "-m", "mypy"])  # files and strictness from pyproject.toml
    assert res.returncode == 0, res.stdout + res.stderr


def test_shell_scripts_pass_shellcheck(need: Callable[[str], str]) -> None:
    shellcheck = need("shellcheck")
    scripts = [name for name in SHELL_SCRIPTS if (ROOT / name).exists()]
    assert scripts, "no shell scripts found; is ROOT right?"
    res = run([shellcheck, *scripts])
    assert res.returncode == 0, res.stdout + res.stderr
