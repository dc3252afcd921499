"""A shell whose condatainer was uninstalled while it ran (`install.sh --uninstall` in another
terminal): its cd hook says so once and then stays quiet -- no `condatainer: command not
found` on every cd into a project -- in real bash, zsh and fish."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from condatainer.hook import trust
from tests.shell.hooklib import Hook, make_image

GONE = (
    "condatainer: not installed any more; the hook in this shell does nothing"
    " (new shells do not load it)"
)


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_a_hook_whose_condatainer_is_gone_says_so_once(
    shell: str, tmp_path: Path, need: Callable[[str], str]
) -> None:
    need(shell)
    need("mke2fs")
    hook = Hook(shell, tmp_path / "hook")
    projects = []
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        image = make_image(tmp_path / name / "env.img", bins=("tool",))
        trust.allow(image)
        projects.append(tmp_path / name)
    one, two = projects
    overlay = "$CNT_OVERLAY" if shell == "fish" else "${CNT_OVERLAY-}"
    script = (
        f"cd '{one}'\n_cnt_prompt\n"
        f'printf "ACTIVE:%s\\n" "{overlay}"\n'
        f"cd '{tmp_path}'\n_cnt_prompt\n"
        f"rm -f '{hook.launcher}'\n"  # uninstalled while this shell runs
        f"cd '{two}'\n_cnt_prompt\n"
        f"cd '{tmp_path}'\n_cnt_prompt\n"
        f"cd '{one}'\n_cnt_prompt\n"
        f'printf "AFTER:%s\\n" "{overlay}"\n'
    )
    # PATH without any condatainer: the one that wrote the hook was the only one.
    env = hook.env(PATH=os.pathsep.join(("/usr/bin", "/bin")))
    res = hook.run(script, env=env, cwd=tmp_path)
    assert f"ACTIVE:{one / 'env.img'}" in res.stdout  # it worked while it was there
    assert "AFTER:\n" in res.stdout  # and activates nothing once gone
    assert res.stderr.count(GONE) == 1, res.stderr
    assert "not found" not in res.stderr.replace(GONE, "")
    assert len(hook.activations()) == 1
