"""The builtin container runtime: a Plan carried out with loop devices, overlayfs and a private
mount namespace, for machines without Apptainer where we are root (CI, containers, laptops).

`execute(plan)` runs the command attached to the terminal and returns its exit status (128+N
when it is killed by signal N, as Apptainer reports it); `run_captured(plan)` does the same with
stdout and stderr captured; `available()` says why this runtime cannot work here, or None.

How a run goes.  The parent process (this one) takes the lock Apptainer takes on every image
(an OFD write lock for the writable overlay, read locks for read-only ones), then checks its
superblock (a clean filesystem, no journal to recover), and holds the locks until the command
has ended.  It forks a relay, which dies with it (PR_SET_PDEATHSIG) and unshares a mount and a
PID namespace; the relay forks the container's init (PID 1, `_child`), which dies with the
relay and, in the new namespaces, builds this layout:

    /run/condatainer/               staging: a private, unbindable tmpfs (S), mounted in the
                                    container's namespace only (on the host this one fixed
                                    directory stays empty: a killed run leaves nothing)
        0/, 1/, ...                 each image's ext3, on a loop device (ro: read-only device
                                    and MS_RDONLY mount), nodev,nosuid
        base/                       the Plan's base image, when it names one (`_base`): a
                                    SIF's squashfs partition or a squashfs file on a read-only
                                    loop device, or a directory bound read-only
        t/                          a tmpfs holding upper/ and work/ when no overlay is writable
        files/                      with a base: a tmpfs holding its passwd and group files,
                                    with the user's entries added
        root/                       overlayfs:  lowerdir = read-only images' upper/ (first one
                                    on top) : the host's / (or base/)
                                    upperdir/workdir = the writable image's upper/ and work/,
                                    else t/upper, t/work (writes outside /ext3/env discarded)
            /proc                                 a new proc: the container's PID namespace
            <every other host mount below />      rbind (/sys, /dev, /run, ...); with a base
                                                  only /sys, /dev, and the host's
                                                  /etc/resolv.conf, hosts and localtime
            $HOME /tmp /var/tmp cwd               bind, when they live on the host's root fs
                                                  (Apptainer's default binds; with a base:
                                                  wherever they live); with contain:
                                                  private tmpfs (or the workdir) instead
            plan.binds                            rbind, read-only when asked
            /etc/passwd /etc/group                with a base: bind of files/passwd, group
            /ext3                                 read-only, when no overlay is writable

then `pivot_root`s into root/, detaches the old root (the staging tmpfs goes with it) and
forks the command, which drops to
SUDO_UID/SUDO_GID when set and execs with the Plan's environment; the init stays behind to
pass signals on and reap.  The host's `/` is a lower layer, so the
container sees the host system as it is (like Apptainer's default binds, but for everything),
copy-on-write: writes outside the binds and outside `/ext3/env` land in the writable image's
`upper/` (or in the discarded tmpfs), never on the host.  overlayfs does not cross mounts, which
is why every host mount is bound in again on top.  Host mounts are followed as MS_SLAVE (like
Apptainer's `mount slave = yes`): automounts on the host show up inside, nothing we mount leaks
out.

When the command ends, the init ends with its status, the kernel kills whatever the command
left running in the PID namespace, and the mount namespace goes away with every mount in it;
the loop devices are configured with LO_FLAGS_AUTOCLEAR and detach themselves.  A loop device
holds the image's open file description -- the one carrying the OFD lock -- so an image stays
locked for as long as it is mounted, and it is mounted only while the container runs: a killed
condatainer takes the relay, the init and every container process along, and the lock goes
with the last mount.  Nothing outlives the lock, and the lock outlives nothing.

Errors the child meets before exec travel to the parent through a close-on-exec pipe and become
a ContainerError; a pipe closed empty means the exec happened.  A command that cannot be
executed exits 127 (not found) or 126 (not executable) with one line on stderr, like a shell.

Notes on Plan fields: `base_image` (a SIF, a squashfs file or a directory) replaces the host's
root filesystem as the lowest layer; without one, the host's `/` is the base.  `fakeroot` means
"stay root": we are root already, so it only skips the SUDO_UID drop.  GPUs need nothing on the
host root: its /dev (with /dev/nvidia*, /dev/kfd, /dev/dri) and its driver libraries are visible
as they are; on a base image the devices are there but the host's driver libraries are not
(Apptainer's --nv binds them; this runtime does not).  `extra_args` are Apptainer options and
are ignored.  `contain` keeps the host's /dev (not Apptainer's minimal one); `containall` adds
a private IPC namespace.  The PID namespace is always there (Apptainer's `--pid`): the command
is not PID 1 (the init is), so it keeps the default signal handling a command expects.
"""

from __future__ import annotations

import os
import sys

from condatainer.errors import ContainerError, RuntimeUnavailableError
from condatainer.image import clean, locks
from condatainer.record import Record
from condatainer.run.runtime import INSTALL_APPTAINER, _base, _child, _setup
from condatainer.run.runtime import _linux as linux

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (the exec path's rule)
if TYPE_CHECKING:
    import signal
    from collections.abc import Callable

    from condatainer.run.plan import Plan
else:
    import _signal as signal  # `signal` without its enums (see _child)

# Kernel interfaces this runtime needs; module-level so tests can point them elsewhere.
LOOP_CONTROL = "/dev/loop-control"
PROC_FILESYSTEMS = "/proc/filesystems"
MODULES_DIR = "/lib/modules"


# --------------------------------------------------------------------------------------------
# Public API


class Probe(Record):
    """One thing this runtime needs, and whether this machine has it (doctor reports these)."""

    name: str
    ok: bool
    detail: str
    fix: str | None = None


def is_root() -> bool:
    return os.geteuid() == 0


def probes() -> list[Probe]:
    """Everything this runtime needs, checked; the first failure decides `available()`."""
    root = is_root()
    found = [
        Probe("root", True, "running as root")
        if root
        else Probe(
            "root",
            False,
            "it needs root (loop devices, mounts), and this process is not running as root",
            f"run as root (sudo condatainer ...), or {INSTALL_APPTAINER}",
        ),
        Probe("loop devices", True, f"{LOOP_CONTROL} present")
        if os.path.exists(LOOP_CONTROL)
        else Probe(
            "loop devices",
            False,
            f"{LOOP_CONTROL} is missing (no loop device support)",
            "modprobe loop (in a container: start it with --privileged or pass"
            " /dev/loop-control and /dev/loop* devices)",
        ),
        Probe("overlayfs", True, "overlayfs supported")
        if _has_overlayfs()
        else Probe(
            "overlayfs", False, f"overlay is not listed in {PROC_FILESYSTEMS}", "modprobe overlay"
        ),
    ]
    if root:
        found.append(
            Probe("CAP_SYS_ADMIN", True, "mounts allowed")
            if _has_cap_sys_admin()
            else Probe(
                "CAP_SYS_ADMIN",
                False,
                "this root has no CAP_SYS_ADMIN (an unprivileged container?), so it cannot mount",
                f"run condatainer on the host, or {INSTALL_APPTAINER}",
            )
        )
    return found


def available() -> str | None:
    """None when this runtime can work here, else the reason it cannot (`probes`)."""
    failed = next((p for p in probes() if not p.ok), None)
    return None if failed is None else failed.detail


def execute(plan: Plan) -> int:
    """Run `plan.command` in the container attached to the terminal; return its exit status."""
    return _run(plan, None)


def run_captured(plan: Plan, *, stdin: bytes | None = None) -> tuple[int, bytes, bytes]:
    """Run `plan.command` in the container with stdout/stderr captured (stdin: bytes or empty)."""
    io = _CapturedIO(stdin or b"")
    try:
        status = _run(plan, io.child_ends, started=io.start)
    finally:
        io.finish()
    return status, io.output(1), io.output(2)


class _CapturedIO:
    """Pipes for the command's stdin, stdout and stderr, served by threads while we wait."""

    def __init__(self, stdin: bytes):
        import threading  # only for captured runs: not on the exec path

        self._stdin = stdin
        in_r, self._in_w = os.pipe()
        self._out_r, out_w = os.pipe()
        self._err_r, err_w = os.pipe()
        self.child_ends = (in_r, out_w, err_w)
        self._chunks: dict[int, list[bytes]] = {1: [], 2: []}
        self._threads = [
            threading.Thread(target=self._drain, args=(self._out_r, 1), daemon=True),
            threading.Thread(target=self._drain, args=(self._err_r, 2), daemon=True),
            threading.Thread(target=self._feed, daemon=True),
        ]
        self._started = False

    def start(self) -> None:
        """Called in the parent right after the fork (signals still blocked: threads inherit)."""
        self._close_child_ends()
        self._started = True
        for thread in self._threads:
            thread.start()

    def finish(self) -> None:
        self._close_child_ends()
        if self._started:
            for thread in self._threads:
                thread.join()
        else:
            os.close(self._in_w)
        os.close(self._out_r)
        os.close(self._err_r)

    def output(self, which: int) -> bytes:
        return b"".join(self._chunks[which])

    def _close_child_ends(self) -> None:
        for fd in self.child_ends:
            try:
                os.close(fd)
            except OSError:
                continue
        self.child_ends = (-1, -1, -1)

    def _drain(self, fd: int, which: int) -> None:
        while data := os.read(fd, 65536):
            self._chunks[which].append(data)

    def _feed(self) -> None:
        view = memoryview(self._stdin)
        try:
            while view:
                view = view[os.write(self._in_w, view) :]
        except BrokenPipeError:
            pass  # the command stopped reading: what it did not read is not ours to push
        os.close(self._in_w)


# --------------------------------------------------------------------------------------------
# The parent: checks, locks, fork, signal forwarding, status


def _run(
    plan: Plan,
    stdio: tuple[int, int, int] | None,
    started: Callable[[], None] | None = None,
) -> int:
    reason = available()
    if reason is not None:
        raise RuntimeUnavailableError(
            f"the builtin container runtime cannot run here: {reason}",
            hint=f"{INSTALL_APPTAINER}; or run condatainer as root (e.g. with sudo)",
        )
    if not plan.command:
        raise ContainerError("no command to run in the container")
    writable = [o for o in plan.overlays if o.writable]
    assert len(writable) <= 1, "resolve allows at most one writable overlay"
    if plan.extra_args:
        _child.say(f"the builtin runtime ignores Apptainer options: {' '.join(plan.extra_args)}")

    environ = dict(os.environ)
    user = None if plan.fakeroot else _setup.sudo_user(environ)
    held: list[locks.ImageLock] = []
    base = None
    try:
        if plan.base_image:
            base = _base.open_base(plan.base_image)
        # Lock first, then read the superblock: an image another process has mounted writable
        # says "needs_recovery", which must be reported as "in use", not as "not clean".
        for overlay in plan.overlays:
            lock = locks.acquire(
                overlay.path, write=overlay.writable, wait=plan.wait_lock, notify=_child.say
            )
            held.append(lock)
            clean.require_clean(overlay.path)
        setup = _setup.Setup(
            layers=tuple(
                _setup.Layer(o.path, o.writable, lk.fd) for o, lk in zip(plan.overlays, held)
            ),
            base=base,
            identity=None if base is None else _identity(user),
            staging=_setup.staging_dir(),
            mounts=_setup.mounts(plan, user, environ, foreign_base=base is not None),
            protect_ext3=not writable and bool(plan.overlays),
            env=_setup.environment(plan, user, environ),
            user=user,
            cwd=plan.cwd,
            command=plan.argv,
            unshare_flags=linux.CLONE_NEWNS | (linux.CLONE_NEWIPC if plan.containall else 0),
            parent_pid=os.getpid(),
            stdio=stdio,
        )
        return _fork_and_wait(setup, started)
    finally:
        for lock in held:
            lock.release()
        _base.close(base)


def _identity(user: _setup.User | None) -> _base.Identity:
    """Who the command runs as, for the foreign base's /etc/passwd and /etc/group."""
    if user is None:
        return _base.identity(os.getuid(), os.getgid(), tuple(os.getgroups()))
    return _base.identity(user.uid, user.gid, user.groups, user.name, user.home)


def _fork_and_wait(setup: _setup.Setup, started: Callable[[], None] | None) -> int:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            continue
    errors_r, errors_w = os.pipe()  # both close-on-exec
    # Block the forwarded signals (and SIGCHLD) before forking: the parent picks them up with
    # sigwaitinfo, and none can slip in between the fork and the wait.
    saved = signal.pthread_sigmask(signal.SIG_BLOCK, {*_child.FORWARDED, signal.SIGCHLD})
    setup = setup.replace(saved_mask=frozenset(saved))
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child never returns
            os.close(errors_r)
            _child.child(setup, errors_w)
        os.close(errors_w)
        if started is not None:
            started()
        report = _read_all(errors_r)
        os.close(errors_r)
        if report:
            os.waitpid(pid, 0)
            raise _error_from(report)
        return _child.relay(pid)
    finally:
        _drain_pending()
        signal.pthread_sigmask(signal.SIG_SETMASK, setup.saved_mask)


def _read_all(fd: int) -> bytes:
    data = b""
    while chunk := os.read(fd, 65536):
        data += chunk
    return data


def _error_from(report: bytes) -> ContainerError:
    message, hint = _child.decode_error(report)
    return ContainerError(message, hint=hint)


def _drain_pending() -> None:
    """Discard forwarded signals still pending: they were meant for the command, now gone."""
    wanted = {*_child.FORWARDED, signal.SIGCHLD}
    while wanted & signal.sigpending():
        if signal.sigtimedwait(wanted, 0) is None:
            break


# --------------------------------------------------------------------------------------------
# The child: namespace, mounts, identity, exec.  It never returns.


# --------------------------------------------------------------------------------------------
# Probes for available()


def _has_overlayfs() -> bool:
    try:
        with open(PROC_FILESYSTEMS) as f:
            if any(line.split()[-1:] == ["overlay"] for line in f):
                return True
    except OSError:
        return False
    # Not loaded yet: mount(2) loads the module on demand when it is installed.
    release = os.uname().release
    for suffix in ("", ".xz", ".zst", ".gz"):
        if os.path.exists(f"{MODULES_DIR}/{release}/kernel/fs/overlayfs/overlay.ko{suffix}"):
            return True
    return False


def _has_cap_sys_admin() -> bool:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) & (1 << 21))
    except (OSError, ValueError, IndexError):
        pass
    return True  # cannot tell: let the mount say
