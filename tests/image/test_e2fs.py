"""e2fs: reading real ext3 images with debugfs — hostile names, batching, errors.

Images are made here with `mke2fs -d` from a populated directory (not with image.py), so these
tests depend only on e2fsprogs.  `make_image` is shared with test_chown.py and test_info.py.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from condatainer import runner
from condatainer.errors import ImageError
from condatainer.image import e2fs
from tests.imagelib import mkfs

HOSTILE = "'\";&&e-$ èрт🚒中-j"
# Names that break naive parsing or quoting: spaces, quotes, shell syntax, a leading dash, a
# newline, a carriage return, a tab, something that looks like an inode (`<12>`) or a debugfs
# echo line, a shell escape (`!`), a comment (`#`), and bytes that are not UTF-8.
NAMES = [
    HOSTILE,
    "a b",
    "-lead",
    'x"y',
    '""',
    "nl\nname",
    "cr\rname",
    "tab\tname",
    "back\\slash",
    "$(touch pwned)",
    "<12>",
    "<2>",
    "!touch pwned",
    "#hash",
    "trailing ",
    " leading",
    "x\ndebugfs: ls -p <2>\n\n",
    os.fsdecode(b"bad-\xff\xfe-utf8"),
    "ls: Filesystem not open",  # debugfs error texts: errors are read from the line's end
    "x: EXT2 directory corrupted",
]


def read_file(image: Path | str, inner: str) -> bytes | None:
    """The bytes of a file in the image, the way production reads one: stat, then its inode."""
    entry = e2fs.stat(image, inner)
    return None if entry is None else e2fs.read_inode(image, entry.inode)


def walk(image: Path | str, inner: str) -> list[e2fs.Entry]:
    """Every inode below directory `inner`, the way chown walks: walk_entries from its entry."""
    root = e2fs.stat(image, inner)
    assert root is not None and root.is_dir
    return e2fs.walk_entries(image, [root])


def make_image(tmp: Path, name: str, populate: Any, size: str = "256M") -> Path:
    """Build `tmp/name` with `mke2fs -d` from a directory that `populate(root)` fills."""
    src = tmp / (name + ".d")
    src.mkdir()
    populate(src)
    return mkfs(src, tmp / name, size)


def _content(name: str) -> bytes:
    return os.fsencode(name) + b"\x00\xff\n\rdebugfs: cat <2>\n"


def _hostile_tree(root: Path) -> None:
    base = root / "upper" / "ext3" / "env"
    base.mkdir(parents=True)
    (root / "work" / "work").mkdir(parents=True)
    for name in NAMES:
        (base / name).write_bytes(_content(name))
        sub = base / ("d-" + name)
        sub.mkdir()
        (sub / name).write_bytes(_content(name))
        (sub / "deeper").mkdir()
        (sub / "deeper" / name).write_bytes(b"")
    os.symlink("../../../../etc/passwd", base / "link")
    (base / "big.bin").write_bytes(bytes(range(256)) * 4096 + b"tail")


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if runner.which("mke2fs") is None:
        pytest.skip("needs e2fsprogs")
    return make_image(tmp_path_factory.mktemp("e2fs"), "hostile.img", _hostile_tree)


@pytest.fixture
def count_debugfs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, ...]]]:
    """Record every debugfs argv run through runner."""
    calls: list[tuple[str, ...]] = []
    real = runner.run_hook

    def hook(argv: Any, **kw: Any) -> runner.Result:
        if argv[0] == "debugfs":
            calls.append(tuple(argv))
        return real(argv, **kw)

    monkeypatch.setattr(runner, "run_hook", hook)
    yield calls


ENV = "/upper/ext3/env"


def test_list_dir_returns_every_hostile_name(hostile: Path) -> None:
    entries = e2fs.list_dir(hostile, ENV)
    names = {e.name for e in entries}
    assert names == {*NAMES, *("d-" + n for n in NAMES), "link", "big.bin"}
    for e in entries:
        assert e.path == f"{ENV}/{e.name}"
        if e.name in NAMES:
            assert e.is_file and e.size == len(_content(e.name))
        elif e.name.startswith("d-"):
            assert e.is_dir and e.size == 0
    link = next(e for e in entries if e.name == "link")
    assert link.is_symlink and not link.is_dir


@pytest.mark.parametrize("name", NAMES)
def test_stat_and_read_each_hostile_name(hostile: Path, name: str) -> None:
    entry = e2fs.stat(hostile, f"{ENV}/{name}")
    assert entry is not None and entry.name == name and entry.is_file
    assert read_file(hostile, f"{ENV}/{name}") == _content(name)
    # The same name one directory down, with the hostile name in the directory's name too.
    nested = f"upper/ext3/env/d-{name}/{name}"
    assert read_file(hostile, nested) == _content(name)
    assert {e.name for e in e2fs.list_dir(hostile, f"{ENV}/d-{name}")} == {name, "deeper"}
    assert e2fs.stat(hostile, f"{ENV}/d-{name}/missing/{name}") is None
    assert e2fs.stat(hostile, f"{ENV}/{name}/below-a-file") is None


def test_walk_finds_every_inode(hostile: Path) -> None:
    found = walk(hostile, "/upper")
    paths = sorted(e.path for e in found)
    expected = ["/upper/ext3", ENV]
    for name in NAMES:
        expected += [
            f"{ENV}/{name}",
            f"{ENV}/d-{name}",
            f"{ENV}/d-{name}/{name}",
            f"{ENV}/d-{name}/deeper",
            f"{ENV}/d-{name}/deeper/{name}",
        ]
    expected += [f"{ENV}/link", f"{ENV}/big.bin"]
    assert paths == sorted(expected)
    assert len({e.inode for e in found}) == len(found)


def test_walk_runs_one_debugfs_per_level(tmp_path: Path, count_debugfs: list[Any]) -> None:
    def tree(root: Path) -> None:
        for i in range(60):  # 60 directories per level, 4 levels
            d = root / "upper" / f"a{i}" / f"b{i}" / f"c{i}" / f"d{i}"
            d.mkdir(parents=True)
            (d / "f").write_text("x")

    image = make_image(tmp_path, "wide.img", tree)
    count_debugfs.clear()
    found = walk(image, "upper")
    assert len(found) == 60 * 5
    # one to find upper/, then levels: upper, a*, b*, c*, d* (files only below d*)
    assert len(count_debugfs) == 1 + 5, count_debugfs


def test_read_binary_file_exactly(hostile: Path) -> None:
    assert read_file(hostile, f"{ENV}/big.bin") == bytes(range(256)) * 4096 + b"tail"


def test_missing_and_wrong_kinds(hostile: Path) -> None:
    assert e2fs.stat(hostile, f"{ENV}/nope") is None
    assert e2fs.stat(hostile, f"{ENV}/a b/below-a-file") is None
    assert e2fs.stat(hostile, "/no/such/dir/x") is None
    assert read_file(hostile, f"{ENV}/nope") is None
    with pytest.raises(ImageError, match="no directory /upper/ext3/env/nope"):
        e2fs.list_dir(hostile, f"{ENV}/nope")
    with pytest.raises(ImageError, match="no directory"):
        e2fs.list_dir(hostile, f"{ENV}/a b")
    assert e2fs.try_list_dir(hostile, f"{ENV}/nope") is None
    a_file = e2fs.stat(hostile, f"{ENV}/a b")
    assert a_file is not None and e2fs.walk_entries(hostile, [a_file]) == []  # nothing below
    with pytest.raises(ImageError, match=r"'\.\.' is not allowed"):
        e2fs.stat(hostile, "/upper/../etc")


def test_root_and_relative_paths(hostile: Path) -> None:
    root = e2fs.stat(hostile, "/")
    assert root is not None and root.inode == e2fs.ROOT_INODE and root.is_dir
    upper = e2fs.stat(hostile, "upper")
    assert upper == e2fs.stat(hostile, "/upper/") == e2fs.stat(hostile, "//upper/./")
    assert upper is not None and upper.path == "/upper"
    assert {e.name for e in e2fs.list_dir(hostile, "/")} >= {"upper", "work", "lost+found"}


def test_large_ids_are_unsigned(tmp_path: Path) -> None:
    image = make_image(tmp_path, "ids.img", lambda r: (r / "upper").mkdir())
    upper = e2fs.stat(image, "upper")
    assert upper is not None
    e2fs.debugfs_script(
        image,
        [
            f"set_inode_field <{upper.inode}> uid 3000000000",
            f"set_inode_field <{upper.inode}> gid 4294967294",
        ],
        write=True,
    )
    again = e2fs.stat(image, "upper")
    assert again is not None and (again.uid, again.gid) == (3000000000, 4294967294)


UNSAFE_LINES = ["ls\nrm x", "ls\r", "!sh", "  !sh", "\t# comment", "", " \t", "ls \0", "x" * 8000]


def test_debugfs_script_refuses_unsafe_lines(hostile: Path) -> None:
    for line in UNSAFE_LINES:
        with pytest.raises(ValueError):
            e2fs.debugfs_script(hostile, [line], write=False)
        # The whole script is checked at once: a bad line among many is found, wherever it is.
        for at in (0, 500, 999):
            lines = ["ls -p <2>"] * 1000
            lines[at] = line
            with pytest.raises(ValueError):
                e2fs.debugfs_script(hostile, lines, write=False)
    safe = ["ls -p <2>", "  ls -p <2>", "\tstat <2>"]
    assert e2fs.debugfs_script(hostile, safe, write=False).count("debugfs: ") == len(safe)
    assert e2fs._script(["ls /a#b!", "ls x"]) == b"ls /a#b!\nls x\n"  # only a line's start counts
    with pytest.raises(ValueError):
        e2fs.quote("a\nb")
    assert e2fs.quote('x"y') == '"/x""y"'
    assert e2fs.quote("-lead") == '"/-lead"'


def test_debugfs_errors_become_image_errors(hostile: Path, tmp_path: Path) -> None:
    with pytest.raises(ImageError, match=r"debugfs: .*Usage") as info:
        e2fs.debugfs_script(hostile, ["ls -p -Q"], write=False)
    assert info.value.hint
    garbage = tmp_path / "garbage.img"
    garbage.write_bytes(os.urandom(1 << 20))
    with pytest.raises(ImageError, match=r"debugfs cannot open the image: .*Bad magic"):
        e2fs.debugfs_script(garbage, ["ls -p <2>"], write=False)
    truncated = tmp_path / "truncated.img"
    with open(hostile, "rb") as src:
        truncated.write_bytes(src.read(200 * 1024))
    with pytest.raises(ImageError, match="debugfs cannot open the image"):
        e2fs.list_dir(truncated, "/")


def test_superblock_errors_are_precise(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="no such image file"):
        e2fs.superblock(tmp_path / "missing.img")
    with pytest.raises(ImageError, match="is a directory"):
        e2fs.superblock(tmp_path)
    text = tmp_path / "text.img"
    text.write_text("hello\n" * 1000)
    with pytest.raises(ImageError, match="not an ext3 image"):
        e2fs.superblock(text)


def test_image_named_like_an_option(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_image(tmp_path, "-x.img", lambda r: (r / "upper").mkdir())
    monkeypatch.chdir(tmp_path)
    assert e2fs.superblock("-x.img").block_size == 4096
    assert e2fs.stat("-x.img", "upper") is not None


def test_nothing_from_the_image_reaches_a_shell(
    hostile: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    walk(hostile, "/")
    for name in NAMES:
        e2fs.stat(hostile, f"{ENV}/d-{name}/deeper/{name}")
        read_file(hostile, f"{ENV}/d-{name}/{name}")
    assert list(cwd.iterdir()) == []
