"""The builtin runtime's children: namespaces, mounts, identity, exec, and the container's init.

Three processes below the parent (`builtin`), each with one job:

- the **relay**: sets PR_SET_PDEATHSIG (it dies with the parent), unshares a new PID
  namespace, forks the init, then waits for it, passing on the signals the parent forwards.  A
  new PID namespace only takes effect for the children of the process that unshared it, hence
  this extra process.
- the **init** (PID 1 of the container): dies with the relay, unshares the mount (and IPC)
  namespace, carries out a `_setup.Setup` decided by the parent -- the images on loop devices,
  the overlay root, the binds, the container's own /proc, `pivot_root` -- then forks the
  command and stays behind as its init:
  it passes signals on to the command and reaps every process the command leaves, and ends with
  the command's status.  When it ends, the kernel kills whatever is left in its namespace, so
  nothing the command started outlives it, and with the last process the mount namespace, the
  mounts and the loop devices (which hold the image's lock) go away.  A SIGKILL of the parent
  takes the relay, the init and so every container process along.
- the **command**: drops to the invoking user and execs.

Errors before the exec travel to the parent through a close-on-exec pipe (`report`); a
command that cannot be executed exits 127 (not found) or 126 (not executable) with one line on
stderr, like a shell.  Nothing here may touch Python's buffered streams: `say` writes to fd 2
directly.

Signals: the relay and the init get the parent's mask, with the forwarded signals and SIGCHLD
blocked, and take them with sigwaitinfo.  Signals the kernel sent (a terminal's Ctrl-C, to the
whole foreground process group, the command included) are not passed on again.

Long on purpose: the three processes and the mounts they make only make sense read together.
"""

from __future__ import annotations

import errno
import fcntl
import os

from condatainer.display import NOTE_PREFIX
from condatainer.run.runtime import _base
from condatainer.run.runtime import _linux as linux
from condatainer.run.runtime._setup import Layer, Mount, Setup

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (the exec path's rule)
if TYPE_CHECKING:
    import signal
    from typing import NoReturn
else:
    # The C module behind `signal`: the same functions and numbers, without the enums whose
    # import costs every container start a millisecond or two.
    import _signal as signal

_F_DUPFD_CLOEXEC: int = getattr(fcntl, "F_DUPFD_CLOEXEC", 1030)
_NOT_FOUND = 127
_NOT_EXECUTABLE = 126
_MAX_SYMLINKS = 40


class SetupError(Exception):
    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint


class step:
    """Turn an OSError into one line naming what we were doing and why it failed.

    A class, not contextlib.contextmanager: this module is on the exec path, and contextlib
    brings collections and functools with it."""

    def __init__(self, what: str, hint: str | None = None):
        self.what, self.hint = what, hint

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, OSError):
            raise SetupError(f"{self.what}: {exc.strerror or exc}", self.hint) from exc


# Signals the parent passes on to the command.  Terminal-generated ones (Ctrl-C, Ctrl-\\) are
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
_WANTED = {*FORWARDED, signal.SIGCHLD}


def shell_status(status: int) -> int:
    """A wait status as a shell reports it: the exit code, or 128+N for signal N."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def relay(pid: int, *, orphans: bool = False) -> int:
    """Wait for child `pid`, passing on forwarded signals; its status as a shell reports it.

    `orphans` (the container's init): reap every other child too -- the processes the command
    left, re-parented to us -- while waiting.  The forwarded signals and SIGCHLD must be
    blocked (the caller blocked them before forking).
    """
    while True:
        while True:
            done, status = os.waitpid(-1 if orphans else pid, os.WNOHANG)
            if done == pid:
                return shell_status(status)
            if not done:
                break
        _pass_on(signal.sigwaitinfo(_WANTED), pid)


def _pass_on(info: signal.struct_siginfo, pid: int) -> None:
    if info.si_signo != signal.SIGCHLD and info.si_code != _SI_KERNEL:
        try:
            os.kill(pid, info.si_signo)
        except ProcessLookupError:
            return


def child(setup: Setup, errors_w: int) -> None:
    """The relay (see the module docstring).  It never returns."""
    with reported(errors_w):
        linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != setup.parent_pid:  # the parent died before prctl took effect
            os._exit(1)
        # The relay and the init never exec: they must not keep the parent's other files open
        # (the write end of the command's stdin, for one, would never reach EOF).
        keep = {0, 1, 2, errors_w, *(setup.stdio or ()), *(layer.fd for layer in setup.layers)}
        if setup.base is not None and setup.base.fd >= 0:
            keep.add(setup.base.fd)
        close_all_but(keep)
        with step("cannot create the container's PID namespace"):
            linux.unshare(linux.CLONE_NEWPID)  # the init makes the other namespaces
        # The init cannot see the relay from its PID namespace (getppid() is 0 there), so it
        # learns whether the relay is alive from this pipe: the relay never writes to it, and
        # it reads as closed once the relay is gone.
        alive_r, alive_w = os.pipe()
        pid = os.fork()
    if pid == 0:
        os.close(alive_w)
        container_init(setup, errors_w, alive_r)
    os.close(errors_w)
    os.close(alive_r)
    os._exit(relay(pid))


def close_all_but(keep: set[int]) -> None:
    """Close every descriptor of this process except those in `keep`."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                continue


def container_init(setup: Setup, errors_w: int, relay_alive: int) -> None:
    """PID 1 of the container: build it, fork the command, reap until the command ends."""
    with reported(errors_w):
        linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
        if _closed(relay_alive):  # the relay died before prctl took effect
            os._exit(1)
        os.close(relay_alive)
        if setup.stdio is not None:
            # Via fresh descriptors >= 3, so a pipe that happens to be fd 0-2 is not clobbered.
            high = [fcntl.fcntl(fd, _F_DUPFD_CLOEXEC, 3) for fd in setup.stdio]
            for target, fd in enumerate(high):
                os.dup2(fd, target)  # inheritable
            for fd in {*setup.stdio, *high} - {0, 1, 2}:
                os.close(fd)
        build_root(setup)
        command = os.fork()
    if command == 0:
        run_command(setup, errors_w)
    os.close(errors_w)
    os._exit(relay(command, orphans=True))


def _closed(fd: int) -> bool:
    """Whether the pipe `fd` reads from has no writer left (its writer never writes)."""
    os.set_blocking(fd, False)
    try:
        return os.read(fd, 1) == b""
    except BlockingIOError:
        return False


def run_command(setup: Setup, errors_w: int) -> None:
    """The command's process: identity, working directory, exec.  It never returns."""
    with reported(errors_w):
        become_user(setup)
        enter_cwd(setup.cwd)
    exec(setup)


class reported:
    """Any failure in the block goes to the parent as its one-line error, and this process
    exits (`report`): a child of ours must never unwind into the parent's code."""

    def __init__(self, errors_w: int):
        self.errors_w = errors_w

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, SetupError):
            report(self.errors_w, exc.message, exc.hint)
        if exc is not None:
            what = f"the builtin runtime failed to start the container: {exc!r}"
            report(self.errors_w, what, None)


def report(errors_w: int, message: str, hint: str | None) -> NoReturn:
    try:
        os.write(errors_w, encode_error(message, hint))
    finally:  # whatever happens to the message, this process ends here
        os._exit(1)


def encode_error(message: str, hint: str | None) -> bytes:
    """What the child writes to the error pipe: the message, then NUL and the hint if any."""
    text = message if hint is None else f"{message}\0{hint}"
    return text.encode("utf-8", "surrogateescape")


def decode_error(report: bytes) -> tuple[str, str | None]:
    """The parent's reading of `encode_error`."""
    message, _, hint = report.decode("utf-8", "surrogateescape").partition("\0")
    return message, hint or None


def build_root(setup: Setup) -> None:
    staging = setup.staging
    with step("cannot create a private mount namespace"):
        linux.unshare(setup.unshare_flags)
        linux.mount(None, "/", None, linux.MS_REC | linux.MS_SLAVE)
    with step(f"cannot mount a tmpfs on {staging}"):
        # The staging tmpfs is mounted in this namespace only, on one fixed empty directory of
        # the host: nothing is made on the host per run, so a killed run leaves nothing there.
        os.makedirs(staging, 0o700, exist_ok=True)
        linux.mount("condatainer", staging, "tmpfs", linux.MS_NODEV | linux.MS_NOSUID, "mode=0700")
        # Unbindable: the recursive binds of host mounts below must not copy the staging area
        # (and with it the new root) into the new root.
        linux.mount(None, staging, None, linux.MS_UNBINDABLE)

    base_root = "/"  # the host's root filesystem, unless the Plan names a base image
    if setup.base is not None:
        with step(
            f"cannot mount the base image {setup.base.shown}",
            hint=f"check it with: condatainer base info -b {setup.base.shown}",
        ):
            base_root = _base.mount(setup.base, f"{staging}/base")

    lowers: list[str] = []
    upper = work = ""
    for i, layer in enumerate(setup.layers):
        where = f"{staging}/{i}"
        mount_image(layer, where)
        if layer.writable:
            upper, work = f"{where}/upper", f"{where}/work"
            if not os.path.isdir(work):
                with step(f"{layer.path}: cannot create work/"):
                    os.mkdir(work, 0o700)
        else:
            lowers.append(f"{where}/upper")
    if not upper:
        # No writable overlay: a tmpfs takes the writes (they vanish with the namespace).  It
        # must be a mount of its own: overlayfs refuses an upper layer on an unbindable mount.
        with step("cannot mount the tmpfs for the container's writes"):
            os.mkdir(f"{staging}/t")
            linux.mount("condatainer", f"{staging}/t", "tmpfs", linux.MS_NODEV | linux.MS_NOSUID)
            os.mkdir(f"{staging}/t/upper")
            os.mkdir(f"{staging}/t/work")
            # The upper directory lends the container's / its mode: the host's, not our umask's.
            os.chmod(f"{staging}/t/upper", os.stat(base_root).st_mode & 0o7777)
        upper, work = f"{staging}/t/upper", f"{staging}/t/work"

    root = f"{staging}/root"
    options = f"lowerdir={':'.join([*lowers, base_root])},upperdir={upper},workdir={work}"
    with step(
        "cannot build the container's root filesystem with overlayfs",
        hint="the kernel log says why: dmesg | grep overlayfs",
    ):
        os.mkdir(root)
        linux.mount("condatainer", root, "overlay", linux.MS_NODEV, options)

    for m in setup.mounts:
        try:
            apply(root, m)
        except SetupError:
            # A host mount unmounted since the parent listed them (a job's scratch going
            # away) is no reason to fail: the container simply does not show it.
            if not (m.host and m.source is not None and not os.path.lexists(m.source)):
                raise
    if setup.identity is not None:
        with step("cannot write the container's /etc/passwd and /etc/group"):
            files = _base.identity_files(
                setup.identity,
                resolve_in(root, "/etc/passwd"),
                resolve_in(root, "/etc/group"),
                f"{staging}/files",
            )
        for source, target in files:
            apply(root, Mount(source, target, recursive=False, is_file=True))
    if setup.protect_ext3:
        # Read-only overlays only: /ext3/env must refuse writes (EROFS) the way a read-only
        # Apptainer overlay does, instead of letting them vanish into the tmpfs upper layer.
        ext3 = resolve_in(root, "/ext3")
        if os.path.isdir(ext3):
            with step("cannot make /ext3 read-only"):
                linux.bind_readonly(ext3, ext3)

    enter_root(root, staging)


def mount_image(layer: Layer, where: str) -> None:
    """Attach `layer` to a loop device and mount its ext3 at `where`."""
    read_only = not layer.writable
    check = f"condatainer overlay check {layer.path}"
    with step(f"{layer.path}: cannot attach it to a loop device"):
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
        raise SetupError(
            f"{layer.path}: cannot mount it ({'read-only' if read_only else 'writable'},"
            f" {device}): {exc.strerror}",
            hint=check,
        ) from exc
    finally:
        os.close(loop_fd)  # the mount holds the device now; unmounted, it detaches itself
    if not os.path.isdir(f"{where}/upper"):
        raise SetupError(
            f"{layer.path}: not an overlay image: it has no upper/ directory",
            hint="overlay images are made with: condatainer o IMAGE",
        )


def apply(root: str, m: Mount) -> None:
    """Mount `m` on top of the new root (binds follow the host's symlinks, never the root's)."""
    if m.source is None:
        what = f"cannot mount a {m.fstype} on {m.target}"
    else:
        what = f"cannot bind {m.source} to {m.target}"
    with step(what):
        target = resolve_in(root, m.target)
        if not os.path.lexists(target):
            make_target(root, target, m.is_file)
        if m.source is None and m.fstype == "proc":
            # Mounted by the init, so it shows the container's PID namespace.
            flags = linux.MS_NODEV | linux.MS_NOSUID | linux.MS_NOEXEC
            linux.mount("proc", target, "proc", flags)
        elif m.source is None:
            linux.mount("tmpfs", target, "tmpfs", linux.MS_NODEV | linux.MS_NOSUID, m.tmpfs_options)
        elif m.readonly:
            linux.bind_readonly(m.source, target, recursive=m.recursive)
        else:
            recursive = linux.MS_REC if m.recursive else 0
            linux.mount(m.source, target, None, linux.MS_BIND | recursive)


def make_target(root: str, target: str, is_file: bool) -> None:
    """Create a missing bind target (in the overlay's upper layer, as Apptainer does)."""
    parent = os.path.dirname(target)
    if parent != root:
        os.makedirs(parent, exist_ok=True)
    if is_file:
        os.close(os.open(target, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))
    else:
        os.mkdir(target)


def resolve_in(root: str, path: str) -> str:
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


def enter_root(root: str, staging: str) -> None:
    """Make `root` the root: pivot_root, and detach the host's tree (the staging tmpfs with it)."""
    os.chdir(root)
    try:
        # pivot_root(".", "."): the old root ends up stacked on the new one, no put_old
        # directory needed (which would be created in the writable image).
        linux.pivot_root(".", ".")
        linux.umount2(".", linux.MNT_DETACH)
    except OSError as exc:
        if exc.errno != errno.EINVAL:  # EINVAL: the host root is a rootfs (initramfs)
            raise SetupError(f"cannot switch to the container's root: {exc.strerror}") from exc
        os.chroot(".")
    os.chdir("/")


def become_user(setup: Setup) -> None:
    user = setup.user
    if user is None:
        return
    with step(f"cannot switch to user {user.name} (uid {user.uid})"):
        os.setgroups(list(user.groups))
        os.setgid(user.gid)
        os.setuid(user.uid)
        # As under Apptainer, setuid programs do not raise privileges inside the container.
        linux.prctl(linux.PR_SET_NO_NEW_PRIVS, 1)
    # No parent-death signal needed (changing credentials cleared it): the command dies with
    # its namespace's init, which dies with the relay, which dies with the parent.


def enter_cwd(cwd: str) -> None:
    try:
        os.chdir(cwd)
    except OSError as exc:
        say(f"cannot enter {cwd} in the container ({exc.strerror}); starting in /")
        with step("cannot enter / in the container"):
            os.chdir("/")


def exec(setup: Setup) -> None:
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
        _error(f"{name}: {why}")
        os._exit(code)
    os._exit(_NOT_EXECUTABLE)  # pragma: no cover - execvpe returns only by raising


def say(text: str) -> None:
    """One notice on stderr, written directly (the child must not touch Python's buffers)."""
    _write_line(NOTE_PREFIX + text)


def _error(text: str) -> None:
    """One error line on stderr, like a shell's `sh: NAME: command not found`."""
    _write_line(f"condatainer: error: {text}")


def _write_line(text: str) -> None:
    try:
        os.write(2, f"{text}\n".encode(errors="surrogateescape"))
    except OSError:
        return
