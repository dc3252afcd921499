"""The hook, activation and shim templates: they parse, pass shellcheck, and match golden files.

Rendered with a fixed, hostile context (paths with quotes, `$`, `;`, spaces, non-ASCII).  The
golden files live in tests/shell/golden/ next to the rc block's; `CNT_UPDATE_GOLDEN=1 pytest
tests/shell/test_hook_golden.py` rewrites them (review the diff before committing).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from condatainer import shellgen
from condatainer.hook import hookfile
from tests.shell.golden_files import assert_matches_golden
from tests.shell.hooklib import HOSTILE

LAUNCHER = [f"/opt/{HOSTILE}/bin/python3", "-m", "condatainer"]
SHIM_ROOT = f"/home/{HOSTILE}/.cache/condatainer/shims"
IMAGE = f"/data/{HOSTILE} x/env.img"
ENTER = {
    "image": IMAGE,
    "project": f"/data/{HOSTILE} x",
    "shims": f"{SHIM_ROOT}/0123456789abcdef/bin",
    "marker": f"(cnt:{HOSTILE} x) ",
    "record": f"/home/{HOSTILE}/.local/share/condatainer/allowed/abc",
    "pkgs": f"/home/{HOSTILE}/.cache/condatainer/pkgs/0123456789abcdef.txt",
    "bye": f"condatainer: {HOSTILE}\nline two deactivated",
}


def _hook(shell: str) -> tuple[str, str, dict[str, Any]]:
    return (
        "hook",
        shell,
        {
            **hookfile.context(shell),
            "version": "0.0.0+golden",
            "launcher": LAUNCHER,
            "activator": ["/opt/cnt/bin/python", "-m", "condatainer.hook.activate"],
            "shim_root": SHIM_ROOT,
            "stamp": f"/home/{HOSTILE}/.cache/condatainer/stamp",
        },
    )


RENDERED: dict[str, tuple[str, str, dict[str, Any]]] = {
    **{f"hook.{shell}": _hook(shell) for shell in ("bash", "zsh", "fish")},
    **{
        f"activate-enter.{shell}": (
            "activate",
            shell,
            {"image": IMAGE, "enter": ENTER, "wait": None, "told": ["notes"]},
        )
        for shell in ("bash", "zsh", "fish")
    },
    **{
        f"activate-wait.{shell}": (
            "activate",
            shell,
            {"image": IMAGE, "enter": None, "wait": ENTER["record"], "told": ["notice"]},
        )
        for shell in ("bash", "zsh", "fish")
    },
    "shim.sh": (
        "shim",
        "sh",
        {"launcher": LAUNCHER, "image": IMAGE, "dispatcher": ".cnt-shim", "shims": ENTER["shims"]},
    ),
}
CHECKER = {
    "bash": ["bash", "-n"],
    "zsh": ["zsh", "-n"],
    "fish": ["fish", "-n"],
    "sh": ["dash", "-n"],
}
SHELLCHECK = {"bash": "bash", "sh": "sh"}  # shellcheck has no zsh


def rendered(name: str) -> str:
    artifact, shell, context = RENDERED[name]
    return shellgen.render(artifact, shell, **context)


@pytest.mark.parametrize("name", sorted(RENDERED))
def test_parses(name: str, tmp_path: Path, need: Callable[[str], str]) -> None:
    argv = CHECKER[RENDERED[name][1]]
    need(argv[0])
    script = tmp_path / name
    script.write_text(rendered(name))
    proc = subprocess.run([*argv, str(script)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("name", sorted(n for n in RENDERED if RENDERED[n][1] in SHELLCHECK))
def test_shellcheck(name: str, tmp_path: Path, need: Callable[[str], str]) -> None:
    shellcheck = need("shellcheck")
    script = tmp_path / name
    script.write_text(rendered(name))
    dialect = SHELLCHECK[RENDERED[name][1]]
    proc = subprocess.run(
        [shellcheck, "-s", dialect, str(script)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_installed_hook_passes_the_same_checks(
    shell: str, tmp_path: Path, need: Callable[[str], str]
) -> None:
    """What `condatainer hook` really prints (this interpreter as launcher) parses too."""
    need(shell)
    script = tmp_path / f"hook.{shell}"
    script.write_text(hookfile.text(shell))
    proc = subprocess.run(
        [*CHECKER[shell], str(script)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    if shell == "bash":
        shellcheck = need("shellcheck")
        proc = subprocess.run(
            [shellcheck, "-s", "bash", str(script)], capture_output=True, text=True, check=False
        )
        assert proc.returncode == 0, proc.stdout


STUBS = {
    "bash": '_cnt_enter() { printf "%s\\0" "$@"; }\n_cnt_told() { printf "%s\\0" "$@"; }\n',
    "zsh": '_cnt_enter() { printf "%s\\0" "$@"; }\n_cnt_told() { printf "%s\\0" "$@"; }\n',
    "fish": "function _cnt_enter; printf '%s\\0' $argv; end\n"
    "function _cnt_told; printf '%s\\0' $argv; end\n",
}
ARGV = {
    "bash": ["bash", "--norc", "-c"],
    "zsh": ["zsh", "-f", "-c"],
    "fish": ["fish", "--no-config", "-c"],
}


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_activation_code_evals_to_the_protocol_calls(
    shell: str, need: Callable[[str], str]
) -> None:
    """Every value reaches the hook's functions as one argument, byte for byte (a newline in
    a value included: fish gets it as an escape, so each call stays on its line)."""
    need(shell)
    code = rendered(f"activate-enter.{shell}")
    if shell == "fish":
        # The hook runs the code line by line (eval), as _cnt_call does.
        assert len(code.splitlines()) == 2
        code = "".join(f"eval {shellgen.quote_fish(line)}\n" for line in code.splitlines())
    out = subprocess.run([*ARGV[shell], STUBS[shell] + code], capture_output=True, check=True)
    words = out.stdout.decode().split("\0")[:-1]
    assert words == [*ENTER.values(), "notes", IMAGE]


@pytest.mark.parametrize("name", sorted(RENDERED))
def test_golden(name: str) -> None:
    """Rendered output is committed; a template change shows up as a reviewed diff."""
    assert_matches_golden(name, rendered(name), __file__)
