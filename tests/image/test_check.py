"""`check` with real e2fsck: clean, corrupted, journal needing recovery, flagged not clean,
not an image, missing; exit codes explained in words; locks respected."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from condatainer import runner
from condatainer.errors import CondatainerError, ImageError, LockError
from condatainer.image import e2fs
from condatainer.image.check import check, explain_fsck_exit
from condatainer.image.create import create

REPO = Path(__file__).resolve().parents[2]
MIB = 1024 * 1024


@pytest.fixture
def img(tmp_path: Path) -> Path:
    return create(tmp_path / "env.img", 256 * MIB, "balanced", sparse=True).path


def corrupt_inode(path: Path, name: str = "upper") -> None:
    """Overwrite the on-disk inode of `name` with 0xff: e2fsck -f flags it, preen gives up."""
    out = runner.run(["debugfs", "-R", f"imap {name}", str(path)]).stdout
    block = int(out.split("located at block ")[1].split(",")[0])
    offset = int(out.split("offset ")[1].split()[0], 16)
    with open(path, "r+b") as f:
        f.seek(block * 4096 + offset)
        f.write(b"\xff" * 256)


def debugfs_w(path: Path, command: str) -> None:
    res = runner.run(["debugfs", "-w", "-R", command, str(path)])
    assert res.ok and "debugfs:" not in res.stderr.replace("debugfs 1.", ""), res.stderr


# --------------------------------------------------------------------------- verdicts


def test_clean_image(img: Path) -> None:
    res = check(img)
    assert (res.exit_code, res.clean) == (0, True)
    assert res.explanation.startswith(f"{img}: no errors found")
    assert "add -f" in res.explanation  # e2fsck only looked at the clean flag
    assert ": clean," in res.output


def test_forced_check_of_a_clean_image(img: Path) -> None:
    res = check(img, force=True)
    assert (res.exit_code, res.clean) == (0, True)
    assert "Pass 5" in res.output
    assert "add -f" not in res.explanation


def test_corruption_is_found_explained_and_repaired(img: Path) -> None:
    corrupt_inode(img)
    before = img.read_bytes()

    # Without -f, e2fsck trusts the clean flag: the explanation says it did not look.
    quick = check(img)
    assert quick.exit_code == 0 and "skipped the full check" in quick.explanation

    res = check(img, force=True)
    assert res.exit_code == 4 and not res.clean
    assert "errors were left uncorrected" in res.explanation
    assert f"condatainer overlay check {img} --repair" in res.explanation
    assert img.read_bytes() == before  # a check without --repair writes nothing

    fixed = check(img, force=True, repair=True)
    assert fixed.exit_code == 1 and fixed.clean
    assert "errors were found and corrected" in fixed.explanation
    assert "UNEXPECTED INCONSISTENCY" in fixed.output  # preen gave up; -y did the work

    again = check(img, force=True)
    assert (again.exit_code, again.clean) == (0, True)


def test_journal_needing_recovery(img: Path) -> None:
    debugfs_w(img, "feature needs_recovery")
    assert "needs_recovery" in e2fs.superblock(img).features

    res = check(img)
    # e2fsck -n calls it "clean" and exits 0; we know better from the superblock.
    assert res.exit_code == 0 and not res.clean
    assert "journal needs recovery" in res.explanation
    assert f"condatainer overlay check {img} --repair" in res.explanation

    forced = check(img, force=True)
    assert not forced.clean and "journal needs recovery" in forced.explanation

    fixed = check(img, repair=True)
    assert fixed.clean and fixed.exit_code in (0, 1)
    assert "recovering journal" in fixed.output
    assert e2fs.superblock(img).clean


def test_filesystem_flagged_not_clean(img: Path) -> None:
    debugfs_w(img, "ssv state 0")
    assert e2fs.superblock(img).state == "not clean"
    res = check(img)
    assert not res.clean
    assert "marked 'not clean'" in res.explanation and "--repair" in res.explanation
    fixed = check(img, repair=True)
    assert fixed.clean
    assert e2fs.superblock(img).state == "clean"


def test_not_an_image(tmp_path: Path) -> None:
    bad = tmp_path / "notes.img"
    bad.write_bytes(b"hello" * 1000)
    with pytest.raises(ImageError, match="not an ext3 image"):
        check(bad)
    assert bad.read_bytes() == b"hello" * 1000


def test_missing_image(tmp_path: Path) -> None:
    with pytest.raises(CondatainerError) as info:
        check(tmp_path / "nope.img")
    assert "no such image file" in info.value.message
    assert "in use" not in info.value.message


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(CondatainerError, match="is a directory"):
        check(tmp_path)


# --------------------------------------------------------------------------- locks

_HOLDER = """
import sys, time
from condatainer.image import locks
lock = locks.acquire(sys.argv[1], write=sys.argv[2] == "w")
print("locked", flush=True)
time.sleep(60)
"""


def _hold(path: Path, mode: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(path), mode],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def test_read_only_check_shares_with_readers(img: Path) -> None:
    holder = _hold(img, "r")
    try:
        assert check(img).clean
        with pytest.raises(LockError, match=f"PID {holder.pid}"):
            check(img, repair=True)
    finally:
        holder.kill()
        holder.wait()


def test_check_refuses_an_image_in_use_for_writing(img: Path) -> None:
    holder = _hold(img, "w")
    try:
        with pytest.raises(LockError, match=rf"in use for writing by .*\(PID {holder.pid}\b"):
            check(img)
    finally:
        holder.kill()
        holder.wait()


# --------------------------------------------------------------------------- words


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (0, "no errors found"),
        (1, "errors were found and corrected"),
        (2, "errors were corrected (e2fsck asks for a reboot"),
        (4, "errors were left uncorrected"),
        (8, "operational error"),
        (12, "errors were left uncorrected; e2fsck could not do its job"),
        (16, "usage error"),
        (32, "cancelled"),
        (128, "shared library"),
        (64, "unexpected exit status 64"),
    ],
)
def test_exit_codes_in_words(code: int, words: str) -> None:
    assert words in explain_fsck_exit(code)


def test_code_3_does_not_repeat_itself() -> None:
    text = explain_fsck_exit(3)
    assert "corrected" in text and "found and corrected" not in text
