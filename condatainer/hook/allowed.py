"""The allow store's files: where the record of an image lives, how one is written, and
`auto_allow`, which records an image `condatainer o` has just made.  trust.py owns the rest
(what a record means: `status`, `allow`, `deny`) and reads records through these names.

Import-light: os and stat, and CPython's own SHA-256 module for a record's name.
`condatainer o` allows its image while its mke2fs works on the other core, and what trust.py
imports (the configuration, pathlib, enum, typing, json) cost mke2fs itself 10 ms and more
there at 1G: a burst of imports on one core slows the other on this kind of machine
(bench/bench_image.py).
"""

from __future__ import annotations

import os
import stat

from condatainer import atomic, jsontext, xdg
from condatainer.errors import TrustError
from condatainer.hook import stamp

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from collections.abc import Mapping

    from condatainer.image.layout import PathLike

#: The mode bits that let someone else change an image.
OTHERS_WRITE = stat.S_IWGRP | stat.S_IWOTH


def store_dir() -> str:
    """The directory holding one record per allowed image."""
    return os.path.join(xdg.directory("data"), "allowed")


def record_file(store: str | os.PathLike[str], real: str) -> str:
    """The record of the image whose real path is `real`, in `store`: named by the SHA-256 of
    that path."""
    return os.path.join(store, _sha256_hex(os.fsencode(real)))


def _sha256_hex(data: bytes) -> str:
    """hashlib.sha256(data).hexdigest() from CPython's own SHA-256 module where there is one:
    hashlib loads OpenSSL first (about 2.5 ms, on `condatainer o`'s other core)."""
    try:
        from _sha2 import sha256  # type: ignore[import-not-found,unused-ignore]  # 3.12 on
    except ImportError:
        try:
            from _sha256 import sha256  # type: ignore[import-not-found,no-redef,unused-ignore]
        except ImportError:  # pragma: no cover - not CPython
            from hashlib import sha256
    return str(sha256(data).hexdigest())


def real_path(path: PathLike) -> str:
    """The path a record is kept under: symlinks resolved."""
    return os.path.realpath(os.fspath(path))


def stat_of(path: PathLike, real: str) -> os.stat_result | None:
    """The image's stat (of `real`, named `path` in a message), None when there is none."""
    try:
        return os.stat(real)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise TrustError(f"cannot check {os.fspath(path)}: {exc.strerror}") from None


def image_stat(path: PathLike, real: str) -> os.stat_result:
    """`stat_of` an image that must be there, as a regular file."""
    st = stat_of(path, real)
    if st is None:
        raise TrustError(f"{os.fspath(path)}: no such image")
    if not stat.S_ISREG(st.st_mode):
        raise TrustError(f"{os.fspath(path)} is not an image file")
    return st


def unsafe(st: os.stat_result) -> bool:
    """Whether someone else owns the image or may change it."""
    return st.st_uid != os.getuid() or bool(st.st_mode & OTHERS_WRITE)


def save(store: str | os.PathLike[str], fields: Mapping[str, object]) -> None:
    """Write the record `fields` (with a `path`, the real path) into `store`, durably."""
    real = fields["path"]
    assert isinstance(real, str)
    try:
        os.makedirs(store, mode=0o700, exist_ok=True)
        atomic.replace(record_file(store, real), jsontext.dumps(dict(fields)) + "\n", 0o600,
                       durable=True)  # fmt: skip
    except OSError as exc:
        raise TrustError(
            f"cannot record the image in {os.fspath(store)}: {exc.strerror}",
            hint=f"check the permissions of {os.fspath(store)}",
        ) from None


def auto_allow(path: PathLike, *, store: str | os.PathLike[str] | None = None) -> bool:
    """Allow an image `condatainer o` just created, only if it is ours and safe: True, or False
    when it is group/world-writable (a umask like 002) or not ours.  The design says such an
    image is never activated without an explicit allow, so the caller tells the user to run
    `condatainer allow`."""
    real = real_path(path)
    st = image_stat(path, real)
    if unsafe(st):
        stamp.touch()  # not allowed, but there: running hooks say so
        return False
    fields = {"path": real, "dev": st.st_dev, "ino": st.st_ino, "uid": st.st_uid,
              "write_bits": 0, "how": "auto"}  # fmt: skip
    save(store_dir() if store is None else store, fields)
    stamp.touch()  # after the record: a hook that looks now finds the image allowed
    return True
