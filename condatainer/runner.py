"""The one door to the outside: every external program condatainer starts goes through here.

`run` captures output and returns a `Result`; `start` starts a program the same way and
returns at once (`Running.wait` gives the Result); `stream` lets the program talk to the
terminal; `exec_` replaces this process; `trace`, when set, is told each program as it starts
(`-v`).  Captured input and output go through anonymous files in memory, not pipes.
A missing program is a `ToolMissingError` naming the package to install, never a
FileNotFoundError traceback.  Tests may swap `run_hook` to record or fake the
calls of `run` (`stream` and `exec_` hand the terminal over and are not hooked).

Interrupts: a program that writes into an image must not be killed halfway (Python's
subprocess.run SIGKILLs its child on KeyboardInterrupt).  `run(..., new_session=True)` puts it
in a session of its own, out of reach of the terminal's Ctrl-C, and `signals.deferred()` lets
the caller finish what it started before acting on SIGINT/SIGTERM/SIGHUP (signals.py owns the
handlers; it is imported where they are used, so `exec_` -- the Apptainer path -- loads
neither `signal` nor its enums).  `stream` ignores SIGINT/SIGQUIT while its child runs: the
child gets them from the terminal and decides.

A program in a session of its own no longer dies with us when the terminal goes, and a
SIGKILL of condatainer would leave it writing an image whose lock died with us.
`run(..., holding=FDS)` closes that gap: the program inherits the locked descriptors in `FDS`
(an image's, a recovery record's), so the locks stay held for as long as it runs, and it is
killed when this process dies (PR_SET_PDEATHSIG), so it cannot run on alone.  Callers pass it
only once the record that lets the next command roll the work back exists.
"""

from __future__ import annotations

import errno
import os
import sys

from condatainer.errors import ToolMissingError
from condatainer.record import Record

# The exec path replaces itself with Apptainer through `exec_`: what only `run`, `stream` and
# `which` need (subprocess, shutil, threading) is imported when they are called.
TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    import subprocess
    from collections.abc import Callable, Mapping, Sequence
    from typing import NoReturn

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
SBIN = ("/usr/sbin", "/sbin", "/usr/local/sbin")


class Result(Record):
    """What a finished program left behind."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def which(name: str) -> str | None:
    """Find `name` on PATH, then in the sbin directories e2fsprogs use (as `shutil.which`
    looks, without importing shutil and its compression modules)."""
    if os.sep in name:
        return name if _executable(name) else None
    path = os.environ.get("PATH", os.defpath)
    for directory in (*(path.split(os.pathsep) if path else ()), *SBIN):
        candidate = os.path.join(directory, name)
        if _executable(candidate):
            return candidate
    return None


def _executable(path: str) -> bool:
    return os.access(path, os.X_OK) and not os.path.isdir(path)


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
    new_session: bool = False,
    holding: Sequence[int] = (),
) -> Result:
    data = input.encode() if isinstance(input, str) else input
    running = _popen(argv, _program(argv), new_session, holding, stdin=data, env=env, cwd=cwd)
    return running.wait(timeout)


def _memory_file(opened: list[int]) -> int:
    """A new anonymous file in memory (its descriptor also appended to `opened`).

    A program's input and output go through these rather than pipes: subprocess feeds a pipe
    512 bytes per poll and reads it a chunk per poll, and the debugfs script of a chown of 20k
    files (1.4 MB in, as much echoed back) spent about 100 ms in that loop.  The program reads
    and writes a file at its own pace; we read it once it has exited.
    """
    try:
        fd = os.memfd_create("condatainer-run", os.MFD_CLOEXEC)
    except (AttributeError, OSError):  # not Linux, or a kernel before 3.17
        import tempfile

        with tempfile.TemporaryFile() as spool:
            fd = os.dup(spool.fileno())
    opened.append(fd)
    return fd


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.lseek(fd, 0, os.SEEK_SET)


def _read_all(fd: int) -> str:
    size = os.fstat(fd).st_size
    data = os.pread(fd, size, 0) if size else b""
    return data.decode("utf-8", "surrogateescape")


run_hook: Callable[..., Result] = _run

trace: Callable[[Sequence[str]], None] | None = None
"""Told every program as it starts (`run`, `stream`, `exec_`): the CLI's `-v` shows them."""


def _trace(argv: Sequence[str]) -> None:
    if trace is not None:
        trace(argv)


def run(
    argv: Sequence[str],
    *,
    input: str | bytes | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    timeout: float | None = None,
    new_session: bool = False,
    holding: Sequence[int] = (),
) -> Result:
    """Run a program to completion with its output captured; never raises for a non-zero exit.

    `new_session`: out of reach of the terminal's signals (for programs that write to images;
    combine with `signals.deferred` so this process does not give up on them either).
    `holding`: locked descriptors the program inherits, keeping their locks held while it
    runs; it is killed when this process dies (see the module docstring).
    """
    _trace(argv)
    return run_hook(
        argv,
        input=input,
        env=env,
        cwd=cwd,
        timeout=timeout,
        new_session=new_session,
        holding=holding,
    )


class Running:
    """A program `start` started; `wait()` gives its `Result` once it has exited."""

    def __init__(
        self, argv: Sequence[str], pid: int, files: list[int], proc: subprocess.Popen[bytes] | None
    ):
        self.argv = tuple(argv)
        self.pid = pid
        self._files = files  # stdout, stderr and, after a fork, the child's exec report
        self._proc = proc  # when subprocess started it (`_popen`)
        self._result: Result | None = None
        self._reaped = False

    def wait(self, timeout: float | None = None) -> Result:
        """Wait for the program (`timeout`: subprocess.TimeoutExpired after that many seconds;
        only where subprocess started it); if the wait is interrupted (Ctrl-C) or times out,
        kill it first, like subprocess.run does, and re-raise."""
        if self._result is not None:
            return self._result
        try:
            try:
                proc = self._proc
                returncode = proc.wait(timeout) if proc is not None else self._waitpid()
            except BaseException:
                _kill(self.pid, self._proc)
                raise
            finally:
                self._reaped = True  # its PID may belong to another process from now on
            if self._proc is None:
                failed = _read_report(self._files[2])
                if failed is not None:
                    raise _not_started(self.argv[0], failed)
            stdout, stderr = (_read_all(fd) for fd in self._files[:2])
        finally:
            for fd in self._files:
                os.close(fd)
            self._files = []
        self._result = Result(self.argv, returncode, stdout, stderr)
        return self._result

    def stop(self) -> None:
        """Kill the program (if it still runs) and let go of its output."""
        if not self._reaped and self.pid > 0:
            _kill(self.pid, self._proc)
            self._reaped = True
        for fd in self._files:
            os.close(fd)
        self._files = []

    def _waitpid(self) -> int:
        _, status = os.waitpid(self.pid, 0)
        return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


class _Ran(Running):
    """What `start` returns when `run_hook` is not ours (tests): the hook has already run."""

    def __init__(self, result: Result):
        super().__init__(result.argv, -1, [], None)
        self._result = result


def start(
    argv: Sequence[str], *, new_session: bool = False, holding: Sequence[int] = ()
) -> Running:
    """Start a program the way `run` runs one (output captured, `new_session`, `holding`),
    and return at once: its caller has other work to do meanwhile (`image.create` imports
    what it needs after mke2fs while mke2fs runs).

    Import-light, for `condatainer o`: a plain fork and exec, not subprocess (whose import
    costs more than a small mke2fs).  The child only sets up descriptors, its session and
    PR_SET_PDEATHSIG before exec; where other threads run (a progress line), the fork-safe
    subprocess does it instead.  A `run_hook` set by tests runs here, to completion.
    """
    _trace(argv)
    if run_hook is not _run:
        return _Ran(run_hook(argv, new_session=new_session, holding=holding))
    program = _program(argv)
    threading = sys.modules.get("threading")
    if threading is not None and threading.active_count() > 1:
        return _popen(argv, program, new_session, holding)
    files: list[int] = []
    try:
        stdout, stderr = _memory_file(files), _memory_file(files)
        dies_with_parent = _dies_with_parent() if holding else None
        report_r, report_w = os.pipe()  # CLOEXEC: closed by a successful exec
    except BaseException:
        for fd in files:
            os.close(fd)
        raise
    try:
        pid = os.fork()
        if pid == 0:  # the child: no Python beyond these calls, then exec or _exit
            try:
                os.dup2(stdout, 1)
                os.dup2(stderr, 2)
                if new_session:
                    os.setsid()
                if dies_with_parent is not None:
                    dies_with_parent()
                low = 3  # what we inherited ourselves is not passed on (subprocess's close_fds)
                for fd in sorted({*holding, report_w}):
                    if fd > low:
                        os.closerange(low, fd)
                    low = max(low, fd + 1)
                os.closerange(low, _MAX_FD)
                for fd in holding:
                    os.set_inheritable(fd, True)
                os.execv(program[0], program)
            except BaseException as exc:
                code = exc.errno if isinstance(exc, OSError) and exc.errno else errno.EINTR
                os.write(report_w, str(code).encode())
            finally:
                os._exit(127)
    except BaseException:
        for fd in (*files, report_r):
            os.close(fd)
        raise
    finally:
        os.close(report_w)
    # The report is read by `wait`: the caller goes on at once (a failed exec is rare: the
    # program was found a moment ago).
    return Running(argv, pid, [*files, report_r], None)


_MAX_FD = 1 << 20  # os.closerange closes the range with one close_range(2) where it can


def _not_started(name: str, errno_: int) -> ToolMissingError:
    """A program that was found but could not be executed (removed meanwhile, not executable,
    a broken interpreter line): named, like one that is missing, not an OSError about the
    directory the caller works in."""
    package = PACKAGES.get(os.path.basename(name), os.path.basename(name))
    return ToolMissingError(
        f"'{name}' cannot be run: {os.strerror(errno_)}",
        hint=f"reinstall it (Debian/Ubuntu: apt-get install --reinstall {package}),"
        " then run: condatainer doctor",
    )


def _read_report(fd: int) -> int | None:
    """The errno the child reported before giving up on exec; None when exec succeeded."""
    data = b""
    while True:
        chunk = os.read(fd, 64)
        if not chunk:
            break
        data += chunk
    return int(data) if data else None


def _kill(pid: int, proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None:
        proc.kill()
        proc.wait()
        return
    try:
        os.kill(pid, 9)  # SIGKILL, without importing signal
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def _popen(
    argv: Sequence[str],
    program: list[str],
    new_session: bool,
    holding: Sequence[int],
    *,
    stdin: bytes | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
) -> Running:
    """Start `program` with subprocess: for `run` (with `stdin`, `env` and `cwd`), and for
    `start` where other threads run (subprocess forks safely there)."""
    import subprocess

    files: list[int] = []
    feed = -1
    try:
        if stdin is not None:
            feed = _memory_file(files)
            _write_all(feed, stdin)
        stdout, stderr = _memory_file(files), _memory_file(files)
        try:
            proc = subprocess.Popen(
                program,
                stdin=None if feed < 0 else feed,
                stdout=stdout,
                stderr=stderr,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                start_new_session=new_session,
                pass_fds=tuple(holding),
                preexec_fn=_dies_with_parent() if holding else None,
            )
        except OSError as exc:
            if exc.filename != program[0]:  # the working directory, say: not the program's
                raise
            raise _not_started(argv[0], exc.errno or errno.ENOEXEC) from None
    except BaseException:
        for fd in files:
            os.close(fd)
        raise
    if feed >= 0:  # the program has its own copy
        files.remove(feed)
        os.close(feed)
    return Running(argv, proc.pid, files, proc)


def stream(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    stdout_to_stderr: bool = False,
) -> int:
    """Run a program attached to our terminal and return its exit status (128+N for signal N).

    While it runs, Ctrl-C and Ctrl-\\ are the child's business (the terminal sends them to it
    too); this process waits for it instead of killing it.  `stdout_to_stderr`: the program's
    output is progress for the user, not our result (it must not end up in a pipe or a file
    our stdout goes to).
    """
    import contextlib
    import signal
    import subprocess
    import sys

    from condatainer import signals

    _trace(argv)
    # A progress line on the terminal steps aside while the program has it (terminal.paused);
    # `terminal` is only looked at when something has imported it.
    shown = sys.modules.get("condatainer.terminal")
    with shown.paused() if shown is not None else contextlib.nullcontext():
        proc = subprocess.Popen(
            _program(argv),
            env=dict(env) if env is not None else None,
            cwd=cwd,
            stdout=2 if stdout_to_stderr else None,
        )
        with signals.ignoring(signal.SIGINT, signal.SIGQUIT):
            returncode = proc.wait()
    return 128 - returncode if returncode < 0 else returncode


def exec_(argv: Sequence[str], env: Mapping[str, str]) -> NoReturn:
    """Replace this process with `argv` (looked up on env's PATH); no Python stays behind."""
    _trace(argv)
    try:
        os.execvpe(argv[0], list(argv), dict(env))
    except FileNotFoundError:
        raise ToolMissingError(
            f"'{argv[0]}' is not installed or not on PATH", hint="then run: condatainer doctor"
        ) from None


def _dies_with_parent() -> Callable[[], None]:
    from condatainer import signals

    return signals.dies_with_parent()
