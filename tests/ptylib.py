"""Commands on a real terminal: stderr on a pty (pexpect), stdout into a file, so what the
terminal shows and what the command prints as its result are told apart."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pexpect

from tests.support import REPO

GUARD = 60  # seconds: a hang guard, not a pass/fail criterion
SGR = re.compile(r"\x1b\[[0-9;]*m")
ERASE = "\r\x1b[K"


def spawn(args: list[str], out: Path, cwd: Path, **env: str) -> pexpect.spawn:  # type: ignore[type-arg]
    """condatainer ARGS with stderr on a pty and stdout into `out`."""
    full = {**os.environ, "PYTHONPATH": str(REPO), "TERM": "xterm", "OUT": str(out), **env}
    return pexpect.spawn(
        "/bin/sh",
        ["-c", 'exec "$@" >"$OUT"', "sh", sys.executable, "-m", "condatainer", *args],
        cwd=str(cwd),
        env=full,
        encoding="utf-8",
        timeout=GUARD,
        dimensions=(24, 200),
    )


def finish(child: pexpect.spawn) -> str:  # type: ignore[type-arg]
    """Everything the terminal got until the command ended; asserts it succeeded."""
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    return str(child.before)
