"""Recovery records: what an image-writing operation leaves behind so that the next command can
tell, after a crash or a SIGKILL, what was going on and put it right (`recovery`).

Every operation that writes an image or a new file beside one (create, resize, chown, pack,
unpack, and `o -- PKGS` through create) first writes one small record beside its target,
`.<name>.record`, holds an OFD write lock on it for as long as it works, and removes it last:

    {"kind": "condatainer-record", "version": 1, "op": "resize", "target": "env.img",
     "host": "node17", "boot_id": "8efc...", "pid": 4242, "started": 1700000000.0,
     "files": [".env.img.tmp-1a2b3c4d"], "undo": ".env.img.undo-1a2b3c4d",
     "sizes": {"old_length": ..., "old_bytes": ..., "new_bytes": ..., "allocated": true}}

The record names everything the operation may leave: its hidden temporary files
(`.<name>.tmp-XXXXXXXX`, `.copy-`), its undo file (`.undo-`), and for a resize the sizes to go
back to.  It is written once, in one write, before anything else happens, so it never lags
behind what exists.  Recovery only ever touches names of that form in the same directory: a
record is data, and a crafted one cannot make us remove anything else.

Who holds a record (`inspect`):

- its lock is held: **live** -- a process is still at it.  Child tools inherit the locked
  descriptor (`runner.run(..., holding=...)`), so a record stays live while any of them runs.
- its lock is free and it was written on this host since the last boot: **dead** -- the next
  command that would write the target or its directory finishes or rolls back the operation.
- its lock is free but it was written on another host (or before a reboot we cannot vouch
  for): **foreign**.  On Lustre with `localflock`, or NFS without working locks, a live record
  of another node looks dead here, so it is never repaired automatically; it is named, with the
  command that repairs it once its owner is known to be gone.
- empty: its process died between creating it and writing it (nothing else exists yet); the
  next command removes it.

One record per target, so one operation at a time prepares a name: a second `o env.img` while
the first is still installing is refused at once, naming the first one's PID.

Cheap to import, and to write a record with: os and fcntl, no `struct`, no `json` (a record is
written by `jsontext.dumps`; reading one imports json), no `re`, no `pathlib` (paths given as
strings stay strings), no dataclasses (`Data` is `record.Record`):
create writes one before its mke2fs starts (`condatainer o`'s import-light path).  The exec
fast path (`run.replay`) does not import it: it looks for `.<name>.record` by name, so the
naming here and there must agree.

Long on purpose: one small file format and the locking protocol around it -- writing, parsing
untrusted content, deciding who holds a record, claiming a dead one -- are reviewed together.
"""

from __future__ import annotations

import errno
import fcntl
import os
import sys
import time

from condatainer import jsontext, signals
from condatainer.record import Record as Data

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path
    from typing import TypeVar

    P = TypeVar("P", bound="str | Path")  # a path given as a string comes back as one

KIND = "condatainer-record"
VERSION = 1
SUFFIX = ".record"
MAX_BYTES = 64 * 1024  # a record is a few hundred bytes; anything larger is not ours

TEMP_TAGS = ("tmp", "copy", "undo", "tree")  # tree: a directory (create's mke2fs -d)
_HEX = frozenset("0123456789abcdef")

# The struct flock asking for a write lock on the whole file, on Linux (x86_64, aarch64): short
# type, short whence, off_t start and len (0, 0: all of it), pid_t pid, padded to 32 bytes (the
# layout locks.py packs with `struct` for images; spelled out here, where loading struct's
# shared library would cost every create before its mke2fs starts).
_WRITE_LOCK = (
    fcntl.F_WRLCK.to_bytes(2, sys.byteorder) + os.SEEK_SET.to_bytes(2, sys.byteorder) + bytes(28)
)
_OFD_GETLK: int = getattr(fcntl, "F_OFD_GETLK", 36)
_OFD_SETLK: int = getattr(fcntl, "F_OFD_SETLK", 37)
_NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}

LIVE = "live"
DEAD = "dead"
FOREIGN = "foreign"


def path_for(target: P) -> P:
    """Where the record of an operation on `target` lives: `.<name>.record` beside it."""
    return sibling(target, f".{os.path.basename(str(target))}{SUFFIX}")


def sibling(path: P, name: str) -> P:
    """The file `name` in `path`'s directory (`Path.with_name`, for strings too)."""
    return type(path)(os.path.join(os.path.dirname(str(path)), name))


def temp_name(target: str | Path, tag: str, token: str | None = None) -> str:
    """The name of a hidden file an operation on `target` may leave (`files.Temp` uses it);
    `token`: eight hex digits, random unless given."""
    token = os.urandom(4).hex() if token is None else token
    return f".{os.path.basename(target)}.{tag}-{token}"


def _is_token(text: str) -> bool:
    return len(text) == 8 and set(text) <= _HEX


def is_temp_of(name: str, target_name: str) -> bool:
    """Whether `name` is one of the hidden files an operation on `target_name` may leave."""
    prefix = f".{target_name}."
    if not name.startswith(prefix):
        return False
    tag, sep, token = name[len(prefix) :].partition("-")
    return bool(sep) and tag in TEMP_TAGS and _is_token(token)


def boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def host_name() -> str:
    return os.uname().nodename


class Sizes(Data):
    """What a resize changes, to put back: the file's length and the filesystem's size."""

    old_length: int
    old_bytes: int
    new_bytes: int
    allocated: bool


class Facts(Data):
    """A record's content."""

    op: str
    target: str  # the target's file name, in the record's directory
    host: str
    boot_id: str
    pid: int
    started: float
    files: tuple[str, ...] = ()
    undo: str | None = None
    sizes: Sizes | None = None
    locked: bool = True  # False where the filesystem has no OFD locks: liveness by PID
    pid_start: int = 0  # the process's start time (clock ticks after boot), against PID reuse

    def to_json(self) -> dict[str, object]:
        data: dict[str, object] = {
            "kind": KIND,
            "version": VERSION,
            "op": self.op,
            "target": self.target,
            "host": self.host,
            "boot_id": self.boot_id,
            "pid": self.pid,
            "started": self.started,
            "files": list(self.files),
            "undo": self.undo,
            "locked": self.locked,
            "pid_start": self.pid_start,
        }
        if self.sizes is not None:
            data["sizes"] = {
                "old_length": self.sizes.old_length,
                "old_bytes": self.sizes.old_bytes,
                "new_bytes": self.sizes.new_bytes,
                "allocated": self.sizes.allocated,
            }
        return data

    @property
    def local(self) -> bool:
        """Written on this host since its last boot (so its process is known to be gone when
        the lock is free)."""
        return self.host == host_name() and bool(self.boot_id) and self.boot_id == boot_id()

    def where(self) -> str:
        if self.host == host_name() and self.boot_id != boot_id():
            return f"PID {self.pid} on {self.host} (before its last reboot, or another {self.host})"
        return f"PID {self.pid} on {self.host or 'an unknown host'}"


class BadRecord(ValueError):
    """A file with a record's name whose content is not a record we wrote."""


def parse(raw: bytes, target_name: str) -> Facts:
    """The facts of a record, checked: every file it names must be one of `target_name`'s."""
    import json  # only where records are read: writing one is `jsontext.dumps`

    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BadRecord(f"not JSON ({exc.__class__.__name__})") from None
    if not isinstance(data, dict) or data.get("kind") != KIND or data.get("version") != VERSION:
        raise BadRecord("not a condatainer record")

    def text(key: str) -> str:
        value = data.get(key)
        if not isinstance(value, str):
            raise BadRecord(f"{key!r} is missing")
        return value

    def number(value: object, key: str) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise BadRecord(f"{key!r} is not a number")
        return value

    if text("target") != target_name:
        raise BadRecord(f"it is about {data.get('target')!r}, not {target_name!r}")
    files = data.get("files", [])
    undo = data.get("undo")
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        raise BadRecord("'files' is not a list of names")
    names = [*files, *([undo] if undo is not None else [])]
    for name in names:
        if not isinstance(name, str) or not is_temp_of(name, target_name):
            raise BadRecord(f"it names {name!r}, which is not one of {target_name}'s files")
    sizes = None
    raw_sizes = data.get("sizes")
    if raw_sizes is not None:
        if not isinstance(raw_sizes, dict):
            raise BadRecord("'sizes' is not an object")
        sizes = Sizes(
            number(raw_sizes.get("old_length"), "old_length"),
            number(raw_sizes.get("old_bytes"), "old_bytes"),
            number(raw_sizes.get("new_bytes"), "new_bytes"),
            bool(raw_sizes.get("allocated")),
        )
    started = data.get("started", 0.0)
    return Facts(
        op=text("op"),
        target=target_name,
        host=text("host"),
        boot_id=text("boot_id"),
        pid=number(data.get("pid"), "pid"),
        started=float(started) if isinstance(started, (int, float)) else 0.0,
        files=tuple(files),
        undo=undo,
        sizes=sizes,
        locked=data.get("locked", True) is not False,
        pid_start=number(data.get("pid_start", 0), "pid_start"),
    )


def _lock(fd: int) -> bool | None:
    """Take an OFD write lock on `fd`: True, False when someone holds it, None without locks."""
    try:
        fcntl.fcntl(fd, _OFD_SETLK, _WRITE_LOCK)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return False
        if exc.errno in _NO_LOCKS:
            return None
        raise
    return True


def _locked_by_someone(fd: int) -> bool | None:
    """Whether another open file holds a lock on `fd`'s file (None: no locks here)."""
    try:
        got = fcntl.fcntl(fd, _OFD_GETLK, _WRITE_LOCK)
    except OSError as exc:
        if exc.errno in _NO_LOCKS:
            return None
        raise
    return int.from_bytes(got[:2], sys.byteorder, signed=True) != fcntl.F_UNLCK


def _same_file(fd: int, path: str | Path) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False
    fst = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (fst.st_dev, fst.st_ino)


def _read(fd: int) -> bytes:
    data = os.pread(fd, MAX_BYTES + 1, 0)
    if len(data) > MAX_BYTES:
        raise BadRecord("too large to be a record")
    return data


def process_start(pid: int) -> int:
    """When process `pid` started (clock ticks after boot, /proc/PID/stat); 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        return int(stat.rsplit(b")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return 0


def _content(fd: int, target_name: str) -> tuple[Facts | None, str | None]:
    """(facts, None), or (None, why not): "empty" when its process died before writing it."""
    try:
        raw = _read(fd)
        return (parse(raw, target_name), None) if raw else (None, "empty")
    except (BadRecord, OSError) as exc:
        return None, str(exc)


def _pid_alive(facts: Facts) -> bool:
    """Without locks: is the process that wrote the record still running?"""
    start = process_start(facts.pid)
    return start != 0 and (facts.pid_start == 0 or start == facts.pid_start)


class Record:
    """A record this process holds: created by `begin`, removed by `end`."""

    def __init__(self, path: str | Path, fd: int, facts: Facts):
        self.path = path
        self.fd = fd
        self.facts = facts

    def file(self, name: str) -> str | Path:
        """The file `name` beside the record (a string when the record's path is one)."""
        return sibling(self.path, name)

    def end(self) -> None:
        """Remove the record (the operation is finished or fully undone) and let go of it."""
        if self.fd < 0:
            return
        with signals.blocked():
            try:
                if _same_file(self.fd, self.path):
                    os.unlink(self.path)
            finally:
                os.close(self.fd)
                self.fd = -1


class Busy(Exception):
    """`begin` found a record already there (live, dead or foreign): see `found`."""

    def __init__(self, found: Found):
        super().__init__(str(found.path))
        self.found = found


def begin(
    target: str | Path,
    op: str,
    *,
    files: Sequence[str] = (),
    undo: str | None = None,
    sizes: Sizes | None = None,
) -> Record:
    """Write and lock the record of `op` on `target`; `Busy` when a record is already there.

    The caller has repaired what it could (recovery.repair_*), so a record found here belongs to
    a live operation, to another host, or died just now.  The record appears locked before it
    has content: whoever finds it empty and unlocked knows its process is gone (a repairer that
    removes it between our create and our lock is noticed, and we start again).
    """
    path = path_for(target)
    pid = os.getpid()
    facts = Facts(
        op=op,
        target=os.path.basename(target),
        host=host_name(),
        boot_id=boot_id(),
        pid=pid,
        started=time.time(),
        files=tuple(files),
        undo=undo,
        sizes=sizes,
        pid_start=process_start(pid),
    )
    for _ in range(100):
        with signals.blocked():
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            except FileExistsError:
                found = inspect(path)
                if found is None:
                    continue  # removed meanwhile: try again
                raise Busy(found) from None
            try:
                locked = _lock(fd)
                if locked is False or not _same_file(fd, path):
                    os.close(fd)  # a repairer took it for a dead one: start again
                    continue
                facts = facts.replace(locked=locked is not None)
                data = jsontext.dumps(facts.to_json()).encode()
                view = memoryview(data)
                while view:
                    view = view[os.pwrite(fd, view, len(data) - len(view)) :]
            except BaseException:
                os.close(fd)
                raise
        return Record(path, fd, facts)
    raise OSError(errno.EAGAIN, "the record kept disappearing", str(path))


class Found(Data):
    """A record found on disk, and who holds it."""

    path: Path
    state: str  # LIVE, DEAD or FOREIGN
    facts: Facts | None  # None: empty (its process died before writing it) or unreadable
    problem: str | None = None  # why the content could not be read, when it could not
    files: tuple[tuple[Path, int], ...] = ()  # existing leftovers, allocated bytes

    @property
    def target(self) -> Path:
        name = self.path.name[1 : -len(SUFFIX)]
        return self.path.with_name(name)

    @property
    def op(self) -> str:
        return self.facts.op if self.facts else "unknown operation"

    @property
    def leftover_bytes(self) -> int:
        return sum(size for _, size in self.files)


def _leftovers(path: Path, facts: Facts | None) -> tuple[tuple[Path, int], ...]:
    if facts is None:
        return ()
    found = []
    for name in (*facts.files, *([facts.undo] if facts.undo else [])):
        p = path.with_name(name)
        try:
            found.append((p, os.stat(p).st_blocks * 512))
        except OSError:
            continue
    return tuple(found)


def inspect(path: str | Path) -> Found | None:
    """Read the record at `path` and say who holds it, without taking its lock (read-only
    commands use this); None when there is no record there."""
    from pathlib import Path  # not on create's way: it is called when a record is there

    path = Path(path)
    target_name = path.name[1 : -len(SUFFIX)]
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        why = "a symbolic link" if exc.errno == errno.ELOOP else f"cannot read it: {exc.strerror}"
        return Found(path, FOREIGN, None, why)
    try:
        held = _locked_by_someone(fd)
        facts, problem = _content(fd, target_name)
    finally:
        os.close(fd)
    return Found(path, _state(held, facts, problem), facts, problem, _leftovers(path, facts))


def _state(held: bool | None, facts: Facts | None, problem: str | None) -> str:
    if held:
        return LIVE
    if facts is None:
        # Empty: its process died before writing it (ours write before anything else).
        # Unreadable content is not ours to judge: left alone, and reported.
        return DEAD if problem == "empty" and held is not None else FOREIGN
    if not facts.local:
        return FOREIGN
    if held is None or not facts.locked:  # no locks here: the PID has to tell
        return LIVE if _pid_alive(facts) else DEAD
    return DEAD


class Claim:
    """A dead record this process has locked, to repair it and then remove it."""

    def __init__(self, path: Path, fd: int, found: Found):
        self.path = path
        self.fd = fd
        self.found = found

    def done(self) -> None:
        """The repair is complete: remove the record."""
        Record(self.path, self.fd, self.found.facts or _EMPTY).end()
        self.fd = -1

    def release(self) -> None:
        """Leave the record as it is (the repair could not be finished)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


_EMPTY = Facts("", "", "", "", 0, 0.0)


def claim(path: str | Path, *, foreign_host: str | None = None) -> Claim | None:
    """Lock the record at `path` for repair if it is dead (or, with `foreign_host`, if it was
    written on that host and its lock is free); None when it is live, gone, or not ours to
    repair."""
    from pathlib import Path

    path = Path(path)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        locked = _lock(fd)
        if locked is False or not _same_file(fd, path):
            os.close(fd)
            return None
        facts, problem = _content(fd, path.name[1 : -len(SUFFIX)])
        state = _state(None if locked is None else False, facts, problem)
        if state == FOREIGN and facts is not None and foreign_host == facts.host:
            state = DEAD
        if state != DEAD:
            os.close(fd)
            return None
        return Claim(path, fd, Found(path, DEAD, facts, problem, _leftovers(path, facts)))
    except BaseException:
        os.close(fd)
        raise


def scan(directory: Path) -> list[Found]:
    """Every record in `directory` (one listing; for writers of the directory, info, doctor)."""
    found = []
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    for name in sorted(names):
        if name.startswith(".") and name.endswith(SUFFIX) and len(name) > len(SUFFIX) + 1:
            one = inspect(directory / name)
            if one is not None:
                found.append(one)
    return found


def unrecorded(directory: Path, records: Sequence[Found]) -> list[tuple[Path, int]]:
    """Hidden temporary files of ours that no record names (left by condatainer before 0.2,
    or by a record removed by hand): reported, never removed automatically."""
    named = {p.name for r in records for p, _ in r.files}
    named |= {n for r in records if r.facts for n in (*r.facts.files, r.facts.undo or "")}
    out = []
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return []
    for name in names:
        if not name.startswith(".") or name in named:
            continue
        head, _, token = name.rpartition("-")
        target, _, tag = head[1:].rpartition(".")
        if target and tag in TEMP_TAGS and _is_token(token):
            try:
                out.append((directory / name, os.lstat(directory / name).st_blocks * 512))
            except OSError:
                continue
    return out
