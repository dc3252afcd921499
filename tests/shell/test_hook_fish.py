"""The cd hook in real fish (non-interactive; a prompt is fish's own `fish_prompt` event, emitted).

The same story as test_hook_activation.py tells for bash and zsh, in fish's terms: real images
(mke2fs, no root), the real trust store and the real activation (run through a launcher that
records each call).  Entering sets CNT_*, the shims first on PATH and the marker in front of
what fish_prompt prints; a subdirectory or an unchanged prompt starts nothing; leaving restores
PATH, CNT_* (value, scope, export) and fish_prompt exactly (`set --show`, `functions` before and
after are identical); switching projects; trust (one notice, allow and deny at the next
prompt); the stamp (an image made here activates at the next prompt); hostile directory names
(quotes, `$`, `;`, `(...)`, non-ASCII) shown in the prompt, never run; CNT_HOOK=off; the
container guard; mm-* functions; a fish inheriting an activation; sourcing twice; what the user
changed while active survives leaving.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from condatainer import shellgen
from condatainer.hook import shims
from tests.shell.hooklib import HOSTILE, Hook, dump_vars
from tests.shell.test_hook_activation import between, markers, project

q = shellgen.quote_fish


@pytest.fixture
def fish(need: Callable[[str], str]) -> str:
    need("mke2fs")
    need("debugfs")
    return need("fish")


STATE = 'printf "STATE:%s|%s|%s\\n" "$CNT_OVERLAY" "$CNT_PROJECT" "$PATH[1]"\n'
PROMPT = "function fish_prompt; printf 'P> '; end\n"
SHOWN = "printf 'SHOWN:%s\\n' (fish_prompt)\n"


def dump(tag: str) -> str:
    return f"echo '{tag}<<'; {dump_vars('fish')}echo '>>{tag}'\n"


def test_enter_subdir_leave_restores_exactly(fish: str, tmp_path: Path) -> None:
    hook = Hook("fish", tmp_path / "hook")
    proj, image = project(tmp_path)
    script = (
        PROMPT
        + "set -gx CNT_OVERLAY mine\nset -g CNT_PROJECT kept-unexported\n_cnt_prompt\n"
        + dump("before")
        + f"cd {q(str(proj))}\n"
        + STATE
        + SHOWN
        + "cd deep/er\n_cnt_prompt\n"
        + STATE
        + "_cnt_prompt\n_cnt_prompt\n"
        + f"cd {q(str(tmp_path))}\n"
        + STATE
        + SHOWN
        + dump("after")
    )
    out = hook.run(script, cwd=tmp_path).stdout
    shim_dir = str(shims.shim_dir(image))
    assert markers(out, "STATE") == [
        f"{image}|{proj}|{shim_dir}",
        f"{image}|{proj}|{shim_dir}",
        f"mine|kept-unexported|{os.environ['PATH'].split(':')[0]}",
    ]
    assert markers(out, "SHOWN") == ["(cnt:proj) P> ", "P> "]
    assert between(out, "before") == between(out, "after")
    assert "CNT_OVERLAY: set in global scope, exported" in between(out, "after")
    assert "CNT_PROJECT: set in global scope, unexported" in between(out, "after")
    assert len(hook.activations()) == 1, "a subdirectory or an unchanged $PWD calls nothing"


def test_switching_projects_and_leaving(fish: str, tmp_path: Path) -> None:
    hook = Hook("fish", tmp_path / "hook")
    p1, img1 = project(tmp_path, "one", bins=("cnt-tool",))
    p2, img2 = project(tmp_path, "two", bins=("cnt-tool",))
    script = (
        PROMPT
        + "_cnt_prompt\n"
        + dump("before")
        + f"cd {q(str(p1))}\n"
        + STATE
        + f"cd {q(str(p2))}/deep\n"
        + STATE
        + SHOWN
        + 'printf "PATHS:%s\\n" "$PATH"\n'
        + f"cd {q(str(tmp_path))}\n"
        + dump("after")
    )
    proc = hook.run(script, cwd=tmp_path)
    s1, s2 = str(shims.shim_dir(img1)), str(shims.shim_dir(img2))
    assert markers(proc.stdout, "STATE") == [f"{img1}|{p1}|{s1}", f"{img2}|{p2}|{s2}"]
    assert markers(proc.stdout, "SHOWN") == ["(cnt:two) P> "]
    path = markers(proc.stdout, "PATHS")[0].split(":")
    assert s1 not in path and path.count(s2) == 1
    assert between(proc.stdout, "before") == between(proc.stdout, "after")
    assert proc.stderr.splitlines() == [
        "condatainer: env.img active (1 program)",
        "condatainer: env.img deactivated",
        "condatainer: env.img active (1 program)",
        "condatainer: env.img deactivated",
    ]


def test_nothing_happens_before_the_first_prompt(fish: str, tmp_path: Path) -> None:
    hook = Hook("fish", tmp_path / "hook")
    proj, image = project(tmp_path)
    script = f"cd {q(str(proj))}\n" + STATE + "_cnt_prompt\n" + STATE
    out = hook.run(script, cwd=tmp_path).stdout
    assert [s.split("|")[0] for s in markers(out, "STATE")] == ["", str(image)]


def test_untrusted_one_notice_then_allow_then_deny(fish: str, tmp_path: Path) -> None:
    hook = Hook("fish", tmp_path / "hook")
    proj, image = project(tmp_path, allowed=False)
    run = q(str(hook.launcher))
    script = (
        "_cnt_prompt\n"
        + f"cd {q(str(proj))}\n"
        + STATE
        + f"cd {q(str(tmp_path))}\ncd {q(str(proj))}/deep\n_cnt_prompt\n"
        + STATE
        + f"{run} allow\n_cnt_prompt\n"
        + STATE
        + f"{run} deny\n_cnt_prompt\n"
        + STATE
        + f"{run} allow >/dev/null\n_cnt_prompt\n"
        + STATE
    )
    proc = hook.run(script, cwd=tmp_path)
    states = [s.split("|")[:2] for s in markers(proc.stdout, "STATE")]
    assert states == [
        ["", ""],
        ["", ""],
        [str(image), str(proj)],
        ["", ""],
        [str(image), str(proj)],
    ]
    assert proc.stderr.count("is not allowed") == 1, proc.stderr
    calls = hook.activations()
    assert "--noticed" not in calls[0] and "--noticed" in calls[1]


def test_an_image_created_here_activates_at_the_next_prompt(fish: str, tmp_path: Path) -> None:
    hook = Hook("fish", tmp_path / "hook")
    proj = tmp_path / f"{HOSTILE} new"
    proj.mkdir()
    script = (
        "_cnt_prompt\n"
        + f"cd {q(str(proj))}\n"
        + STATE
        + f"{q(str(hook.launcher))} o env.img -s 64M --sparse >/dev/null\n_cnt_prompt\n"
        + STATE
        + "_cnt_prompt\n_cnt_prompt\n"
    )
    proc = hook.run(script, cwd=tmp_path)
    states = [s.split("|")[:2] for s in markers(proc.stdout, "STATE")]
    assert states == [["", ""], [str(proj / "env.img"), str(proj)]]
    assert len(hook.activations()) == 1
    assert "condatainer: env.img active (0 programs)" in proc.stderr


def test_hostile_names_are_shown_never_run(fish: str, tmp_path: Path) -> None:
    hook = Hook("fish", tmp_path / "hook")
    base = tmp_path / "$(touch pwned)`touch pwned2`(touch pwned4)"
    base.mkdir()
    proj, image = project(base, HOSTILE + " x", bins=("cnt-tool", "(touch pwned3)"))
    script = PROMPT + f"cd {q(str(base))}\n_cnt_prompt\n" + f"cd {q(str(proj))}\n" + STATE + SHOWN
    out = hook.run(script, cwd=tmp_path).stdout
    assert markers(out, "STATE")[0].startswith(f"{image}|{proj}|")
    assert markers(out, "SHOWN") == [f"(cnt:{HOSTILE} x) P> "]
    assert not [p for p in tmp_path.rglob("pwned*")], "a name was executed"


def test_cnt_hook_off_and_the_messages_off(fish: str, tmp_path: Path) -> None:
    hook = Hook("fish", tmp_path / "hook")
    proj, image = project(tmp_path)
    script = (
        "_cnt_prompt\n"
        + dump("before")
        + f"cd {q(str(proj))}\n"
        + STATE
        + "set -gx CNT_HOOK off\n_cnt_prompt\n"
        + dump("off")
        + "cd deep\n"
        + STATE
        + "set -e CNT_HOOK\n_cnt_prompt\n"
        + STATE
    )
    proc = hook.run(script, cwd=tmp_path)
    states = [s.split("|")[0] for s in markers(proc.stdout, "STATE")]
    assert states == [str(image), "", str(image)]
    assert between(proc.stdout, "before") == between(proc.stdout, "off")
    quiet = hook.run(script, cwd=tmp_path, env=hook.env(CNT_HOOK_MESSAGES="off"))
    assert quiet.stderr == ""


def test_inside_a_container_the_hook_defines_nothing(fish: str, tmp_path: Path) -> None:
    hook = Hook("fish", tmp_path / "hook")
    for var in ("IN_CONDATAINER", "APPTAINER_CONTAINER", "SINGULARITY_CONTAINER"):
        out = hook.run(
            "if functions -q mm-install; or functions -q _cnt_hook; or functions -q _cnt_on_pwd\n"
            "    echo DEFINED\nelse\n    echo NOTHING\nend\n",
            env=hook.env(**{var: "1"}),
            cwd=tmp_path,
        ).stdout
        assert out.strip() == "NOTHING", var


def test_mm_functions_run_condatainer_mm(fish: str, tmp_path: Path) -> None:
    hook = Hook("fish", tmp_path / "hook", record_only=True)
    script = (
        "mm-install 'a b' '$(x)' '(y)'\nmm-list\n"
        + f"set -gx CNT_OVERLAY {q(str(tmp_path / 'x y.img'))}\nmm-remove -y numpy\n"
        + "set -e CNT_OVERLAY\nmm-pin -l\n"
        + "for f in mm-install mm-remove mm-update mm-list mm-search mm-export mm-clean mm-pin"
        " mm-channels\n    functions -q $f; or echo MISSING $f\nend\n"
    )
    out = hook.run(script, cwd=tmp_path).stdout
    assert "MISSING" not in out
    assert hook.calls() == [
        ["mm", "install", "--", "a b", "$(x)", "(y)"],
        ["mm", "list", "--"],
        ["mm", "-o", f"{tmp_path}/x y.img", "remove", "--", "-y", "numpy"],
        ["mm", "pin", "--", "-l"],
    ]


def test_a_fish_started_from_an_active_project_starts_clean(fish: str, tmp_path: Path) -> None:
    hook = Hook("fish", tmp_path / "hook")
    inherited = f"{hook.shim_root}/0123/bin"
    env = hook.env(
        CNT_PROJECT="/p",
        CNT_OVERLAY="/p/env.img",
        PATH=f"{inherited}:{os.environ['PATH']}:{inherited}",
    )
    out = hook.run(
        "set -q CNT_PROJECT; or echo NO-PROJECT\nset -q CNT_OVERLAY; or echo NO-OVERLAY\n"
        'printf "P:%s\\n" "$PATH"\n',
        env=env,
        cwd=tmp_path,
    ).stdout
    assert out.splitlines() == ["NO-PROJECT", "NO-OVERLAY", f"P:{os.environ['PATH']}"]


def test_sourcing_twice_registers_once_and_keeps_the_state(fish: str, tmp_path: Path) -> None:
    hook = Hook("fish", tmp_path / "hook")
    proj, image = project(tmp_path)
    script = (
        "_cnt_prompt\n"
        + f"cd {q(str(proj))}\n"
        + f"source {q(str(hook.file))}\n"
        + STATE
        + "_cnt_prompt\n"
        + "functions --handlers | string match -r -- '_cnt_\\S+'\n"
        + f"cd {q(str(tmp_path))}\n"
        + STATE
    )
    out = hook.run(script, cwd=tmp_path).stdout
    assert [s.split("|")[0] for s in markers(out, "STATE")] == [str(image), ""]
    assert sorted(line for line in out.splitlines() if line.startswith("_cnt_")) == [
        "_cnt_on_prompt",
        "_cnt_on_pwd",
    ]
    assert len(hook.activations()) == 1


def test_user_changes_made_while_active_survive_leaving(fish: str, tmp_path: Path) -> None:
    hook = Hook("fish", tmp_path / "hook")
    proj, _ = project(tmp_path)
    script = (
        PROMPT
        + "_cnt_prompt\nset -l start $PATH\n"
        + f"cd {q(str(proj))}\n"
        + "set -gx PATH $PATH /extra\n"
        + "function fish_prompt; printf 'NEW> '; end\n"
        + f"cd {q(str(tmp_path))}\n"
        + 'test "$PATH" = (string join : $start /extra); and echo PATH-OK\n'
        + SHOWN
        + "functions -q _cnt_user_prompt; and echo LEFTOVER; or true\n"
    )
    out = hook.run(script, cwd=tmp_path).stdout
    assert "PATH-OK" in out and "LEFTOVER" not in out
    assert markers(out, "SHOWN") == ["NEW> "]
