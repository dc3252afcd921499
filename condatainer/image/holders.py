"""Who holds a lock on an image, named so that a user can find it: what it is, where it runs,
since when (`locks` asks when a lock is in its way; `overlay info` and `recovery` too).

OFD locks show PID -1 in /proc/locks, so the owner is found through the `lock:` lines of
/proc/PID/fdinfo (`find_holders`).  A holder is described from /proc (`Holder.describe`):

- **what**: condatainer's own processes by their subcommand, recognised from their argv
  whichever way they were started (the console script, run directly or by its interpreter, or
  `python -m condatainer`): `condatainer e`, `condatainer overlay resize`, and for `exec` the
  command (`condatainer exec python`: a shim); other programs by their argv, cut at 80 characters;
- **where**: the controlling terminal (tty_nr of /proc/PID/stat), else the terminal on its
  standard input, else the SLURM job in its environment (readable for our own processes only);
- **since**: its start time (/proc/PID/stat, after the boot time in /proc/stat), HH:MM today,
  with the date otherwise; and its owner's name when it is not us.

The builtin runtime's relay and init are forks of the command that started them and hold its
locked file too: `topmost` keeps the one whose parent holds nothing.  A lock no visible
process holds is a loop device's (a mount being torn down) or someone /proc does not show
(`unseen_holder`).
"""

from __future__ import annotations

import os

from condatainer.record import Record


class Holder(Record):
    """A process found holding a lock on the image, as `describe` names it to a user."""

    pid: int
    command: str  # its argv as /proc shows it, cut at 80 characters
    write: bool
    program: str = ""  # condatainer's own: `condatainer SUBCOMMAND` (`_program`)
    tty: str = ""  # its terminal (pts/3), or a SLURM job; "" for none
    since: str = ""  # when it started: 14:02 today, else Dec 05 14:02
    user: str = ""  # its owner's name, when it is not us
    ppid: int = 0

    def describe(self) -> str:
        """`condatainer e (PID 20988, pts/3, since 14:02)`: what it is, then how to find it."""
        details = [f"PID {self.pid}" + (f" of {self.user}" if self.user else "")]
        details += [d for d in (self.tty, f"since {self.since}" if self.since else "") if d]
        what = self.program or self.command
        return f"{what} ({', '.join(details)})" if what else details[0]


def unseen_holder(path: str | os.PathLike[str]) -> str:
    """Who holds a lock that no process visible in /proc holds: a loop device, or someone
    /proc does not show."""
    devices = loop_devices(path)
    if devices:
        return (
            f"loop device {', '.join(devices)} (a mount of the image, still attached; it is"
            " released when that mount goes)"
        )
    return "another process (one /proc does not show: another user's, container's or node's)"


def loop_devices(path: str | os.PathLike[str]) -> list[str]:
    """Loop devices attached to `path` (they keep its open file, and with it any OFD lock)."""
    import glob  # only to explain a lock

    found = []
    for backing in sorted(glob.glob("/sys/block/loop*/loop/backing_file")):
        try:
            with open(backing) as f:
                name = f.read().strip()
            if os.path.samefile(name, path):
                found.append("/dev/" + backing.split("/")[3])
        except OSError:
            continue
    return found


def _locks_on(dev: int, ino: int) -> list[tuple[str, bool]]:
    """Lock lines of /proc/locks on (dev, ino): (kind, is_write) for each lock."""
    want = f"{os.major(dev):02x}:{os.minor(dev):02x}:{ino}"
    found = []
    try:
        with open("/proc/locks") as f:
            text = f.read()
    except OSError:
        return []
    for line in text.splitlines():
        parts = line.split()
        if want in parts:
            kind = parts[1] if parts[1] != "->" else parts[2]
            found.append((kind, "WRITE" in parts))
    return found


def find_holders(path: str | os.PathLike[str]) -> list[Holder]:
    """Processes whose open files hold a lock on `path` (those /proc lets us see).

    OFD locks show PID -1 in /proc/locks; the owner is found through the `lock:` lines in
    /proc/PID/fdinfo/FD of a descriptor open on the same device and inode.
    """
    try:
        st = os.stat(path)
    except OSError:
        return []
    if not _locks_on(st.st_dev, st.st_ino):
        return []
    holders: list[Holder] = []
    me = os.getpid()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        fd_dir = f"/proc/{entry.name}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                fst = os.stat(f"{fd_dir}/{fd}")
                if (fst.st_dev, fst.st_ino) != (st.st_dev, st.st_ino):
                    continue
                with open(f"/proc/{entry.name}/fdinfo/{fd}") as f:
                    info = f.read()
            except OSError:
                continue
            for line in info.splitlines():
                if line.startswith("lock:"):
                    holders.append(_holder(entry.name, "WRITE" in line))
                    break
    return holders


def _command(pid: str) -> str:
    text = " ".join(" ".join(word.split()) for word in _argv(pid))  # one line, whatever its argv
    return text if len(text) <= 80 else text[:77] + "..."


def _argv(pid: str) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return []
    return [w.decode("utf-8", "replace") for w in raw.split(b"\0") if w]


# condatainer's commands whose first argument names what they do (`overlay resize`, `mm install`)
_GROUPS = frozenset({"overlay", "mm", "config", "base", "micromamba"})
# Python options that take a value in the next word (`python -X dev -m condatainer`).
_PYTHON_VALUE_OPTIONS = frozenset({"-X", "-W", "-c", "-m", "--check-hash-based-pycs"})


def _program(argv: list[str]) -> str:
    """`condatainer SUBCOMMAND` when `argv` is condatainer's (its console script, run directly
    or by its interpreter, or `python -m condatainer`), else ""; for `exec` (and so a shim)
    with the command's name."""
    words = list(argv)
    if words and os.path.basename(words[0]).startswith("python"):
        words.pop(0)
        while words and words[0].startswith("-"):
            option = words.pop(0)
            if option == "-m":
                if not words or words[0].split(".")[0] != "condatainer":
                    return ""
                words[0] = "condatainer"  # `-m condatainer`, `-m condatainer.entry`
                break
            if option in _PYTHON_VALUE_OPTIONS and words:
                words.pop(0)
    if not words or os.path.basename(words[0]) not in ("condatainer", "cnt"):
        return ""
    rest = [w for w in words[1:] if not w.startswith("-")]
    if not rest:
        return "condatainer"
    shown = rest[:2] if rest[0] in _GROUPS else rest[:1]
    if rest[0] == "exec" and "--" in words:
        after = words[words.index("--") + 1 :]
        shown += [os.path.basename(after[0])] if after else []
    return " ".join(["condatainer", *shown])[:80]


def _tty_name(tty_nr: int) -> str:
    """The terminal a /proc/PID/stat tty_nr names (pts/3, tty2, ttyS0), or ""."""
    major = (tty_nr >> 8) & 0xFFF
    minor = (tty_nr & 0xFF) | ((tty_nr >> 12) & 0xFFF00)
    if 136 <= major <= 143:
        return f"pts/{(major - 136) * 256 + minor}"
    if major == 4:
        return f"tty{minor}" if minor < 64 else f"ttyS{minor - 64}"
    return ""


def _terminal(pid: str, tty_nr: int) -> str:
    """Where the process can be found: its controlling terminal, else the terminal on its
    standard input, else the SLURM job it runs in (when its environment is readable)."""
    name = _tty_name(tty_nr)
    if name:
        return name
    try:
        stdin = os.readlink(f"/proc/{pid}/fd/0")
    except OSError:
        stdin = ""
    if stdin.startswith("/dev/pts/") or stdin.startswith("/dev/tty"):
        return stdin[len("/dev/") :]
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            environ = f.read().split(b"\0")
    except OSError:
        return ""
    job = next((v[len(b"SLURM_JOB_ID=") :] for v in environ if v.startswith(b"SLURM_JOB_ID=")), b"")
    return f"SLURM job {job.decode(errors='replace')}" if job.isdigit() else ""


def _since(start_ticks: int) -> str:
    """A process's start (clock ticks after boot) as a time of day, with the date unless today."""
    import time  # only to name a holder

    try:
        with open("/proc/stat") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith("btime "))
    except (OSError, StopIteration, ValueError, IndexError):
        return ""
    started = time.localtime(boot + start_ticks / os.sysconf("SC_CLK_TCK"))
    today = time.localtime()
    if started[:3] == today[:3]:
        return time.strftime("%H:%M", started)
    return time.strftime("%b %d %H:%M", started)


def _user(pid: str) -> str:
    """The name of the process's owner when it is not us ("" when it is)."""
    try:
        uid = os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return ""
    if uid == os.geteuid():
        return ""
    import pwd  # only to name another user's holder

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _holder(pid: str, write: bool) -> Holder:
    """What /proc tells about the process `pid` holding a lock (see `Holder.describe`)."""
    argv = _argv(pid)
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        ppid, tty_nr, start = int(fields[1]), int(fields[4]), int(fields[19])
    except (OSError, ValueError, IndexError):
        ppid = tty_nr = start = 0
    return Holder(
        int(pid),
        _command(pid),
        write,
        program=_program(argv),
        tty=_terminal(pid, tty_nr),
        since=_since(start) if start else "",
        user=_user(pid),
        ppid=ppid,
    )


def topmost(holders: list[Holder]) -> list[Holder]:
    """The holders whose parent holds no lock on the file: the builtin runtime's relay and init
    (forks of the command that started them, holding its locked file) are that command."""
    pids = {h.pid for h in holders}
    return [h for h in holders if h.ppid not in pids] or holders
