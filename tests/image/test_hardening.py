"""Regressions for failures found in review, each reproduced first: a Ctrl-C that killed a
child mid-write, a pack record that overflowed, a superblock field spoofed through the volume
label, a FIFO that hung, a lock query error that escaped, a killed e2fsck explained as nonsense."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from condatainer.errors import ImageError, LockError
from condatainer.image import e2fs, locks
from condatainer.image.check import explain_fsck_exit
from condatainer.image.create import create
from condatainer.image.pack import pack, unpack
from condatainer.image.profiles import resolve_profile
from condatainer.image.sizes import MIB
from tests.support import REPO, cnt, ok
from tests.waiting import wait_until


def sigint_ignored(pid: int) -> bool:
    """Whether process `pid` ignores SIGINT (the SigIgn mask of /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            return bool(int(line.split()[1], 16) & (1 << (signal.SIGINT - 1)))
    return False


def make(tmp_path: Path, name: str = "env.img") -> Path:
    return create(tmp_path / name, 64 * MIB, resolve_profile("balanced"), sparse=True).path


def test_stream_lets_the_child_finish_on_ctrl_c(tmp_path: Path) -> None:
    """Ctrl-C reaches the whole process group; the child decides, we wait for it."""
    marker = tmp_path / "cleaned"
    ready = tmp_path / "ready"
    child = f"trap 'sleep 0.5; echo done > {marker}; exit 130' INT; : > {ready}; sleep 30"
    code = (
        "import sys\n"
        "from condatainer import runner\n"
        f"sys.exit(runner.stream(['sh', '-c', {child!r}]))\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        start_new_session=True,
    )
    # The child's trap is set, and the parent ignores SIGINT while it waits (runner.stream).
    wait_until(lambda: ready.exists() and sigint_ignored(proc.pid), "the child's trap")
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=20) == 130
    assert marker.read_text() == "done\n", "the child's own cleanup ran to the end"


def test_pack_round_trip_with_a_long_non_ascii_name(tmp_path: Path) -> None:
    img = make(tmp_path, "é" * 30 + '"q".img')
    packed = pack(img).output
    subprocess.run(["zstd", "-q", "-t", str(packed)], check=True)
    img.unlink()
    restored = unpack(packed).output
    assert e2fs.superblock(restored).size_bytes == 64 * MIB


def test_unpack_takes_a_size_on_the_command_line(tmp_path: Path) -> None:
    img = make(tmp_path)
    ok(cnt("overlay", "pack", str(img)))
    img.unlink()
    ok(cnt("overlay", "unpack", f"{img}.zst", "-s", "128M"))
    assert e2fs.superblock(img).size_bytes == 128 * MIB


def test_volume_label_cannot_fake_superblock_fields(tmp_path: Path) -> None:
    img = make(tmp_path)
    subprocess.run(
        ["tune2fs", "-M", "x\nFilesystem state:         clean\nBlock count: 1", str(img)],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        ["debugfs", "-w", "-R", "feature needs_recovery", str(img)], check=True, capture_output=True
    )
    sb = e2fs.superblock(img)
    assert sb.block_count * sb.block_size == 64 * MIB
    assert not sb.clean
    with pytest.raises(ImageError, match="not clean"):
        e2fs.require_clean(img)


def test_a_fifo_is_refused_not_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "env.img"
    os.mkfifo(fifo)
    for action in (["overlay", "info"], ["overlay", "check"]):
        res = cnt(*action, str(fifo), timeout=20)
        assert res.returncode == 1 and "not a regular file" in res.stderr
    with pytest.raises(LockError, match="not a regular file"):
        locks.probe(fifo, write=False)


def test_a_lock_query_error_is_explained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    img = make(tmp_path)
    real = fcntl.fcntl

    def no_ofd(fd: int, cmd: int, arg: object = 0) -> object:
        if cmd == 36:  # F_OFD_GETLK
            raise OSError(38, "Function not implemented")
        return real(fd, cmd, arg)  # type: ignore[call-overload]

    monkeypatch.setattr(fcntl, "fcntl", no_ofd)
    with pytest.raises(LockError, match="cannot query its lock"):
        locks.probe(img, write=True)


def test_a_killed_e2fsck_is_explained() -> None:
    assert explain_fsck_exit(-9) == "e2fsck was killed by SIGKILL before it finished"


def test_runner_never_leaks_file_not_found_from_exec(tmp_path: Path) -> None:
    code = (
        "from condatainer import runner\n"
        "from condatainer.errors import ToolMissingError\n"
        "try:\n"
        "    runner.exec_(['no-such-program-xyz'], {'PATH': '/nonexistent'})\n"
        "except ToolMissingError as e:\n"
        "    print(e.message)\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )
    assert "not installed" in res.stdout, res.stderr
