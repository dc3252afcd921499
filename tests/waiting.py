"""Waiting for events, never for a length of time.

A test that sleeps a second and then assumes the other process got somewhere fails on a loaded
machine.  These helpers wait for the event itself (a lock taken, a file written) and give up
only after `HANG_GUARD` seconds -- a guard against a hung test eating CI's time, not a
pass/fail criterion.
"""

from __future__ import annotations

import fcntl
import os
import struct
import time
from collections.abc import Callable
from pathlib import Path

HANG_GUARD = 120.0

# struct flock on Linux: short type, short whence, off_t start, off_t len, pid_t pid, padding.
_FLOCK = struct.Struct("hhqqi4x")
_OFD_GETLK: int = getattr(fcntl, "F_OFD_GETLK", 36)


def wait_until(
    predicate: Callable[[], object],
    what: str,
    *,
    timeout: float = HANG_GUARD,
    interval: float = 0.02,
) -> None:
    """Return once `predicate()` is true; AssertionError naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def lock_on(path: Path) -> str | None:
    """The strongest OFD/POSIX lock another open file holds on `path`: "write", "read" or None."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        for kind, name in ((fcntl.F_RDLCK, "write"), (fcntl.F_WRLCK, "read")):
            # Asking for a read lock conflicts only with a writer; a write lock with anyone.
            got = fcntl.fcntl(fd, _OFD_GETLK, _FLOCK.pack(kind, os.SEEK_SET, 0, 0, 0))
            if _FLOCK.unpack(got)[0] != fcntl.F_UNLCK:
                return name
        return None
    finally:
        os.close(fd)


def wait_for_lock(path: Path, kind: str, what: str | None = None) -> None:
    """Wait until some process holds a `kind` ("read" or "write") lock on `path`."""
    wait_until(lambda: lock_on(path) == kind, what or f"a {kind} lock on {path}")


def wait_for_file(path: Path, what: str | None = None) -> None:
    wait_until(path.exists, what or f"{path} to appear")


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie (ended, waiting to be reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
