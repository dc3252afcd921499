"""The one door to the outside: every external program condatainer starts goes through here.

`run` captures output and returns a `Result`; `stream` lets the program talk to the terminal;
`exec_` replaces this process.  A missing program is a `ToolMissingError` naming the package to
install, never a FileNotFoundError traceback.  Tests may swap `run_hook` to record calls.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Callable, NoReturn

from condatainer.errors import ToolMissingError

# Which Debian package provides each tool we call, for the hint of a ToolMissingError.
PACKAGES = {
    "mke2fs": "e2fsprogs",
    "debugfs": "e2fsprogs",
    "e2fsck": "e2fsprogs",
    "resize2fs": "e2fsprogs",
    "dumpe2fs": "e2fsprogs",
    "e2image": "e2fsprogs",
    "e2undo": "e2fsprogs",
    "setsid": "util-linux",
    "zstd": "zstd",
    "sbatch": "slurm-client",
}

# e2fsprogs live in /sbin and /usr/sbin, which a plain user's PATH often lacks.
_SBIN = ("/usr/sbin", "/sbin", "/usr/local/sbin")


@dataclass(frozen=True)
class Result:
    """What a finished program left behind."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def which(name: str) -> str | None:
    """Find `name` on PATH, then in the sbin directories e2fsprogs use."""
    found = shutil.which(name)
    if found:
        return found
    return shutil.which(name, path=os.pathsep.join(_SBIN))


def require(name: str) -> str:
    """Like `which`, but a missing program is a ToolMissingError with an install hint."""
    path = which(name)
    if path is None:
        package = PACKAGES.get(name, name)
        raise ToolMissingError(
            f"'{name}' is not installed or not on PATH",
            hint=f"install it (Debian/Ubuntu: apt-get install {package}),"
            " then run: condatainer doctor",
        )
    return path


def _program(argv: Sequence[str]) -> list[str]:
    """argv with its program resolved (bare names through `require`, so missing is explained)."""
    exe = require(argv[0]) if os.sep not in argv[0] else argv[0]
    return [exe, *argv[1:]]


def _run(
    argv: Sequence[str],
    *,
    input: str | bytes | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    timeout: float | None = None,
) -> Result:
    data = input.encode() if isinstance(input, str) else input
    proc = subprocess.run(
        _program(argv),
        input=data,
        capture_output=True,
        env=dict(env) if env is not None else None,
        cwd=cwd,
        timeout=timeout,
        check=False,
    )
    return Result(
        tuple(argv),
        proc.returncode,
        proc.stdout.decode("utf-8", "surrogateescape"),
        proc.stderr.decode("utf-8", "surrogateescape"),
    )


run_hook: Callable[..., Result] = _run


def run(
    argv: Sequence[str],
    *,
    input: str | bytes | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    timeout: float | None = None,
) -> Result:
    """Run a program to completion with its output captured; never raises for a non-zero exit."""
    return run_hook(argv, input=input, env=env, cwd=cwd, timeout=timeout)


def stream(
    argv: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: str | None = None
) -> int:
    """Run a program attached to our terminal and return its exit status (128+N for signal N)."""
    proc = subprocess.run(_program(argv), env=dict(env) if env else None, cwd=cwd, check=False)
    return 128 - proc.returncode if proc.returncode < 0 else proc.returncode


def exec_(argv: Sequence[str], env: Mapping[str, str]) -> NoReturn:
    """Replace this process with `argv` (looked up on env's PATH); no Python stays behind."""
    os.execvpe(argv[0], list(argv), dict(env))
