"""The cd hook in real bash and zsh (non-interactive; prompts simulated with `_cnt_prompt`).

Real images (mke2fs, no root), the real trust store and the real `condatainer _activate` (run
through a launcher that records each call).  What is checked: activation sets what it should;
a subdirectory stays active without another call; leaving restores PATH, PS1 and CNT_*
exactly (`declare -p` / `typeset -p` before and after are identical); switching projects;
trust (one notice, `allow` and `deny` take effect at the next prompt); `set -eu` and hostile
shell options; hostile directory names shown in the prompt, never run; CNT_HOOK=off; the
container guard; mm-* functions; a shell inheriting an activation; autoload hint/off; notes;
the stamp (an image made or allowed here activates at the next prompt, without a cd); the
activation and leaving lines; the completion the hook carries.  fish: test_hook_fish.py.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from condatainer import shellgen
from condatainer.hook import shims, trust
from tests.shell.hooklib import HOSTILE, Hook, dump_vars, listed_shims, make_image

SHELLS = ["bash", "zsh"]


@pytest.fixture(params=SHELLS)
def shell(request: pytest.FixtureRequest, need: Callable[[str], str]) -> str:
    need(request.param)
    need("mke2fs")
    need("debugfs")
    return str(request.param)


def project(
    root: Path,
    name: str = "proj",
    *,
    allowed: bool = True,
    sub: str = "",
    bins: tuple[str, ...] = ("cnt-tool", "python"),
) -> tuple[Path, Path]:
    """A project directory with an image (in `sub`), optionally allowed; (dir, image)."""
    directory = root / name
    (directory / "deep" / "er").mkdir(parents=True)
    where = directory / sub if sub else directory
    where.mkdir(parents=True, exist_ok=True)
    image = make_image(where / "env.img", bins=bins, pkgs=("cnt-hello", "numpy"))
    if allowed:
        trust.allow(image)
    return directory, image


def markers(out: str, tag: str) -> list[str]:
    """Values printed as `<tag>:value` lines."""
    return [line[len(tag) + 1 :] for line in out.splitlines() if line.startswith(tag + ":")]


def dump(tag: str, shell: str) -> str:
    return f"echo '{tag}<<'; {dump_vars(shell)}echo '>>{tag}'\n"


def between(out: str, tag: str) -> str:
    start = out.index(f"{tag}<<\n") + len(tag) + 3
    return out[start : out.index(f">>{tag}", start)]


def state(shell: str) -> str:
    return 'printf "STATE:%s|%s|%s\\n" "${CNT_OVERLAY-}" "${CNT_PROJECT-}" "${PATH%%:*}"\n'


# --------------------------------------------------------------------------------------------


def test_enter_subdir_leave_restores_exactly(shell: str, tmp_path: Path) -> None:
    hook = Hook(shell, tmp_path / "hook")
    proj, image = project(tmp_path)
    script = (
        "PS1='P> '\nexport CNT_OVERLAY=mine\n_cnt_prompt\n"
        + dump("before", shell)
        + f"cd {proj}\n_cnt_prompt\n"
        + state(shell)
        + "printf 'PS1:%s\\n' \"$PS1\"\n"
        + "cd deep/er\n_cnt_prompt\n"
        + state(shell)
        + "_cnt_prompt\n_cnt_prompt\n"
        + f"cd {tmp_path}\n_cnt_prompt\n"
        + state(shell)
        + dump("after", shell)
    )
    out = hook.run(script, cwd=tmp_path).stdout
    shim_dir = str(shims.shim_dir(image))
    assert markers(out, "STATE") == [
        f"{image}|{proj}|{shim_dir}",
        f"{image}|{proj}|{shim_dir}",
        f"mine||{os.environ['PATH'].split(':')[0]}",
    ]
    assert between(out, "before") == between(out, "after")
    assert "CNT_OVERLAY" in between(out, "after")  # the user's own value came back
    assert listed_shims(shim_dir) == ["cnt-tool", "python"]
    ps1 = markers(out, "PS1")[0]
    assert ps1 in ("${_cnt_ps1_marker}P> ", "(cnt:proj) P> ")
    assert len(hook.activations()) == 1, "a subdirectory or an unchanged $PWD calls nothing"


def test_switching_projects_and_leaving(shell: str, tmp_path: Path) -> None:
    hook = Hook(shell, tmp_path / "hook")
    p1, img1 = project(tmp_path, "one")
    p2, img2 = project(tmp_path, "two", sub="src/overlay")
    script = (
        "PS1='P> '\n_cnt_prompt\n"
        + dump("before", shell)
        + f"cd {p1}\n_cnt_prompt\n"
        + state(shell)
        + f"cd {p2}/deep\n_cnt_prompt\n"
        + state(shell)
        + 'printf "PATHS:%s\\n" "$PATH"\n'
        + f"cd {tmp_path}\n_cnt_prompt\n"
        + dump("after", shell)
    )
    out = hook.run(script, cwd=tmp_path).stdout
    s1, s2 = str(shims.shim_dir(img1)), str(shims.shim_dir(img2))
    assert markers(out, "STATE") == [f"{img1}|{p1}|{s1}", f"{img2}|{p2}|{s2}"]
    path = markers(out, "PATHS")[0].split(":")
    assert s1 not in path and path.count(s2) == 1
    assert between(out, "before") == between(out, "after")


def test_untrusted_one_notice_then_allow_then_deny(shell: str, tmp_path: Path) -> None:
    hook = Hook(shell, tmp_path / "hook")
    proj, image = project(tmp_path, allowed=False)
    run = f"'{hook.launcher}'"
    script = (
        "PS1='P> '\n_cnt_prompt\n"
        + f"cd {proj}\n_cnt_prompt\n"
        + state(shell)
        + f"cd {tmp_path}\n_cnt_prompt\ncd {proj}/deep\n_cnt_prompt\n_cnt_prompt\n"
        + state(shell)
        + f"{run} allow\n_cnt_prompt\n"
        + state(shell)
        + f"{run} deny\n_cnt_prompt\n"
        + state(shell)
        + f"{run} allow >/dev/null\n_cnt_prompt\n"
        + state(shell)
    )
    proc = hook.run(script, cwd=tmp_path)
    rest = proc.stdout.split("STATE:")[0]
    assert f"allowed {image}" in proc.stdout and f"denied {image}" in proc.stdout, rest
    states = [s.split("|")[:2] for s in markers(proc.stdout, "STATE")]
    assert states == [
        ["", ""],
        ["", ""],
        [str(image), str(proj)],
        ["", ""],
        [str(image), str(proj)],
    ]
    assert proc.stderr.count("is not allowed") == 1, proc.stderr
    assert f"condatainer allow {image}" in proc.stderr
    calls = hook.activations()
    assert "--noticed" not in calls[0] and "--noticed" in calls[1]


def test_user_changes_made_while_active_survive_leaving(shell: str, tmp_path: Path) -> None:
    hook = Hook(shell, tmp_path / "hook")
    proj, _ = project(tmp_path)
    script = (
        "PS1='P> '\n_cnt_prompt\nstart=$PATH\n"
        + f"cd {proj}\n_cnt_prompt\n"
        + 'PATH=$PATH:/extra\nPS1="${PS1}more> "\n'
        + f"cd {tmp_path}\n_cnt_prompt\n"
        + '[ "$PATH" = "$start:/extra" ] && echo PATH-OK\n'
        + "printf 'PS1:%s\\n' \"$PS1\"\n"
    )
    out = hook.run(script, cwd=tmp_path).stdout
    assert "PATH-OK" in out
    assert markers(out, "PS1") == ["P> more> "]


STRICT = {
    "bash": "set -eu\nset -o pipefail\nshopt -s nullglob failglob nocasematch extglob\n",
    "zsh": "setopt nounset err_exit ksh_arrays sh_word_split no_unset pipe_fail\n",
}


def test_strict_shell_options_are_survived_and_kept(shell: str, tmp_path: Path) -> None:
    hook = Hook(shell, tmp_path / "hook")
    proj, _ = project(tmp_path, allowed=False)
    other, other_img = project(tmp_path, "other")
    script = (
        "PS1='P> '\n_cnt_prompt\n"
        + f"cd {proj}\n_cnt_prompt\n_cnt_prompt\n"
        + f"cd {other}\n_cnt_prompt\n"
        + state(shell)
        + f"cd {tmp_path}\n_cnt_prompt\n"
        + ("! true\n_cnt_prompt\n" if shell == "bash" else "")
        + "echo SURVIVED\n"
        + ('echo "$-"\n' if shell == "bash" else "setopt\n")
    )
    proc = hook.run(script, cwd=tmp_path, before=STRICT[shell])
    assert "SURVIVED" in proc.stdout
    assert markers(proc.stdout, "STATE")[0].startswith(f"{other_img}|{other}|")
    if shell == "bash":
        assert "e" in proc.stdout.splitlines()[-1] and "u" in proc.stdout.splitlines()[-1]
    else:
        assert "ksharrays" in proc.stdout and "errexit" in proc.stdout


def test_dollar_question_is_kept_for_what_runs_after(shell: str, tmp_path: Path) -> None:
    hook = Hook(shell, tmp_path / "hook")
    proj, _ = project(tmp_path)
    script = f'cd {proj}\nfalse || {{ _cnt_prompt; echo "ST:$?"; }}\n'
    if shell == "bash":  # a scalar PROMPT_COMMAND runs the next command with our status
        script += '(exit 3) || { _cnt_hook; echo "ST:$?"; }\n'
    out = hook.run(script, cwd=tmp_path).stdout
    expected = ["1", "3"] if shell == "bash" else ["0"]
    assert markers(out, "ST") == expected


def test_hostile_names_are_shown_never_run(shell: str, tmp_path: Path) -> None:
    hook = Hook(shell, tmp_path / "hook")
    base = tmp_path / "$(touch pwned)`touch pwned2`"
    base.mkdir()
    proj, image = project(base, HOSTILE + " x", bins=("cnt-tool", "$(touch pwned3)"))
    if shell == "bash":
        show = (
            'printf "SHOWN:%s\\n" "${PS1@P}"\nshopt -u promptvars\n'
            'cd -- "$B"\n_cnt_prompt\ncd -- "$P"\n_cnt_prompt\n'
            'printf "SHOWN:%s\\n" "${PS1@P}"\n'
        )
    else:
        show = (
            'print -rP -- "SHOWN:$PS1"\nsetopt prompt_subst\n'
            'cd -- "$B"\n_cnt_prompt\ncd -- "$P"\n_cnt_prompt\n'
            'print -rP -- "SHOWN:$PS1"\n'
        )
    script = (
        "cd -- \"$B\"\nPS1='P> '\n_cnt_prompt\n" + 'cd -- "$P"\n_cnt_prompt\n' + state(shell) + show
    )
    out = hook.run(script, cwd=tmp_path, env=hook.env(P=str(proj), B=str(base))).stdout
    assert markers(out, "STATE")[0].startswith(f"{image}|{proj}|")
    assert markers(out, "SHOWN") == [f"(cnt:{HOSTILE} x) P> "] * 2
    assert listed_shims(shims.shim_dir(image)) == ["$(touch pwned3)", "cnt-tool"]
    assert not [p for p in tmp_path.rglob("pwned*")], "a name was executed"


def test_cnt_hook_off(shell: str, tmp_path: Path) -> None:
    hook = Hook(shell, tmp_path / "hook")
    proj, image = project(tmp_path)
    script = (
        "PS1='P> '\n_cnt_prompt\n"
        + dump("before", shell)
        + f"cd {proj}\n_cnt_prompt\n"
        + state(shell)
        + "CNT_HOOK=off\n_cnt_prompt\n"
        + dump("off", shell)
        + "cd deep\n_cnt_prompt\n"
        + state(shell)
        + "unset CNT_HOOK\n_cnt_prompt\n"
        + state(shell)
    )
    out = hook.run(script, cwd=tmp_path).stdout
    states = [s.split("|")[0] for s in markers(out, "STATE")]
    assert states == [str(image), "", str(image)]
    assert between(out, "before") == between(out, "off")


def test_inside_a_container_the_hook_defines_nothing(shell: str, tmp_path: Path) -> None:
    hook = Hook(shell, tmp_path / "hook")
    for var in ("IN_CONDATAINER", "APPTAINER_CONTAINER", "SINGULARITY_CONTAINER"):
        out = hook.run(
            "if typeset -f mm-install >/dev/null 2>&1 || typeset -f _cnt_hook >/dev/null 2>&1;"
            " then echo DEFINED; else echo NOTHING; fi\n"
            'printf "PC:%s\\n" "${PROMPT_COMMAND-}${precmd_functions-}"\n',
            env=hook.env(**{var: "1"}),
            cwd=tmp_path,
            before="_cnt_prompt() { :; }\n",
        ).stdout
        assert "NOTHING" in out and markers(out, "PC") == [""], var


def test_mm_functions_run_condatainer_mm(shell: str, tmp_path: Path) -> None:
    hook = Hook(shell, tmp_path / "hook", record_only=True)
    if shell == "bash":
        rehash = (
            "hash -p /bin/true cnt-fake\nmm-install 'a b' '$(x)'\n"
            "hash -t cnt-fake >/dev/null 2>&1 && echo HASHED || echo FORGOTTEN\n"
            "hash -p /bin/true cnt-fake\nmm-list\n"
            "hash -t cnt-fake >/dev/null 2>&1 && echo HASHED || echo FORGOTTEN\n"
        )
    else:
        rehash = (
            "hash cnt-fake=/bin/true\nmm-install 'a b' '$(x)'\n"
            "(( $+commands[cnt-fake] )) && echo HASHED || echo FORGOTTEN\n"
            "hash cnt-fake=/bin/true\nmm-list\n"
            "(( $+commands[cnt-fake] )) && echo HASHED || echo FORGOTTEN\n"
        )
    script = (
        rehash
        + f"CNT_OVERLAY='{tmp_path}/x y.img'\nmm-remove -y numpy\nunset CNT_OVERLAY\n"
        + "mm-pin -l\n"
        + "for f in mm-install mm-remove mm-update mm-list mm-search mm-export mm-clean mm-pin "
        "mm-channels; do typeset -f $f >/dev/null || echo MISSING $f; done\n"
    )
    out = hook.run(script, cwd=tmp_path).stdout
    assert out.split() == ["FORGOTTEN", "HASHED"]
    assert hook.calls() == [
        ["mm", "install", "--", "a b", "$(x)"],
        ["mm", "list", "--"],
        ["mm", "-o", f"{tmp_path}/x y.img", "remove", "--", "-y", "numpy"],
        ["mm", "pin", "--", "-l"],
    ]


def test_a_shell_started_from_an_active_project_starts_clean(shell: str, tmp_path: Path) -> None:
    hook = Hook(shell, tmp_path / "hook")
    inherited = f"{hook.shim_root}/0123/bin"
    env = hook.env(
        CNT_PROJECT="/p",
        CNT_OVERLAY="/p/env.img",
        PATH=f"{inherited}:{os.environ['PATH']}:{inherited}",
    )
    out = hook.run(
        'printf "S:%s|%s|%s\\n" "${CNT_PROJECT-unset}" "${CNT_OVERLAY-unset}" "$PATH"',
        env=env,
        cwd=tmp_path,
    ).stdout
    assert markers(out, "S") == [f"unset|unset|{os.environ['PATH']}"]


@pytest.mark.parametrize("mode", ["hint", "off"])
def test_autoload_hint_and_off(shell: str, tmp_path: Path, mode: str) -> None:
    hook = Hook(shell, tmp_path / "hook")
    proj, image = project(tmp_path)
    script = (
        f"cd {proj}\n_cnt_prompt\n"
        + state(shell)
        + f"cd {tmp_path}\n_cnt_prompt\ncd {proj}\n_cnt_prompt\n"
    )
    proc = hook.run(script, cwd=tmp_path, env=hook.env(CNT_AUTOLOAD=mode))
    assert markers(proc.stdout, "STATE")[0].startswith("||")
    if mode == "hint":
        assert proc.stderr.count(f"found {image}") == 1, proc.stderr
        assert "condatainer e" in proc.stderr
    else:
        assert proc.stderr == ""


def test_env_notes_are_shown_once_per_session(shell: str, tmp_path: Path) -> None:
    hook = Hook(shell, tmp_path / "hook")
    proj, image = project(tmp_path)
    Path(f"{image}.env").write_text("GOROOT=/ext3/env/go\n#ENVNOTE:GOROOT=where Go lives\n")
    script = f"cd {proj}\n_cnt_prompt\ncd {tmp_path}\n_cnt_prompt\ncd {proj}\n_cnt_prompt\n"
    proc = hook.run(script, cwd=tmp_path)
    assert proc.stderr.count("Overlay envs:") == 1, proc.stderr
    assert "GOROOT: where Go lives" in proc.stderr
    calls = hook.activations()
    assert len(calls) == 2 and "--noted" in calls[1]


def test_bash_completion_offers_the_active_images_packages(
    tmp_path: Path, need: Callable[[str], str]
) -> None:
    """The hook includes completion.py's mm-* completion; it reads the listing of the image
    the hook activated (_cnt_pkgs), and nothing once the project is left."""
    need("bash")
    need("mke2fs")
    hook = Hook("bash", tmp_path / "hook")
    proj, _ = project(tmp_path)
    tab = (
        'COMP_WORDS=(mm-remove "$1"); COMP_CWORD=1\n'
        '_cnt_mm_complete mm-remove "$1" mm-remove\n'
        'printf "C:%s\\n" "${COMPREPLY[@]}"\n'
    )
    script = (
        f"tab() {{ {tab} }}\n"
        f"cd {proj}\n_cnt_prompt\ntab nu\ntab ''\n"
        f"cd {tmp_path}\n_cnt_prompt\ntab ''\n"
        "complete -p mm-remove mm-update mm-pin\n"
    )
    out = hook.run(script, cwd=tmp_path).stdout
    assert markers(out, "C") == ["numpy", "cnt-hello", "numpy", ""]
    assert out.count("-F _cnt_mm_complete") == 3


# --------------------------------------------------------------------------------------------
# The stamp: an image created or allowed here activates at the next prompt, without a cd


def test_an_image_created_here_activates_at_the_next_prompt(shell: str, tmp_path: Path) -> None:
    """`condatainer o` in the current directory, then a prompt: active, no cd needed.  Then a
    second prompt with nothing changed starts nothing."""
    hook = Hook(shell, tmp_path / "hook")
    proj = tmp_path / f"{HOSTILE} new"
    proj.mkdir()
    script = (
        "PS1='P> '\n_cnt_prompt\n"
        + f"cd -- {shellgen.quote(str(proj))}\n_cnt_prompt\n"
        + state(shell)
        + f"'{hook.launcher}' o env.img -s 64M --sparse >/dev/null\n_cnt_prompt\n"
        + state(shell)
        + "_cnt_prompt\n_cnt_prompt\n"
    )
    proc = hook.run(script, cwd=tmp_path)
    image = proj / "env.img"
    assert [s.split("|")[:2] for s in markers(proc.stdout, "STATE")] == [
        ["", ""],
        [str(image), str(proj)],
    ]
    assert len(hook.activations()) == 1, "unchanged prompts after it call nothing"
    assert "condatainer: env.img active (0 programs)" in proc.stderr


def test_an_image_allowed_after_it_was_replaced_activates_at_the_next_prompt(
    shell: str, tmp_path: Path
) -> None:
    """A replaced image has a record that no longer matches, so the hook cannot wait for a
    record to appear; `allow` rewrites the stamp, and the next prompt asks again."""
    hook = Hook(shell, tmp_path / "hook")
    proj, image = project(tmp_path)
    newer = make_image(tmp_path / "newer.img", bins=("cnt-tool",))
    newer.replace(image)
    assert trust.status(image) is trust.TrustStatus.REPLACED
    script = (
        f"cd {proj}\n_cnt_prompt\n"
        + state(shell)
        + f"'{hook.launcher}' allow >/dev/null\n_cnt_prompt\n"
        + state(shell)
    )
    proc = hook.run(script, cwd=tmp_path)
    states = [s.split("|")[0] for s in markers(proc.stdout, "STATE")]
    assert states == ["", str(image)]
    assert proc.stderr.count("was replaced") == 1


def test_activation_and_leaving_lines(shell: str, tmp_path: Path) -> None:
    hook = Hook(shell, tmp_path / "hook")
    p1, _ = project(tmp_path, "one")
    p2, _ = project(tmp_path, "two", bins=("a", "b", "c"))
    script = (
        f"cd {p1}\n_cnt_prompt\necho 'MARK:in one' >&2\n"
        f"cd {p2}\n_cnt_prompt\necho 'MARK:in two' >&2\n"
        f"cd {tmp_path}\n_cnt_prompt\necho 'MARK:out' >&2\n"
    )
    proc = hook.run(script, cwd=tmp_path)
    assert proc.stderr.splitlines() == [
        "condatainer: env.img active (2 programs)",
        "MARK:in one",
        "condatainer: env.img deactivated",
        "condatainer: env.img active (3 programs)",
        "MARK:in two",
        "condatainer: env.img deactivated",
        "MARK:out",
    ]
    quiet = hook.run(script, cwd=tmp_path, env=hook.env(CNT_HOOK_MESSAGES="off"))
    assert quiet.stderr.splitlines() == ["MARK:in one", "MARK:in two", "MARK:out"]


def test_the_hook_carries_the_completion_of_condatainer(shell: str, tmp_path: Path) -> None:
    """What `init` writes completes `condatainer` and `cnt` too (bash: registered at once; zsh:
    registered with compdef at the first prompt, compinit loaded if the rc had not)."""
    hook = Hook(shell, tmp_path / "hook")
    if shell == "bash":
        script = "complete -p condatainer cnt\n"
    else:
        script = (
            "_cnt_prompt\n"
            'print -r -- "COMPS:$_comps[condatainer] $_comps[cnt] $_comps[mm-remove]"\n'
        )
    proc = hook.run(script, cwd=tmp_path, env=hook.env(HOME=str(tmp_path)))
    if shell == "bash":
        assert proc.stdout.splitlines() == [
            f"complete -o bashdefault -o default -o nospace -F _condatainer_complete {name}"
            for name in ("condatainer", "cnt")
        ]
    else:
        assert markers(proc.stdout, "COMPS") == ["_condatainer _condatainer _cnt_mm_complete"]
    assert proc.stderr == ""
    if shell == "zsh":  # an rc that loads compinit itself, before the block: used at once
        proc = hook.run(
            'print -r -- "COMPS:$_comps[condatainer] $_comps[cnt] $_comps[mm-remove]"\n',
            cwd=tmp_path,
            env=hook.env(HOME=str(tmp_path)),
            before='autoload -Uz compinit && compinit -u -d "$HOME/.zcompdump"\n',
        )
        assert markers(proc.stdout, "COMPS") == ["_condatainer _condatainer _cnt_mm_complete"]
