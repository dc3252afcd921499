"""Apptainer-compatible OFD locks, held by real other processes.

A write lock blocks readers and writers; a read lock blocks writers but not readers; the holder's
PID and command are named; a missing or unwritable file gets its own message and is never
reported as "in use"; flock(2) does not see OFD locks, which is why we never use it."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from condatainer.errors import LockError
from condatainer.image import holders, locks
from tests.programs import unprivileged_python
from tests.waiting import lock_on, wait_until

REPO = Path(__file__).resolve().parents[2]
HOLD = (
    "import sys, time\n"
    "from condatainer.image import locks\n"
    "lock = locks.acquire(sys.argv[1], write=sys.argv[2] == 'w')\n"
    "print('held', flush=True)\n"
    "time.sleep(60)\n"
)


@contextmanager
def held(path: Path, mode: str) -> Iterator[subprocess.Popen[str]]:
    """Another process holding a read ('r') or write ('w') OFD lock on `path`."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path), mode],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        yield proc
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "env.img"
    path.write_bytes(b"\0" * 4096)
    return path


def test_free_image_can_be_locked_both_ways(image: Path) -> None:
    locks.probe(image, write=True)
    locks.probe(image, write=False)
    with locks.hold(image, write=True):
        pass
    with locks.hold(image, write=False), locks.hold(image, write=False):
        pass  # two readers in one process


def test_a_writer_blocks_everyone_and_is_named(image: Path) -> None:
    with held(image, "w") as proc:
        for write in (True, False):
            with pytest.raises(
                LockError, match=rf"in use for writing by .*\(PID {proc.pid}\b"
            ) as info:
                locks.probe(image, write=write)
            assert "python" in info.value.message  # the holder's command
            assert info.value.hint
        with pytest.raises(LockError, match="in use for writing"):
            locks.acquire(image, write=False)
    locks.probe(image, write=True)  # released when the holder ended


def test_a_reader_blocks_writers_but_not_readers(image: Path) -> None:
    with held(image, "r") as proc:
        with pytest.raises(LockError, match=rf"in use for reading by .*\(PID {proc.pid}\b"):
            locks.probe(image, write=True)
        locks.probe(image, write=False)
        with locks.hold(image, write=False):
            pass


def test_holders_are_found_through_fdinfo(image: Path) -> None:
    with held(image, "r") as reader:
        found = locks.find_holders(image)
        assert [(h.pid, h.write) for h in found] == [(reader.pid, False)]


def test_flock_is_blind_to_ofd_locks(image: Path) -> None:
    """Why CondaTainer's flock misses Apptainer's lock: both succeed at once."""
    with held(image, "w"), open(image, "rb") as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)  # no error: flock cannot see it
        with pytest.raises(LockError):
            locks.probe(image, write=False)


def test_missing_file_is_not_in_use(tmp_path: Path) -> None:
    for write in (True, False):
        with pytest.raises(LockError) as info:
            locks.probe(tmp_path / "nope.img", write=write)
        assert "no such image file" in info.value.message
        assert "in use" not in info.value.message


def test_directory_is_not_in_use(tmp_path: Path) -> None:
    with pytest.raises(LockError, match="is a directory"):
        locks.probe(tmp_path, write=True)


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory an unprivileged uid can reach (pytest's tmp dirs are 0700)."""
    import shutil
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="cnt-locks-", dir="/tmp"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d)


def as_nobody(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    python, path = unprivileged_python()
    return subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", python, "-c", code, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": path},
        check=False,
    )


@pytest.mark.root
def test_unwritable_file_is_not_in_use(shared_dir: Path) -> None:
    """As an unprivileged user: read-only probe fine, writable probe says 'not writable'."""
    image = shared_dir / "env.img"
    image.write_bytes(b"\0" * 4096)
    image.chmod(0o644)
    code = (
        "import sys\n"
        "from condatainer.image import locks\n"
        "from condatainer.errors import LockError\n"
        "locks.probe(sys.argv[1], write=False)\n"
        "try:\n"
        "    locks.probe(sys.argv[1], write=True)\n"
        "except LockError as e:\n"
        "    print(e.message)\n"
    )
    res = as_nobody(code, str(image))
    assert res.returncode == 0, res.stderr
    assert "not writable by you" in res.stdout
    assert "in use" not in res.stdout


@pytest.mark.root
def test_unreachable_directory_is_not_in_use(shared_dir: Path) -> None:
    hidden = shared_dir / "private"
    hidden.mkdir(mode=0o700)
    code = (
        "import sys\n"
        "from condatainer.image import locks\n"
        "from condatainer.errors import LockError\n"
        "try:\n"
        "    locks.probe(sys.argv[1], write=False)\n"
        "except LockError as e:\n"
        "    print(e.message)\n"
    )
    res = as_nobody(code, str(hidden / "env.img"))
    assert res.returncode == 0, res.stderr
    assert "not searchable by you" in res.stdout


def test_lock_released_when_the_holder_is_killed(image: Path) -> None:
    with held(image, "w") as proc:
        proc.kill()
        proc.wait()
        wait_until(lambda: lock_on(image) is None, "the killed holder's lock to go")
        locks.probe(image, write=True)


# --------------------------------------------------------------------------- naming the holder

# A process that locks the image, attaches the locked open file to a loop device, mounts it and
# exits: the mount keeps the loop device, the device keeps the open file, the file keeps the
# lock.  No process holds it any more (as after a container whose mount is being torn down).
MOUNT_LOCKED = """
import fcntl, os, struct, sys
from condatainer.run.runtime import _linux
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.fcntl(fd, 37, struct.pack("hhqqi4x", fcntl.F_WRLCK, 0, 0, 0, 0))  # F_OFD_SETLK
device, loop_fd = _linux.loop_attach(fd, read_only=False, name=sys.argv[1])
_linux.mount(device, sys.argv[2], "ext3", _linux.MS_NODEV | _linux.MS_NOSUID)
print(device)
"""


@pytest.mark.root
def test_a_lock_held_by_a_mount_names_its_loop_device(tmp_path: Path) -> None:
    """Issue 10 #5: `overlay info` and the probe agree, and the holder is named."""
    from condatainer.image import info
    from condatainer.image.create import create

    img = create(tmp_path / "env.img", 64 * 1024 * 1024, "balanced", sparse=True).path
    where = tmp_path / "mnt"
    where.mkdir()
    res = subprocess.run(
        [sys.executable, "-c", MOUNT_LOCKED, str(img), str(where)],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        check=True,
    )
    device = res.stdout.strip()
    try:
        with pytest.raises(LockError, match=f"in use for writing by loop device {device}"):
            locks.probe(img, write=False)
        assert info.info(img).in_use == (f"for writing by {locks.unseen_holder(img)}",)
        assert device in locks.unseen_holder(img)
    finally:
        subprocess.run(["umount", str(where)], check=True)
    wait_until(lambda: lock_on(img) is None, "the loop device to let go of the image")
    assert info.info(img).in_use == ()


def test_a_holder_that_is_leaving_is_looked_for_again(
    image: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 10 #7: the holder scan races with the holder exiting; it looks again."""
    real = locks.find_holders
    calls = []

    def late(path: str | os.PathLike[str]) -> list[holders.Holder]:
        calls.append(path)
        return [] if len(calls) < 3 else real(path)

    monkeypatch.setattr(locks, "find_holders", late)
    with held(image, "w") as proc, pytest.raises(LockError) as err:
        locks.acquire(image, write=True)
    assert f"(PID {proc.pid}" in err.value.message and "in use for writing by " in err.value.message
    assert len(calls) == 3


def test_a_holder_that_left_is_no_conflict(image: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The lock was free again when we looked: it is simply taken."""
    with held(image, "w") as proc:
        fd = os.open(image, os.O_RDWR)
        try:
            monkeypatch.setattr(
                locks, "find_holders", lambda path: (proc.kill(), proc.wait(), [])[-1]
            )
            assert locks._conflict(image, fd, True) is None
        finally:
            os.close(fd)
    locks.acquire(image, write=True).release()
