"""Is an image's filesystem clean?  Read straight from its superblock, before every mount.

A read-only mount of a filesystem whose journal needs recovery fails outright, and a read-write
one replays the journal behind the user's back; either way the user should run the check first
(`require_clean`).  Two raw superblock fields decide it (s_state and the needs_recovery
feature), so this reads 1 KiB of the image instead of starting dumpe2fs: it runs before every
container start, and on the exec path imports nothing but `os` (`e2fs` has the rest of what
the superblock says).
"""

from __future__ import annotations

import os

from condatainer.errors import ImageError

EXT_MAGIC = b"\x53\xef"  # little-endian 0xEF53 at byte 1080 (superblock offset 1024 + 56)

# Raw superblock fields (offsets from the start of the superblock, which sits at byte 1024).
_S_BLOCKS, _S_LOG_BLOCK = 4, 24  # s_blocks_count_lo, s_log_block_size
_S_MAGIC, _S_STATE, _S_FEATURE_COMPAT, _S_FEATURE_INCOMPAT = 56, 58, 92, 96
_STATE_VALID, _STATE_ERROR = 0x1, 0x2  # "clean" / "errors" bits of s_state
_COMPAT_JOURNAL = 0x4  # has_journal: ext3
_INCOMPAT_RECOVER = 0x4  # the journal needs recovery


def not_ext3(path: str | os.PathLike[str]) -> ImageError:
    """The error for a file that holds no ext2/3/4 filesystem."""
    return ImageError(
        f"{os.fspath(path)}: not an ext3 image (no ext2/3/4 superblock)",
        hint="overlay images are made with: condatainer o IMAGE",
    )


def raw_superblock(path: str | os.PathLike[str]) -> bytes:
    """The 1 KiB ext superblock of the image at `path`.

    ImageError when the file cannot be read or holds no ext filesystem (callers make sure it
    is a regular file first: `e2fs.path_error`, or the lock they hold on it).
    """
    try:
        with open(path, "rb") as f:
            f.seek(1024)
            raw = f.read(1024)
    except OSError as exc:
        raise ImageError(
            f"{os.fspath(path)}: cannot read: {exc.strerror}",
            hint="ask the image's owner for read access",
        ) from None
    if len(raw) < 1024 or raw[_S_MAGIC : _S_MAGIC + 2] != EXT_MAGIC:
        raise not_ext3(path)
    return raw


def unclean_reason(path: str | os.PathLike[str]) -> str | None:
    """Why the filesystem in `path` is not clean, or None when it is (ImageError as
    `raw_superblock`)."""
    return _unclean(raw_superblock(path))


def _unclean(raw: bytes) -> str | None:
    """`unclean_reason` of the superblock `raw`."""
    state = int.from_bytes(raw[_S_STATE : _S_STATE + 2], "little")
    incompat = int.from_bytes(raw[_S_FEATURE_INCOMPAT : _S_FEATURE_INCOMPAT + 4], "little")
    if incompat & _INCOMPAT_RECOVER:
        return "its journal needs recovery"
    if state & _STATE_ERROR:
        return "e2fsck found errors in it"
    if not state & _STATE_VALID:
        return "its state is 'not clean'"
    return None


def made_problem(path: str | os.PathLike[str]) -> str | None:
    """What is wrong with the ext3 filesystem mke2fs just made in `path`, or None: read back
    from its superblock (an ext superblock, clean, with a journal, filling the file).  mke2fs's
    own exit status is trustworthy; this catches a file that is not what it said (a superblock
    a later debugfs pass broke, a size that does not match) without reading the whole
    filesystem, as `e2fsck -f` would (2.3 s at 100G)."""
    try:
        raw = raw_superblock(path)
        size = os.stat(path).st_size
    except ImageError as err:
        return err.message
    except OSError as exc:
        return exc.strerror or str(exc)
    why = _unclean(raw)
    if why is not None:
        return why
    blocks = int.from_bytes(raw[_S_BLOCKS : _S_BLOCKS + 4], "little")
    block_size = 1024 << int.from_bytes(raw[_S_LOG_BLOCK : _S_LOG_BLOCK + 4], "little")
    compat = int.from_bytes(raw[_S_FEATURE_COMPAT : _S_FEATURE_COMPAT + 4], "little")
    if not compat & _COMPAT_JOURNAL:
        return "it has no journal (not ext3)"
    if blocks * block_size != size:
        return f"it spans {blocks * block_size} bytes of a {size}-byte file"
    return None


def require_clean(path: str | os.PathLike[str]) -> None:
    """Refuse an image whose journal needs recovery or that has errors, before any mount."""
    why = unclean_reason(path)
    if why is not None:
        raise ImageError(
            f"{os.fspath(path)}: the filesystem is not clean ({why}); it was not unmounted cleanly",
            hint=f"condatainer overlay check {os.fspath(path)} --repair",
        )
