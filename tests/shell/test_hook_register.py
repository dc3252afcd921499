"""How the hook hooks in: PROMPT_COMMAND (array and scalar forms), bash-preexec, zsh hooks;
sourced twice = one hook; aliases cannot change it; an unchanged prompt starts no process.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from condatainer.hook import trust
from tests.shell.hooklib import SHELL_ARGV, Hook, make_image

# --------------------------------------------------------------------------------------------
# bash


@pytest.mark.parametrize(
    ("before", "expected"),
    [
        ("", 'declare -a PROMPT_COMMAND=([1]="_cnt_hook")'),
        ("PROMPT_COMMAND=''", 'declare -a PROMPT_COMMAND=([0]="" [1]="_cnt_hook")'),
        (
            "PROMPT_COMMAND='history -a;'",
            'declare -a PROMPT_COMMAND=([0]="history -a;" [1]="_cnt_hook")',
        ),
        ("PROMPT_COMMAND=(a b)", 'declare -a PROMPT_COMMAND=([0]="a" [1]="b" [2]="_cnt_hook")'),
        ("PROMPT_COMMAND=(a _cnt_hook)", 'declare -a PROMPT_COMMAND=([0]="a" [1]="_cnt_hook")'),
        ("PROMPT_COMMAND='x;_cnt_hook'", 'declare -- PROMPT_COMMAND="x;_cnt_hook"'),
    ],
)
def test_bash_array_form_keeps_element_zero_and_adds_ours_once(
    tmp_path: Path, need: Callable[[str], str], before: str, expected: str
) -> None:
    need("bash")
    hook = Hook("bash", tmp_path / "hook")
    script = f". '{hook.file}'\ndeclare -p PROMPT_COMMAND\n"  # sourced a second time
    out = hook.run(script, before=before).stdout.strip()
    assert out == expected
    assert "declare -x PROMPT_COMMAND" not in out  # never exported


@pytest.mark.parametrize(
    ("existing", "theirs"),
    [("", []), ("history -a", ["HIST"]), ("history -a;", ["HIST"]), ("a &", ["A"]), ("a\n", ["A"])],
)
def test_bash_scalar_form_appends_safely(
    tmp_path: Path, need: Callable[[str], str], existing: str, theirs: list[str]
) -> None:
    """Older bash: ours goes after a newline, which is valid after `;`, `&` or nothing."""
    need("bash")
    hook = Hook("bash", tmp_path / "hook")
    script = (
        "unset PROMPT_COMMAND\n"
        'if [ -n "$EXISTING" ]; then PROMPT_COMMAND=$EXISTING; fi\n'
        "history() { echo HIST; }\na() { echo A; }\n_cnt_hook() { echo OURS; }\n"
        "_cnt_pc_add_scalar\n"
        'eval "$PROMPT_COMMAND"\nwait\n'
        "if _cnt_registered; then echo REGISTERED; fi\n"
    )
    out = hook.run(script, env=hook.env(EXISTING=existing)).stdout.split()
    assert out[-1] == "REGISTERED"
    # Ours ran once, and so did what was there (`a &` may print after us).
    assert sorted(out[:-1]) == sorted(["OURS", *theirs])


def test_bash_preexec_gets_a_precmd_function(tmp_path: Path, need: Callable[[str], str]) -> None:
    need("bash")
    hook = Hook("bash", tmp_path / "hook")
    before = "bash_preexec_imported=defined\nprecmd_functions=(theirs)\nPROMPT_COMMAND=bp\n"
    script = f". '{hook.file}'\ndeclare -p precmd_functions PROMPT_COMMAND\n"
    out = hook.run(script, before=before).stdout
    assert 'declare -a precmd_functions=([0]="theirs" [1]="_cnt_hook")' in out
    assert 'declare -- PROMPT_COMMAND="bp"' in out


def test_bash_aliases_do_not_reach_the_hook_and_stay_on(
    tmp_path: Path, need: Callable[[str], str]
) -> None:
    need("bash")
    hook = Hook("bash", tmp_path / "hook")
    before = (
        "shopt -s expand_aliases\nalias _cnt_search='echo ALIASED'\n"
        "alias return='echo ALIASED; return'\nalias local='echo ALIASED; local'\n"
    )
    script = "_cnt_hook\nshopt -q expand_aliases && echo ALIASES-ON\nalias | wc -l\n"
    out = hook.run(script, before=before).stdout
    assert "ALIASED" not in out
    assert "ALIASES-ON" in out and out.split()[-1] == "3"


# --------------------------------------------------------------------------------------------
# zsh


def test_zsh_hooks_registered_once(tmp_path: Path, need: Callable[[str], str]) -> None:
    need("zsh")
    hook = Hook("zsh", tmp_path / "hook")
    script = (
        f"source '{hook.file}'\n"
        'print -r -- "P:${(j:,:)precmd_functions}"\n'
        'print -r -- "C:${(j:,:)chpwd_functions}"\n'
    )
    out = hook.run(script, before="precmd_functions=(theirs)\n").stdout
    assert "P:theirs,_cnt_precmd" in out
    assert "C:_cnt_chpwd" in out


def test_zsh_aliases_and_options_do_not_reach_the_hook(
    tmp_path: Path, need: Callable[[str], str]
) -> None:
    need("zsh")
    hook = Hook("zsh", tmp_path / "hook")
    before = (
        "alias _cnt_search='echo ALIASED'\nalias local='echo ALIASED; local'\n"
        "setopt ksh_arrays sh_word_split nounset\n"
    )
    script = "_cnt_precmd\n[[ -o aliases ]] && echo ALIASES-ON\n[[ -o ksharrays ]] && echo KSH\n"
    out = hook.run(script, before=before).stdout
    assert "ALIASED" not in out
    assert "ALIASES-ON" in out and "KSH" in out


def test_zsh_is_quiet_until_the_first_prompt(tmp_path: Path, need: Callable[[str], str]) -> None:
    """A cd in .zshrc (chpwd before any prompt) starts nothing; the first prompt does."""
    need("zsh")
    need("mke2fs")
    hook = Hook("zsh", tmp_path / "hook")
    proj = tmp_path / "p"
    proj.mkdir()
    trust.allow(make_image(proj / "env.img"))
    out = hook.run(
        f'cd {proj}\nprint -r -- "A:${{CNT_OVERLAY-}}"\n_cnt_precmd\n'
        'print -r -- "B:${CNT_OVERLAY-}"\n',
        cwd=tmp_path,
    ).stdout
    assert "A:\n" in out and f"B:{proj}/env.img" in out
    assert len(hook.activations()) == 1


# --------------------------------------------------------------------------------------------
# No process on an unchanged prompt


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_unchanged_prompt_starts_no_process(
    shell: str, tmp_path: Path, need: Callable[[str], str]
) -> None:
    """Under strace, 200 prompts in an active project make no clone/fork/vfork/execve.

    The shell activates first (one Python call), then opens a start marker file, runs the
    prompt hook 200 times and opens an end marker; only the syscalls between the markers count.
    """
    need(shell)
    strace = need("strace")
    need("mke2fs")
    hook = Hook(shell, tmp_path / "hook")
    proj = tmp_path / "p"
    proj.mkdir()
    trust.allow(make_image(proj / "env.img"))
    prompt = "_cnt_hook" if shell == "bash" else "_cnt_precmd"
    start, end, log = tmp_path / "marker-start", tmp_path / "marker-end", tmp_path / "strace.log"
    script = (
        f". '{hook.file}'\ncd {proj}\n{prompt}\n"
        '[ -n "$CNT_OVERLAY" ] || exit 7\n'
        f": > '{start}'\nfor i in {{1..200}}; do {prompt}; done\n: > '{end}'\n"
    )
    proc = subprocess.run(
        [
            strace,
            "-f",
            "-o",
            str(log),
            "-e",
            "trace=clone,clone3,fork,vfork,execve,openat",
            *SHELL_ARGV[shell],
            "-c",
            script,
        ],
        env=hook.env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = log.read_text().splitlines()
    first = next(i for i, line in enumerate(lines) if str(start) in line)
    last = next(i for i, line in enumerate(lines) if str(end) in line)
    spawned = [
        line for line in lines[first:last] if re.search(r"\b(clone3?|v?fork|execve)\(", line)
    ]
    assert last > first and not spawned, "\n".join(spawned)
    assert any("execve(" in line for line in lines[:first]), "the activation ran a program"
