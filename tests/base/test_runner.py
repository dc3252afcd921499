"""runner.run: what a program reads and writes passes through files in memory, in full."""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import pytest

from condatainer import runner
from condatainer.errors import ToolMissingError


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def test_large_input_and_output_arrive_whole() -> None:
    data = os.urandom(3 << 20).hex()  # 6 MB of text, far beyond any pipe buffer
    before = open_fds()
    res = runner.run(["sh", "-c", "cat; echo done >&2; exit 3"], input=data)
    assert (res.returncode, res.ok) == (3, False)
    assert res.stdout == data
    assert res.stderr == "done\n"
    assert open_fds() == before  # the memory files are closed again


def test_bytes_that_are_not_utf8_survive() -> None:
    raw = bytes(range(256))
    res = runner.run(["cat"], input=raw)
    assert res.stdout.encode("utf-8", "surrogateescape") == raw


def test_empty_input_is_end_of_file_and_no_input_inherits() -> None:
    assert runner.run(["cat"], input=b"").stdout == ""
    assert runner.run(["sh", "-c", "echo out"]).stdout == "out\n"


def test_a_missing_program_is_named_and_leaks_nothing() -> None:
    before = open_fds()
    with pytest.raises(ToolMissingError, match="no-such-tool-here"):
        runner.run(["no-such-tool-here"], input="x")
    assert open_fds() == before


# --------------------------------------------------------------------------- start


def test_start_returns_at_once_and_wait_gives_the_result() -> None:
    before = open_fds()
    running = runner.start(["sh", "-c", "sleep 0.2; echo out; echo err >&2; exit 4"])
    result = running.wait()
    assert (result.returncode, result.stdout, result.stderr) == (4, "out\n", "err\n")
    assert running.wait() is result
    assert open_fds() == before


def test_start_passes_only_the_held_descriptors(tmp_path: Path) -> None:
    held = os.open(tmp_path / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC)
    other = os.open(tmp_path / "other", os.O_RDWR | os.O_CREAT)  # inheritable, not held
    os.set_inheritable(other, True)
    try:
        script = f"test -e /proc/self/fd/{held} && ! test -e /proc/self/fd/{other}"
        assert runner.start(["sh", "-c", script], holding=(held,)).wait().ok
        assert not runner.start(["sh", "-c", f"test -e /proc/self/fd/{held}"]).wait().ok
    finally:
        os.close(held)
        os.close(other)


def test_start_in_a_session_of_its_own() -> None:
    res = runner.start(["sh", "-c", "ps -o sid= -p $$"], new_session=True).wait()
    assert res.ok and int(res.stdout) != os.getsid(0)


def test_a_program_that_cannot_be_run_is_named_at_wait(tmp_path: Path) -> None:
    script = tmp_path / "tool"
    script.write_text("#!/nonexistent/interpreter\n")
    script.chmod(0o755)
    running = runner.start([str(script)])
    with pytest.raises(ToolMissingError) as info:
        running.wait()
    assert info.value.message == f"'{script}' cannot be run: {os.strerror(errno.ENOENT)}"
    assert info.value.hint and "condatainer doctor" in info.value.hint


def test_stop_kills_and_leaks_nothing() -> None:
    before = open_fds()
    running = runner.start(["sleep", "600"])
    running.stop()
    with pytest.raises(ChildProcessError):
        os.waitpid(running.pid, os.WNOHANG)  # already reaped
    assert open_fds() == before


def test_with_other_threads_subprocess_starts_it() -> None:
    release = threading.Event()
    worker = threading.Thread(target=release.wait)
    worker.start()
    try:
        res = runner.start(["sh", "-c", "echo $$"]).wait()
        assert res.ok and int(res.stdout) > 0
    finally:
        release.set()
        worker.join()


def test_run_names_a_program_that_cannot_be_run(tmp_path: Path) -> None:
    script = tmp_path / "tool"
    script.write_text("echo hi\n")  # executable, but no interpreter line: ENOEXEC
    script.chmod(0o755)
    with pytest.raises(ToolMissingError, match=r"'.*tool' cannot be run: Exec format error"):
        runner.run([str(script)])
    with pytest.raises(FileNotFoundError):  # a missing working directory stays what it is
        runner.run(["true"], cwd=str(tmp_path / "nowhere"))


def test_a_timeout_kills_the_program_and_leaks_nothing(tmp_path: Path) -> None:
    import subprocess

    pidfile = tmp_path / "pid"
    before = open_fds()
    with pytest.raises(subprocess.TimeoutExpired):
        runner.run(["sh", "-c", f"echo $$ > {pidfile}; exec sleep 30"], input="x", timeout=0.5)
    pid = int(pidfile.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # killed and reaped, not left running
    assert open_fds() == before


def test_run_passes_env_and_cwd(tmp_path: Path) -> None:
    res = runner.run(["sh", "-c", 'echo "$X"; pwd'], env={"X": "y", "PATH": "/usr/bin:/bin"},
                     cwd=str(tmp_path))  # fmt: skip
    assert res.stdout == f"y\n{tmp_path}\n"
