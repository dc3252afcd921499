"""rcfile: the marked block goes in and comes out byte-exact, and works in real shells."""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from condatainer import shellgen
from condatainer.errors import ShellError
from condatainer.hook import rcfile

BODY = "echo from-the-block\n"
HOSTILE = "'\";&&e-$ èрт🚒中-j"

ORIGINALS = {
    "missing": None,
    "empty": b"",
    "one line": b"alias ll='ls -l'\n",
    "no final newline": b"export A=1\nexport B=2",
    "crlf": b"export A=1\r\nexport B=2\r\n",
    "crlf no final newline": b"export A=1\r\nexport B=2",
    "blank lines only": b"\n\n\n",
    "ends with lone cr": b"x=1\r",
    "non-utf8": b"# caf\xe9\n\xff\xfe\n",
    "conda block": b"# >>> conda initialize >>>\nfoo\n# <<< conda initialize <<<\n",
}


def make(path: Path, content: bytes | None) -> None:
    if content is not None:
        path.write_bytes(content)


def install(path: Path, body: str = BODY) -> None:
    rcfile.write(rcfile.install_block(path, body))


def uninstall(path: Path) -> None:
    rcfile.write(rcfile.remove_block(path))


# --------------------------------------------------------------------------------------------
# Round trips


@pytest.mark.parametrize("name", sorted(ORIGINALS))
def test_install_then_remove_restores_original_bytes(tmp_path: Path, name: str) -> None:
    rc = tmp_path / ".bashrc"
    original = ORIGINALS[name]
    make(rc, original)
    install(rc)
    assert b"echo from-the-block" in rc.read_bytes()
    uninstall(rc)
    if original is None:
        assert not rc.exists()
    else:
        assert rc.read_bytes() == original


@pytest.mark.parametrize("name", sorted(ORIGINALS))
def test_install_twice_gives_identical_bytes(tmp_path: Path, name: str) -> None:
    rc = tmp_path / ".bashrc"
    make(rc, ORIGINALS[name])
    install(rc)
    once = rc.read_bytes()
    change = rcfile.install_block(rc, BODY)
    assert not change.changed
    assert rcfile.diff(change) == ""
    install(rc)
    assert rc.read_bytes() == once


def test_block_layout_appended_after_existing_lines(tmp_path: Path) -> None:
    rc = tmp_path / ".bashrc"
    rc.write_bytes(b"alias a=b\n")
    install(rc)
    assert rc.read_bytes() == (
        b"alias a=b\n# >>> condatainer >>>\necho from-the-block\n# <<< condatainer <<<\n"
    )


def test_file_without_final_newline_keeps_having_none(tmp_path: Path) -> None:
    rc = tmp_path / ".bashrc"
    rc.write_bytes(b"alias a=b")
    install(rc)
    assert rc.read_bytes() == (
        b"alias a=b\n# >>> condatainer >>>\necho from-the-block\n# <<< condatainer <<<"
    )


def test_created_file_says_so_and_is_deleted_only_when_nothing_else_is_left(
    tmp_path: Path,
) -> None:
    rc = tmp_path / ".zshrc"
    install(rc)
    assert rcfile.CREATED_NOTE in rc.read_bytes()
    assert stat.S_IMODE(rc.stat().st_mode) == 0o644
    with rc.open("ab") as f:
        f.write(b"export MINE=1\n")
    uninstall(rc)
    assert rc.read_bytes() == b"export MINE=1\n"


def test_existing_empty_file_stays(tmp_path: Path) -> None:
    rc = tmp_path / ".bashrc"
    rc.write_bytes(b"")
    install(rc)
    assert rcfile.CREATED_NOTE not in rc.read_bytes()
    uninstall(rc)
    assert rc.exists() and rc.read_bytes() == b""


def test_replacing_the_body_touches_nothing_outside_the_block(tmp_path: Path) -> None:
    rc = tmp_path / ".bashrc"
    rc.write_bytes(b"before\n")
    install(rc, "echo old\n")
    with rc.open("ab") as f:
        f.write(b"after\r\nmore")
    install(rc, "echo new\n")
    assert rc.read_bytes() == (
        b"before\n# >>> condatainer >>>\necho new\n# <<< condatainer <<<\nafter\r\nmore"
    )
    uninstall(rc)
    assert rc.read_bytes() == b"before\nafter\r\nmore"


def test_block_edited_by_the_user_is_still_removed_whole(tmp_path: Path) -> None:
    rc = tmp_path / ".bashrc"
    rc.write_bytes(b"a\n")
    install(rc)
    rc.write_bytes(rc.read_bytes().replace(b"echo from-the-block", b"echo edited\necho more"))
    uninstall(rc)
    assert rc.read_bytes() == b"a\n"


def test_block_converted_to_crlf_is_found(tmp_path: Path) -> None:
    rc = tmp_path / ".bashrc"
    rc.write_bytes(b"a\r\n")
    install(rc)
    rc.write_bytes(rc.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
    uninstall(rc)
    assert rc.read_bytes() == b"a\r\n"


def test_remove_without_block_changes_nothing(tmp_path: Path) -> None:
    rc = tmp_path / ".bashrc"
    rc.write_bytes(b"x\n")
    change = rcfile.remove_block(rc)
    assert not change.changed
    rcfile.write(change)
    assert rc.read_bytes() == b"x\n"
    missing = rcfile.remove_block(tmp_path / "nope")
    assert not missing.changed
    rcfile.write(missing)
    assert not (tmp_path / "nope").exists()


_MARKERS = (rcfile.BEGIN, rcfile.END)


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.binary(max_size=300) | st.text(max_size=100).map(str.encode))
def test_any_content_round_trips(tmp_path: Path, content: bytes) -> None:
    if any(marker in content for marker in _MARKERS):
        return  # a file that already holds (a piece of) our block is not "original"
    rc = tmp_path / "rc"
    rc.write_bytes(content)
    install(rc)
    installed = rc.read_bytes()
    install(rc)
    assert rc.read_bytes() == installed
    uninstall(rc)
    assert rc.read_bytes() == content


# --------------------------------------------------------------------------------------------
# File handling


def test_symlink_is_followed_and_kept(tmp_path: Path) -> None:
    dotfiles = tmp_path / "dotfiles"
    dotfiles.mkdir()
    real = dotfiles / "bashrc"
    real.write_bytes(b"x=1\n")
    rc = tmp_path / ".bashrc"
    rc.symlink_to(real)
    install(rc)
    assert rc.is_symlink() and os.readlink(rc) == str(real)
    assert b"from-the-block" in real.read_bytes()
    uninstall(rc)
    assert rc.is_symlink() and real.read_bytes() == b"x=1\n"


def test_dangling_symlink_creates_the_target(tmp_path: Path) -> None:
    real = tmp_path / "target-rc"
    rc = tmp_path / ".bashrc"
    rc.symlink_to(real)
    install(rc)
    assert rc.is_symlink() and real.exists()
    uninstall(rc)
    assert rc.is_symlink() and not real.exists()


def test_mode_is_kept(tmp_path: Path) -> None:
    rc = tmp_path / ".bashrc"
    rc.write_bytes(b"x\n")
    rc.chmod(0o600)
    install(rc)
    assert stat.S_IMODE(rc.stat().st_mode) == 0o600
    uninstall(rc)
    assert stat.S_IMODE(rc.stat().st_mode) == 0o600


def test_new_file_is_0644_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        install(tmp_path / ".bashrc")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / ".bashrc").stat().st_mode) == 0o644


def test_write_is_a_rename_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    rc = tmp_path / "d" / ".bashrc"
    rc.write_bytes(b"x\n")
    inode = rc.stat().st_ino
    install(rc)
    assert rc.stat().st_ino != inode  # replaced by rename, never rewritten in place
    assert sorted(p.name for p in rc.parent.iterdir()) == [".bashrc"]


def test_dry_run_diff_writes_nothing(tmp_path: Path) -> None:
    rc = tmp_path / ".bashrc"
    rc.write_bytes(b"x\n")
    change = rcfile.install_block(rc, BODY)
    text = rcfile.diff(change)
    assert text.startswith(f"--- {rc}\n+++ {rc}\n")
    assert "+# >>> condatainer >>>\n" in text and "+echo from-the-block\n" in text
    assert rc.read_bytes() == b"x\n"


def test_diff_of_created_and_deleted_file(tmp_path: Path) -> None:
    rc = tmp_path / ".bashrc"
    assert rcfile.diff(rcfile.install_block(rc, BODY)).startswith(f"--- /dev/null\n+++ {rc}\n")
    install(rc)
    assert rcfile.diff(rcfile.remove_block(rc)).startswith(f"--- {rc}\n+++ /dev/null\n")


def test_diff_marks_missing_final_newline(tmp_path: Path) -> None:
    rc = tmp_path / ".bashrc"
    rc.write_bytes(b"x")
    text = rcfile.diff(rcfile.install_block(rc, BODY))
    assert "-x\n\\ No newline at end of file\n" in text
    assert "+# <<< condatainer <<<\n\\ No newline at end of file\n" in text


def test_file_changed_since_read_is_not_overwritten(tmp_path: Path) -> None:
    rc = tmp_path / ".bashrc"
    rc.write_bytes(b"x\n")
    change = rcfile.install_block(rc, BODY)
    rc.write_bytes(b"someone else wrote this\n")
    with pytest.raises(ShellError, match="changed"):
        rcfile.write(change)
    assert rc.read_bytes() == b"someone else wrote this\n"


def test_missing_directory_is_a_shell_error(tmp_path: Path) -> None:
    rc = tmp_path / "no" / "such" / ".zshrc"
    with pytest.raises(ShellError) as info:
        install(rc)
    assert info.value.hint and "mkdir -p" in info.value.hint


def test_rc_that_is_a_directory_is_a_shell_error(tmp_path: Path) -> None:
    (tmp_path / ".bashrc").mkdir()
    with pytest.raises(ShellError, match="directory"):
        rcfile.install_block(tmp_path / ".bashrc", BODY)


@pytest.mark.parametrize(
    ("content", "what"),
    [
        (b"a\n# >>> condatainer >>>\necho x\n", "start marker without an end"),
        (b"a\n# <<< condatainer <<<\n", "end marker without a start"),
        (b"# >>> condatainer >>>\n# >>> condatainer >>>\n# <<< condatainer <<<\n", "two"),
        (b"# >>> condatainer >>>\n# <<< condatainer <<<\n# <<< condatainer <<<\n", "end marker"),
        (
            b"# >>> condatainer >>>\n# <<< condatainer <<<\n"
            b"# >>> condatainer >>>\n# <<< condatainer <<<\n",
            "two",
        ),
    ],
)
def test_damaged_block_is_refused_with_a_hint(tmp_path: Path, content: bytes, what: str) -> None:
    rc = tmp_path / ".bashrc"
    rc.write_bytes(content)
    computations: list[Callable[[], rcfile.Change]] = [
        lambda: rcfile.install_block(rc, BODY),
        lambda: rcfile.remove_block(rc),
    ]
    for compute in computations:
        with pytest.raises(ShellError, match=what) as info:
            compute()
        assert info.value.hint and "by hand" in info.value.hint
    assert rc.read_bytes() == content


def test_body_containing_a_marker_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        rcfile.install_block(tmp_path / "rc", "# <<< condatainer <<<\n")


# --------------------------------------------------------------------------------------------
# Paths


def test_rc_and_hook_paths(isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = isolated_env
    assert rcfile.rc_path("bash") == home / ".bashrc"
    monkeypatch.setenv("ZDOTDIR", str(home / "zdot"))
    assert rcfile.rc_path("zsh") == home / "zdot" / ".zshrc"
    monkeypatch.delenv("ZDOTDIR")
    assert rcfile.rc_path("zsh") == home / ".zshrc"
    assert rcfile.hook_path("zsh") == home / ".local/share/condatainer/hook.zsh"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert rcfile.hook_path("bash") == home / ".local/share/condatainer/hook.bash"
    assert rcfile.rc_path("fish") == home / ".config/fish/conf.d/condatainer.fish"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "cfg"))
    assert rcfile.rc_path("fish") == home / "cfg/fish/conf.d/condatainer.fish"
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative")  # ignored, as the XDG spec says
    assert rcfile.rc_path("fish") == home / ".config/fish/conf.d/condatainer.fish"
    with pytest.raises(ShellError):
        rcfile.rc_path("tcsh")


# --------------------------------------------------------------------------------------------
# The rendered block in real shells

SHELL_ARGV = {
    "bash": ["bash", "--norc", "--noprofile"],
    "zsh": ["zsh", "-f"],
    "fish": ["fish", "--no-config"],
}
HOOK_TEXT = {"bash": "HOOKED=yes\n", "zsh": "HOOKED=yes\n", "fish": "set -g HOOKED yes\n"}


def run_rc(
    shell: str, rc: Path, *, interactive: bool, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Source `rc` like the shell sources its rc file, then report."""
    argv = [*SHELL_ARGV[shell], *(["-i"] if interactive else [])]
    script = f'set -u; . {shellgen.quote(str(rc))}; echo "after-rc hooked=${{HOOKED-no}}"'
    if shell == "fish":
        script = (
            f"source {shellgen.quote_fish(str(rc))}; set -q HOOKED; or set HOOKED no;"
            ' echo "after-rc hooked=$HOOKED"'
        )
    full_env = {"PATH": os.environ["PATH"], "HOME": os.environ["HOME"], "TERM": "dumb"}
    full_env.update(env or {})
    return subprocess.run(
        [*argv, "-c", script],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
        env=full_env,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def hooked_rc(
    tmp_path: Path, request: pytest.FixtureRequest, need: Callable[[str], str]
) -> tuple[str, Path, Path]:
    shell: str = request.param
    need(shell)
    data = tmp_path / HOSTILE / "data"
    data.mkdir(parents=True)
    hook = data / f"hook.{shell}"
    hook.write_text(HOOK_TEXT[shell])
    rc = tmp_path / f"rc.{shell}"
    rc.write_text("set PRE 1\n" if shell == "fish" else "PRE=1\n")
    rcfile.write(rcfile.install_block(rc, rcfile.block_body(shell, hook)))
    return shell, rc, hook


@pytest.mark.parametrize("hooked_rc", ["bash", "zsh", "fish"], indirect=True)
def test_block_sources_the_hook_in_an_interactive_shell(hooked_rc: tuple[str, Path, Path]) -> None:
    shell, rc, _ = hooked_rc
    proc = run_rc(shell, rc, interactive=True)
    assert "after-rc hooked=yes" in proc.stdout, proc.stderr


@pytest.mark.parametrize("hooked_rc", ["bash", "zsh", "fish"], indirect=True)
def test_block_does_nothing_in_a_non_interactive_shell_and_the_rc_goes_on(
    hooked_rc: tuple[str, Path, Path],
) -> None:
    shell, rc, _ = hooked_rc
    proc = run_rc(shell, rc, interactive=False)
    assert proc.stdout == "after-rc hooked=no\n" and proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("hooked_rc", ["bash", "zsh", "fish"], indirect=True)
@pytest.mark.parametrize(
    "variable", ["IN_CONDATAINER", "APPTAINER_CONTAINER", "SINGULARITY_CONTAINER"]
)
def test_block_does_nothing_inside_a_container(
    hooked_rc: tuple[str, Path, Path], variable: str
) -> None:
    shell, rc, _ = hooked_rc
    proc = run_rc(shell, rc, interactive=True, env={variable: "1"})
    assert "after-rc hooked=no" in proc.stdout, proc.stderr


@pytest.mark.parametrize("hooked_rc", ["bash", "zsh", "fish"], indirect=True)
def test_block_is_silent_when_the_hook_file_is_gone(hooked_rc: tuple[str, Path, Path]) -> None:
    shell, rc, hook = hooked_rc
    hook.unlink()
    proc = run_rc(shell, rc, interactive=True)
    assert "after-rc hooked=no" in proc.stdout
    assert "hook" not in proc.stderr and "condatainer" not in proc.stderr
