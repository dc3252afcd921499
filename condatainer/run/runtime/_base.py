"""The builtin runtime's base image: a root filesystem other than the host's, and what a
container on it needs from the host.

The host's `/` is the default lower layer of the container.  A Plan with a `base_image` puts
that image's root filesystem there instead, as Apptainer does: a SIF file (its squashfs
partition, on a read-only loop device over the window its descriptor table gives: see
`run.basefs`), a squashfs file, or a sandbox directory (bound read-only).  The env images'
`upper/` directories lie on top of it as before.

With a foreign base nothing of the host is visible unless bound, so the container gets what
Apptainer gives it by default (its apptainer.conf `mount proc/sys/dev/home/tmp`, `bind path`
and `config passwd/group/resolv_conf`):

- /proc, /sys and /dev of the host, bound recursively (`system_mounts`);
- /etc/resolv.conf, /etc/hosts and /etc/localtime of the host, bound as files;
- $HOME, /tmp, /var/tmp and the working directory (the parent's `_setup.mounts` binds them
  wherever they live, not only where the host root holds them), and the Plan's binds;
- /etc/passwd and /etc/group: the base's own, with the user's entry and groups added
  (`merge_passwd`, `merge_group`), written to a tmpfs and bound over the base's files.

The parent opens the image (`open_base`, checking its format on the way) and computes the
user's entries (`identity`); the child mounts it (`mount`) and writes the identity files
(`identity_files`) once the root is built.  Child-side functions raise OSError; the child
turns it into its one-line error.
"""

from __future__ import annotations

import grp
import os
import pwd

from condatainer.errors import BaseImageError
from condatainer.record import Record
from condatainer.run import basefs
from condatainer.run.runtime import _linux as linux

SYSTEM_DIRS = ("/proc", "/sys", "/dev")
HOST_FILES = ("/etc/resolv.conf", "/etc/hosts", "/etc/localtime")


class Base(Record):
    """A base image opened by the parent: its root filesystem and, for a file, an open fd."""

    shown: str  # as the Plan names it, for messages
    rootfs: basefs.RootFs
    fd: int = -1  # a read-only descriptor of the SIF or squashfs file; -1 for a directory


class Identity(Record):
    """The user the command runs as, as /etc/passwd and /etc/group must show them."""

    name: str
    uid: int
    passwd_line: str  # name:x:uid:gid:gecos:home:shell
    groups: tuple[tuple[str, int], ...]  # (name, gid), the primary group first


def open_base(path: str) -> Base:
    """Check the base image `path` and open it (read-only) for the child to mount."""
    if "://" in path:
        raise BaseImageError(
            f"base image {path}: the builtin runtime needs a local file or directory, not a URI",
            hint="pull it into a file first, e.g. on a machine with Apptainer: apptainer pull"
            " base.sif URI; then use -b base.sif",
        )
    rootfs = basefs.locate(path)
    if rootfs.kind == "directory":
        return Base(path, rootfs)
    try:
        fd = os.open(rootfs.path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise BaseImageError(f"base image {path}: cannot open it: {exc.strerror}") from None
    return Base(path, rootfs, fd)


def close(base: Base | None) -> None:
    if base is not None and base.fd >= 0:
        try:
            os.close(base.fd)
        except OSError:
            return


def system_mounts() -> list[tuple[str, str, bool]]:
    """What a foreign base gets from the host before any bind, as (host path, container path,
    is a file): /proc, /sys, /dev (recursively) and the network and time files."""
    found = [(d, d, False) for d in SYSTEM_DIRS if os.path.isdir(d)]
    for name in HOST_FILES:
        real = os.path.realpath(name)  # /etc/resolv.conf is often a link into /run
        if os.path.isfile(real):
            found.append((real, name, True))
    return found


def identity(
    uid: int, gid: int, groups: tuple[int, ...], name: str | None = None, home: str | None = None
) -> Identity:
    """The passwd and group entries of the user `uid` (primary group `gid`, also in `groups`);
    `name` and `home` as the runtime decided them, else from the host's passwd."""
    try:
        entry: pwd.struct_passwd | None = pwd.getpwuid(uid)
    except KeyError:
        entry = None
    name = name or (entry.pw_name if entry else str(uid))
    home = home or (entry.pw_dir if entry else "/")
    gecos = entry.pw_gecos if entry else name
    shell = entry.pw_shell if entry else "/bin/sh"
    line = ":".join([name, "x", str(uid), str(gid), gecos, home, shell])
    found: list[tuple[str, int]] = []
    for g in dict.fromkeys((gid, *groups)):
        try:
            found.append((grp.getgrgid(g).gr_name, g))
        except KeyError:
            found.append((str(g), g))
    return Identity(name, uid, line, tuple(found))


def merge_passwd(text: str, ident: Identity) -> str:
    """The base's passwd with the user's entry in place of any entry of the same name or uid."""
    kept = [
        line
        for line in text.splitlines()
        if not _same(line.split(":"), ident.name, str(ident.uid), uid_field=2)
    ]
    return "\n".join([*kept, ident.passwd_line]) + "\n"


def merge_group(text: str, ident: Identity) -> str:
    """The base's group file with the user added as a member of each of their groups: an
    existing group of the same gid gains the member, a missing one is appended."""
    lines = text.splitlines()
    for name, gid in ident.groups:
        for i, line in enumerate(lines):
            fields = line.split(":")
            if len(fields) >= 4 and fields[2] == str(gid):
                members = [m for m in fields[3].split(",") if m]
                if ident.name not in members:
                    fields[3] = ",".join([*members, ident.name])
                lines[i] = ":".join(fields)
                break
        else:
            lines = [ln for ln in lines if ln.split(":")[0] != name]
            lines.append(f"{name}:x:{gid}:{ident.name}")
    return "\n".join(lines) + "\n"


def _same(fields: list[str], name: str, uid: str, *, uid_field: int) -> bool:
    return len(fields) > uid_field and (fields[0] == name or fields[uid_field] == uid)


# --------------------------------------------------------------------------------------------
# Child side: run in the container's mount namespace, before pivot_root


def mount(base: Base, where: str) -> str:
    """Mount the base's root filesystem read-only at `where` (created); return `where`."""
    os.mkdir(where)
    rootfs = base.rootfs
    if rootfs.kind == "directory":
        linux.bind_readonly(rootfs.path, where, recursive=False)
        return where
    device, loop_fd = linux.loop_attach(
        base.fd, read_only=True, name=rootfs.path, offset=rootfs.offset, size=rootfs.size
    )
    try:
        flags = linux.MS_RDONLY | linux.MS_NODEV | linux.MS_NOSUID
        linux.mount(device, where, "squashfs", flags)
    finally:
        os.close(loop_fd)  # the mount holds the device; unmounted, it detaches itself
    return where


def identity_files(ident: Identity, passwd: str, group: str, files: str) -> list[tuple[str, str]]:
    """Write the container's passwd and group into a tmpfs at `files`; return (file, container
    path) for each, to be bound over /etc/passwd and /etc/group.  `passwd` and `group` are
    where the base's own files are (host paths under the new root; they may be missing)."""
    os.mkdir(files)
    linux.mount("condatainer", files, "tmpfs", linux.MS_NODEV | linux.MS_NOSUID, "mode=0755")
    result = []
    for source, target, merge in (
        (passwd, "passwd", merge_passwd),
        (group, "group", merge_group),
    ):
        path = os.path.join(files, target)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, merge(_read(source), ident).encode("utf-8", "surrogateescape"))
        finally:
            os.close(fd)
        result.append((path, f"/etc/{target}"))
    return result


def _read(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read(4 << 20).decode("utf-8", "surrogateescape")
    except OSError:
        return ""
