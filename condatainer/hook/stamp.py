"""The hook's stamp: a file that commands rewrite when what the cd hook would find may have changed.

The cd hook looks for an image only when `$PWD` changes, so without help an image created
(`condatainer o`) or allowed (`condatainer allow`) in the current directory would wait for the
next `cd`.  Commands that change what the hook would find or decide -- an image made, allowed or
denied (trust.py calls `touch`) -- write a new token into `<cache>/stamp`; on every prompt the
hook reads that one small file with the shell's own `read` (a builtin: no process is started)
and, when the token differs from the one it saw last, searches again.  An unchanged prompt
therefore still costs no fork: one stat and one read of a few bytes.

The token is the writer's PID and the time in nanoseconds: unique enough that two commands
never write the same one, and only ever compared, never parsed.  The file is replaced
atomically, so a prompt reads the old token or the new one, never half of one; a stamp that
cannot be written (a read-only cache) costs only the wait for the next `cd`.  `touch` imports
nothing beyond os and time (`condatainer o` calls it while its mke2fs runs).
"""

from __future__ import annotations

import os
import time

from condatainer import atomic, xdg

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from pathlib import Path


def path() -> Path:
    """The stamp file: `<cache>/stamp` (the hook file is rendered with this path)."""
    from pathlib import Path

    return Path(_file())


def _file() -> str:
    return os.path.join(xdg.directory("cache"), "stamp")


def touch() -> None:
    """Write a new token: running hooks search again at their next prompt."""
    target = _file()
    try:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        atomic.replace(target, f"{os.getpid()}-{time.time_ns()}\n", 0o644)
    except OSError:
        pass  # the hook then notices at the next cd, as it always did
