"""After `condatainer init`, a real interactive bash, zsh and fish, in a terminal (tmux).

A fresh HOME holds only the user's own rc (a prompt, nothing about completion: Debian's zsh
does not load the completion system for them); `condatainer init SHELL` adds its block; then
the shell starts as a user's does (`bash -i`, `zsh -i`, `fish -i`: its rc files, no test
setup sourced by hand) and the screen is read as the user sees it:

- TAB completes `condatainer` and `cnt` (subcommands, `config get`/`set` keys and values,
  `run`'s script: job scripts, not images), and the mm-* functions complete the installed
  packages of the env the hook activated;
- the hook says `condatainer: env.img active (N programs)` on entering a project and
  `... deactivated` on leaving, with the marker in the prompt in between;
- an image created in the current directory (`condatainer o`) is active at the next prompt;
- as root, on the builtin runtime with the test world's channel: a project made by
  `condatainer o ... -- cnt-hello` runs its program through the shim, an untrusted one gets
  one notice and activates at the next prompt after `condatainer allow`, `mm-install` makes a
  new program usable at once, and the shell's exit status survives the hook.

Paths are hostile (quotes, `$`, `;`, spaces, non-ASCII) where the user names them.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from condatainer import shellgen
from condatainer.hook import trust
from tests.shell.hooklib import HOSTILE, make_image
from tests.shell.test_tab_pty import PROMPT, Term, base_env, console_scripts, write_inputrc
from tests.support import World, cnt, ok, world, world_channel  # noqa: F401 (fixtures)

#: The user's own rc, before `init` appends its block: a prompt `Term` recognises.
USER_RC = {
    "bash": ("home/.bashrc", f"PS1='{PROMPT} '\n"),
    "zsh": ("home/.zshrc", f"PS1='{PROMPT} '\nLISTMAX=10000\nunsetopt listambiguous\n"),
    "fish": (
        "home/.config/fish/config.fish",
        f"set -g fish_greeting\nfunction fish_prompt; printf '%s ' '{PROMPT}'; end\n",
    ),
}


@pytest.fixture(params=["bash", "zsh", "fish"])
def shell(request: pytest.FixtureRequest, need: Callable[[str], str]) -> str:
    need("tmux")
    need("mke2fs")
    need("debugfs")
    need(request.param)
    return str(request.param)


def start(shell: str, tmp_path: Path, extra: dict[str, str] | None = None) -> Term:
    """The user's rc, `condatainer init SHELL`, then `SHELL -i` in a terminal at its prompt."""
    rc_name, text = USER_RC[shell]
    rc = tmp_path / rc_name
    rc.parent.mkdir(parents=True, exist_ok=True)
    rc.write_text(text)
    ok(cnt("init", shell))
    tmux = shutil.which("tmux")
    assert tmux is not None
    env = base_env(console_scripts(tmp_path / "bin"), write_inputrc(tmp_path))
    env.update(extra or {})
    work = tmp_path / f"work {HOSTILE}"
    work.mkdir(exist_ok=True)
    t = Term(tmux, [shell, "-i"], env, work)
    try:
        t.wait(Term.clean, "the first prompt")
    except BaseException:
        t.close()
        raise
    return t


@pytest.fixture
def term(shell: str, tmp_path: Path, isolated_env: Path) -> Iterator[Term]:
    t = start(shell, tmp_path)
    try:
        yield t
    finally:
        t.close()


def after_prompt(shown: str, text: str) -> str:
    """What the screen shows after the first `PROMPT text` (the TAB's listing)."""
    return shown.split(f"{PROMPT} {text}", 1)[-1]


def test_condatainer_and_cnt_complete(term: Term, tmp_path: Path) -> None:
    term.tab(
        "condatainer ov",
        lambda s: f"{PROMPT} condatainer overlay" in s,
        "condatainer ov<TAB> → overlay",
    )
    term.tab("cnt config get gp", lambda s: f"{PROMPT} cnt config get gpu" in s, "the key gpu")
    shown = term.tab(
        "cnt config set gpu ",
        lambda s: all(w in after_prompt(s, "cnt config set gpu") for w in ("auto", "on", "off")),
        "the values of gpu",
    )
    assert "work" not in after_prompt(shown, "cnt config set gpu"), "no file names"
    work = next(tmp_path.glob("work *"))
    (work / "job.sh").write_text("#!/bin/sh\n")
    (work / "env.img").write_text("")
    shown = term.tab("cnt run ", lambda s: "job.sh" in after_prompt(s, "cnt run"), "job.sh")
    assert "env.img" not in after_prompt(shown, "cnt run")


def test_the_hook_speaks_activates_and_mm_completes(shell: str, term: Term, tmp_path: Path) -> None:
    proj = tmp_path / f"{HOSTILE} proj"
    proj.mkdir()
    image = make_image(proj / "env.img", bins=("cnt-tool", "python"), pkgs=("cnt-hello", "numpy"))
    trust.allow(image)
    q = shellgen.quote_fish if shell == "fish" else shellgen.quote
    term.type(f"cd {q(str(proj))}")
    term.keys("Enter")
    shown = term.wait(
        lambda s: (
            "condatainer: env.img active (2 programs)" in s
            and f"(cnt:{HOSTILE} proj) {PROMPT}" in s
        ),
        "the activation line and the marker",
    )
    assert shown.count("condatainer:") == 1
    term.run("true")
    shown = term.tab(
        "mm-remove ",
        lambda s: "cnt-hello" in s and "numpy" in s,
        "the installed packages after mm-remove",
    )
    term.type("cd ..")
    term.keys("Enter")
    term.wait(
        lambda s: "condatainer: env.img deactivated" in s and s.rstrip().endswith(f"\n{PROMPT}"),
        "the leaving line and no marker",
    )
    term.run("true")

    # An image created here activates at the next prompt, no cd needed.
    term.type(f"cd {q(str(tmp_path))} && condatainer o env.img -s 64M --sparse")
    term.keys("Enter")
    term.wait(
        lambda s: (
            "condatainer: env.img active (0 programs)" in s
            and f"(cnt:{tmp_path.name}) {PROMPT}" in s
        ),
        "the new image active at the next prompt",
    )


STATUS = {"bash": 'echo "st=$?"', "zsh": 'echo "st=$?"', "fish": 'echo "st=$status"'}


@pytest.mark.root
@pytest.mark.slow
def test_a_project_story_on_the_builtin_runtime(
    shell: str,
    tmp_path: Path,
    world: World,  # noqa: F811 (the fixture)
) -> None:
    import os

    q = shellgen.quote_fish if shell == "fish" else shellgen.quote
    good = tmp_path / f"{HOSTILE} good"
    good.mkdir()
    ok(cnt("o", "env.img", "-s", "256M", "--sparse", "--", "cnt-hello", cwd=good))
    bad = tmp_path / "not trusted"
    bad.mkdir()
    ok(cnt("o", "env.img", "-s", "64M", "--sparse", cwd=bad))
    ok(cnt("deny", cwd=bad))
    keep = ("CNT_CHANNELS", "CNT_MICROMAMBA_CHANNEL", "CNT_RUNTIME", "PYTHONPATH")
    t = start(shell, tmp_path, {k: os.environ[k] for k in keep})
    try:
        t.type(f"cd {q(str(good))}")
        t.keys("Enter")
        t.wait(lambda s: "active (1 program)" in s, "the project active")
        t.run("true")
        t.type("cnt-hello 'a b' '$(touch pwned)'")
        t.keys("Enter")
        t.wait(
            lambda s: "hello from cnt-hello 1.0\na b\n$(touch pwned)\n" in s,
            "the program's output, every word as it was typed",
        )
        t.run("true")

        t.type(f"cd {q(str(bad))}")
        t.keys("Enter")
        shown = t.wait(lambda s: "is not allowed" in s and s.rstrip().endswith(PROMPT), "notice")
        assert shown.count("is not allowed") == 1 and shown.rstrip().endswith(f"\n{PROMPT}")
        t.run("true")
        t.type("condatainer allow")
        t.keys("Enter")
        t.wait(
            lambda s: (
                "condatainer: env.img active (0 programs)" in s
                and "(cnt:not trusted) " + PROMPT in s
            ),
            "active at the next prompt after allow",
        )
        t.run("true")

        t.type(f"cd {q(str(good))}")  # bash's hook runs at the prompt: cd on its own line
        t.keys("Enter")
        t.wait(lambda s: "active (1 program)" in s, "the project active again")
        t.run("true")
        t.type("mm-install cnt-app")
        t.keys("Enter")
        t.wait(lambda s: s.rstrip().endswith(PROMPT) and "cnt-app" in s, "mm-install")
        t.run("true")
        t.type("cnt-app")
        t.keys("Enter")
        t.wait(lambda s: "cnt-app using cnt-lib 2.0" in s, "the new program, at once")
        t.run("true")

        t.type(f"false; {STATUS[shell]}")
        t.keys("Enter")
        t.wait(lambda s: "st=1" in s, "the exit status of false")
    finally:
        t.close()
    assert not list(tmp_path.rglob("pwned"))
