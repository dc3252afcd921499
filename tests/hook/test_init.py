"""hostshell: init / hook / allow / deny, and a shell started with the block runs no Python."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from condatainer import cli
from condatainer.errors import ShellError, TrustError, UsageError
from condatainer.hook import hookfile, rcfile, shells, trust
from condatainer.hook import init as hostshell
from tests.shell.hooklib import HOSTILE, REPO, make_image


def init(shell: str | None = "bash", *, uninstall: bool = False, dry_run: bool = False) -> str:
    return "".join(
        f"{line}\n" for line in hostshell.init(shell, uninstall=uninstall, dry_run=dry_run)
    )


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_init_twice_is_identical_and_uninstall_restores(shell: str, isolated_env: Path) -> None:
    rc = rcfile.rc_path(shell)
    original = b"# mine\nalias ll='ls -l'"  # no final newline
    rc.write_bytes(original)
    rc.chmod(0o600)
    first = init(shell)
    hook = rcfile.hook_path(shell)
    assert f"wrote {hook}" in first and f"added the condatainer block to {rc}" in first
    assert hook.read_text() == hookfile.text(shell)
    once = (rc.read_bytes(), hook.read_bytes())
    again = init(shell)
    assert "is up to date" in again and "already loads the hook" in again
    assert (rc.read_bytes(), hook.read_bytes()) == once
    assert rc.stat().st_mode & 0o777 == 0o600
    out = init(shell, uninstall=True)
    assert "removed the condatainer block" in out and f"removed {hook}" in out
    assert rc.read_bytes() == original and not hook.exists()


def test_dry_run_shows_the_diff_and_writes_nothing(isolated_env: Path) -> None:
    out = init("bash", dry_run=True)
    rc = rcfile.rc_path("bash")
    assert "+# >>> condatainer >>>" in out and f"would write {rcfile.hook_path('bash')}" in out
    assert not rc.exists() and not rcfile.hook_path("bash").exists()
    init("bash")
    assert init("bash", dry_run=True) == f"{rc}: no change\n"
    out = init("bash", uninstall=True, dry_run=True)
    assert "-# >>> condatainer >>>" in out and "would remove" in out
    assert rc.exists()


def test_zsh_rc_follows_zdotdir_and_symlinks(
    isolated_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    zdot = tmp_path / "zdot"
    zdot.mkdir()
    real = tmp_path / "dotfiles" / "zshrc"
    real.parent.mkdir()
    real.write_text("setopt autocd\n")
    (zdot / ".zshrc").symlink_to(real)
    monkeypatch.setenv("ZDOTDIR", str(zdot))
    init("zsh")
    assert (zdot / ".zshrc").is_symlink()
    assert "# >>> condatainer >>>" in real.read_text()


def test_shell_detection(monkeypatch: pytest.MonkeyPatch) -> None:
    assert shells.detect("zsh", {}) == "zsh"
    assert shells.detect(None, {"CNT_SHELL": "/usr/bin/zsh"}) == "zsh"
    import shellingham

    def fail() -> None:
        raise shellingham.ShellDetectionFailure()

    monkeypatch.setattr(shellingham, "detect_shell", fail)
    assert shells.detect(None, {"SHELL": "/bin/bash"}) == "bash"
    assert shells.detect(None, {"SHELL": "/usr/bin/fish"}) == "fish"
    with pytest.raises(ShellError, match="tcsh") as info:
        shells.detect(None, {"SHELL": "/bin/tcsh"})
    assert info.value.hint is not None and "condatainer init bash" in info.value.hint
    assert "bash, zsh and fish" in info.value.message

    # Nothing set $SHELL (cron, env -i, a CI runner): the passwd entry names the login shell.
    class Entry:
        pw_shell = "/usr/bin/zsh"

    monkeypatch.setattr(shells.pwd, "getpwuid", lambda uid: Entry())
    assert shells.detect(None, {}) == "zsh"

    def no_entry(uid: int) -> None:
        raise KeyError(uid)

    monkeypatch.setattr(shells.pwd, "getpwuid", no_entry)
    with pytest.raises(ShellError, match="unknown shell"):
        shells.detect(None, {})


def test_hook_command_prints_only_the_hook(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["hook", "zsh"]) == 0
    out, err = capsys.readouterr()
    assert out == hookfile.text("zsh") and err == ""
    assert cli.main(["hook", "fish"]) == 0
    out, err = capsys.readouterr()
    assert out == hookfile.text("fish") and err == ""
    assert cli.main(["hook", "tcsh"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "tcsh" in err


# --------------------------------------------------------------------------------------------
# allow / deny


@pytest.fixture
def project(tmp_path: Path, need: Callable[[str], str]) -> Path:
    need("mke2fs")
    directory = tmp_path / HOSTILE
    (directory / "deep").mkdir(parents=True)
    make_image(directory / "env.img")
    return directory


def test_allow_and_deny_default_to_the_image_found_from_pwd(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    link = tmp_path / "link"
    link.symlink_to(project / "deep")
    monkeypatch.chdir(link)
    monkeypatch.setenv("PWD", str(link))  # the shell's logical $PWD: .../link
    with pytest.raises(UsageError) as info:  # from .../link upwards there is no image
        hostshell.allow(None)
    assert info.value.hint == "name the image: condatainer allow IMAGE"
    monkeypatch.chdir(project / "deep")
    monkeypatch.setenv("PWD", str(project / "deep"))
    image = project / "env.img"
    assert hostshell.allow(None) == f"allowed {image}"
    assert trust.status(image) is trust.TrustStatus.ALLOWED
    said = [hostshell.deny(None), hostshell.deny(str(image))]
    assert said == [f"denied {image}", f"{image} was not allowed"]
    assert trust.status(image) is trust.TrustStatus.NOT_ALLOWED


def test_allow_refuses_what_is_not_an_image(tmp_path: Path) -> None:
    text = tmp_path / "env.img"
    text.write_text("not an image\n")
    with pytest.raises(TrustError, match="not an ext3 image"):
        hostshell.allow(str(text))


def test_allow_and_deny_through_the_cli(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = str(project / "env.img")
    assert cli.main(["allow", image]) == 0
    assert cli.main(["deny", image]) == 0
    assert capsys.readouterr().out == f"allowed {image}\ndenied {image}\n"


# --------------------------------------------------------------------------------------------
# A new shell: the block loads the hook, and no Python runs


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_new_interactive_shell_loads_the_hook_without_python(
    shell: str, isolated_env: Path, need: Callable[[str], str]
) -> None:
    need(shell)
    strace = need("strace")
    subprocess.run(
        [sys.executable, "-m", "condatainer", "init", shell],
        check=True,
        capture_output=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    log = isolated_env / "strace.log"
    argv = [shell, "-i", "-c", "type _cnt_hook >/dev/null && echo LOADED"]
    proc = subprocess.run(
        [strace, "-f", "-o", str(log), "-e", "trace=execve", *argv],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )
    assert "LOADED" in proc.stdout, proc.stderr
    execs = [line for line in log.read_text().splitlines() if "execve(" in line]
    assert not [line for line in execs if "python" in line], execs
