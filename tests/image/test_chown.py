"""overlay chown on real images: 20k files in 2k directories, subsets, locks, unclean images."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from condatainer import runner
from condatainer.errors import ImageError, LockError, UsageError
from condatainer.image import e2fs
from condatainer.image.chown import chown, image_path
from tests.image.test_e2fs import HOSTILE, make_image
from tests.imagelib import mkfs

REPO = Path(__file__).resolve().parents[2]
OLD = 1234 if os.geteuid() == 0 else os.getuid()  # mke2fs -d copies the source's owners
NEW = 4321
TOPS = 20
SUBS = 99  # 20 + 20 * 99 = 2000 directories under env/
FILES = 10  # per directory: 20,000 files


def _populate(root: Path) -> None:
    env = root / "upper" / "ext3" / "env"
    for t in range(TOPS):
        top = env / ("pkgs" if t == 0 else f"top{t}")
        dirs = [top] + [top / f"sub{s}" for s in range(SUBS)]
        for d in dirs:
            d.mkdir(parents=True)
            for f in range(FILES):
                (d / f"file{f}").touch()
    (env / "pkgs" / HOSTILE).mkdir()
    (env / "pkgs" / HOSTILE / HOSTILE).write_text("x")
    (env / "bin").mkdir()
    os.symlink("../pkgs/file0", env / "bin" / "tool")
    os.link(env / "top1" / "file0", env / "bin" / "hardlink")
    (root / "work" / "work").mkdir(parents=True)
    if os.geteuid() == 0:
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                os.lchown(os.path.join(dirpath, name), OLD, OLD)
        os.lchown(root, OLD, OLD)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if runner.which("mke2fs") is None:
        pytest.skip("needs e2fsprogs")
    src = tmp_path_factory.mktemp("chown-src") / "tree"
    src.mkdir()
    _populate(src)
    return src


@pytest.fixture
def image(source: Path, tmp_path: Path) -> Path:
    return mkfs(source, tmp_path / "env.img")


@pytest.fixture
def small(tmp_path: Path) -> Path:
    def tree(root: Path) -> None:
        (root / "upper" / "ext3" / "env" / HOSTILE).mkdir(parents=True)
        (root / "work" / "work").mkdir(parents=True)

    return make_image(tmp_path, "small.img", tree)


def owners(img: Path) -> dict[str, tuple[int, int]]:
    """uid/gid of every inode of the image, by path (a full level walk)."""
    root = e2fs.stat(img, "/")
    assert root is not None
    found = {e.path: (e.uid, e.gid) for e in e2fs.walk_entries(img, [root])}
    found["/"] = (root.uid, root.gid)
    return found


def test_whole_image_changes_every_inode_under_upper(image: Path) -> None:
    before = owners(image)
    assert len(before) > 22_000
    result = chown(image, NEW, NEW)
    after = owners(image)
    expected = {p for p in before if p.startswith("/upper")} | {"/work", "/work/work"}
    changed = {p for p in after if after[p] != before[p]}
    if OLD == NEW:  # pragma: no cover - only when the test runs as uid 4321
        pytest.skip("already owned by the target uid")
    assert changed == expected
    assert all(after[p] == (NEW, NEW) for p in expected)
    # each inode once (walk reports a hard-linked inode under one of its names)
    assert result.changed == result.examined == len(expected)
    for name in ("upper/ext3/env/bin/hardlink", "upper/ext3/env/top1/file0"):
        linked = e2fs.stat(image, name)
        assert linked is not None and (linked.uid, linked.gid) == (NEW, NEW)
    assert after["/"] == before["/"] and after["/lost+found"] == before["/lost+found"]
    check = subprocess.run(
        [runner.require("e2fsck"), "-fn", str(image)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    # Second run: nothing left to change, no debugfs -w at all.
    assert chown(image, NEW, NEW).changed == 0


def test_uid_and_gid_change_independently(image: Path) -> None:
    chown(image, NEW, OLD)
    upper = e2fs.stat(image, "upper")
    assert upper is not None and (upper.uid, upper.gid) == (NEW, OLD)
    result = chown(image, NEW, 77, ["/ext3/env/bin"])
    assert result.changed == 3  # bin/, bin/tool (the symlink itself), bin/hardlink
    tool = e2fs.stat(image, "upper/ext3/env/bin/tool")
    assert tool is not None and tool.is_symlink and (tool.uid, tool.gid) == (NEW, 77)


def test_subset_changes_only_that_subtree(image: Path) -> None:
    before = owners(image)
    result = chown(image, NEW, NEW, ["/ext3/env/pkgs", "/ext3/env/top3/sub7/"])
    after = owners(image)
    changed = {p for p in after if after[p] != before[p]}
    expected = {
        p
        for p in before
        if p == "/upper/ext3/env/pkgs"
        or p.startswith("/upper/ext3/env/pkgs/")
        or p == "/upper/ext3/env/top3/sub7"
        or p.startswith("/upper/ext3/env/top3/sub7/")
    }
    assert changed == expected
    assert f"/upper/ext3/env/pkgs/{HOSTILE}/{HOSTILE}" in changed
    assert result.changed == len(expected)
    assert after["/upper"] == before["/upper"] and after["/work"] == before["/work"]


def test_subset_of_a_single_file(image: Path) -> None:
    result = chown(image, NEW, NEW, ["/ext3/env/top2/file3"])
    assert result.changed == 1
    entry = e2fs.stat(image, "upper/ext3/env/top2/file3")
    assert entry is not None and entry.uid == NEW


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("/etc", "only paths under /ext3"),
        ("/ext3env", "only paths under /ext3"),
        ("/", "only paths under /ext3"),
        ("ext3/env", "must be absolute"),
        ("/ext3/../etc", "'..' is not allowed"),
        ("/ext3/env/..", "'..' is not allowed"),
        ("/ext3/\0", "NUL"),
    ],
)
def test_paths_outside_ext3_are_refused(small: Path, path: str, why: str) -> None:
    before = owners(small)
    with pytest.raises(UsageError, match=why) as info:
        chown(small, NEW, NEW, ["/ext3/env", path])
    assert info.value.hint and "/ext3" in info.value.hint
    assert owners(small) == before


def test_image_path_mapping() -> None:
    assert image_path("/ext3/env/pkgs") == "upper/ext3/env/pkgs"
    assert image_path("/ext3") == "upper/ext3"
    assert image_path("//ext3//env/./x/") == "upper/ext3/env/x"


def test_missing_subset_path(small: Path) -> None:
    before = owners(small)
    with pytest.raises(ImageError, match="/ext3/env/nope does not exist in the image"):
        chown(small, NEW, NEW, ["/ext3/env", "/ext3/env/nope"])
    assert owners(small) == before


def test_bad_ids_are_usage_errors(small: Path) -> None:
    for uid in (-1, 2**32 - 1, 2**40):
        with pytest.raises(UsageError, match="invalid uid"):
            chown(small, uid, 0)
    with pytest.raises(UsageError, match="invalid gid"):
        chown(small, 0, -5)


def test_defaults_to_the_caller(tmp_path: Path) -> None:
    img = make_image(tmp_path, "mine.img", lambda r: (r / "upper" / "x").mkdir(parents=True))
    e2fs.debugfs_script(img, [f"set_inode_field {e2fs.quote('/upper/x')} uid 999"], write=True)
    chown(img)
    x = e2fs.stat(img, "upper/x")
    assert x is not None and (x.uid, x.gid) == (os.getuid(), os.getgid())


@pytest.fixture
def reader(image: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding a read lock on the image, as a read-only container would."""
    code = (
        "import sys\n"
        "from condatainer.image import locks\n"
        "lock = locks.acquire(sys.argv[1], write=False)\n"
        "print('ready', flush=True)\n"
        "sys.stdin.read()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(image)],
        cwd=REPO,
        text=True,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    try:
        yield proc
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=10)


def test_locked_image_is_refused_and_untouched(image: Path, reader: subprocess.Popen[str]) -> None:
    before = owners(image)
    with pytest.raises(LockError) as info:
        chown(image, NEW, NEW)
    assert f"PID {reader.pid}" in str(info.value)
    assert "in use for reading" in str(info.value)
    assert owners(image) == before


@pytest.mark.parametrize("how", ["ssv state 0", "feature needs_recovery"])
def test_unclean_image_is_refused(tmp_path: Path, how: str) -> None:
    img = make_image(tmp_path, "dirty.img", lambda r: (r / "upper" / "x").mkdir(parents=True))
    e2fs.debugfs_script(img, [how], write=True)
    before = owners(img)
    with pytest.raises(ImageError, match="not clean") as info:
        chown(img, NEW, NEW)
    assert "overlay check" in (info.value.hint or "")
    assert owners(img) == before


def test_not_an_overlay_image(tmp_path: Path) -> None:
    img = make_image(tmp_path, "plain.img", lambda r: (r / "data").mkdir())
    with pytest.raises(ImageError, match="no upper/ directory"):
        chown(img, NEW, NEW)


def test_missing_image(tmp_path: Path) -> None:
    with pytest.raises(LockError, match="no such image file"):
        chown(tmp_path / "nope.img", NEW, NEW)


def test_a_non_image_file_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.img"
    junk.write_bytes(b"\0" * 100_000)
    with pytest.raises(ImageError, match="not an ext3 image"):
        chown(junk, NEW, NEW)
