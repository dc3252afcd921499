"""Interactive `condatainer e` in real bash, zsh and fish through a pty, on the builtin runtime:
the "Overlay envs:" banner, the prompt marker (the cd hook's, with the nesting level), the env's
activate.d scripts, the mm-* functions inside the container, the nesting level, the shell's
exit status coming back, and bash (with a notice) when the base image has not the user's shell."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

import pexpect
import pytest

from tests.support import REPO, World, cnt, ok

pytestmark = pytest.mark.root


@pytest.fixture
def image(world: World, tmp_path: Path) -> Path:
    img = tmp_path / "env.img"
    ok(cnt("o", str(img), "-s", "256M", "--sparse", "--", "cnt-hello", "cnt-activate"))
    (tmp_path / "env.img.env").write_text(
        "GREETING=$(touch /tmp/cnt-pwned) hi\n#ENVNOTE:GREETING=a friendly greeting\nPLAIN=v\n"
    )
    return img


def spawn_e(args: list[str], shell: str, cwd: Path) -> pexpect.spawn:
    """`condatainer e ARGS` on a pty, with CNT_SHELL=shell."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "CNT_SHELL": shell, "TERM": "dumb"}
    return pexpect.spawn(
        sys.executable,
        ["-m", "condatainer", "e", *args],
        cwd=str(cwd),
        env=env,
        encoding="utf-8",
        timeout=60,
        dimensions=(24, 400),
    )


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_interactive_entry(
    image: Path, tmp_path: Path, shell: str, need: Callable[[str], str]
) -> None:
    need(shell)
    child = spawn_e([str(image)], shell, tmp_path)
    try:
        child.expect("Overlay envs:")
        child.expect("a friendly greeting")  # the note, not the value
        child.expect("PLAIN=v|PLAIN: v|v")
        child.expect(re.escape(f"(cnt:{tmp_path.name}) "))  # the one prompt marker
        child.sendline('echo "state:$CNT_ACTIVATED:$IN_CONDATAINER:$GREETING"')
        child.expect(r"state:yes:1:\$\(touch /tmp/cnt-pwned\) hi")
        child.sendline("mm-list")
        child.expect("cnt-hello")
        child.sendline("cnt-hello from-inside")
        child.expect("hello from cnt-hello 1.0")
        child.sendline("exit 3")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 3
    assert not Path("/tmp/cnt-pwned").exists()


def test_nested_entry_increments_the_level(image: Path, tmp_path: Path) -> None:
    res = ok(
        cnt(
            "e",
            "-r",
            str(image),
            "--",
            sys.executable,
            "-m",
            "condatainer",
            "exec",
            "-o",
            str(image),
            "--",
            "sh",
            "-c",
            'echo "level=$IN_CONDATAINER"',
            cwd=tmp_path,
            env={"PYTHONPATH": str(REPO)},
        )
    )
    assert res.stdout.strip() == "level=2"


def test_nested_shell_shows_the_level_in_its_marker(image: Path, tmp_path: Path) -> None:
    """An interactive shell in a container started from inside another one: `(cnt[2]:NAME) `."""
    nested = [sys.executable, "-m", "condatainer", "e", "-r", str(image)]
    child = spawn_e(["-r", str(image), "--", *nested], "bash", tmp_path)
    try:
        child.expect(re.escape(f"(cnt[2]:{tmp_path.name}) "))
        child.sendline("exit 4")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 4


def test_a_base_without_the_users_shell_starts_bash_with_a_notice(
    image: Path, tmp_path: Path, world_base: Path, need: Callable[[str], str]
) -> None:
    need("unsquashfs")
    child = spawn_e(["-r", "-b", str(world_base), str(image)], "fish", tmp_path)
    try:
        child.expect(re.escape(f"condatainer: note: fish is not in the base image ({world_base})"))
        child.expect("starting bash")
        child.expect(re.escape(f"(cnt:{tmp_path.name}) "))
        child.sendline('echo "shell=${BASH_VERSION:+bash}"')
        child.expect("shell=bash")
        child.sendline("exit 5")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 5
