"""Where a base image's root filesystem lies: in a SIF file, a squashfs file, or a directory.

`locate(path)` answers for the three kinds of base image Apptainer runs (and so the builtin
runtime too): a SIF file, whose root filesystem is a squashfs partition at an offset its
descriptor table gives; a bare squashfs file (offset 0); a sandbox directory.  It reads headers
only, with the standard library: nothing is mounted and no tool is run, so `base info` and
the builtin runtime's parent process can both use it.

The SIF format (sylabs/sif, format version "01", what `apptainer build` and `apptainer pull`
write; `siftool` from Debian builds and lists the same files).  All integers are little-endian
and the structures are written field by field, without padding.

    offset 0: the global header, 128 bytes
        launch[32]          "#!/usr/bin/env run-singularity\\n", NUL-padded (may be all NULs)
        magic[10]           "SIF_MAGIC\\0"
        version[3]          "01\\0"
        arch[3]             the primary architecture as two digits ("02\\0" = amd64)
        id[16]              a UUID
        created, modified   int64, unix seconds
        descr_free, descr_total     int64: unused and total descriptor slots
        descr_offset, descr_size    int64: where the descriptor table is, in bytes
        data_offset, data_size      int64: where the data objects are
    descr_offset: descr_total descriptors of 585 bytes each
        datatype int32      0x4004 = a partition (0x4001 definition file, 0x4003 labels, ...)
        used uint8          0 = a free slot
        id, groupid, linkedid       uint32 (groupid carries the 0xf0000000 mask)
        offset, size, size_with_padding     int64: the object's bytes in the file
        created, modified, uid, gid         int64 (uid/gid unused since format 01)
        name[128]           the logical file name, NUL-padded
        extra[384]          for a partition: fstype int32 (1 squashfs, 2 ext3, 3 immutable
                            object, 4 raw, 5 encrypted squashfs), parttype int32 (1 system,
                            2 primary system, 3 data, 4 overlay), arch[3] as in the header

The root filesystem is the used partition descriptor whose parttype is "primary system", the
one Apptainer mounts (its image/sif.go asks for exactly that).  It must be squashfs (an ext3
primary partition is a writable SIF, an encrypted one needs Apptainer's key handling: both are
refused here), built for this machine's architecture, and lie inside the file; the squashfs
magic at its offset is checked too, so a truncated or foreign file fails here, in words, and not
as a mount error.
"""

from __future__ import annotations

import os
import stat
import struct

from condatainer.errors import BaseImageError
from condatainer.record import Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (the exec path's rule)
if TYPE_CHECKING:
    from typing import BinaryIO

SIF_MAGIC = b"SIF_MAGIC\0"
SQUASHFS_MAGIC = b"hsqs"  # 0x73717368, little-endian, at the start of a squashfs filesystem

_HEADER = struct.Struct("<32s10s3s3s16s8q")  # 128 bytes
_DESCRIPTOR = struct.Struct("<iBIIIqqqqqqq128s384s")  # 585 bytes
_PARTITION = struct.Struct("<ii3s")  # the start of a partition descriptor's `extra`

DATA_PARTITION = 0x4004
PART_PRIMARY_SYSTEM = 2
FS_NAMES = {1: "squashfs", 2: "ext3", 3: "immutable object", 4: "raw", 5: "encrypted squashfs"}

# SIF's architecture codes (sylabs/sif archType) and the names `uname -m` gives for them.
ARCH_CODES = {
    b"01": "386",
    b"02": "amd64",
    b"03": "arm",
    b"04": "arm64",
    b"05": "ppc64",
    b"06": "ppc64le",
    b"07": "mips",
    b"08": "mipsle",
    b"09": "mips64",
    b"10": "mips64le",
    b"11": "s390x",
    b"12": "riscv64",
}
MACHINE_ARCH = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "i386": "386",
    "i686": "386",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "arm",
    "ppc64le": "ppc64le",
    "ppc64": "ppc64",
    "s390x": "s390x",
    "riscv64": "riscv64",
}

KINDS = ("sif", "squashfs", "directory")


class RootFs(Record):
    """Where a base image's root filesystem is: a squashfs at `offset` (`size` bytes) of the
    file `path`, or the directory `path` itself (kind "directory", offset and size 0)."""

    path: str  # absolute, symlinks resolved
    kind: str  # one of KINDS
    offset: int = 0
    size: int = 0
    arch: str | None = None  # a SIF's partition architecture


def host_arch() -> str:
    """This machine's architecture in SIF's naming (amd64, arm64, ...)."""
    machine = os.uname().machine
    return MACHINE_ARCH.get(machine, machine)


def locate(path: str) -> RootFs:
    """Where the root filesystem of the base image `path` lies; BaseImageError in words if the
    file is missing, unreadable, or not a SIF/squashfs/directory this machine can use."""
    real = os.path.realpath(path)
    try:
        st = os.stat(real)
    except FileNotFoundError:
        raise BaseImageError(
            f"base image {path}: no such file or directory",
            hint="check -b or config base_image; condatainer base info shows the base in use",
        ) from None
    except OSError as exc:
        raise BaseImageError(f"base image {path}: {exc.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        return RootFs(real, "directory")
    if not stat.S_ISREG(st.st_mode):
        raise BaseImageError(f"base image {path}: not a regular file or a directory")
    try:
        with open(real, "rb") as f:
            head = f.read(_HEADER.size)
            if head[: len(SQUASHFS_MAGIC)] == SQUASHFS_MAGIC:
                return RootFs(real, "squashfs", 0, st.st_size)
            if head[32:42] != SIF_MAGIC:
                raise BaseImageError(
                    f"base image {path}: neither a SIF file nor a squashfs filesystem",
                    hint="a base image is a .sif (apptainer pull/build, condatainer base pull),"
                    " a squashfs file or a sandbox directory",
                )
            return _sif_root(path, real, f, head, st.st_size)
    except OSError as exc:
        raise BaseImageError(f"base image {path}: cannot read it: {exc.strerror}") from None


def _sif_root(shown: str, real: str, f: BinaryIO, head: bytes, file_size: int) -> RootFs:
    def bad(why: str) -> BaseImageError:
        return BaseImageError(
            f"base image {shown}: {why}",
            hint="fetch or build it again (condatainer base pull --force), or check it with:"
            f" siftool list {shown}",
        )

    if len(head) < _HEADER.size:
        raise bad("truncated SIF file (the header is incomplete)")
    fields = _HEADER.unpack(head)
    version = fields[2].rstrip(b"\0")
    if version != b"01":
        raise bad(f"SIF format version {version.decode(errors='replace')!r} is not supported")
    _created, _modified, _free, total, descr_offset, descr_size = fields[5:11]
    if total <= 0 or descr_offset <= 0 or descr_size < total * _DESCRIPTOR.size:
        raise bad("its descriptor table is empty or damaged")
    if descr_offset + descr_size > file_size:
        raise bad("truncated SIF file (the descriptor table lies past its end)")
    f.seek(descr_offset)
    table = f.read(total * _DESCRIPTOR.size)
    if len(table) < total * _DESCRIPTOR.size:
        raise bad("truncated SIF file (the descriptor table is incomplete)")
    for i in range(total):
        d = _DESCRIPTOR.unpack_from(table, i * _DESCRIPTOR.size)
        datatype, used, offset, size, extra = d[0], d[1], d[5], d[6], d[13]
        if not used or datatype != DATA_PARTITION:
            continue
        fstype, parttype, arch_code = _PARTITION.unpack_from(extra)
        if parttype != PART_PRIMARY_SYSTEM:
            continue
        code = arch_code.rstrip(b"\0")
        arch = ARCH_CODES.get(code, code.decode("ascii", "replace"))
        if fstype != 1:
            name = FS_NAMES.get(fstype, f"type {fstype}")
            raise bad(f"its root filesystem is {name}, not squashfs; only squashfs is supported")
        if arch != host_arch():
            raise BaseImageError(
                f"base image {shown}: built for {arch}, but this machine is {host_arch()}",
                hint=f"use a base image for {host_arch()}",
            )
        if offset <= 0 or size <= 0 or offset + size > file_size:
            raise bad("truncated SIF file (its root filesystem lies past its end)")
        f.seek(offset)
        if f.read(len(SQUASHFS_MAGIC)) != SQUASHFS_MAGIC:
            raise bad(f"no squashfs filesystem at offset {offset}, where its descriptor says")
        return RootFs(real, "sif", offset, size, arch)
    raise bad("it has no primary system partition (no root filesystem)")
