"""`resize` with real e2fsprogs: data survives grow and shrink, refusals change nothing,
a held lock is respected, and every failure leaves the image's size and content as they were."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from condatainer import runner
from condatainer.errors import ImageError, LockError, SizeError
from condatainer.image import e2fs
from condatainer.image import files as image_files
from condatainer.image.create import create
from condatainer.image.resize import resize
from condatainer.image.sizes import format_size
from tests.imagelib import fsck_clean, get, put, sha256

REPO = Path(__file__).resolve().parents[2]
MIB = 1024 * 1024
GIB = 1024 * MIB


# --------------------------------------------------------------------------- helpers


def state(img: Path) -> tuple[int, str]:
    """Length and content of the image file."""
    return os.stat(img).st_size, sha256(img)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    """Host files with random content; name -> sha256."""
    out = {}
    for name, size in (("big.bin", 40 * MIB), ("small.txt", 1000), ("mid.bin", 3 * MIB + 17)):
        path = tmp_path / name
        path.write_bytes(os.urandom(size))
        out[name] = sha256(path)
    return out


def filled_image(
    wd: Path, tmp_path: Path, files: dict[str, str], *, sparse: bool, size: int = 256 * MIB
) -> Path:
    img = create(wd / "env.img", size, "balanced", sparse=sparse).path
    for name in files:
        put(img, tmp_path / name, name)
    return img


def assert_files(img: Path, files: dict[str, str], tmp_path: Path) -> None:
    for name, digest in files.items():
        assert get(img, name, tmp_path / f"out-{name}") == digest, name


def fail_resize2fs(*, shrink_probe_ok: bool = True) -> Any:
    """A run_hook whose resize2fs fails (its `-P` estimate still works)."""
    real = runner.run_hook

    def hook(argv: list[str], **kw: Any) -> runner.Result:
        if any(os.path.basename(str(a)) == "resize2fs" for a in argv) and (
            "-P" not in argv or not shrink_probe_ok
        ):
            return runner.Result(tuple(argv), 1, "", "resize2fs: injected failure\n")
        return real(argv, **kw)

    return hook


# --------------------------------------------------------------------------- data survives


@pytest.mark.parametrize("sparse", [False, True], ids=["allocated", "sparse"])
def test_grow_shrink_grow_keeps_data(
    wd: Path, tmp_path: Path, files: dict[str, str], sparse: bool
) -> None:
    img = filled_image(wd, tmp_path, files, sparse=sparse)
    assert fsck_clean(img)
    for old, new in ((256 * MIB, 1 * GIB), (1 * GIB, 300 * MIB), (300 * MIB, 2 * GIB)):
        res = resize(img, new)
        assert (res.old_bytes, res.new_bytes, res.changed) == (old, new, True)
        st = os.stat(img)
        assert st.st_size == new and st.st_size % 4096 == 0
        assert e2fs.superblock(img).size_bytes == new
        if sparse:
            assert st.st_blocks * 512 < new, "a sparse image must stay sparse"
        else:
            assert st.st_blocks * 512 >= new, "an allocated image must stay allocated"
        assert res.notices == []
        assert fsck_clean(img)
        assert_files(img, files, tmp_path)
    assert os.listdir(wd) == ["env.img"]


def test_profile_survives_resize(wd: Path) -> None:
    img = create(wd / "env.img", 256 * MIB, "small", sparse=True).path
    resize(img, 1 * GIB)
    assert e2fs.superblock(img).bytes_per_inode == 4096
    resize(img, 512 * MIB)
    assert e2fs.superblock(img).bytes_per_inode == 4096


def test_size_is_rounded_up_to_whole_blocks(wd: Path) -> None:
    img = create(wd / "env.img", 256 * MIB, "balanced", sparse=True).path
    res = resize(img, 300 * MIB + 1)
    assert res.new_bytes == 300 * MIB + 4096
    assert os.stat(img).st_size == 300 * MIB + 4096
    assert fsck_clean(img)


def test_same_size_is_a_no_op(wd: Path) -> None:
    img = create(wd / "env.img", 256 * MIB, "balanced").path
    before = state(img), os.stat(img).st_mtime_ns
    res = resize(img, 256 * MIB)
    assert (res.old_bytes, res.new_bytes, res.changed) == (256 * MIB, 256 * MIB, False)
    assert (state(img), os.stat(img).st_mtime_ns) == before


# --------------------------------------------------------------------------- refusals


def test_shrink_below_usage_is_refused(wd: Path, tmp_path: Path, files: dict[str, str]) -> None:
    img = filled_image(wd, tmp_path, files, sparse=False)
    extra = tmp_path / "extra.bin"
    extra.write_bytes(os.urandom(60 * MIB))
    put(img, extra, "extra.bin")
    used = e2fs.superblock(img).used_bytes
    assert used > 100 * MIB
    estimate = subprocess.run(
        [runner.require("resize2fs"), "-P", str(img)], capture_output=True, text=True, check=True
    ).stdout
    minimum = int(re.search(r"minimum size of the filesystem: (\d+)", estimate)[1]) * 4096
    before = state(img)
    with pytest.raises(ImageError) as info:
        resize(img, 64 * MIB)
    msg = info.value.message
    assert str(img) in msg
    assert "64M" in msg  # what was asked for
    assert f"the smallest its filesystem can be is {format_size(minimum)}" in msg
    # ... and what that minimum is made of, adding up to it
    parts = re.findall(
        r"([\d.]+)([KMG]) (of files and directories|of journal|of inode tables|resize2fs keeps)",
        msg,
    )
    whats = [what for _, _, what in parts]
    assert whats[:3] == ["of files and directories", "of journal", "of inode tables"]
    scale = {"K": 1024, "M": MIB, "G": 1024 * MIB}
    amounts = [float(n) * scale[unit] for n, unit, _ in parts]
    assert amounts[0] >= 60 * MIB  # the 60M file is among the files
    assert abs(sum(amounts) - minimum) < 2 * MIB  # they add up (to the shown precision)
    assert info.value.hint is not None and "overlay resize" in info.value.hint
    assert state(img) == before
    assert fsck_clean(img)


def test_below_apptainer_minimum(wd: Path) -> None:
    img = create(wd / "env.img", 256 * MIB, "balanced", sparse=True).path
    with pytest.raises(SizeError, match="64M"):
        resize(img, 32 * MIB)
    assert os.stat(img).st_size == 256 * MIB


def test_not_an_image(wd: Path) -> None:
    bad = wd / "notes.img"
    bad.write_bytes(b"not an ext3 image" * 10000)
    before = state(bad)
    with pytest.raises(ImageError, match="not an ext3 image"):
        resize(bad, 128 * MIB)
    assert state(bad) == before


def test_missing_image(wd: Path) -> None:
    with pytest.raises(LockError, match="no such image file"):
        resize(wd / "nope.img", 128 * MIB)
    assert os.listdir(wd) == []


def test_image_needing_repair_is_refused(wd: Path) -> None:
    img = create(wd / "env.img", 256 * MIB, "balanced", sparse=True).path
    # Garble the inode of upper/: e2fsck -p gives up ("UNEXPECTED INCONSISTENCY").
    out = runner.run(["debugfs", "-R", "imap upper", str(img)]).stdout
    block = int(out.split("located at block ")[1].split(",")[0])
    offset = int(out.split("offset ")[1].split()[0], 16)
    with open(img, "r+b") as f:
        f.seek(block * 4096 + offset)
        f.write(b"\xff" * 256)
    with pytest.raises(ImageError) as info:
        resize(img, 512 * MIB)
    assert "will not fix unattended" in info.value.message
    assert "--repair" in (info.value.hint or "")
    # e2fsck -p may have marked the superblock as having errors; the size is untouched.
    assert os.stat(img).st_size == 256 * MIB
    assert e2fs.superblock(img).size_bytes == 256 * MIB


@pytest.mark.parametrize(
    ("command", "notice"),
    [("feature needs_recovery", "replayed the journal"), ("ssv state 0", "checked and corrected")],
)
def test_unclean_image_is_preened_first(wd: Path, command: str, notice: str) -> None:
    img = create(wd / "env.img", 256 * MIB, "balanced", sparse=True).path
    assert runner.run(["debugfs", "-w", "-R", command, str(img)]).ok
    assert not e2fs.superblock(img).clean
    res = resize(img, 512 * MIB)
    assert res.changed and len(res.notices) == 1 and notice in res.notices[0]
    assert e2fs.superblock(img).clean
    assert fsck_clean(img)


_HOLDER = """
import sys, time
from condatainer.image import locks
lock = locks.acquire(sys.argv[1], write=sys.argv[2] == "w")
print("locked", flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("mode", ["r", "w"])
def test_lock_held_by_another_process(wd: Path, mode: str) -> None:
    img = create(wd / "env.img", 256 * MIB, "balanced").path
    before = state(img)
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(img), mode],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(LockError) as info:
            resize(img, 512 * MIB)
        assert f"PID {holder.pid}" in info.value.message
        assert ("for writing" if mode == "w" else "for reading") in info.value.message
    finally:
        holder.kill()
        holder.wait()
    assert state(img) == before


# --------------------------------------------------------------------------- failures


@pytest.mark.parametrize("sparse", [False, True], ids=["allocated", "sparse"])
@pytest.mark.parametrize("new", [1 * GIB, 200 * MIB], ids=["grow", "shrink"])
def test_failing_resize2fs_changes_nothing(
    wd: Path,
    tmp_path: Path,
    files: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    sparse: bool,
    new: int,
) -> None:
    img = filled_image(wd, tmp_path, files, sparse=sparse)
    before = state(img)
    blocks = os.stat(img).st_blocks
    monkeypatch.setattr(runner, "run_hook", fail_resize2fs())
    with pytest.raises(ImageError) as info:
        resize(img, new)
    monkeypatch.undo()
    assert "injected failure" in info.value.message
    assert "left as it was (256M)" in info.value.message
    assert state(img) == before
    if not sparse:
        assert os.stat(img).st_blocks == blocks
    assert fsck_clean(img)
    assert_files(img, files, tmp_path)
    assert os.listdir(wd) == ["env.img"]


@pytest.mark.parametrize("new", [1 * GIB, 100 * MIB], ids=["grow", "shrink"])
def test_resize2fs_that_finished_then_failed_counts_as_done(
    wd: Path, tmp_path: Path, files: dict[str, str], monkeypatch: pytest.MonkeyPatch, new: int
) -> None:
    """resize2fs wrote the new superblock and only then failed: the resize is complete."""
    img = filled_image(wd, tmp_path, files, sparse=False)
    real = runner.run_hook

    def hook(argv: list[str], **kw: Any) -> runner.Result:
        res = real(argv, **kw)
        if any(os.path.basename(str(a)) == "resize2fs" for a in argv) and "-P" not in argv:
            assert res.ok, res.stderr
            return runner.Result(res.argv, 1, res.stdout, "resize2fs: failed after the fact\n")
        return res

    monkeypatch.setattr(runner, "run_hook", hook)
    res = resize(img, new)
    monkeypatch.undo()
    assert res.changed and res.new_bytes == new
    assert len(res.notices) == 1 and "failed after the fact" in res.notices[0]
    assert os.stat(img).st_size == new
    assert fsck_clean(img)
    assert_files(img, files, tmp_path)
    assert os.listdir(wd) == ["env.img"]  # no undo file left


def tail_data_image(wd: Path, tmp_path: Path) -> tuple[Path, str]:
    """An image whose one file sits in its upper half, so shrinking must move it."""
    img = create(wd / "env.img", 256 * MIB, "balanced").path
    filler, data = tmp_path / "filler.bin", tmp_path / "data.bin"
    filler.write_bytes(os.urandom(100 * MIB))
    data.write_bytes(os.urandom(40 * MIB))
    put(img, filler, "filler.bin")
    put(img, data, "data.bin")
    res = runner.run(["debugfs", "-w", "-R", "rm upper/filler.bin", str(img)])
    assert res.ok
    return img, sha256(data)


@pytest.mark.parametrize(
    ("new", "limit"),
    [(100 * MIB, 20 * MIB), (1 * GIB, 300 * MIB)],
    ids=["shrink", "grow"],
)
def test_resize2fs_killed_midway_is_undone(
    wd: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, new: int, limit: int
) -> None:
    """resize2fs dies halfway through (here: a file size limit, SIGXFSZ or short writes).

    Without the undo record this leaves "clean with errors" and a damaged filesystem; with it
    the image is back at its old size with its data, checked clean and marked clean.
    """
    img, digest = tail_data_image(wd, tmp_path)
    before = state(img)
    real = runner.run_hook

    def hook(argv: list[str], **kw: Any) -> runner.Result:
        if any(os.path.basename(str(a)) == "resize2fs" for a in argv) and "-P" not in argv:
            argv = ["prlimit", f"--fsize={limit}", "--", *argv]
        return real(argv, **kw)

    monkeypatch.setattr(runner, "run_hook", hook)
    with pytest.raises(ImageError) as info:
        resize(img, new)
    monkeypatch.undo()
    assert "left as it was (256M)" in info.value.message
    assert os.stat(img).st_size == before[0]
    sb = e2fs.superblock(img)
    assert sb.size_bytes == 256 * MIB and sb.clean
    assert fsck_clean(img)
    assert get(img, "data.bin", tmp_path / "out") == digest
    assert os.listdir(wd) == ["env.img"]  # the undo record is gone
    # And once the limit is gone, the same resize works.
    resize(img, new)
    assert get(img, "data.bin", tmp_path / "out") == digest


def test_shrink_moves_data_from_the_tail(wd: Path, tmp_path: Path) -> None:
    img, digest = tail_data_image(wd, tmp_path)
    resize(img, 100 * MIB)
    assert os.stat(img).st_size == 100 * MIB
    assert fsck_clean(img)
    assert get(img, "data.bin", tmp_path / "out") == digest


@pytest.mark.root
@pytest.mark.parametrize("preflight", [True, False], ids=["refused-upfront", "fallocate-fails"])
def test_grow_allocated_on_a_full_disk(
    tmpfs: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, preflight: bool
) -> None:
    if not preflight:  # as if free space were unknown (quotas): fallocate hits ENOSPC
        monkeypatch.setattr(image_files, "free_bytes", lambda directory: None)
    mnt = tmpfs("200M")
    img = create(mnt / "env.img", 128 * MIB, "balanced").path
    assert os.stat(img).st_blocks * 512 >= 128 * MIB  # tmpfs: mke2fs's punched holes refilled
    data = tmp_path / "d.bin"
    data.write_bytes(os.urandom(5 * MIB))
    put(img, data, "d.bin")
    before = state(img)
    with pytest.raises(ImageError) as info:
        resize(img, 1 * GIB)
    msg = info.value.message
    assert "not enough space" in msg and str(mnt) in msg and "left as it was (128M)" in msg
    hint = str(info.value.hint)
    assert "smaller size (-s)" in hint and "--sparse" not in hint  # resize has no --sparse
    assert state(img) == before
    assert os.stat(img).st_blocks * 512 >= 128 * MIB
    assert fsck_clean(img)
    assert get(img, "d.bin", tmp_path / "out") == sha256(data)
    assert os.listdir(mnt) == ["env.img"]
    assert os.statvfs(mnt).f_bfree * os.statvfs(mnt).f_frsize > 60 * MIB  # nothing leaked


@pytest.mark.root
def test_grow_sparse_on_a_full_disk(tmpfs: Any, tmp_path: Path) -> None:
    mnt = tmpfs("48M")
    img = create(mnt / "env.img", 128 * MIB, "small", sparse=True).path
    data = tmp_path / "d.bin"
    data.write_bytes(os.urandom(5 * MIB))
    put(img, data, "d.bin")
    filler = mnt / "filler"
    free = os.statvfs(mnt).f_bavail * os.statvfs(mnt).f_frsize
    filler.write_bytes(b"\1" * (free - 256 * 1024))  # leave 256K
    before = state(img)
    # Growing to 4G writes ~256M of new inode tables, bitmaps and descriptors: no room, and
    # that is found out before anything is written.
    with pytest.raises(ImageError) as info:
        resize(img, 4 * GIB)
    assert "not enough space" in info.value.message and str(mnt) in info.value.message
    assert "left as it was (128M)" in info.value.message
    assert state(img) == before
    assert sorted(os.listdir(mnt)) == ["env.img", "filler"]
    filler.unlink()
    assert fsck_clean(img)
    assert get(img, "d.bin", tmp_path / "out") == sha256(data)


@pytest.mark.root
def test_read_only_filesystem(wd: Path, tmp_path: Path) -> None:
    img = create(wd / "env.img", 256 * MIB, "balanced").path
    before = state(img)
    subprocess.run(["mount", "--bind", str(wd), str(wd)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(wd)], check=True)
        with pytest.raises(LockError, match="read-only filesystem"):
            resize(img, 512 * MIB)
    finally:
        subprocess.run(["umount", str(wd)], check=True)
    assert state(img) == before


def test_signal_during_resize_is_deferred(wd: Path) -> None:
    """SIGINT while resize2fs runs: resize2fs finishes (own session), then we report it."""
    img = create(wd / "env.img", 256 * MIB, "balanced", sparse=True).path
    child = textwrap.dedent(
        """
        import os, signal, sys
        from condatainer import runner
        from condatainer.image.create import create
        from condatainer.image.resize import resize
        from condatainer.errors import CondatainerError
        signal.signal(signal.SIGINT, signal.default_int_handler)
        real = runner.run_hook
        def hook(argv, **kw):
            if any(os.path.basename(str(a)) == "resize2fs" for a in argv) and "-P" not in argv:
                os.killpg(os.getpgrp(), signal.SIGINT)  # like Ctrl-C at a terminal
            return real(argv, **kw)
        runner.run_hook = hook
        try:
            resize(sys.argv[1], 1 << 30)
        except CondatainerError as e:
            print(e.message, flush=True)
            sys.exit(e.exit_code)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", child, str(img)],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
        start_new_session=True,
        check=False,
    )
    assert proc.returncode == 130, proc.stdout + proc.stderr
    assert "interrupted by SIGINT" in proc.stdout and "was finished first" in proc.stdout
    assert os.stat(img).st_size == 1 * GIB
    assert e2fs.superblock(img).size_bytes == 1 * GIB
    assert fsck_clean(img)
