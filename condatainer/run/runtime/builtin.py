"""The builtin container runtime: a Plan carried out with loop devices, overlayfs and a private
mount namespace, for machines without Apptainer where we are root (CI, containers, laptops).

`execute(plan)` runs the command attached to the terminal and returns its exit status (128+N
when it is killed by signal N, as Apptainer reports it); `run_captured(plan)` does the same with
stdout and stderr captured; `available()` says why this runtime cannot work here, or None.

How a run goes.  The parent process (this one) takes the lock Apptainer takes on every image
(an OFD write lock for the writable overlay, read locks for read-only ones), then checks its
superblock (a clean filesystem, no journal to recover), and holds the locks until the command
has ended.  It forks one child, which sets PR_SET_PDEATHSIG so it
cannot outlive a killed parent, and then, in a mount namespace of its own, builds this layout:

    /run/condatainer-PID-XXXX/      staging: a private, unbindable tmpfs (S)
        0/, 1/, ...                 each image's ext3, on a loop device (ro: read-only device
                                    and MS_RDONLY mount), nodev,nosuid
        t/                          a tmpfs holding upper/ and work/ when no overlay is writable
        root/                       overlayfs:  lowerdir = read-only images' upper/ (first one
                                    on top) : the host's /
                                    upperdir/workdir = the writable image's upper/ and work/,
                                    else t/upper, t/work (writes outside /ext3/env discarded)
            <every host mount directly below />   rbind (/proc, /sys, /dev, /run, ...)
            $HOME /tmp /var/tmp cwd               bind, when they live on the host's root fs
                                                  (Apptainer's default binds); with contain:
                                                  private tmpfs (or the workdir) instead
            plan.binds                            rbind, read-only when asked
            /ext3                                 read-only, when no overlay is writable

then `pivot_root`s into root/, detaches the old root (the staging tmpfs goes with it, and its
empty directory is removed from the host at once), drops to SUDO_UID/SUDO_GID when set, and
execs the command with the Plan's environment.  The host's `/` is a lower layer, so the
container sees the host system as it is (like Apptainer's default binds, but for everything),
copy-on-write: writes outside the binds and outside `/ext3/env` land in the writable image's
`upper/` (or in the discarded tmpfs), never on the host.  overlayfs does not cross mounts, which
is why every host mount is bound in again on top.  Host mounts are followed as MS_SLAVE (like
Apptainer's `mount slave = yes`): automounts on the host show up inside, nothing we mount leaks
out.

When the command ends, its namespace goes away with every mount in it; the loop devices are
configured with LO_FLAGS_AUTOCLEAR and detach themselves.  A loop device holds the image's
open file description -- the one carrying the OFD lock -- so an image stays locked for as long
as it is mounted anywhere, even by a background process the command left running.

Errors the child meets before exec travel to the parent through a close-on-exec pipe and become
a ContainerError; a pipe closed empty means the exec happened.  A command that cannot be
executed exits 127 (not found) or 126 (not executable) with one line on stderr, like a shell.

Notes on Plan fields: `base_image` is refused (the base is the host's root filesystem).
`fakeroot` means "stay root": we are root already, so it only skips the SUDO_UID drop.  GPUs
need nothing: the host's /dev (with /dev/nvidia*, /dev/kfd, /dev/dri) and its driver libraries
are visible as they are.  `extra_args` are Apptainer options and are ignored.  `contain` keeps
the host's /dev (not Apptainer's minimal one); `containall` adds a private IPC namespace but no
PID namespace (the command would become PID 1, which ignores signals it has no handler for).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import pwd
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from condatainer.errors import ContainerError, RuntimeUnavailableError
from condatainer.image import e2fs, locks
from condatainer.run.plan import Plan
from condatainer.run.runtime import _linux as linux

# Signals the parent passes on to the command.  Terminal-generated ones (Ctrl-C, Ctrl-\) are
# not passed on: the kernel already sent them to the whole foreground process group, which the
# command belongs to, and a second SIGINT would interrupt its cleanup.
FORWARDED = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
)
_SI_KERNEL = 0x80  # siginfo.si_code of a signal sent by the kernel (the tty driver)
_F_DUPFD_CLOEXEC: int = getattr(fcntl, "F_DUPFD_CLOEXEC", 1030)

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_NOT_FOUND = 127
_NOT_EXECUTABLE = 126
_MAX_SYMLINKS = 40

_HOW_TO_GET_ONE = (
    "install Apptainer (on a cluster: module load apptainer; on your own machine: your"
    " distribution's apptainer package), or run condatainer as root (e.g. with sudo)"
)


# --------------------------------------------------------------------------------------------
# Public API


def available() -> str | None:
    """None when this runtime can work here, else the reason it cannot."""
    if os.geteuid() != 0:
        return "it needs root (loop devices, mounts), and this process is not running as root"
    if not os.path.exists("/dev/loop-control"):
        return "/dev/loop-control is missing (no loop device support; try: modprobe loop)"
    if not _has_overlayfs():
        return "the kernel has no overlayfs (try: modprobe overlay)"
    if not _has_cap_sys_admin():
        return "this root has no CAP_SYS_ADMIN (an unprivileged container?), so it cannot mount"
    return None


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
            with contextlib.suppress(OSError):
                os.close(fd)
        self.child_ends = (-1, -1, -1)

    def _drain(self, fd: int, which: int) -> None:
        while data := os.read(fd, 65536):
            self._chunks[which].append(data)

    def _feed(self) -> None:
        view = memoryview(self._stdin)
        with contextlib.suppress(BrokenPipeError):
            while view:
                view = view[os.write(self._in_w, view) :]
        os.close(self._in_w)


# --------------------------------------------------------------------------------------------
# What the child needs, decided in the parent (so the child only carries it out)


@dataclass(frozen=True)
class _User:
    """The invoking user to drop to (from SUDO_UID/SUDO_GID)."""

    uid: int
    gid: int
    groups: tuple[int, ...]
    name: str
    home: str


@dataclass(frozen=True)
class _Mount:
    """One mount on top of the new root: `source` (a host path, or None for a tmpfs)."""

    source: str | None
    target: str  # path inside the container
    readonly: bool = False
    recursive: bool = True
    tmpfs_options: str = ""  # for a tmpfs
    is_file: bool = False  # the target is a file, not a directory


@dataclass(frozen=True)
class _Layer:
    """One image to attach: the overlay, and the fd of its locked open file description."""

    path: str
    writable: bool
    fd: int


@dataclass
class _Setup:
    layers: tuple[_Layer, ...]
    staging: str
    mounts: tuple[_Mount, ...]
    protect_ext3: bool
    env: dict[str, str]
    user: _User | None
    cwd: str
    command: tuple[str, ...]
    unshare_flags: int
    parent_pid: int
    stdio: tuple[int, int, int] | None
    saved_mask: set[int] = field(default_factory=set)


def _sudo_user(environ: dict[str, str]) -> _User | None:
    """The user `sudo` was run by, when SUDO_UID names one other than root."""
    try:
        uid = int(environ.get("SUDO_UID", ""))
    except ValueError:
        return None
    if uid == 0:
        return None
    try:
        entry: pwd.struct_passwd | None = pwd.getpwuid(uid)
    except KeyError:
        entry = None
    try:
        gid = int(environ.get("SUDO_GID", ""))
    except ValueError:
        gid = entry.pw_gid if entry else uid
    name = entry.pw_name if entry else environ.get("SUDO_USER", str(uid))
    home = entry.pw_dir if entry else "/"
    groups = os.getgrouplist(entry.pw_name, gid) if entry else [gid]
    return _User(uid, gid, tuple(dict.fromkeys([gid, *groups])), name, home)


def _environment(plan: Plan, user: _User | None, environ: dict[str, str]) -> dict[str, str]:
    """The command's environment: the host's (or a minimal one), the user's identity, plan.env."""
    if plan.cleanenv or plan.containall:
        env = {"PATH": DEFAULT_PATH}
        if "TERM" in environ:
            env["TERM"] = environ["TERM"]
        env["HOME"] = user.home if user else environ.get("HOME", "/root")
        env["USER"] = user.name if user else environ.get("USER", "root")
    else:
        env = dict(environ)
        if user is not None:
            env.update(HOME=user.home, USER=user.name, LOGNAME=user.name)
    env.update(plan.env)
    return env


def _mountinfo(text: str) -> list[tuple[int, int, str]]:
    """(mount id, parent id, mount point) for each line of /proc/self/mountinfo."""
    found = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 5:
            point = _unescape(fields[4])
            found.append((int(fields[0]), int(fields[1]), point))
    return found


def _unescape(field_text: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as \\ooo (octal)."""
    if "\\" not in field_text:
        return field_text
    raw = field_text.encode()
    out = bytearray()
    i = 0
    while i < len(raw):
        if raw[i : i + 1] == b"\\" and raw[i + 1 : i + 4].isdigit():
            out.append(int(raw[i + 1 : i + 4], 8))
            i += 4
        else:
            out += raw[i : i + 1]
            i += 1
    return os.fsdecode(bytes(out))


def _host_mounts(text: str) -> tuple[list[str], list[str]]:
    """(mount points directly below the root mount, all mount points) of the host.

    overlayfs shows only the root filesystem of the host; each top-level mount brings its own
    submounts along when it is bound recursively.
    """
    entries = _mountinfo(text)
    root_ids = {mid for mid, _, point in entries if point == "/"}
    top = []
    for mid, parent, point in entries:
        if point != "/" and parent in root_ids and mid not in root_ids and point not in top:
            top.append(point)
    return top, [point for _, _, point in entries]


def _on_root_fs(path: str, mount_points: Sequence[str]) -> bool:
    """Whether `path` (absolute, resolved) lies on the host's root filesystem, not on a mount."""
    return not any(
        point != "/" and (path == point or path.startswith(point.rstrip("/") + "/"))
        for point in mount_points
    )


def _mounts(plan: Plan, user: _User | None, environ: dict[str, str]) -> tuple[_Mount, ...]:
    """Everything mounted on top of the overlay root, in order."""
    try:
        with open("/proc/self/mountinfo") as f:
            top, points = _host_mounts(f.read())
    except OSError:
        top, points = [], []
    mounts = [_Mount(point, point) for point in top]
    contained = plan.contain or plan.containall
    home = os.path.realpath(user.home if user else environ.get("HOME", "/root"))
    wanted = {bind.container for bind in plan.binds}

    if not contained:
        # Apptainer's default binds, where the host's root filesystem holds them (else the
        # rbind of their mount shows them already); a parent bound makes its children moot.
        chosen: list[str] = []
        for path in sorted({os.path.realpath(p) for p in (home, "/tmp", "/var/tmp", plan.cwd)}):
            if (
                path != "/"
                and path not in wanted
                and os.path.isdir(path)
                and _on_root_fs(path, points)
                and not any(path.startswith(c + "/") for c in chosen)
            ):
                chosen.append(path)
                mounts.append(_Mount(path, path))
    else:
        for target, sub in (("/tmp", "tmp"), ("/var/tmp", "var_tmp")):
            if plan.workdir:
                mounts.append(_Mount(_workdir(plan.workdir, sub, user), target))
            else:
                mounts.append(_Mount(None, target, tmpfs_options="mode=1777"))
        if home != "/":
            owner = f"uid={user.uid},gid={user.gid}," if user else ""
            mounts.append(_Mount(None, home, tmpfs_options=f"{owner}mode=0700"))
    for bind in plan.binds:
        if not os.path.exists(bind.host):  # checked here: a failed bind would leave its mount
            raise ContainerError(  # point behind in the writable image
                f"cannot bind {bind.host} into the container: it does not exist",
                hint=f"create it, or drop the bind {bind.spec()}",
            )
        is_file = not os.path.isdir(bind.host)
        mounts.append(_Mount(bind.host, bind.container, bind.readonly, is_file=is_file))
    return tuple(mounts)


def _workdir(workdir: str, sub: str, user: _User | None) -> str:
    """`workdir/tmp` or `workdir/var_tmp` (created, owned by the user), as Apptainer's -W does."""
    path = os.path.join(os.path.realpath(workdir), sub)
    try:
        os.makedirs(path, exist_ok=True)
        if user is not None:
            os.chown(path, user.uid, user.gid)
    except OSError as exc:
        raise ContainerError(
            f"cannot create {path} for the container's /tmp: {exc.strerror}",
            hint="pass another --workdir (-W), one you can write to",
        ) from exc
    return path


def _staging_parent() -> str:
    """Where the per-run staging directory is created: /run (a tmpfs almost everywhere)."""
    return "/run" if os.path.isdir("/run") else "/tmp"


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
            f"the builtin container runtime cannot run here: {reason}", hint=_HOW_TO_GET_ONE
        )
    if not plan.command:
        raise ContainerError("no command to run in the container")
    if plan.base_image:
        raise RuntimeUnavailableError(
            f"the builtin runtime uses the host's root filesystem as the base; it cannot use the"
            f" base image {plan.base_image}",
            hint="install Apptainer to use a base image, or drop base_image from the"
            " configuration: condatainer config set base_image ''",
        )
    writable = [o for o in plan.overlays if o.writable]
    assert len(writable) <= 1, "resolve allows at most one writable overlay"
    if plan.extra_args:
        _say(f"notice: the builtin runtime ignores Apptainer options: {' '.join(plan.extra_args)}")

    environ = dict(os.environ)
    user = None if plan.fakeroot else _sudo_user(environ)
    held: list[locks.ImageLock] = []
    staging = None
    try:
        # Lock first, then read the superblock: an image another process has mounted writable
        # says "needs_recovery", which must be reported as "in use", not as "not clean".
        for overlay in plan.overlays:
            held.append(locks.acquire(overlay.path, write=overlay.writable))
            e2fs.require_clean(overlay.path)
        # The PID in the name says whose it is: a directory left by a dead process is a leak.
        staging = tempfile.mkdtemp(prefix=f"condatainer-{os.getpid()}-", dir=_staging_parent())
        setup = _Setup(
            layers=tuple(_Layer(o.path, o.writable, lk.fd) for o, lk in zip(plan.overlays, held)),
            staging=staging,
            mounts=_mounts(plan, user, environ),
            protect_ext3=not writable and bool(plan.overlays),
            env=_environment(plan, user, environ),
            user=user,
            cwd=plan.cwd,
            command=plan.command,
            unshare_flags=linux.CLONE_NEWNS | (linux.CLONE_NEWIPC if plan.containall else 0),
            parent_pid=os.getpid(),
            stdio=stdio,
        )
        return _fork_and_wait(setup, started)
    finally:
        if staging is not None:
            with contextlib.suppress(OSError):
                os.rmdir(staging)  # normally the child removed it already
        for lock in held:
            lock.release()


def _fork_and_wait(setup: _Setup, started: Callable[[], None] | None) -> int:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    errors_r, errors_w = os.pipe()  # both close-on-exec
    # Block the forwarded signals (and SIGCHLD) before forking: the parent picks them up with
    # sigwaitinfo, and none can slip in between the fork and the wait.
    setup.saved_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {*FORWARDED, signal.SIGCHLD})
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child never returns
            os.close(errors_r)
            _child(setup, errors_w)
        os.close(errors_w)
        if started is not None:
            started()
        report = _read_all(errors_r)
        os.close(errors_r)
        if report:
            os.waitpid(pid, 0)
            raise _error_from(report)
        return _wait(pid)
    finally:
        _drain_pending()
        signal.pthread_sigmask(signal.SIG_SETMASK, setup.saved_mask)


def _read_all(fd: int) -> bytes:
    data = b""
    while chunk := os.read(fd, 65536):
        data += chunk
    return data


def _error_from(report: bytes) -> ContainerError:
    try:
        fields = json.loads(report)
        return ContainerError(str(fields["message"]), hint=fields.get("hint"))
    except (ValueError, KeyError, TypeError, AttributeError):
        return ContainerError(f"the container failed to start: {report!r}")


def _wait(pid: int) -> int:
    """Wait for the child, forwarding signals to it; its status as a shell reports it."""
    wanted = {*FORWARDED, signal.SIGCHLD}
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            if os.WIFSIGNALED(status):
                return 128 + os.WTERMSIG(status)
            return os.WEXITSTATUS(status)
        info = signal.sigwaitinfo(wanted)
        if info.si_signo != signal.SIGCHLD and info.si_code != _SI_KERNEL:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, info.si_signo)


def _drain_pending() -> None:
    """Discard forwarded signals still pending: they were meant for the command, now gone."""
    wanted = {*FORWARDED, signal.SIGCHLD}
    while wanted & signal.sigpending():
        if signal.sigtimedwait(wanted, 0) is None:
            break


# --------------------------------------------------------------------------------------------
# The child: namespace, mounts, identity, exec.  It never returns.


class _SetupError(Exception):
    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint


@contextlib.contextmanager
def _step(what: str, hint: str | None = None) -> Iterator[None]:
    """Turn an OSError into one line naming what we were doing and why it failed."""
    try:
        yield
    except OSError as exc:
        raise _SetupError(f"{what}: {exc.strerror or exc}", hint) from exc


def _child(setup: _Setup, errors_w: int) -> None:
    try:
        linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != setup.parent_pid:  # the parent died before prctl took effect
            os._exit(1)
        if setup.stdio is not None:
            # Via fresh descriptors >= 3, so a pipe that happens to be fd 0-2 is not clobbered.
            high = [fcntl.fcntl(fd, _F_DUPFD_CLOEXEC, 3) for fd in setup.stdio]
            for target, fd in enumerate(high):
                os.dup2(fd, target)  # inheritable
        _build_root(setup)
        _become_user(setup)
        _enter_cwd(setup.cwd)
    except _SetupError as exc:
        _report(errors_w, exc.message, exc.hint)
    except BaseException as exc:
        _report(errors_w, f"the builtin runtime failed to start the container: {exc!r}", None)
    _exec(setup)


def _report(errors_w: int, message: str, hint: str | None) -> None:
    with contextlib.suppress(BaseException):
        os.write(errors_w, json.dumps({"message": message, "hint": hint}).encode())
    os._exit(1)


def _build_root(setup: _Setup) -> None:
    staging = setup.staging
    with _step("cannot create a private mount namespace"):
        linux.unshare(setup.unshare_flags)
        linux.mount(None, "/", None, linux.MS_REC | linux.MS_SLAVE)
    with _step(f"cannot mount a tmpfs on {staging}"):
        linux.mount("condatainer", staging, "tmpfs", linux.MS_NODEV | linux.MS_NOSUID, "mode=0700")
        # Unbindable: the recursive binds of host mounts below must not copy the staging area
        # (and with it the new root) into the new root.
        linux.mount(None, staging, None, linux.MS_UNBINDABLE)

    lowers: list[str] = []
    upper = work = ""
    for i, layer in enumerate(setup.layers):
        where = f"{staging}/{i}"
        _mount_image(layer, where)
        if layer.writable:
            upper, work = f"{where}/upper", f"{where}/work"
            if not os.path.isdir(work):
                with _step(f"{layer.path}: cannot create work/"):
                    os.mkdir(work, 0o700)
        else:
            lowers.append(f"{where}/upper")
    if not upper:
        # No writable overlay: a tmpfs takes the writes (they vanish with the namespace).  It
        # must be a mount of its own: overlayfs refuses an upper layer on an unbindable mount.
        with _step("cannot mount the tmpfs for the container's writes"):
            os.mkdir(f"{staging}/t")
            linux.mount("condatainer", f"{staging}/t", "tmpfs", linux.MS_NODEV | linux.MS_NOSUID)
            os.mkdir(f"{staging}/t/upper")
            os.mkdir(f"{staging}/t/work")
            # The upper directory lends the container's / its mode: the host's, not our umask's.
            os.chmod(f"{staging}/t/upper", os.stat("/").st_mode & 0o7777)
        upper, work = f"{staging}/t/upper", f"{staging}/t/work"

    root = f"{staging}/root"
    options = f"lowerdir={':'.join([*lowers, '/'])},upperdir={upper},workdir={work}"
    with _step(
        "cannot build the container's root filesystem with overlayfs",
        hint="the kernel log says why: dmesg | grep overlayfs",
    ):
        os.mkdir(root)
        linux.mount("condatainer", root, "overlay", linux.MS_NODEV, options)

    for m in setup.mounts:
        _apply(root, m)
    if setup.protect_ext3:
        # Read-only overlays only: /ext3/env must refuse writes (EROFS) the way a read-only
        # Apptainer overlay does, instead of letting them vanish into the tmpfs upper layer.
        ext3 = _resolve_in(root, "/ext3")
        if os.path.isdir(ext3):
            with _step("cannot make /ext3 read-only"):
                linux.bind_readonly(ext3, ext3)

    _enter_root(root, staging)


def _mount_image(layer: _Layer, where: str) -> None:
    """Attach `layer` to a loop device and mount its ext3 at `where`."""
    read_only = not layer.writable
    check = f"condatainer overlay check {layer.path}"
    with _step(f"{layer.path}: cannot attach it to a loop device"):
        device, loop_fd = linux.loop_attach(layer.fd, read_only=read_only, name=layer.path)
    try:
        os.mkdir(where)
        flags = linux.MS_NODEV | linux.MS_NOSUID | (linux.MS_RDONLY if read_only else 0)
        try:
            linux.mount(device, where, "ext3", flags)
        except OSError as exc:
            if exc.errno != errno.ENODEV:  # a kernel with ext4 only drives ext3 as ext4
                raise
            linux.mount(device, where, "ext4", flags)
    except OSError as exc:
        raise _SetupError(
            f"{layer.path}: cannot mount it ({'read-only' if read_only else 'writable'},"
            f" {device}): {exc.strerror}",
            hint=check,
        ) from exc
    finally:
        os.close(loop_fd)  # the mount holds the device now; unmounted, it detaches itself
    if not os.path.isdir(f"{where}/upper"):
        raise _SetupError(
            f"{layer.path}: not an overlay image: it has no upper/ directory",
            hint="overlay images are made with: condatainer o IMAGE",
        )


def _apply(root: str, m: _Mount) -> None:
    """Mount `m` on top of the new root (binds follow the host's symlinks, never the root's)."""
    if m.source is None:
        what = f"cannot mount a tmpfs on {m.target}"
    else:
        what = f"cannot bind {m.source} to {m.target}"
    with _step(what):
        target = _resolve_in(root, m.target)
        if not os.path.lexists(target):
            _make_target(root, target, m.is_file)
        if m.source is None:
            linux.mount("tmpfs", target, "tmpfs", linux.MS_NODEV | linux.MS_NOSUID, m.tmpfs_options)
        elif m.readonly:
            linux.bind_readonly(m.source, target, recursive=m.recursive)
        else:
            recursive = linux.MS_REC if m.recursive else 0
            linux.mount(m.source, target, None, linux.MS_BIND | recursive)


def _make_target(root: str, target: str, is_file: bool) -> None:
    """Create a missing bind target (in the overlay's upper layer, as Apptainer does)."""
    parent = os.path.dirname(target)
    if parent != root:
        os.makedirs(parent, exist_ok=True)
    if is_file:
        os.close(os.open(target, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))
    else:
        os.mkdir(target)


def _resolve_in(root: str, path: str) -> str:
    """`path` inside the container as a host path under `root`, symlinks resolved within `root`.

    mount(2) follows symlinks in its target; an absolute symlink in the new root must point
    into the new root, not out of it onto the host.  Missing components are kept as they are.
    """
    pending = [p for p in path.split("/") if p]
    done: list[str] = []
    links = 0
    while pending:
        name = pending.pop(0)
        if name == ".":
            continue
        if name == "..":
            if done:
                done.pop()
            continue
        here = os.path.join(root, *done, name)
        try:
            link = os.readlink(here)
        except OSError:  # not a symlink, or missing
            done.append(name)
            continue
        links += 1
        if links > _MAX_SYMLINKS:
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
        if link.startswith("/"):
            done = []
        pending[:0] = [p for p in link.split("/") if p]
    return os.path.join(root, *done)


def _enter_root(root: str, staging: str) -> None:
    """Make `root` the root: pivot_root, detach the host's tree, remove the staging directory."""
    parent_dir = os.open(os.path.dirname(staging), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.chdir(root)
        try:
            # pivot_root(".", "."): the old root ends up stacked on the new one, no put_old
            # directory needed (which would be created in the writable image).
            linux.pivot_root(".", ".")
            linux.umount2(".", linux.MNT_DETACH)
        except OSError as exc:
            if exc.errno != errno.EINVAL:  # EINVAL: the host root is a rootfs (initramfs)
                raise _SetupError(f"cannot switch to the container's root: {exc.strerror}") from exc
            os.chroot(".")  # the parent removes the staging directory afterwards
        else:
            # Nothing of the staging area is mounted in this namespace any more; its empty
            # directory can go now, so not even a killed parent leaves it behind.
            with contextlib.suppress(OSError):
                os.rmdir(os.path.basename(staging), dir_fd=parent_dir)
        os.chdir("/")
    finally:
        os.close(parent_dir)


def _become_user(setup: _Setup) -> None:
    user = setup.user
    if user is None:
        return
    with _step(f"cannot switch to user {user.name} (uid {user.uid})"):
        os.setgroups(list(user.groups))
        os.setgid(user.gid)
        os.setuid(user.uid)
        # As under Apptainer, setuid programs do not raise privileges inside the container.
        linux.prctl(linux.PR_SET_NO_NEW_PRIVS, 1)
        # Changing credentials cleared the parent-death signal: set it again.
        linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != setup.parent_pid:
        os._exit(1)


def _enter_cwd(cwd: str) -> None:
    try:
        os.chdir(cwd)
    except OSError as exc:
        _say(f"notice: cannot enter {cwd} in the container ({exc.strerror}); starting in /")
        with _step("cannot enter / in the container"):
            os.chdir("/")


def _exec(setup: _Setup) -> None:
    """Replace the child with the command; like a shell, 127 when not found, 126 otherwise."""
    # Python ignores SIGPIPE and SIGXFSZ; an ignored signal stays ignored across exec.
    for sig in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, setup.saved_mask)
    name = setup.command[0]
    try:
        os.execvpe(name, list(setup.command), setup.env)
    except OSError as exc:
        code = _NOT_FOUND if exc.errno in (errno.ENOENT, errno.ENOTDIR) else _NOT_EXECUTABLE
        why = "command not found" if code == _NOT_FOUND else exc.strerror
        _say(f"error: {name}: {why}")
        os._exit(code)
    os._exit(_NOT_EXECUTABLE)  # pragma: no cover - execvpe returns only by raising


def _say(text: str) -> None:
    """One line on stderr, written directly (the child must not touch Python's buffers)."""
    with contextlib.suppress(OSError):
        os.write(2, f"condatainer: {text}\n".encode(errors="surrogateescape"))


# --------------------------------------------------------------------------------------------
# Probes for available()


def _has_overlayfs() -> bool:
    try:
        with open("/proc/filesystems") as f:
            if any(line.split()[-1:] == ["overlay"] for line in f):
                return True
    except OSError:
        return False
    # Not loaded yet: mount(2) loads the module on demand when it is installed.
    release = os.uname().release
    for suffix in ("", ".xz", ".zst", ".gz"):
        if os.path.exists(f"/lib/modules/{release}/kernel/fs/overlayfs/overlay.ko{suffix}"):
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
