"""The builtin runtime's decisions, made in the parent: what the child is to build.

The parent looks at the Plan, the environment and the host's mounts and writes down, as data
(`Setup`), every mount, the environment, the user to drop to and the command; the child
(`_child`) only carries it out, so nothing the child does depends on reading the world again
after it has left the host's mount namespace.
"""

from __future__ import annotations

import os
import pwd

from condatainer.errors import ContainerError
from condatainer.record import Record
from condatainer.run.runtime import _base

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (the exec path's rule)
if TYPE_CHECKING:
    from collections.abc import Sequence

    from condatainer.run.plan import Plan

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class User(Record):
    """The invoking user to drop to (from SUDO_UID/SUDO_GID)."""

    uid: int
    gid: int
    groups: tuple[int, ...]
    name: str
    home: str


class Mount(Record):
    """One mount on top of the new root: `source` (a host path, or None for a new filesystem
    of type `fstype`: a tmpfs, or the container's own /proc)."""

    source: str | None
    target: str  # path inside the container
    readonly: bool = False
    recursive: bool = True
    tmpfs_options: str = ""  # for a tmpfs
    is_file: bool = False  # the target is a file, not a directory
    host: bool = False  # one of the host's own mounts: skipped if it is gone by then
    fstype: str = "tmpfs"  # when source is None


class Layer(Record):
    """One image to attach: the overlay, and the fd of its locked open file description."""

    path: str
    writable: bool
    fd: int


class Setup(Record):
    layers: tuple[Layer, ...]
    staging: str
    mounts: tuple[Mount, ...]
    protect_ext3: bool
    env: dict[str, str]
    user: User | None
    cwd: str
    command: tuple[str, ...]
    unshare_flags: int
    parent_pid: int
    stdio: tuple[int, int, int] | None
    saved_mask: frozenset[int] = frozenset()  # the signal mask to restore before exec
    base: _base.Base | None = None  # None: the host's root filesystem is the lower layer
    identity: _base.Identity | None = None  # with a base: the user's passwd/group entries


def sudo_user(environ: dict[str, str]) -> User | None:
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
    return User(uid, gid, tuple(dict.fromkeys([gid, *groups])), name, home)


def environment(plan: Plan, user: User | None, environ: dict[str, str]) -> dict[str, str]:
    """The command's environment: the host's (or a minimal one) without `plan.unset`, the
    user's identity, plan.env."""
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
    for key in plan.unset:
        env.pop(key, None)
    env.update(plan.env)
    return env


def mountinfo(text: str) -> list[tuple[int, int, str]]:
    """(mount id, parent id, mount point) for each line of /proc/self/mountinfo."""
    found = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 5:
            point = unescape(fields[4])
            found.append((int(fields[0]), int(fields[1]), point))
    return found


def unescape(field_text: str) -> str:
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


def host_mounts(text: str) -> tuple[list[str], list[str]]:
    """(mount points directly below the root mount, all mount points) of the host.

    overlayfs shows only the root filesystem of the host; each top-level mount brings its own
    submounts along when it is bound recursively.
    """
    entries = mountinfo(text)
    root_ids = {mid for mid, _, point in entries if point == "/"}
    top = []
    for mid, parent, point in entries:
        if point != "/" and parent in root_ids and mid not in root_ids and point not in top:
            top.append(point)
    return top, [point for _, _, point in entries]


def on_root_fs(path: str, mount_points: Sequence[str]) -> bool:
    """Whether `path` (absolute, resolved) lies on the host's root filesystem, not on a mount."""
    return not any(
        point != "/" and (path == point or path.startswith(point.rstrip("/") + "/"))
        for point in mount_points
    )


def mounts(
    plan: Plan, user: User | None, environ: dict[str, str], *, foreign_base: bool = False
) -> tuple[Mount, ...]:
    """Everything mounted on top of the overlay root, in order.

    On a `foreign_base` the host's mounts are not all bound, only what Apptainer binds
    (`_base.system_mounts`); nothing of the host's root filesystem is visible then, so the
    default binds ($HOME, /tmp, /var/tmp, cwd) are made wherever they live.
    """
    # The container has a PID namespace of its own, so a /proc of its own: the host's would
    # show (and let it signal) every host process.
    mounts = [Mount(None, "/proc", fstype="proc")]
    if foreign_base:
        mounts += [
            Mount(source, target, recursive=not is_file, is_file=is_file)
            for source, target, is_file in _base.system_mounts()
            if target != "/proc"
        ]
        points: list[str] = []
    else:
        try:
            with open("/proc/self/mountinfo") as f:
                top, points = host_mounts(f.read())
        except OSError:
            top, points = [], []
        mounts += [Mount(point, point, host=True) for point in top if point != "/proc"]
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
                and on_root_fs(path, points)
                and not any(path.startswith(c + "/") for c in chosen)
            ):
                chosen.append(path)
                mounts.append(Mount(path, path))
    else:
        for target, sub in (("/tmp", "tmp"), ("/var/tmp", "var_tmp")):
            if plan.workdir:
                mounts.append(Mount(workdir(plan.workdir, sub, user), target))
            else:
                mounts.append(Mount(None, target, tmpfs_options="mode=1777"))
        if home != "/":
            owner = f"uid={user.uid},gid={user.gid}," if user else ""
            mounts.append(Mount(None, home, tmpfs_options=f"{owner}mode=0700"))
    for bind in plan.binds:
        if not os.path.exists(bind.host):  # checked here: a failed bind would leave its mount
            raise ContainerError(  # point behind in the writable image
                f"cannot bind {bind.host} into the container: it does not exist",
                hint=f"create it, or drop the bind {bind.spec()}",
            )
        is_file = not os.path.isdir(bind.host)
        mounts.append(Mount(bind.host, bind.container, bind.readonly, is_file=is_file))
    return tuple(mounts)


def workdir(workdir: str, sub: str, user: User | None) -> str:
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


def staging_dir() -> str:
    """The host directory the container's staging tmpfs is mounted on, in its own mount
    namespace only: one fixed, empty directory under /run (a tmpfs almost everywhere)."""
    return "/run/condatainer" if os.path.isdir("/run") else "/tmp/condatainer"
