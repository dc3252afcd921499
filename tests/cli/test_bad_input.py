"""Bad input through the real command line: one clear line, a hint, the right exit code, and
nothing created or changed.  Every case calls `main([...])` and checks stdout, stderr and the
directory before and after."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from condatainer.cli import main

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def listing(d: Path) -> list[str]:
    """What a test made in its directory (the isolation fixture's home/ aside)."""
    return sorted(p.name for p in d.iterdir() if p.name != "home")


def snapshot(d: Path) -> dict[str, str]:
    return {
        str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(d.rglob("*"))
        if p.relative_to(d).parts[0] != "home"
    }


def assert_clean_error(code: int, err: str, expected_code: int, *needles: str) -> None:
    assert code == expected_code, err
    lines = err.strip().splitlines()
    assert any(line.startswith("condatainer: error: ") for line in lines), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err


@pytest.mark.parametrize("size", ["0", "-5G", "1.5", "10X", "63M", "1e3G", "", "17T", "abc"])
def test_bad_sizes(tmp_path: Path, capsys: pytest.CaptureFixture[str], size: str) -> None:
    code, _out, err = run(capsys, "o", "x.img", "-s", size)
    assert_clean_error(code, err, 2, "size")
    assert "hint:" in err
    assert listing(tmp_path) == []


def test_size_below_minimum_names_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "o", "x.img", "-s", "63M")
    assert_clean_error(code, err, 2, "64M")


@pytest.mark.parametrize("profile", ["huge", "SMALLER", ""])
def test_unknown_profile(tmp_path: Path, capsys: pytest.CaptureFixture[str], profile: str) -> None:
    code, _, err = run(capsys, "o", "x.img", "-s", "64M", "-p", profile)
    assert_clean_error(code, err, 2, "profile")
    assert "balanced" in err  # the valid names are listed
    assert listing(tmp_path) == []


def test_deprecated_type_alias_still_validates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "o", "x.img", "-s", "64M", "-t", "nope")
    assert_clean_error(code, err, 2, "profile")


def test_existing_file_is_not_touched(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "env.img").write_text("precious")
    code, _, err = run(capsys, "o", "-s", "64M")
    assert_clean_error(code, err, 1, "env.img", "exists")
    assert (tmp_path / "env.img").read_text() == "precious"
    assert listing(tmp_path) == ["env.img"]


def test_existing_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "env.img").mkdir()
    code, _, err = run(capsys, "o", "-s", "64M")
    assert_clean_error(code, err, 1, "exists")


def test_name_without_extension_gets_img(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _out, err = run(capsys, "o", "proj", "-s", "64M", "--sparse")
    assert code == 0, err
    assert (tmp_path / "proj.img").is_file()


@pytest.mark.parametrize("action", [["resize", "-s", "128M"], ["check"], ["chown"], ["info"]])
def test_directory_instead_of_image(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], action: list[str]
) -> None:
    d = tmp_path / "d.img"
    d.mkdir()
    code, _, err = run(capsys, "overlay", action[0], str(d), *action[1:])
    assert_clean_error(code, err, 1, "directory")


@pytest.mark.parametrize("action", [["resize", "-s", "128M"], ["check"], ["chown"], ["info"]])
def test_missing_image(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], action: list[str]
) -> None:
    code, _, err = run(capsys, "overlay", action[0], str(tmp_path / "nope.img"), *action[1:])
    assert_clean_error(code, err, 1, "nope.img")
    assert "in use" not in err
    assert listing(tmp_path) == []


@pytest.mark.parametrize("action", [["resize", "-s", "128M"], ["check"], ["chown"], ["info"]])
def test_not_an_ext3_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], action: list[str]
) -> None:
    f = tmp_path / "notes.img"
    f.write_bytes(b"just text\n" * 10000)
    before = snapshot(tmp_path)
    code, _, err = run(capsys, "overlay", action[0], str(f), *action[1:])
    assert_clean_error(code, err, 1, "notes.img")
    assert "ext" in err
    assert snapshot(tmp_path) == before


def make_image(tmp_path: Path, name: str = "env.img") -> Path:
    image = tmp_path / name
    assert main(["o", str(image), "-s", "64M", "--sparse"]) == 0
    return image


def test_corrupt_image(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = make_image(tmp_path)
    capsys.readouterr()
    with open(image, "r+b") as f:  # wipe the primary superblock
        f.seek(1024)
        f.write(b"\0" * 1024)
    before = snapshot(tmp_path)
    for action in (["info"], ["resize", "-s", "128M"], ["chown"]):
        code, _, err = run(capsys, "overlay", action[0], str(image), *action[1:])
        assert_clean_error(code, err, 1, "env.img")
    assert snapshot(tmp_path) == before
    code, _out, err = run(capsys, "overlay", "check", str(image))
    assert code == 1
    assert "Traceback" not in err


def test_unreadable_env_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = make_image(tmp_path)
    sidecar = tmp_path / "env.img.env"
    sidecar.write_text("A=1\n")
    sidecar.chmod(0)
    capsys.readouterr()
    if os.geteuid() == 0:  # root reads anything: make it unreadable another way
        sidecar.chmod(0o644)
        sidecar.unlink()
        sidecar.mkdir()
    code, _, err = run(capsys, "overlay", "info", str(image))
    assert_clean_error(code, err, 1, "env.img.env")


@pytest.mark.parametrize("line", ["1BAD=x", "BAD-NAME=x", "no equals sign", "=value"])
def test_invalid_env_names_name_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], line: str
) -> None:
    image = make_image(tmp_path)
    (tmp_path / "env.img.env").write_text(f"# comment\nGOOD=1\n{line}\n")
    capsys.readouterr()
    code, _, err = run(capsys, "overlay", "info", str(image))
    assert_clean_error(code, err, 1, "env.img.env:3")


def test_packages_need_a_runtime_before_anything_is_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CNT_RUNTIME", "apptainer")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    code, _, err = run(capsys, "o", "-s", "64M", "--", "numpy")
    assert_clean_error(code, err, 1, "apptainer")
    assert listing(tmp_path) == []


def test_bad_environment_file_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "environment.yml"
    bad.write_text("name: x\ndependencies:\n  - numpy\n  - [oops\n")
    code, _, err = run(capsys, "o", "-s", "64M", "-f", str(bad))
    assert_clean_error(code, err, 1, "environment.yml:4", "not valid YAML")
    assert listing(tmp_path) == ["environment.yml"]
    bad.write_text("name: x\ndependencies:\n  - --override-channels\n")
    code, _, err = run(capsys, "o", "-s", "64M", "-f", str(bad))
    assert_clean_error(code, err, 1, "environment.yml")
    code, _, err = run(capsys, "o", "-s", "64M", "-f", str(tmp_path / "missing.yml"))
    assert_clean_error(code, err, 1, "missing.yml")
    assert listing(tmp_path) == ["environment.yml"]


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "overlay", "resize")
    assert code == 2
    code, _, err = run(capsys, "nosuchcommand")
    assert code == 2
    # Without a command, exec opens a shell (as CondaTainer's does); without an image, no.
    code, _, err = run(capsys, "exec")
    assert code == 2 and "exec needs at least one image" in err


def test_no_traceback_for_debug_off(tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "condatainer", "overlay", "info", str(tmp_path / "x.img")],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    assert res.stderr.count("\n") == 2  # error line + hint line


def test_control_characters_in_a_path_are_shown_not_sent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The message quotes the path; ESC would start an escape sequence on the user's terminal.
    code, _out, err = run(capsys, "overlay", "info", "gone\x1b]0;owned\x07.img")
    assert_clean_error(code, err, 1, "gone?]0;owned?.img")
    assert "\x1b" not in err and "\x07" not in err
