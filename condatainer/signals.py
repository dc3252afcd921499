"""Signals: what condatainer does with SIGINT, SIGTERM and SIGHUP while it works.

- `deferred()` records them instead of acting on them, for work that must not be cut in two
  (resize2fs, e2fsck repairs, a debugfs write pass, run with `runner.run(new_session=True)`);
  the caller looks at what arrived afterwards.  Signals already ignored (nohup) stay ignored.
- `termination_raises()` turns SIGTERM/SIGHUP into an exception (`Terminated`, like SIGINT's
  KeyboardInterrupt) so that cleanup code runs.
- `blocked()` holds all three back for a few statements that must not be cut in two.
- `ignoring(...)` ignores some while a child that has the terminal runs (`runner.stream`).
- `dies_with_parent()` makes a child get SIGKILL when we die (PR_SET_PDEATHSIG).
- `name(N)` names a signal the way users see it (`SIGTERM`).

Handlers belong to the main thread: elsewhere these do nothing.  Kept apart from runner.py
so that the exec path (`runner.exec_`) does not import `signal`, whose enums cost a few
milliseconds of every call.
"""

from __future__ import annotations

import os
import signal
from contextlib import contextmanager

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from types import FrameType


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


@contextmanager
def ignoring(*which: signal.Signals) -> Iterator[None]:
    if not _in_main_thread():  # handlers belong to the main thread
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in which}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


DEFERRED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextmanager
def deferred() -> Iterator[list[int]]:
    """Record SIGINT/SIGTERM/SIGHUP instead of acting on them; the caller decides afterwards.

    For work that must not be cut in two (resize2fs, e2fsck repairs, a debugfs write pass):
    run it with `new_session=True`, then look at the signals received.  Signals already
    ignored (nohup) stay ignored.
    """
    received: list[int] = []
    if not _in_main_thread():
        yield received
        return

    def handler(signum: int, frame: object) -> None:
        received.append(signum)

    previous = {}
    for sig in DEFERRED_SIGNALS:
        if signal.getsignal(sig) is not signal.SIG_IGN:
            previous[sig] = signal.signal(sig, handler)
    try:
        yield received
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class Terminated(BaseException):
    """SIGTERM/SIGHUP arrived inside `termination_raises` (raised by its handler)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


@contextmanager
def termination_raises() -> Iterator[None]:
    """Make SIGTERM and SIGHUP raise (like SIGINT does) so cleanup code runs.

    Only signals at their default action are taken over: a program that ignores SIGHUP
    (nohup) or handles SIGTERM itself keeps doing so.  Signal handlers belong to the main thread.
    """
    if not _in_main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Terminated(signum)

    previous = {}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) is signal.SIG_DFL:
            previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextmanager
def blocked() -> Iterator[None]:
    """Hold SIGINT/SIGTERM/SIGHUP back for a few statements that must not be cut in two."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, DEFERRED_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def name(signum: int) -> str:
    """`SIGTERM` for 15: the one way condatainer names a signal to users."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


_PR_SET_PDEATHSIG = 1


def dies_with_parent() -> Callable[[], None]:
    """A `preexec_fn` making the child get SIGKILL when this process dies (PR_SET_PDEATHSIG).

    libc is looked up here, in the parent; the child only makes the call, and kills itself if
    the parent died before the call took effect (it would never get the signal then).
    """
    import ctypes  # here: the exec path never needs it

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec
