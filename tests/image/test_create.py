"""`create` with real e2fsprogs: layout, profiles, allocation, ownership, bad input,
full disks and interruptions — and never a partial file left behind."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from condatainer import runner
from condatainer.errors import (
    CondatainerError,
    ImageError,
    ImageExistsError,
    ProfileError,
    SizeError,
)
from condatainer.image import e2fs, files
from condatainer.image.create import create
from condatainer.image.layout import normalise_image_name
from condatainer.image.profiles import resolve_profile
from tests.imagelib import fsck_clean
from tests.programs import unprivileged_python
from tests.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
MIB = 1024 * 1024
GIB = 1024 * MIB
NOBODY = 65534


# --------------------------------------------------------------------------- helpers


def listing(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


def debugfs(img: Path, command: str) -> str:
    res = runner.run(["debugfs", "-R", command, str(img)])
    assert res.ok, res.stderr
    return res.stdout


def inode_stat(img: Path, path: str) -> dict[str, Any]:
    """Owner, mode and type of `path` inside the image, parsed from `debugfs -R "stat PATH"`."""
    out = debugfs(img, f"stat {e2fs.quote(path)}")
    m_type = re.search(r"Type:\s*(\S+)\s+Mode:\s*([0-7]+)", out)
    m_owner = re.search(r"User:\s*(\d+)\s+Group:\s*(\d+)", out)
    assert m_type and m_owner, f"unexpected debugfs output for {path}:\n{out}"
    return {
        "type": m_type.group(1),
        "mode": int(m_type.group(2), 8),
        "uid": int(m_owner.group(1)),
        "gid": int(m_owner.group(2)),
    }


def cat(img: Path, path: str) -> bytes:
    res = subprocess.run(
        [runner.require("debugfs"), "-R", f"cat {e2fs.quote(path)}", str(img)],
        capture_output=True,
        check=True,
    )
    return res.stdout


def run_as_nobody(code: str, tmpdir: Path) -> subprocess.CompletedProcess[str]:
    """Run `code` as uid/gid 65534; it prints JSON or the CondatainerError's message."""
    script = textwrap.dedent(
        """
        import json, sys
        from condatainer.image.create import create
        from condatainer.image.layout import normalise_image_name
        from condatainer.errors import CondatainerError
        try:
        {body}
        except CondatainerError as e:
            print(json.dumps({{"error": type(e).__name__, "message": e.message, "hint": e.hint}}))
            sys.exit(1)
        """
    ).format(body=textwrap.indent(textwrap.dedent(code), "    "))
    python, path = unprivileged_python()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": path,
        "TMPDIR": str(tmpdir),
        "HOME": str(tmpdir),
    }
    return subprocess.run(
        [
            "setpriv",
            f"--reuid={NOBODY}",
            f"--regid={NOBODY}",
            "--clear-groups",
            "--",
            python,
            "-c",
            script,
        ],
        env=env,
        cwd="/",
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory uid 65534 can write (tmp_path's parents are private to root)."""
    path = Path(tempfile.mkdtemp(prefix="cnt-shared-", dir="/tmp"))
    path.chmod(0o777)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def fail_on(tool: str, stderr: str = "injected failure", *, returncode: int = 1) -> Any:
    """A run_hook that fails `tool` (and runs everything else for real)."""
    real = runner.run_hook

    def hook(argv: list[str], **kw: Any) -> runner.Result:
        if os.path.basename(str(argv[0])) == tool:
            return runner.Result(tuple(argv), returncode, "", f"{tool}: {stderr}\n")
        return real(argv, **kw)

    return hook


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("env", "env.img"),
        ("env.img", "env.img"),
        ("env.IMG", "env.IMG"),
        ("data.ext3", "data.ext3"),
        ("dir/my env", "dir/my env.img"),
        ("env.v2", "env.v2.img"),
        (".img", ".img.img"),
        ("/abs/path/x", "/abs/path/x.img"),
    ],
)
def test_normalise_image_name(given: str, expected: str) -> None:
    assert normalise_image_name(given) == Path(expected)


@pytest.mark.parametrize("given", ["", "dir/", ".", ".."])
def test_normalise_refuses_non_names(given: str) -> None:
    with pytest.raises(ImageError):
        normalise_image_name(given)


# --------------------------------------------------------------------------- the image


@pytest.mark.parametrize("profile", ["small", "balanced", "large", "conda", "genome", "default"])
def test_each_profile_sets_the_inode_density(wd: Path, profile: str) -> None:
    res = create(wd / "env", 512 * MIB, profile, sparse=True)
    prof = resolve_profile(profile)
    assert res.path == wd / "env.img"
    assert res.profile == prof
    sb = e2fs.superblock(res.path)
    assert sb.block_size == 4096
    assert sb.size_bytes == 512 * MIB
    assert sb.inode_count == 512 * MIB // prof.bytes_per_inode
    assert sb.bytes_per_inode == prof.bytes_per_inode
    assert sb.reserved_blocks == sb.block_count * 3 // 100
    assert "has_journal" in sb.features and sb.clean
    assert fsck_clean(res.path)


def test_layout_files_and_modes(wd: Path) -> None:
    files: dict[str, bytes | str] = {
        ".condarc": b"channels:\n  - conda-forge\n",
        "conda-meta/pinned": "numpy 1.26.*\n",  # str is accepted too
    }
    res = create(wd / "env.img", 256 * MIB, "small", sparse=True, files=files)
    root = debugfs(res.path, "ls -p /")
    names = {line.split("/")[5] for line in root.splitlines() if line.startswith("/")}
    assert names == {".", "..", "lost+found", "upper", "work"}
    assert debugfs(res.path, "ls -p work").count("/") // 6 == 2  # only . and ..: no work/work
    for path in ("upper", "work", "upper/ext3", "upper/ext3/env", "upper/ext3/env/conda-meta"):
        st = inode_stat(res.path, path)
        assert (st["type"], st["mode"]) == ("directory", 0o755), path
    assert cat(res.path, "upper/ext3/env/.condarc") == files[".condarc"]
    assert cat(res.path, "upper/ext3/env/conda-meta/pinned") == b"numpy 1.26.*\n"
    assert inode_stat(res.path, "upper/ext3/env/.condarc")["mode"] == 0o644
    assert fsck_clean(res.path)
    assert listing(wd) == ["env.img"]
    assert (os.stat(res.path).st_mode & 0o777) == 0o644 & ~_umask()


def _umask() -> int:
    old = os.umask(0o022)
    os.umask(old)
    return old


def test_allocated_image_is_allocated(wd: Path) -> None:
    res = create(wd / "a.img", 1 * GIB, "balanced")
    st = os.stat(res.path)
    assert not res.sparse
    assert st.st_size == 1 * GIB
    assert st.st_blocks * 512 >= 1 * GIB
    assert res.allocated_bytes == st.st_blocks * 512
    assert res.notices == []
    assert fsck_clean(res.path)


def test_sparse_image_is_sparse_even_with_many_inodes(wd: Path) -> None:
    res = create(wd / "s.img", 4 * GIB, "small", sparse=True)
    st = os.stat(res.path)
    assert res.sparse
    assert st.st_size == 4 * GIB
    # Inode tables alone are 256M here; with discard they stay holes (only the journal and
    # the bitmaps are written).
    assert st.st_blocks * 512 < 100 * MIB
    assert fsck_clean(res.path)


def test_unsupported_preallocation_falls_back_to_sparse(
    wd: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_fallocate(fd: int, offset: int, length: int) -> None:
        raise OSError(95, "Operation not supported")

    monkeypatch.setattr(files, "_fallocate", no_fallocate)
    res = create(wd / "n.img", 256 * MIB, "balanced")
    assert res.sparse
    assert len(res.notices) == 1 and "cannot preallocate" in res.notices[0]
    assert "sparse" in res.notices[0]
    assert os.stat(res.path).st_blocks * 512 < 256 * MIB
    assert fsck_clean(res.path)


# --------------------------------------------------------------------------- ownership


@pytest.mark.root
def test_fakeroot_as_root_is_owned_by_root(wd: Path) -> None:
    res = create(
        wd / "f.img", 256 * MIB, "balanced", sparse=True, fakeroot=True, files={".condarc": b"x"}
    )
    for path in ("/", "upper", "work", "upper/ext3/env", "upper/ext3/env/.condarc"):
        st = inode_stat(res.path, path)
        assert (st["uid"], st["gid"]) == (0, 0), path


@pytest.mark.root
def test_explicit_owner_as_root(wd: Path) -> None:
    res = create(
        wd / "o.img", 256 * MIB, "balanced", sparse=True, uid=1234, gid=4321, files={"etc/x": b"x"}
    )
    for path in (
        "/",
        "upper",
        "work",
        "upper/ext3",
        "upper/ext3/env",
        "upper/ext3/env/etc",
        "upper/ext3/env/etc/x",
    ):
        st = inode_stat(res.path, path)
        assert (st["uid"], st["gid"]) == (1234, 4321), path
    assert fsck_clean(res.path)


@pytest.mark.root
def test_unprivileged_caller_owns_the_image(shared_dir: Path) -> None:
    target = shared_dir / "mine"
    proc = run_as_nobody(
        f"""
        r = create({str(target)!r}, 256 << 20, "small", sparse=True,
                         files={{".condarc": b"channels: []"}})
        print(json.dumps({{"path": str(r.path)}}))
        """,
        shared_dir,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    img = shared_dir / "mine.img"
    assert os.stat(img).st_uid == NOBODY
    for path in ("/", "upper", "work", "upper/ext3/env", "upper/ext3/env/.condarc"):
        st = inode_stat(img, path)
        assert (st["uid"], st["gid"]) == (NOBODY, NOBODY), path
    assert fsck_clean(img)


@pytest.mark.root
def test_unprivileged_fakeroot_uses_debugfs(shared_dir: Path) -> None:
    target = shared_dir / "fake.img"
    proc = run_as_nobody(
        f"""
        r = create({str(target)!r}, 256 << 20, "balanced", sparse=True, fakeroot=True,
                         files={{".condarc": b"x", 'odd dir/q"uote': b"y"}})
        print(json.dumps({{"path": str(r.path)}}))
        """,
        shared_dir,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for path in (
        "/",
        "upper",
        "work",
        "upper/ext3",
        "upper/ext3/env",
        "upper/ext3/env/.condarc",
        "upper/ext3/env/odd dir",
        'upper/ext3/env/odd dir/q"uote',
    ):
        st = inode_stat(target, path)
        assert (st["uid"], st["gid"]) == (0, 0), path
    assert cat(target, 'upper/ext3/env/odd dir/q"uote') == b"y"
    assert fsck_clean(target)
    assert listing(shared_dir) == ["fake.img"]  # no temporary file, no scratch tree


# --------------------------------------------------------------------------- bad input


def test_existing_file_is_refused(wd: Path) -> None:
    (wd / "env.img").write_bytes(b"precious")
    with pytest.raises(ImageExistsError) as info:
        create(wd / "env", 256 * MIB, "balanced")
    assert str(wd / "env.img") in info.value.message
    assert info.value.hint
    assert (wd / "env.img").read_bytes() == b"precious"
    assert listing(wd) == ["env.img"]


def test_existing_image_hint_points_at_resize(wd: Path) -> None:
    create(wd / "env.img", 256 * MIB, "balanced", sparse=True)
    with pytest.raises(ImageExistsError) as info:
        create(wd / "env.img", 512 * MIB, "balanced", sparse=True)
    assert info.value.hint is not None and "overlay resize" in info.value.hint
    assert e2fs.superblock(wd / "env.img").size_bytes == 256 * MIB


def test_existing_directory_is_refused(wd: Path) -> None:
    (wd / "env.img").mkdir()
    with pytest.raises(ImageExistsError, match="a directory"):
        create(wd / "env.img", 256 * MIB, "balanced")
    assert listing(wd) == ["env.img"]
    assert listing(wd / "env.img") == []


def test_dangling_symlink_is_refused(wd: Path) -> None:
    (wd / "env.img").symlink_to(wd / "nowhere.img")
    with pytest.raises(ImageExistsError, match="points to nothing"):
        create(wd / "env.img", 256 * MIB, "balanced")
    assert listing(wd) == ["env.img"]
    assert not (wd / "nowhere.img").exists()


def test_missing_parent_directory(wd: Path) -> None:
    with pytest.raises(ImageError) as info:
        create(wd / "no" / "such" / "env.img", 256 * MIB, "balanced")
    assert "does not exist" in info.value.message
    assert str(wd / "no" / "such") in info.value.message
    assert info.value.hint is not None and "mkdir -p" in info.value.hint
    assert listing(wd) == []


def test_parent_is_a_file(wd: Path) -> None:
    (wd / "f").write_text("x")
    with pytest.raises(ImageError, match="not a directory"):
        create(wd / "f" / "env.img", 256 * MIB, "balanced")


@pytest.mark.root
def test_unwritable_parent_directory(shared_dir: Path) -> None:
    locked = shared_dir / "locked"
    locked.mkdir(mode=0o755)  # owned by root
    proc = run_as_nobody(f"create({str(locked / 'env')!r}, 256 << 20, 'balanced')", shared_dir)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "not writable by you" in proc.stdout and str(locked) in proc.stdout
    assert listing(locked) == []


@pytest.mark.parametrize("size", [0, 1, 63 * MIB, -5])
def test_size_below_minimum(wd: Path, size: int) -> None:
    with pytest.raises(SizeError, match="64M"):
        create(wd / "env.img", size, "balanced")
    assert listing(wd) == []


def test_unknown_profile(wd: Path) -> None:
    with pytest.raises(ProfileError):
        create(wd / "env.img", 256 * MIB, "tiny")
    assert listing(wd) == []


@pytest.mark.parametrize("key", ["/etc/passwd", "../escape", "a/../../b", "", "a\nb"])
def test_files_must_stay_inside_the_env(wd: Path, key: str) -> None:
    with pytest.raises(ImageError):
        create(wd / "env.img", 256 * MIB, "balanced", files={key: b"x"})
    assert listing(wd) == []


# --------------------------------------------------------------------------- failures


@pytest.mark.root
def test_disk_full_allocated(tmpfs: Any) -> None:
    full = tmpfs("20M")
    with pytest.raises(ImageError) as info:
        create(full / "env.img", 256 * MIB, "balanced")
    msg = info.value.message
    assert "not enough space" in msg and str(full) in msg and "256M" in msg
    assert "20M free" in msg  # measured after the temporary file was removed
    hint = str(info.value.hint)
    assert "smaller size (-s)" in hint and "--sparse" in hint
    assert listing(full) == []


@pytest.mark.root
def test_disk_full_sparse_metadata(tmpfs: Any) -> None:
    # A sparse 500G image still needs ~40M of bitmaps and descriptors: more than 20M.
    full = tmpfs("20M")
    with pytest.raises(ImageError) as info:
        create(full / "big.img", 500 * GIB, "balanced", sparse=True)
    msg = info.value.message
    assert "not enough space" in msg and str(full) in msg and "500G" in msg
    assert "--sparse" not in str(info.value.hint)  # it already is
    assert listing(full) == []


def test_tool_reports_disk_full(wd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        runner,
        "run_hook",
        fail_on("mke2fs", "No space left on device while writing out and closing file system"),
    )
    with pytest.raises(ImageError, match="not enough space"):
        create(wd / "env.img", 256 * MIB, "balanced", sparse=True)
    assert listing(wd) == []


def test_failing_mke2fs_leaves_nothing(wd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "run_hook", fail_on("mke2fs", "bad things happened"))
    with pytest.raises(ImageError, match="mke2fs failed: mke2fs: bad things happened"):
        create(wd / "env.img", 256 * MIB, "balanced")
    assert listing(wd) == []


def after_mke2fs(then: Callable[[str], None]) -> Any:
    """A run_hook that runs mke2fs for real, then `then(image)`; everything else for real."""
    real = runner.run_hook

    def hook(argv: list[str], **kw: Any) -> runner.Result:
        res = real(argv, **kw)
        if os.path.basename(str(argv[0])) == "mke2fs" and res.returncode == 0:
            then(str(argv[-1]))
        return res

    return hook


def _mark_with_errors(image: str) -> None:
    """Set the "errors" bit of s_state, as a kernel or e2fsck would on finding corruption."""
    with open(image, "r+b") as f:
        f.seek(1024 + 58)
        state = int.from_bytes(f.read(2), "little")
        f.seek(1024 + 58)
        f.write((state | 0x2).to_bytes(2, "little"))


def _cut_short(image: str) -> None:
    os.truncate(image, os.stat(image).st_size - 4096)


@pytest.mark.parametrize(
    ("damage", "why"),
    [(_mark_with_errors, "e2fsck found errors"), (_cut_short, "bytes of a")],
)
def test_failing_verification_leaves_nothing(
    wd: Path, monkeypatch: pytest.MonkeyPatch, damage: Callable[[str], None], why: str
) -> None:
    """The superblock read after mke2fs catches a filesystem that is not what was asked."""
    monkeypatch.setattr(runner, "run_hook", after_mke2fs(damage))
    with pytest.raises(ImageError, match=f"failed its check \\(.*{why}"):
        create(wd / "env.img", 256 * MIB, "balanced")
    assert listing(wd) == []


def test_the_tree_goes_whatever_is_in_it(wd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The populated tree is removed by name; anything else in it (or missing from it) makes
    the removal walk it instead: nothing is left either way, and a symlink is not followed."""
    outside = wd / "outside"
    outside.mkdir()
    (outside / "keep").write_text("kept")

    def add_to_tree(image: str) -> None:
        [tree] = wd.glob(".env.img.tree-*")
        (tree / "upper" / "extra").mkdir()
        (tree / "upper" / "extra" / "file").write_text("x")
        (tree / "work" / "link").symlink_to(outside, target_is_directory=True)

    monkeypatch.setattr(runner, "run_hook", after_mke2fs(add_to_tree))
    create(wd / "env.img", 256 * MIB, "balanced")
    assert listing(wd) == ["env.img", "outside"]
    assert (outside / "keep").read_text() == "kept"


def test_remove_tree_by_name_and_by_walking(tmp_path: Path) -> None:
    from condatainer.image.create import _populate, _remove_tree

    made = _populate(str(tmp_path / "t1"), {".condarc": b"channels: []\n"})
    _remove_tree(str(tmp_path / "t1"), made)
    partial = _populate(str(tmp_path / "t2"), {"a/b": b""})
    _remove_tree(str(tmp_path / "t2"), partial[:2])  # as a failure half-way leaves it
    _populate(str(tmp_path / "t3"), {})
    _remove_tree(str(tmp_path / "t3"), ())
    _remove_tree(str(tmp_path / "missing"), made)
    assert not {"t1", "t2", "t3", "missing"} & set(os.listdir(tmp_path))


def test_create_runs_no_full_filesystem_check(wd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """mke2fs's result is trusted (and read back from the superblock): no `e2fsck -f` of the
    whole new filesystem, which took longer than mke2fs itself at 100G."""
    ran: list[str] = []
    real = runner.run_hook

    def hook(argv: list[str], **kw: Any) -> runner.Result:
        ran.append(os.path.basename(str(argv[0])))
        return real(argv, **kw)

    monkeypatch.setattr(runner, "run_hook", hook)
    create(wd / "env.img", 256 * MIB, "balanced")
    assert "mke2fs" in ran and "e2fsck" not in ran


def test_missing_tool_is_reported_before_anything_is_made(
    wd: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_which = runner.which
    monkeypatch.setattr(runner, "which", lambda n: None if n == "mke2fs" else real_which(n))
    with pytest.raises(CondatainerError, match="mke2fs"):
        create(wd / "env.img", 256 * MIB, "balanced")
    assert listing(wd) == []


def test_keyboard_interrupt_during_mke2fs(wd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = runner.run_hook

    def hook(argv: list[str], **kw: Any) -> runner.Result:
        if argv[0] == "mke2fs":
            raise KeyboardInterrupt
        return real(argv, **kw)

    monkeypatch.setattr(runner, "run_hook", hook)
    with pytest.raises(ImageError) as info:
        create(wd / "env.img", 1 * GIB, "balanced")
    assert info.value.exit_code == 130
    assert "interrupted by SIGINT" in info.value.message
    assert listing(wd) == []


def test_concurrent_creator_is_not_overwritten(wd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = wd / "env.img"

    def publish_first(image: str) -> None:  # another process publishes while we make ours
        target.write_bytes(b"the other creator's image")

    monkeypatch.setattr(runner, "run_hook", after_mke2fs(publish_first))
    with pytest.raises(ImageExistsError, match="another process created it"):
        create(target, 256 * MIB, "balanced")
    assert target.read_bytes() == b"the other creator's image"
    assert listing(wd) == ["env.img"]


_CHILD = """
import signal, sys
from condatainer import runner
from condatainer.image.create import create
from condatainer.image.layout import normalise_image_name
from condatainer.errors import CondatainerError

signal.signal(signal.SIGINT, signal.default_int_handler)  # even if our parent ignores it
real = runner.run_hook

def slow(argv, **kw):
    if argv[0] == "mke2fs":  # making the filesystem (space allocated): hold it there, say so
        argv = ["sh", "-c", ': > "$0"; sleep 30; exec mke2fs "$@"', sys.argv[2], *argv[1:]]
    return real(argv, **kw)

runner.run_hook = slow
try:
    create(sys.argv[1], 4 << 30, "balanced")
except CondatainerError as e:
    print(e.message, flush=True)
    sys.exit(e.exit_code)
print("created")
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_signal_during_create_leaves_nothing(wd: Path, sig: signal.Signals) -> None:
    work = wd
    reached = wd.parent / "in-mke2fs"
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(work / "env.img"), str(reached)],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        # Allocated; now in the (held) mke2fs.
        wait_until(lambda: reached.exists() or proc.poll() is not None, "mke2fs")
        assert proc.poll() is None, "create finished before it could be interrupted"
        assert any(".tmp-" in n for n in os.listdir(work))
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + sig, out
    assert f"interrupted by {sig.name}" in out and "nothing was created" in out
    assert listing(work) == []
