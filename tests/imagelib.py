"""Helpers the image tests (and benchmarks) share: an image made from a directory with
`mke2fs -d`, checksums, files put into and read out of an image's upper/ with debugfs (no
mount), and a clean-fsck check — all through the real e2fsprogs."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from condatainer import runner


def mkfs(src: Path, image: Path, size: str = "256M") -> Path:
    """`mke2fs -t ext3 -d src image size`: an image holding a copy of `src`, owners included."""
    res = subprocess.run(
        [
            runner.require("mke2fs"),
            "-q",
            "-F",
            "-t",
            "ext3",
            "-b",
            "4096",
            "-E",
            "nodiscard",
            "-d",
            str(src),
            str(image),
            size,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    return image


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def put(img: Path, src: Path, name: str) -> None:
    """Write a host file into the image's upper/ with debugfs (no mount needed)."""
    res = runner.run(["debugfs", "-w", "-R", f"write {src} upper/{name}", str(img)])
    assert res.ok and "Allocated inode" in res.stdout, res.stdout + res.stderr


def get(img: Path, name: str, dest: Path) -> str:
    """Dump upper/NAME out of the image and return its sha256."""
    res = runner.run(["debugfs", "-R", f"dump upper/{name} {dest}", str(img)])
    assert res.ok and dest.exists(), res.stderr
    digest = sha256(dest)
    dest.unlink()
    return digest


def fsck_clean(img: Path) -> bool:
    return runner.run(["e2fsck", "-f", "-n", str(img)]).ok


def tree_digest(img: Path, *, content: bool = True) -> str:
    """What the image holds under upper/, as one digest: every path with its type, mode, owner,
    size and (unless `content` is False) the bytes of its files.  Not where the blocks lie, not
    timestamps: a resize, or an undo, keeps it; a half-done chown or a lost file changes it.
    Nor the empty mount point of condatainer's tools (`micromamba.CONTAINER_BIN`), which the
    builtin runtime makes in a writable image's upper/ as Apptainer makes bind targets."""
    import tempfile

    from condatainer.image import e2fs
    from condatainer.micromamba import CONTAINER_BIN

    upper = next(e for e in e2fs.list_dir(img, "/") if e.name == "upper")
    tools = f"/upper{CONTAINER_BIN}"
    entries = sorted(
        (
            e
            for e in e2fs.walk_entries(img, [upper])
            if not (e.is_dir and tools.startswith(e.path) and tools[len(e.path) :][:1] in ("", "/"))
        ),
        key=lambda e: e.path,
    )
    digest = hashlib.sha256()
    with tempfile.TemporaryDirectory() as out:
        if content:
            res = runner.run(["debugfs", "-R", f"rdump /upper {out}", str(img)])
            assert res.ok, res.stderr
        for e in [upper, *entries]:
            meta = f"{e.path}\0{e.mode:o}\0{e.uid}\0{e.gid}\0{e.size}\0"
            digest.update(meta.encode("utf-8", "replace"))
            if e.is_file and content:
                digest.update(Path(out, e.path.lstrip("/")).read_bytes())
    return digest.hexdigest()
