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
milliseconds of every call; written on `_signal` and plain classes (no `contextlib`) so that
the image code that uses them stays import-light too (`condatainer o`).
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    import signal as _signal
    from collections.abc import Callable
    from types import FrameType, TracebackType
    from typing import Any, Union

    Handler = Union[Callable[[int, Union[FrameType, None]], Any], int, _signal.Handlers, None]
else:
    import _signal  # `signal` without its enums (see run/runtime/_child.py)


def _in_main_thread() -> bool:
    threading = sys.modules.get("threading")  # not imported: no thread was ever started
    return threading is None or threading.current_thread() is threading.main_thread()


class _Restoring:
    """Puts back the handlers it replaced when its `with` block ends."""

    def __init__(self) -> None:
        self.previous: dict[int, Handler] = {}

    def replace(self, sig: int, handler: Handler) -> None:
        self.previous[sig] = _signal.signal(sig, handler)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        while self.previous:  # once: a second exit finds nothing left to put back
            sig, old = self.previous.popitem()
            _signal.signal(sig, old)


class ignoring(_Restoring):
    """Ignore the signals `which` inside the `with` block (handlers belong to the main thread)."""

    def __init__(self, *which: int) -> None:
        super().__init__()
        self.which = which

    def __enter__(self) -> None:
        if _in_main_thread():
            for sig in self.which:
                self.replace(sig, _signal.SIG_IGN)


DEFERRED_SIGNALS = (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP)


class deferred(_Restoring):
    """Record SIGINT/SIGTERM/SIGHUP instead of acting on them; the caller decides afterwards.

    For work that must not be cut in two (resize2fs, e2fsck repairs, a debugfs write pass):
    run it with `new_session=True`, then look at the signals received (the list `with`
    gives).  Signals already ignored (nohup) stay ignored.
    """

    def __enter__(self) -> list[int]:
        received: list[int] = []
        if _in_main_thread():

            def handler(signum: int, frame: object) -> None:
                received.append(signum)

            for sig in DEFERRED_SIGNALS:
                if _signal.getsignal(sig) != _signal.SIG_IGN:
                    self.replace(sig, handler)
        return received


class Terminated(BaseException):
    """SIGTERM/SIGHUP arrived inside `termination_raises` (raised by its handler)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated(signum)


class termination_raises(_Restoring):
    """Make SIGTERM and SIGHUP raise (like SIGINT does) so cleanup code runs.

    Only signals at their default action are taken over: a program that ignores SIGHUP
    (nohup) or handles SIGTERM itself keeps doing so.  Signal handlers belong to the main thread.
    """

    def __enter__(self) -> None:
        if _in_main_thread():
            for sig in (_signal.SIGTERM, _signal.SIGHUP):
                if _signal.getsignal(sig) == _signal.SIG_DFL:
                    self.replace(sig, _raise_terminated)


class blocked:
    """Hold SIGINT/SIGTERM/SIGHUP back for a few statements that must not be cut in two."""

    def __enter__(self) -> None:
        self.old = _signal.pthread_sigmask(_signal.SIG_BLOCK, DEFERRED_SIGNALS)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _signal.pthread_sigmask(_signal.SIG_SETMASK, self.old)


def name(signum: int) -> str:
    """`SIGTERM` for 15: the one way condatainer names a signal to users."""
    import signal

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
    prctl = _libc_prctl()
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, _signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:
            os.kill(os.getpid(), _signal.SIGKILL)

    return preexec


def _libc_prctl() -> Callable[..., object]:
    """libc's prctl(2), called with plain ints.

    Through `_ctypes`, the C module behind ctypes: a C function pointer needs only its
    calling convention and result type, and ctypes' own Python module costs 2 ms to import,
    paid by every create before its mke2fs starts (`condatainer o`'s import-light path).
    Through ctypes itself wherever that does not work.
    """
    try:
        import _ctypes

        class _Int(_ctypes._SimpleCData):  # type: ignore[type-arg]  # (not generic at runtime)
            _type_ = "i"

        class _Function(_ctypes.CFuncPtr):
            _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
            _restype_ = _Int

        libc = _ctypes.dlopen(None, 0)  # type: ignore[arg-type]  # None: this process's own
        return _Function(_ctypes.dlsym(libc, "prctl"))
    except (ImportError, AttributeError, OSError, TypeError):  # pragma: no cover - not CPython
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl
