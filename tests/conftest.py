"""Test isolation and the rules for tests that need root or a tool.

- Every test gets its own HOME and XDG directories under `tmp_path`, and none of the variables
  that would make condatainer behave differently (CNT_*, IN_CONDATAINER, APPTAINER*,
  SINGULARITY*, SLURM_*, PBS_*, LSB_*, _CONDOR_*, SCRATCH): tests never touch the real HOME and
  never depend on the developer's environment.  A test that needs one of them sets it itself.
- TMPDIR is a short directory of its own (`/tmp/cnt-XXXXXXXX`), not inside `tmp_path`:
  pytest's tmp_path can exceed the 107-byte limit of a unix socket path.
- `@pytest.mark.root` tests and the `need(tool)` fixture skip on a developer's machine that
  lacks root or the tool, but FAIL under CI=true: CI must run everything, and a missing install
  step must not hide behind a skip.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Callable, NoReturn

import pytest
from hypothesis import settings

from condatainer import runner
from tests.support import (  # noqa: F401  (fixtures for every tier)
    tmpfs,
    wd,
    world,
    world_base,
    world_channel,
)

IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")

# No test passes or fails by the clock: Hypothesis's per-example deadline (200 ms) would fail a
# correct test on a loaded 2-core machine.  Tests that set their own settings inherit this.
settings.register_profile("condatainer", deadline=None)
settings.load_profile("condatainer")

_CLEARED_PREFIXES = (
    "CNT_",
    "APPTAINER",  # also APPTAINERENV_*
    "SINGULARITY",
    "SLURM_",
    "PBS_",
    "LSB_",
    "_CONDOR_",
)
_CLEARED_NAMES = ("IN_CONDATAINER", "SCRATCH")


def pytest_configure(config: pytest.Config) -> None:
    # pyproject.toml registers `root`; registering again is harmless and keeps this file whole.
    config.addinivalue_line("markers", "root: needs root (loop mounts, overlayfs)")


def _missing(what: str) -> NoReturn:
    """Skip locally, fail under CI."""
    if IN_CI:
        pytest.fail(f"{what} (CI=true: this must run in CI; fix .ci/setup-test-deps.sh)")
    pytest.skip(what)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("root") is not None and os.geteuid() != 0:
        _missing("needs root")


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point HOME, XDG_*, ZDOTDIR and TMPDIR at fresh directories; clear condatainer's variables.

    Yields the test's HOME.
    """
    for name in list(os.environ):
        if name.startswith(_CLEARED_PREFIXES) or name in _CLEARED_NAMES:
            monkeypatch.delenv(name)

    home = tmp_path / "home"
    xdg = {
        "XDG_CONFIG_HOME": home / ".config",
        "XDG_DATA_HOME": home / ".local" / "share",
        "XDG_CACHE_HOME": home / ".cache",
        "XDG_STATE_HOME": home / ".local" / "state",
    }
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("ZDOTDIR", str(home))
    for name, path in xdg.items():
        monkeypatch.setenv(name, str(path))

    base = "/tmp" if os.access("/tmp", os.W_OK) else None
    short_tmp = tempfile.mkdtemp(prefix="cnt-", dir=base)
    monkeypatch.setenv("TMPDIR", short_tmp)
    monkeypatch.setattr(tempfile, "tempdir", short_tmp)  # tempfile caches the old TMPDIR
    try:
        yield home
    finally:
        shutil.rmtree(short_tmp, ignore_errors=True)


@pytest.fixture
def need() -> Callable[[str], str]:
    """`need("zsh")` returns the tool's path; skips locally, fails under CI when it is missing."""

    def _need(tool: str) -> str:
        path = runner.which(tool)
        if path is None:
            _missing(f"needs {tool!r} on PATH")
        return path

    return _need
