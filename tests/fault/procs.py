"""What the fault harness sees of processes, locks, loop devices and mounts, from /proc and /sys.

The harness makes itself a child subreaper (`become_subreaper`), so every process a killed
condatainer leaves behind -- a tool in a session of its own, a container's init -- is
re-parented to the harness and stays visible as its descendant (`descendants`), however it was
detached.  `Proc.writer` says whether a process writes an image or a file of one: the tools
condatainer runs for writing (not resize2fs's `-P` estimate, not a read-only debugfs or
`e2fsck -n`), and any process of a container (its own PID namespace).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import glob
import os
import struct
from dataclasses import dataclass
from pathlib import Path

_PR_SET_CHILD_SUBREAPER = 36
_PF_EXITING = 0x4  # /proc/PID/stat flags: the process is in do_exit
_FLOCK = struct.Struct("hhqqi4x")
_OFD_GETLK: int = getattr(fcntl, "F_OFD_GETLK", 36)
_MY_PID_NS = os.readlink("/proc/self/ns/pid")

WRITING_TOOLS = {"mke2fs", "resize2fs", "e2undo", "e2image", "zstd"}


def become_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    comm: str
    argv: tuple[str, ...]
    in_container: bool  # in another PID namespace than ours

    @property
    def writer(self) -> bool:
        if self.in_container:
            return True
        if self.comm in WRITING_TOOLS:
            return "-P" not in self.argv
        if self.comm == "debugfs":
            return "-w" in self.argv
        if self.comm == "e2fsck":
            return "-n" not in self.argv
        return False

    def show(self) -> str:
        if self.in_container:
            return f"container:{self.comm}"
        return self.comm


def _read_proc(pid: int) -> Proc | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
        head, _, tail = stat.rpartition(b")")
        fields = tail.split()
        if fields[0] in (b"Z", b"X") or int(fields[6]) & _PF_EXITING:
            return None  # dead, or dying: its files are closed, it writes no more
        comm = head.split(b"(", 1)[1].decode("utf-8", "replace")
        argv = tuple(
            a.decode("utf-8", "replace")
            for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if a
        )
        ns = os.readlink(f"/proc/{pid}/ns/pid")
    except (OSError, IndexError):
        return None
    return Proc(pid, int(fields[1]), comm, argv, ns != _MY_PID_NS)


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        with contextlib.suppress(OSError):
            out += [int(c) for c in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()]
    return out


def descendants(root: int | None = None) -> list[Proc]:
    """Live (not zombie) descendants of `root` (default: this process), read from the
    kernel's children lists: quick enough to poll every few milliseconds."""
    found: list[Proc] = []
    todo = _children(os.getpid() if root is None else root)
    while todo:
        pid = todo.pop()
        p = _read_proc(pid)
        if p is not None:
            found.append(p)
        todo += _children(pid)
    return found


def reap() -> None:
    """Collect the exit status of every child that has ended (orphans re-parented to us)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def locked(path: Path) -> bool:
    """Whether anyone holds an OFD/POSIX lock on `path` (False when it does not exist)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        got = fcntl.fcntl(fd, _OFD_GETLK, _FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0))
        return bool(_FLOCK.unpack(got)[0] != fcntl.F_UNLCK)
    finally:
        os.close(fd)


def loops_under(directory: Path) -> list[str]:
    """Loop devices whose backing file lies in `directory`."""
    found = []
    prefix = str(directory) + "/"
    for backing in glob.glob("/sys/block/loop*/loop/backing_file"):
        with contextlib.suppress(OSError):
            if Path(backing).read_text().strip().startswith(prefix):
                found.append(backing.split("/")[3])
    return found


def mounts_of(directory: Path) -> list[str]:
    """Mount points (in our namespace) that lie in `directory` or come from condatainer."""
    text = Path("/proc/self/mountinfo").read_text()
    out = []
    for line in text.splitlines():
        point = line.split()[4]
        if point.startswith(str(directory)) or "/condatainer-" in point:
            out.append(point)
    return out


def staging_left() -> list[str]:
    """Staging directories of the builtin runtime whose process has ended."""
    left = []
    for d in glob.glob("/run/condatainer-*") + glob.glob("/tmp/condatainer-*"):
        try:
            pid = int(os.path.basename(d).split("-")[1])
        except (IndexError, ValueError):
            continue
        if _read_proc(pid) is None:
            left.append(d)
    return left
