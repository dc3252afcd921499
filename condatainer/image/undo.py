"""e2fsprogs undo files: replaying one with `e2undo`, and resuming a replay that was cut off.

resize2fs and debugfs, run with `-z FILE`, save every block before they first overwrite it;
`e2undo FILE IMAGE` writes the saved blocks back.  e2undo refuses (unless forced, which we never
do) when the image's superblock differs from the copy the undo file keeps of it: the image
changed after the tool stopped, and replaying would destroy that change.

One change is our own, and safe to see through: a replay that was itself cut off (a SIGKILL of
the command that was repairing, a crash).  e2undo writes the saved blocks in block order, so the
superblock, in block 0, is put back first; a second e2undo then finds the *original* superblock
where it expects the copy and refuses.  `replay` recognises exactly that case -- the image's
superblock is byte for byte the one the undo file saved from before the tool's first write --
puts the copy back where e2undo expects it, and replays again, which writes every block again.

The format (e2fsprogs misc/e2undo.c, "E2UNDO02"): a header block; a copy of the superblock (its
magic number inverted); then key blocks, each listing (filesystem block, crc, size) for the data
blocks that follow it.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from condatainer import runner, signals

_MAGIC = b"E2UNDO02"
_KEY_MAGIC = 0xCADECADE
_HEADER = struct.Struct("<8sQQQIIIIIIIIQ")  # magic .. fs_offset (the rest is padding and crc)
_KEY_HEADER = struct.Struct("<IIQ")
_KEY = struct.Struct("<QII")
_SB_OFFSET = 1024
_SB_SIZE = 1024
_SB_MAGIC_AT = 56  # s_magic inside the superblock, little-endian u16


@dataclass(frozen=True)
class Header:
    num_keys: int
    super_offset: int
    key_offset: int
    block_size: int
    fs_block_size: int
    state: int
    fs_offset: int


def header(undo: Path) -> Header | None:
    """The undo file's header, or None when it has none yet (its tool wrote nothing)."""
    try:
        with open(undo, "rb") as f:
            raw = f.read(_HEADER.size)
    except OSError:
        return None
    if len(raw) < _HEADER.size:
        return None
    magic, keys, sup, key, bs, fbs, _crc, state, _c, _i, _r, _pad, fs_offset = _HEADER.unpack(raw)
    if magic != _MAGIC or not bs or not fbs:
        return None
    return Header(keys, sup, key, bs, fbs, state, fs_offset)


def _superblock_copy(undo: Path, hdr: Header) -> bytes | None:
    """The superblock the undo file expects to find (its magic number put back)."""
    with open(undo, "rb") as f:
        f.seek(hdr.super_offset * hdr.block_size)
        copy = bytearray(f.read(_SB_SIZE))
    if len(copy) != _SB_SIZE:
        return None
    magic = struct.unpack_from("<H", copy, _SB_MAGIC_AT)[0]
    struct.pack_into("<H", copy, _SB_MAGIC_AT, ~magic & 0xFFFF)
    return bytes(copy)


def _original_superblock(undo: Path, hdr: Header) -> bytes | None:
    """The superblock as it was before the tool's first write, from the saved blocks."""
    per_block = hdr.block_size // _KEY.size - 1
    with open(undo, "rb") as f:
        lblk = hdr.key_offset
        seen = 0
        while seen < hdr.num_keys:
            f.seek(lblk * hdr.block_size)
            block = f.read(hdr.block_size)
            if len(block) < hdr.block_size or _KEY_HEADER.unpack_from(block)[0] != _KEY_MAGIC:
                return None
            lblk += 1
            for j in range(min(per_block, hdr.num_keys - seen)):
                fsblk, _crc, size = _KEY.unpack_from(block, _KEY_HEADER.size + j * _KEY.size)
                start = fsblk * hdr.fs_block_size  # inside the filesystem
                if start <= _SB_OFFSET and start + size >= _SB_OFFSET + _SB_SIZE:
                    f.seek(lblk * hdr.block_size + _SB_OFFSET - start)
                    saved = f.read(_SB_SIZE)
                    return saved if len(saved) == _SB_SIZE else None
                lblk += -(-size // hdr.block_size)
            seen += per_block
    return None


def _image_superblock(image: Path, hdr: Header) -> bytes:
    with open(image, "rb") as f:
        f.seek(hdr.fs_offset + _SB_OFFSET)
        return f.read(_SB_SIZE)


def _cut_replay(image: Path, undo: Path, hdr: Header) -> bytes | None:
    """The superblock copy to put back when an earlier replay of `undo` was cut off, else None."""
    try:
        copy = _superblock_copy(undo, hdr)
        original = _original_superblock(undo, hdr)
        current = _image_superblock(image, hdr)
    except OSError:
        return None
    if copy is None or original is None or current == copy or current != original:
        return None
    return copy


REPLAYED = "replayed"
REFUSED = "refused"  # e2undo wrote nothing (its checks all come before the first write)
CUT = "cut"  # e2undo wrote some blocks and not others: only another replay can finish it


def replay(image: Path, undo: Path, holding: Sequence[int]) -> tuple[str, str]:
    """Write the blocks saved in `undo` back into `image` with e2undo (never forced).

    Returns (REPLAYED, REFUSED or CUT, e2undo's complaint).  e2undo checks everything (the
    header, the superblock, every key and saved block) before its first write and exits 1
    when a check fails; once it writes, it carries on past I/O errors and exits 0, saying so.
    The caller holds the image's write lock and the record naming `undo` (`holding`: the tool
    inherits them, and dies with us), and defers our signals.
    """
    hdr = header(undo)
    if hdr is None:
        return REFUSED, "the undo file holds nothing yet"
    argv = ["e2undo", str(undo), str(image)]
    res = runner.run(argv, new_session=True, holding=holding)
    if res.returncode > 0:
        copy = _cut_replay(image, undo, hdr)
        if copy is None:
            return REFUSED, _complaint(res)
        fd = os.open(image, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.pwrite(fd, copy, hdr.fs_offset + _SB_OFFSET)
        finally:
            os.close(fd)
        res = runner.run(argv, new_session=True, holding=holding)
    if res.returncode == 0 and "run e2fsck NOW" not in res.stderr + res.stdout:
        return REPLAYED, ""
    return (REFUSED if res.returncode > 0 else CUT), _complaint(res)


def _complaint(res: runner.Result) -> str:
    said = [ln.strip() for ln in (res.stderr + res.stdout).splitlines() if ln.strip()]
    if res.returncode < 0:
        return f"e2undo was killed by {signals.name(-res.returncode)}"
    return said[-1] if said else f"e2undo exit status {res.returncode}"
