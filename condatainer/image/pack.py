"""`overlay pack` / `unpack`: an image as a small zstd file, and back.

`pack` copies only the blocks in use (`e2image -ra`, sparse output; much faster than copying
an allocated image and it drops the remains of deleted files), shrinks the copy to its minimum
(`resize2fs -M`) and compresses it (`zstd -T0`).  The original size is recorded in a zstd
*skippable frame* appended to the file: part of the zstd format, ignored by `zstd -d`, so the
packed file is still a plain `.zst`.  `unpack` decompresses (sparse), grows back to the recorded
size (allocated again if the original was), checks, and publishes without clobbering.  Both
build their output in hidden temporary files (`files.Temp`) that a failure removes.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

from condatainer import runner, signals
from condatainer.display import Notify
from condatainer.errors import ImageError
from condatainer.image import e2fs, failures, files, layout, locks, recovery, resize, sizes
from condatainer.image.layout import PathLike
from condatainer.image.sizes import format_size
from condatainer.progress import SILENT, Progress


@dataclass(frozen=True)
class PackResult:
    """A packed image: `output` holds the zstd stream plus the size record."""

    image: Path
    output: Path
    original_bytes: int
    packed_bytes: int
    notices: list[str] = field(default_factory=list)
    used_bytes: int = 0  # in use in the original filesystem (dumpe2fs: data and metadata)


@dataclass(frozen=True)
class UnpackResult:
    """An image restored from a packed file."""

    packed: Path
    output: Path
    size_bytes: int
    sparse: bool
    notices: list[str] = field(default_factory=list)


_SKIPPABLE_MAGIC = 0x184D2A5E  # one of the 16 zstd skippable-frame magics (0x184D2A50..5F)


_RECORD_PAYLOAD = 248  # fixed, so the record is the last 256 bytes of the file


_RECORD_KIND = "condatainer-pack"


def _size_record(size: int, allocated: bool) -> bytes:
    """The skippable zstd frame that carries the original size (fixed length: read back from
    the end of the file).  No file name in it: unpack names the image after the packed file,
    and a name could make the payload overflow its fixed size."""
    data = {"kind": _RECORD_KIND, "version": 1, "size_bytes": size, "allocated": allocated}
    payload = json.dumps(data, sort_keys=True).encode()
    assert len(payload) <= _RECORD_PAYLOAD
    return struct.pack("<II", _SKIPPABLE_MAGIC, _RECORD_PAYLOAD) + payload.ljust(_RECORD_PAYLOAD)


def read_pack_record(packed: PathLike) -> dict[str, object] | None:
    """The record `pack` appended to a packed image, or None for a plain `.zst` file."""
    total = 8 + _RECORD_PAYLOAD
    try:
        with open(packed, "rb") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() < total:
                return None
            f.seek(-total, os.SEEK_END)
            raw = f.read(total)
    except OSError:
        return None
    magic, length = struct.unpack("<II", raw[:8])
    if magic != _SKIPPABLE_MAGIC or length != _RECORD_PAYLOAD:
        return None
    try:
        data = json.loads(raw[8:].decode())
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("kind") != _RECORD_KIND:
        return None
    return data


def pack(
    path: PathLike,
    out: PathLike | None = None,
    *,
    progress: Progress = SILENT,
    notify: Notify | None = None,
) -> PackResult:
    """Shrink a copy of the image to its minimum and compress it to `out` (default IMAGE.zst).

    The original is only read, under a read lock, while its blocks in use are copied; it must be
    clean.  `out` is never overwritten.  `progress` hears each stage, with the bytes copied
    and the bytes written by zstd.  What an interrupted pack left is removed first and
    reported through `notify` (default: the result's notices).
    """
    image = Path(path)
    if out is None and image.name in ("", ".", ".."):
        raise ImageError(f"{image}: not an image file", hint="condatainer overlay pack IMAGE")
    output = Path(out) if out is not None else image.with_name(image.name + layout.PACK_SUFFIX)
    for tool in ("e2image", "e2fsck", "resize2fs", "zstd"):
        runner.require(tool)
    notices: list[str] = []
    recovery.repair_target(output, notify or notices.append)
    recovery.refuse_if_interrupted(image)
    parent = files.check_target(output)
    copy = files.Temp(output, "copy")
    temp = files.Temp(output)
    record = recovery.begin(output, "pack", files=[copy.name, temp.name])
    action = f"cannot pack {image} into {output}"
    needed = 0
    try:
        with signals.termination_raises():
            with locks.hold(image, write=False) as lock:
                e2fs.require_clean(image)
                sb = e2fs.superblock(image)
                needed = sb.used_bytes
                allocated = files.is_allocated(os.stat(image))
                os.close(copy.create())
                progress.stage(
                    "copying the blocks in use (e2image)",
                    total=needed,
                    measure=lambda: files.allocated_bytes(copy.path),
                )
                argv = ["e2image", "-ra", str(image), str(copy.path)]
                res = runner.run(argv, holding=(record.fd, lock.fd))
                if not res.ok:
                    raise _pack_failure(action, "e2image", res)
            holding = (record.fd,)
            progress.stage("checking the copy (e2fsck)")
            res = runner.run(["e2fsck", "-f", "-p", str(copy.path)], holding=holding)
            if res.returncode & ~3:
                raise ImageError(
                    f"{action}: the copy failed its check: {failures.tool_detail(res)}",
                    hint=f"condatainer overlay check {image} -f",
                )
            progress.stage("shrinking the copy to its minimum (resize2fs -M)")
            res = resize.run_resize2fs(copy.path, None, "-M", holding=holding)
            if not res.ok:
                raise _pack_failure(action, "resize2fs", res)
            os.close(temp.create())
            progress.stage(
                f"compressing {format_size(os.stat(copy.path).st_size)} (zstd)",
                measure=lambda: os.stat(temp.path).st_size,
            )
            argv = ["zstd", "-T0", "-q", "-f", str(copy.path), "-o", str(temp.path)]
            res = runner.run(argv, holding=holding)
            if not res.ok:
                raise _pack_failure(action, "zstd", res)
            copy.discard()
            with open(temp.path, "ab") as f:
                f.write(_size_record(sb.size_bytes, allocated))
            os.chmod(temp.path, files.umask_mode(0o644))
            temp.publish()
            record.end()
    except BaseException as exc:
        copy.discard()
        temp.discard()
        record.end()
        err = failures.failure(
            "pack", action, exc, output, parent, needed, sparse=False, published=temp.published
        )
        if err is exc:
            raise
        raise err from exc
    return PackResult(
        image=image,
        output=output,
        original_bytes=sb.size_bytes,
        packed_bytes=os.stat(output).st_size,
        used_bytes=needed,
        notices=notices,
    )


def _pack_failure(action: str, tool: str, res: runner.Result) -> Exception:
    quota = failures.out_of_space(res)
    if quota is not None:
        return failures.OutOfSpace(quota)
    return ImageError(f"{action}: {tool} failed: {failures.tool_detail(res)}")


def _unpacked_name(packed: Path) -> Path:
    suffix = layout.PACK_SUFFIX
    if not packed.name.lower().endswith(suffix) or len(packed.name) <= len(suffix):
        raise ImageError(
            f"{packed}: the name does not end in {suffix}, so the image name"
            " cannot be derived from it",
            hint="name the output: -o IMAGE.img",
        )
    return layout.normalise_image_name(str(packed)[: -len(suffix)])


def content_size(packed: PathLike) -> int | None:
    """The decompressed size a zstd file's first frame header declares (zstd writes it when it
    compresses a file), or None when it does not say.  For the progress of `unpack`."""
    try:
        with open(packed, "rb") as f:
            head = f.read(18)
    except OSError:
        return None
    if len(head) < 6 or head[:4] != b"\x28\xb5\x2f\xfd":
        return None
    descriptor = head[4]
    single_segment = descriptor >> 5 & 1
    start = 5 + (0 if single_segment else 1) + (0, 1, 2, 4)[descriptor & 3]
    length = (single_segment, 2, 4, 8)[descriptor >> 6]
    if length == 0 or len(head) < start + length:
        return None
    value = int.from_bytes(head[start : start + length], "little")
    return value + 256 if length == 2 else value


def unpack(
    packed: PathLike,
    out: PathLike | None = None,
    *,
    size_bytes: int | None = None,
    progress: Progress = SILENT,
    notify: Notify | None = None,
) -> UnpackResult:
    """Restore an image from `pack`'s output: `out` defaults to the packed name minus `.zst`.

    The image grows back to `size_bytes`, else to the size recorded at pack time (allocated again
    if the original was).  A plain `.zst` of an image (no record) needs `size_bytes`.  `out` is
    never overwritten; on any failure nothing is left behind.  `progress` hears each stage,
    with how far the decompression is.  What an interrupted unpack of the same name left is
    removed first and reported through `notify` (default: the result's notices).
    """
    src = Path(packed)
    if not src.is_file():
        raise ImageError(
            f"{src}: no such packed image" if not src.exists() else f"{src}: not a file"
        )
    output = layout.normalise_image_name(os.fspath(out)) if out is not None else _unpacked_name(src)
    for tool in ("zstd", "e2fsck", "resize2fs"):
        runner.require(tool)
    record = read_pack_record(src)
    target_size = size_bytes
    if target_size is None:
        recorded = record.get("size_bytes") if record else None
        if not isinstance(recorded, int):
            raise ImageError(
                f"{src}: holds no size record (it was not made by condatainer overlay pack)",
                hint="give the size of the unpacked image: -s SIZE",
            )
        target_size = recorded
    target_size = sizes.image_size(target_size)
    allocated = bool(record.get("allocated")) if record else False
    notices: list[str] = []
    recovery.repair_target(output, notify or notices.append)
    parent = files.check_target(output)
    temp = files.Temp(output)
    own = recovery.begin(output, "unpack", files=[temp.name])
    holding = (own.fd,)
    action = f"cannot unpack {src} into {output}"
    try:
        with signals.termination_raises():
            os.close(temp.create())
            progress.stage(
                "decompressing (zstd)",
                total=content_size(src),
                measure=lambda: os.stat(temp.path).st_size,
            )
            argv = ["zstd", "-d", "-q", "-f", "--sparse", str(src), "-o", str(temp.path)]
            res = runner.run(argv, holding=holding)
            if not res.ok:
                raise _pack_failure(action, "zstd", res)
            sb = e2fs.superblock(temp.path)
            if target_size < sb.size_bytes:
                raise ImageError(
                    f"{action}: it holds a filesystem of {format_size(sb.size_bytes)},"
                    f" more than the requested {format_size(target_size)}",
                    hint=f"give at least -s {sizes.size_argument(sb.size_bytes)}",
                )
            if allocated:
                progress.stage(
                    f"allocating {format_size(target_size)}",
                    total=target_size,
                    measure=lambda: files.allocated_bytes(temp.path),
                )
                fd = os.open(temp.path, os.O_RDWR | os.O_CLOEXEC)
                try:
                    if not files.allocate(fd, 0, target_size):
                        allocated = False
                        notices.append(
                            f"the filesystem of {os.path.abspath(parent)} cannot"
                            f" preallocate space, so {output} is sparse"
                        )
                finally:
                    os.close(fd)
            if target_size > sb.size_bytes:
                progress.stage(f"growing it to {format_size(target_size)} (e2fsck, resize2fs)")
                res = runner.run(["e2fsck", "-f", "-p", str(temp.path)], holding=holding)
                if res.returncode & ~3:
                    raise ImageError(
                        f"{action}: the packed filesystem failed its check:"
                        f" {failures.tool_detail(res)}"
                    )
                res = resize.run_resize2fs(temp.path, target_size, holding=holding)
                if not res.ok:
                    raise _pack_failure(action, "resize2fs", res)
            progress.stage("checking the result (e2fsck)")
            res = runner.run(["e2fsck", "-f", "-n", str(temp.path)], holding=holding)
            if not res.ok:
                raise ImageError(
                    f"{action}: the unpacked filesystem failed its check"
                    f" (e2fsck exit {res.returncode}: {failures.tool_detail(res)})"
                )
            os.chmod(temp.path, files.umask_mode(0o644))
            temp.publish()
            own.end()
    except BaseException as exc:
        temp.discard()
        own.end()
        err = failures.failure(
            "unpack",
            action,
            exc,
            output,
            parent,
            target_size,
            sparse=not allocated,
            published=temp.published,
        )
        if err is exc:
            raise
        raise err from exc
    return UnpackResult(
        packed=src, output=output, size_bytes=target_size, sparse=not allocated, notices=notices
    )
