"""The whole host-side story in real interactive bash and zsh, through a pty (pexpect).

`condatainer init` -> a new interactive shell (its rc holds the user's own PROMPT_COMMAND /
precmd hook, then our block) -> cd into a project made by `condatainer o ... -- cnt-hello`
(allowed automatically): CNT_* set, marker in the prompt, and `cnt-hello` on PATH is the shim
that runs the env's executable in its container (builtin runtime, hence root) -> a
subdirectory stays active -> leaving restores PATH, PS1 and CNT_* exactly -> an untrusted
project: one notice, not active, also after coming back -> `condatainer allow` -> active at the
next prompt -> `mm-install cnt-app` and its shim works at once.  Along the way: `$?` after
`false` is 1, `set -u` does not hurt, the user's own prompt hook still runs, sourcing the hook
again registers nothing new.  Projects sit under hostile directory names (quotes, `$`, `;`,
space, non-ASCII, `$(touch pwned)`); nothing is ever executed from a name.

The prompt is our own (`[cnt-test]$ `, set in the rc, written with a prompt escape so that
printing PS1's value cannot look like a prompt), line editing is off (bash --noediting,
zsh `unsetopt zle`) and the pty does not echo, so what comes back is exactly the output.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pexpect  # type: ignore[import-untyped]
import pytest

from condatainer import shellgen
from tests import support as e2e
from tests.shell.hooklib import HOSTILE
from tests.support import World, cnt, ok

pytestmark = pytest.mark.root

# The e2e world (local channel, micromamba stand-in, builtin runtime), shared with the others.
world_channel = e2e.world_channel
world = e2e.world

PROMPT = re.compile(r"(\(cnt:[^\n]*?\) )?\[cnt-test\]\$ ")

USER_RC = {
    "bash": (
        "PS1='[cnt\\055test]$ '\n"
        "PROMPT_COMMAND='_user_prompts=$((${_user_prompts:-0} + 1))'\n"
        'condatainer() { "$CNT_TEST_PY" -m condatainer "$@"; }\n'
    ),
    "zsh": (
        "unsetopt zle prompt_cr prompt_sp\n"
        "PS1='[cnt-%{%}test]$ '\n"
        "_user_precmd() { _user_prompts=$(( ${_user_prompts:-0} + 1 )) }\n"
        "precmd_functions+=(_user_precmd)\n"
        'condatainer() { "$CNT_TEST_PY" -m condatainer "$@" }\n'
    ),
}
DUMP = {
    "bash": "for v in PATH PS1 CNT_OVERLAY CNT_PROJECT; do declare -p $v 2>/dev/null"
    ' || echo "$v unset"; done',
    "zsh": "for v in PATH PS1 CNT_OVERLAY CNT_PROJECT; do typeset -p $v 2>/dev/null"
    ' || echo "$v unset"; done',
}


class Session:
    """One interactive shell on a pty; `run(cmd)` returns (output, marker shown at the end)."""

    def __init__(self, shell: str, cwd: Path) -> None:
        env = dict(os.environ)
        env.update(TERM="dumb", CNT_TEST_PY=sys.executable, INPUTRC="/dev/null")
        argv = ["--noediting", "-i"] if shell == "bash" else ["-i"]
        self.child = pexpect.spawn(
            shell,
            argv,
            env=env,
            cwd=str(cwd),
            echo=False,
            encoding="utf-8",
            codec_errors="replace",
            timeout=120,
        )
        self.marker = self._prompt()
        self.startup = self.child.before

    def _prompt(self) -> str:
        self.child.expect(PROMPT)
        marker: str = self.child.match.group(1) or ""
        return marker

    def run(self, command: str) -> str:
        self.child.sendline(command)
        self.marker = self._prompt()
        out: str = self.child.before
        return out.replace("\r\n", "\n")

    def close(self) -> None:
        self.child.sendline("exit")
        self.child.expect(pexpect.EOF)
        self.child.close()


@pytest.fixture(params=["bash", "zsh"])
def shell(request: pytest.FixtureRequest, need: Callable[[str], str]) -> str:
    need(request.param)
    return str(request.param)


@pytest.fixture
def session(shell: str, world: World, isolated_env: Path) -> Iterator[Session]:
    rc = isolated_env / (".bashrc" if shell == "bash" else ".zshrc")
    rc.write_text(USER_RC[shell])
    ok(cnt("init", shell))
    s = Session(shell, isolated_env)
    yield s
    s.close()


def value(out: str, name: str) -> str:
    for line in out.splitlines():
        if line.startswith(name + "="):
            return line[len(name) + 1 :]
    raise AssertionError(f"{name} not in {out!r}")


def test_cd_activation_in_an_interactive_shell(
    shell: str, session: Session, isolated_env: Path, tmp_path: Path
) -> None:
    base = isolated_env / "$(touch pwned)"
    good = base / f"{HOSTILE} proj"
    (good / "deep").mkdir(parents=True)
    ok(cnt("o", "env.img", "-s", "256M", "--sparse", "--", "cnt-hello", cwd=good))
    bad = base / "not trusted"
    bad.mkdir()
    ok(cnt("o", "env.img", "-s", "64M", "--sparse", cwd=bad))
    ok(cnt("deny", cwd=bad))
    s = session
    q = shellgen.quote
    assert s.marker == "" and "condatainer" not in s.startup  # quiet start

    before = s.run(DUMP[shell])
    entered = s.run(f"cd -- {q(str(good))}")
    assert s.marker == f"(cnt:{HOSTILE} proj) ", entered
    out = s.run('printf "O=%s\\nP=%s\\nFIRST=%s\\n" "$CNT_OVERLAY" "$CNT_PROJECT" "${PATH%%:*}"')
    assert value(out, "O") == str(good / "env.img")
    assert value(out, "P") == str(good)
    assert value(out, "FIRST").endswith("/bin") and "/shims/" in value(out, "FIRST")
    hello = s.run("cnt-hello 'a b' '$(touch pwned)'")
    assert hello.splitlines() == ["hello from cnt-hello 1.0", "a b", "$(touch pwned)"], hello

    s.run("cd deep")
    assert s.marker == f"(cnt:{HOSTILE} proj) "
    assert value(s.run('printf "O=%s\\n" "$CNT_OVERLAY"'), "O") == str(good / "env.img")
    s.run("cd ~")
    assert s.marker == ""
    assert s.run(DUMP[shell]) == before

    out = s.run(f"cd -- {q(str(bad))}")
    assert out.count("is not allowed") == 1 and s.marker == ""
    assert s.run("cd .. && cd -- 'not trusted'").count("is not allowed") == 0
    assert value(s.run('printf "O=%s\\n" "${CNT_OVERLAY-}"'), "O") == ""
    out = s.run("condatainer allow")
    assert "allowed" in out and s.marker == "(cnt:not trusted) "

    # Back in the good project: mm-install on the host, and its new executable works at once.
    s.run(f"cd -- {q(str(good))}")
    install = s.run("mm-install cnt-app")
    assert "cnt-app" in install, install
    assert s.run("cnt-app").strip() == "cnt-app using cnt-lib 2.0"

    # $?, set -u, the user's own hook, sourcing the hook again.
    s.run("false")
    assert s.run('echo "st=$?"').strip() == "st=1"
    prompts = int(value(s.run('echo "N=$_user_prompts"'), "N"))
    assert int(value(s.run('echo "N=$_user_prompts"'), "N")) == prompts + 1
    s.run("set -u")
    s.run("cd ~")
    assert s.marker == ""
    assert s.run("echo alive").strip() == "alive"
    hook = isolated_env / ".local" / "share" / "condatainer" / f"hook.{shell}"
    s.run(f". {q(str(hook))}")
    if shell == "bash":
        registered = s.run("declare -p PROMPT_COMMAND")
        assert registered.count("_cnt_hook") == 1 and "_user_prompts" in registered
    else:
        registered = s.run('print -r -- "${(j:,:)precmd_functions} ${(j:,:)chpwd_functions}"')
        assert registered.strip() == "_user_precmd,_cnt_precmd _cnt_chpwd"

    assert not list(tmp_path.rglob("pwned")) and not list(isolated_env.rglob("pwned"))
