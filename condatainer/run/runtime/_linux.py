"""The Linux system calls the builtin runtime makes itself (ctypes), and loop-device attachment.

Why not `mount`/`losetup` subprocesses: a chain of them costs ~90 ms per container start; the
same work as direct system calls from one process costs a few milliseconds.  Python's standard
library has no `mount`, `umount2`, `pivot_root` or `prctl` (and `os.unshare` only from 3.12).

Every function raises `OSError` (errno, strerror, the path involved) on failure, like `os.*`.
Only `runtime.builtin` uses this module; it is Linux-only and needs root (CAP_SYS_ADMIN).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import struct
import time

# <sched.h>
CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000

# <sys/mount.h>
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_UNBINDABLE = 1 << 17
MS_SLAVE = 1 << 19
MNT_DETACH = 2

# statvfs f_flag bits that a read-only bind remount must repeat (the kernel refuses to clear
# locked flags, and silently clearing nosuid/nodev/noexec would weaken the bind).
_ST_TO_MS = {
    os.ST_NOSUID: MS_NOSUID,
    os.ST_NODEV: MS_NODEV,
    os.ST_NOEXEC: MS_NOEXEC,
    os.ST_NOATIME: 1024,  # MS_NOATIME
    os.ST_NODIRATIME: 2048,  # MS_NODIRATIME
    os.ST_RELATIME: 1 << 21,  # MS_RELATIME
}

# <linux/prctl.h>
PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38

# <linux/loop.h>
LOOP_SET_FD = 0x4C00
LOOP_SET_STATUS64 = 0x4C04
LOOP_CONFIGURE = 0x4C0A
LOOP_CTL_GET_FREE = 0x4C82
LO_FLAGS_READ_ONLY = 1
LO_FLAGS_AUTOCLEAR = 4

# struct loop_info64: 5 x u64 (device, inode, rdevice, offset, sizelimit), 4 x u32 (number,
# encrypt_type, encrypt_key_size, flags), file_name[64], crypt_name[64], encrypt_key[32],
# u64 init[2] = 232 bytes.  struct loop_config: u32 fd, u32 block_size, loop_info64,
# u64 reserved[8] = 304 bytes.
_LOOP_INFO64 = struct.Struct("=5Q4I64s64s32s2Q")
_LOOP_CONFIG = struct.Struct("=II232s64x")

# pivot_root has no libc wrapper; its number differs per architecture.
_SYS_PIVOT_ROOT = {
    "x86_64": 155,
    "aarch64": 41,
    "arm64": 41,
    "riscv64": 41,
    "ppc64le": 203,
    "ppc64": 203,
    "s390x": 217,
    "i386": 217,
    "i686": 217,
    "armv7l": 218,
}.get(os.uname().machine)

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_char_p,
]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4


def _fail(path: str | None = None) -> OSError:
    err = ctypes.get_errno()
    return OSError(err, os.strerror(err), path)


def _b(path: str | None) -> bytes | None:
    return None if path is None else os.fsencode(path)


def unshare(flags: int) -> None:
    if _libc.unshare(flags) != 0:
        raise _fail()


def mount(
    source: str | None, target: str, fstype: str | None, flags: int = 0, data: str | None = None
) -> None:
    if _libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data)) != 0:
        raise _fail(target)


def umount2(target: str, flags: int = 0) -> None:
    if _libc.umount2(_b(target), flags) != 0:
        raise _fail(target)


def pivot_root(new_root: str, put_old: str) -> None:
    if _SYS_PIVOT_ROOT is None:
        raise OSError(errno.ENOSYS, f"pivot_root: unknown architecture {os.uname().machine}")
    if _libc.syscall(_SYS_PIVOT_ROOT, _b(new_root), _b(put_old)) != 0:
        raise _fail(new_root)


def prctl(option: int, arg: int) -> None:
    if _libc.prctl(option, arg, 0, 0, 0) != 0:
        raise _fail()


def mount_flags_of(path: str) -> int:
    """The MS_* flags a bind remount of `path` must keep (nosuid, nodev, noexec, atime)."""
    st = os.statvfs(path)
    return sum(ms for st_bit, ms in _ST_TO_MS.items() if st.f_flag & st_bit)


def bind_readonly(source: str, target: str, *, recursive: bool = True) -> None:
    """Bind `source` at `target`, then make the top mount of `target` read-only."""
    mount(source, target, None, MS_BIND | (MS_REC if recursive else 0))
    keep = mount_flags_of(target)
    mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | keep)


def loop_attach(
    backing_fd: int, *, read_only: bool, name: str, offset: int = 0, size: int = 0
) -> tuple[str, int]:
    """Attach the open file `backing_fd` to a free loop device; return (device path, its fd).

    With `offset`/`size` the device shows only that window of the file (a SIF's squashfs
    partition); size 0 means up to the end of the file.

    The device is configured with LO_FLAGS_AUTOCLEAR: it detaches itself when its last user
    (the filesystem mounted from it, or the returned fd if nothing was mounted) goes away.  It
    keeps a reference to `backing_fd`'s open file description for as long as it is attached --
    and with it any OFD lock taken on that description, so the image stays locked exactly as
    long as it is mounted anywhere.

    Another process may take the free device between LOOP_CTL_GET_FREE and our configuration;
    that shows as EBUSY and we ask for another one.
    """
    flags = LO_FLAGS_AUTOCLEAR | (LO_FLAGS_READ_ONLY if read_only else 0)
    file_name = os.fsencode(name)[:63]
    info = _LOOP_INFO64.pack(0, 0, 0, offset, size, 0, 0, 0, flags, file_name, b"", b"", 0, 0)
    config = _LOOP_CONFIG.pack(backing_fd, 0, info)
    ctl = os.open("/dev/loop-control", os.O_RDWR | os.O_CLOEXEC)
    try:
        for attempt in range(64):
            number = fcntl.ioctl(ctl, LOOP_CTL_GET_FREE)
            device = f"/dev/loop{number}"
            fd = _open_loop(device, read_only)
            try:
                _configure(fd, backing_fd, config, info)
            except OSError as exc:
                os.close(fd)
                if exc.errno == errno.EBUSY:  # lost the race for this device: take another
                    time.sleep(0.001 * attempt)
                    continue
                raise OSError(exc.errno, exc.strerror, device) from None
            return device, fd
    finally:
        os.close(ctl)
    raise OSError(errno.EBUSY, "no free loop device after 64 attempts", "/dev/loop-control")


def _open_loop(device: str, read_only: bool) -> int:
    mode = (os.O_RDONLY if read_only else os.O_RDWR) | os.O_CLOEXEC
    for _ in range(100):
        try:
            return os.open(device, mode)
        except FileNotFoundError:
            # The kernel just created the device; devtmpfs may not show the node yet.
            time.sleep(0.001)
    return os.open(device, mode)


def _configure(fd: int, backing_fd: int, config: bytes, info: bytes) -> None:
    """LOOP_CONFIGURE (Linux >= 5.8) in one step; LOOP_SET_FD + LOOP_SET_STATUS64 before that."""
    try:
        fcntl.ioctl(fd, LOOP_CONFIGURE, config)
        return
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTTY):
            raise
    fcntl.ioctl(fd, LOOP_SET_FD, backing_fd)
    try:
        fcntl.ioctl(fd, LOOP_SET_STATUS64, info)
    except OSError:
        fcntl.ioctl(fd, 0x4C01)  # LOOP_CLR_FD: do not leave a half-configured device behind
        raise
