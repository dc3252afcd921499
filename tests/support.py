"""Fixtures for end-to-end tests: the local channel, a CLI runner.

`world` builds the local conda channel once per session and points both the envs' channels
(config `channels`) and condatainer's own micromamba (config `micromamba_channel`) at it, with
the builtin runtime.  No micromamba is on PATH: condatainer bootstraps it from the channel into
the test's own `$XDG_DATA_HOME` on first need, as it does for a user (the channel's micromamba
package holds the stand-in, bound to this interpreter, which has py-rattler).
`world_base` is a real SIF base image with that interpreter in it (tests/world/rootfs.py).
`cnt(...)` runs `python -m condatainer ...` as a separate process with that environment, the way
a user runs it, and returns the CompletedProcess.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.world import build_channel

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class World:
    channel: Path

    @property
    def url(self) -> str:
        return f"file://{self.channel}"


@pytest.fixture(scope="session")
def world_channel(tmp_path_factory: pytest.TempPathFactory) -> World:
    return World(build_channel(tmp_path_factory.mktemp("channel")))


@pytest.fixture(scope="session")
def world_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test world's base image: a real SIF holding a root filesystem assembled from host
    files, with the test interpreter in it (tests/world/rootfs.py).  Needs mksquashfs and
    siftool; built once per session (a few seconds)."""
    from condatainer import runner
    from tests.conftest import _missing
    from tests.world.rootfs import build_base

    for tool in ("mksquashfs", "siftool"):
        if runner.which(tool) is None:
            _missing(f"needs {tool!r} on PATH (squashfs-tools, siftool)")
    return build_base(tmp_path_factory.mktemp("world-base"))


def without_micromamba(path: str) -> str:
    """PATH without directories that hold a `micromamba`: the world has none but its channel's."""
    dirs = path.split(os.pathsep)
    return os.pathsep.join(d for d in dirs if not d or not os.path.exists(f"{d}/micromamba"))


@pytest.fixture
def world(world_channel: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    monkeypatch.setenv("PATH", without_micromamba(os.environ["PATH"]))
    monkeypatch.setenv("CNT_CHANNELS", world_channel.url)
    monkeypatch.setenv("CNT_MICROMAMBA_CHANNEL", world_channel.url)
    monkeypatch.setenv("CNT_RUNTIME", "builtin")
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    yield world_channel


@pytest.fixture
def wd(tmp_path: Path) -> Path:
    """An empty directory of the test's own (tmp_path also holds the isolated HOME)."""
    path = tmp_path / "w"
    path.mkdir()
    return path


def copy_checkout(dest: Path) -> Path:
    """A copy of this checkout at `dest` without venvs, git and caches, for tests that build or
    install from it (so the real checkout never gets build/ or *.egg-info); returns `dest`."""
    if not dest.exists():
        shutil.copytree(
            REPO,
            dest,
            ignore=shutil.ignore_patterns(
                ".venv*", ".git", "__pycache__", ".*_cache", "*.egg-info"
            ),
        )
    return dest


def cnt(
    *args: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    input: str | None = None,
    timeout: float = 120,
    **kw: Any,
) -> subprocess.CompletedProcess[str]:
    """Run the condatainer CLI in a new process; output captured as text."""
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = str(REPO)
    if env:
        full_env.update(env)
    return subprocess.run(
        [sys.executable, "-m", "condatainer", *args],
        cwd=cwd,
        env=full_env,
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **kw,
    )


def debugfs_cat(image: Path, inner: str) -> str | None:
    res = subprocess.run(
        ["debugfs", "-R", f"cat {inner}", str(image)], capture_output=True, text=True, check=False
    )
    if "File not found" in res.stderr or res.returncode != 0:
        return None
    return res.stdout


def ok(res: subprocess.CompletedProcess[str], *, code: int = 0) -> subprocess.CompletedProcess[str]:
    """Assert an exit code, showing the output when it differs."""
    assert res.returncode == code, (
        f"exit {res.returncode}\nstdout:\n{res.stdout}\nstderr:\n{res.stderr}"
    )
    return res


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Any]:
    """Mount tmpfs filesystems of a chosen size; all unmounted afterwards."""
    mounts: list[Path] = []

    def mount(size: str) -> Path:
        mnt = tmp_path / f"tmpfs{len(mounts)}"
        mnt.mkdir()
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], check=True
        )
        mounts.append(mnt)
        return mnt

    try:
        yield mount
    finally:
        for mnt in reversed(mounts):
            subprocess.run(["umount", "-l", str(mnt)], check=False)
