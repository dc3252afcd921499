"""TAB in real interactive bash and zsh, in a terminal (tmux), reading what the screen shows.

Each shell starts with nothing of the user's (`bash --norc --noprofile -i`, `zsh -f -i`) and
sources only what a test names: the committed completion file (bash: `source`; zsh: `$fpath`
and compinit, the way a packager installs it), and for mm-* the hook and the mm completion.
`condatainer` and `cnt` on PATH are small console scripts like the ones pip writes, running
this checkout with this interpreter.  tmux renders the terminal, so assertions read the
screen as a user sees it (no escape sequences to untangle).

The mm-* tests build a real image with the test world's channel (`condatainer o ... --
cnt-hello numpy`, root for the builtin runtime), let the hook activate it by `cd` into the
project, and TAB: installed names come from the listing written at activation, channel names
from the listing `pkgcache.refresh` builds from the image's repodata cache.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from condatainer import shellgen
from condatainer.hook import hookfile, mmcomplete, pkgcache
from tests.support import World, cnt, ok, world, world_channel  # noqa: F401 (fixtures)

REPO = Path(__file__).resolve().parents[2]
HOSTILE = "'\";&&e-$ èрт🚒中-j"
STATIC = REPO / "completions"
PROMPT = "READY>"
TIMEOUT = 60.0  # a hang guard, not a pass/fail criterion


class Term:
    """One interactive shell in a detached tmux session of its own (own server socket)."""

    def __init__(self, tmux: str, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        self.tmux = tmux
        # A short socket path (unix sockets are limited to ~107 bytes; tmp_path may be longer).
        self.dir = Path(tempfile.mkdtemp(prefix="tab-"))
        self.socket = str(self.dir / "s")
        words = [f"{k}={v}" for k, v in sorted(env.items())]
        self._tmux(
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-x",
            "160",
            "-y",
            "50",
            "-c",
            str(cwd),
            "--",
            "env",
            "-i",
            *words,
            *argv,
        )

    def _tmux(self, *args: str) -> str:
        res = subprocess.run(
            [self.tmux, "-S", self.socket, *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert res.returncode == 0, f"tmux {args[0]}: {res.stderr}"
        return res.stdout

    def screen(self) -> str:
        """The visible screen, trailing blank lines dropped."""
        return self._tmux("capture-pane", "-p").rstrip("\n")

    def type(self, text: str) -> None:
        self._tmux("send-keys", "-l", text)

    def keys(self, *names: str) -> None:
        self._tmux("send-keys", *names)

    def wait(self, check: Callable[[str], bool], what: str) -> str:
        deadline = time.monotonic() + TIMEOUT
        while True:
            shown = self.screen()
            if check(shown):
                return shown
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; the screen:\n{shown}")
            time.sleep(0.05)

    @staticmethod
    def clean(shown: str) -> bool:
        """Only the prompt is on the screen (maybe after the hook's project marker)."""
        text = shown.strip()
        return "\n" not in text and text.endswith(PROMPT)

    def run(self, line: str) -> None:
        """Type a command line, run it, and wait for the next (cleared) prompt."""
        self.type(line + "; clear")
        self.keys("Enter")
        self.wait(self.clean, "a clean prompt")

    def tab(self, text: str, check: Callable[[str], bool], what: str) -> str:
        """Type `text` on an empty line, press TAB, wait until `check(screen)`; clean up."""
        self.type(text)
        self.keys("Tab")
        try:
            return self.wait(check, what)
        finally:
            self.keys("C-u", "C-l")
            self.wait(self.clean, "the line cleared")

    def close(self) -> None:
        subprocess.run(
            [self.tmux, "-S", self.socket, "kill-server"],
            capture_output=True,
            timeout=30,
            check=False,
        )
        shutil.rmtree(self.dir, ignore_errors=True)


def console_scripts(bindir: Path) -> Path:
    """`condatainer` and `cnt` as pip would install them, for this checkout."""
    bindir.mkdir(parents=True, exist_ok=True)
    for name in ("condatainer", "cnt"):
        script = bindir / name
        script.write_text(
            f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(REPO)!r})\n"
            "from condatainer.entry import entry\nentry()\n"
        )
        script.chmod(0o755)
    return bindir


def base_env(bindir: Path, inputrc: Path) -> dict[str, str]:
    env = {
        k: os.environ[k]
        for k in (
            "HOME",
            "TMPDIR",
            "XDG_CONFIG_HOME",
            "XDG_DATA_HOME",
            "XDG_CACHE_HOME",
            "XDG_STATE_HOME",
            "USER",
        )
        if k in os.environ
    }
    env.update(
        PATH=f"{bindir}:{os.environ['PATH']}",
        TERM="screen",
        LANG="C.UTF-8",
        INPUTRC=str(inputrc),
        PYTHONPATH=str(REPO),
    )
    return env


def write_inputrc(directory: Path) -> Path:
    """bash's readline settings for the tests: one TAB lists all candidates; no bell, no
    pager, no "display all N?" question."""
    inputrc = directory / "inputrc"
    inputrc.write_text(
        "set show-all-if-ambiguous on\nset bell-style none\n"
        "set page-completions off\nset completion-query-items 10000\n"
    )
    return inputrc


def start(
    shell: str,
    tmp_path: Path,
    cwd: Path,
    setup: str,
    env: dict[str, str] | None = None,
) -> Term:
    """A shell with only `setup` run, its prompt set to READY> and the screen cleared."""
    tmux = shutil.which("tmux")
    assert tmux is not None
    full_env = base_env(console_scripts(tmp_path / "bin"), write_inputrc(tmp_path))
    full_env.update(env or {})
    argv = ["bash", "--norc", "--noprofile", "-i"] if shell == "bash" else ["zsh", "-f", "-i"]
    term = Term(tmux, argv, full_env, cwd)
    term.wait(lambda s: s.strip() != "", "the first prompt")
    rc = tmp_path / f"setup.{shell}"
    # zsh: list the candidates on the first TAB even when a common prefix is inserted.
    prompt = "PS1='READY> '" + ("; LISTMAX=10000; unsetopt listambiguous" if shell == "zsh" else "")
    rc.write_text(f"{prompt}\n{setup}\n")
    term.run(f". {shellgen.quote(str(rc))}")
    return term


@pytest.fixture(params=["bash", "zsh"])
def shell(request: pytest.FixtureRequest, need: Callable[[str], str]) -> str:
    need("tmux")
    need(request.param)
    return str(request.param)


def load_completion(shell: str) -> str:
    """Shell code installing the committed completion file the way users/packagers do."""
    if shell == "bash":
        return f". {shellgen.quote(str(STATIC / 'condatainer.bash'))}"
    return f"fpath=({shellgen.quote(str(STATIC))} $fpath)\nautoload -Uz compinit && compinit -u -D"


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    work = tmp_path / "work dir èрт"
    (work / "sub").mkdir(parents=True)
    for name in ("env.img", "data.ext3", "notes.txt", f"{HOSTILE}.img"):
        (work / name).write_text("")
    return work


def test_a_hostile_image_name_is_inserted_as_one_word(
    shell: str, tmp_path: Path, workdir: Path
) -> None:
    """TAB on its unique prefix, then run the line: the word arrives whole, nothing runs."""
    (workdir / "env.img").unlink()
    (workdir / "data.ext3").unlink()
    (workdir / "sub").rmdir()
    t = start(shell, tmp_path, workdir, load_completion(shell))
    try:
        t.type("cnt overlay info ")
        t.keys("Tab")
        t.wait(lambda s: "-j.img" in s, "the hostile name inserted")
        t.keys("C-a")
        t.type("printf '<%s>\\n' ")
        t.keys("C-e", "Enter")
        t.wait(lambda s: "<cnt>" in s and f"<{HOSTILE}.img>" in s, "the words printed")
    finally:
        t.close()


@pytest.fixture
def term(shell: str, tmp_path: Path, workdir: Path) -> Iterator[Term]:
    t = start(shell, tmp_path, workdir, load_completion(shell))
    try:
        yield t
    finally:
        t.close()


def test_subcommand_completes(term: Term) -> None:
    term.tab(
        "condatainer ov",
        lambda s: f"{PROMPT} condatainer overlay" in s,
        "condatainer ov<TAB> to become overlay",
    )


def test_alias_cnt_completes(term: Term) -> None:
    term.tab(
        "cnt overlay res",
        lambda s: f"{PROMPT} cnt overlay resize" in s,
        "cnt overlay res<TAB> to become resize",
    )


def test_resize_lists_images_in_cwd(term: Term) -> None:
    shown = term.tab(
        "condatainer overlay resize ",
        lambda s: "env.img" in s and "data.ext3" in s and "sub/" in s and "èрт🚒中-j.img" in s,
        "the images of the working directory",
    )
    listing = shown.split(f"{PROMPT} condatainer overlay resize", 1)[1]
    assert "notes.txt" not in listing
    assert "--size" not in listing


def test_profiles_complete(term: Term) -> None:
    term.tab("cnt o -p sm", lambda s: f"{PROMPT} cnt o -p small" in s, "-p sm<TAB> → small")


def test_mm_ops_are_listed(term: Term) -> None:
    shown = term.tab("cnt mm ", lambda s: "channels" in s and "install" in s, "the mm ops")
    for op in ("remove", "update", "pin", "search"):
        assert op in shown


# --- mm-* on the host, with a real image ---------------------------------------------------


@pytest.mark.root
@pytest.mark.slow
def test_mm_functions_complete_package_names(
    shell: str,
    tmp_path: Path,
    world: World,  # noqa: F811 (the fixture)
    need: Callable[[str], str],
) -> None:
    need("mke2fs")
    need("debugfs")
    proj = tmp_path / HOSTILE
    proj.mkdir()
    image = proj / "env.img"
    ok(cnt("o", str(image), "-s", "256M", "--sparse", "--", "cnt-hello", "numpy", cwd=proj))
    # Creation ends with `micromamba clean -a`: the repodata cache exists only after a later
    # operation that reads the channels with the image writable.
    ok(cnt("mm", "-o", str(image), "install", "cnt-lib", cwd=proj))
    # What should follow every writable mm operation (with the shims' refresh): the channel
    # listing.
    assert "numba" in pkgcache.refresh(image).read_text().split()

    hook = tmp_path / f"hook.{shell}"
    hook.write_text(hookfile.text(shell))
    mm = tmp_path / f"mm.{shell}"
    mm.write_text(mmcomplete.script(shell))
    setup = load_completion(shell) + "\n" if shell == "zsh" else ""
    setup += f". {shellgen.quote(str(hook))}\n. {shellgen.quote(str(mm))}"
    term = start(
        shell,
        tmp_path,
        tmp_path,
        setup,
        env={k: os.environ[k] for k in ("CNT_CHANNELS", "CNT_RUNTIME")},
    )
    try:
        # Activation happens on the prompt after cd, as in a user's shell.
        term.type(f"cd {shellgen.quote(str(proj))}")
        term.keys("Enter")
        term.type('echo "active:[$CNT_OVERLAY]"')
        term.keys("Enter")
        term.wait(lambda s: f"active:[{image}]" in s, "the hook to activate the image")
        term.run("true")

        shown = term.tab(
            "mm-remove ",
            lambda s: "cnt-hello" in s and "cnt-lib" in s and "numpy" in s,
            "installed packages after mm-remove",
        )
        assert "numba" not in shown.split("mm-remove", 1)[1]
        term.tab(
            "mm-update cnt-h",
            lambda s: f"{PROMPT} mm-update cnt-hello" in s,
            "mm-update cnt-h<TAB> → cnt-hello",
        )
        term.tab(
            "mm-install nu",
            lambda s: "numba" in s and "numpy" in s,
            "channel packages numba and numpy after mm-install nu",
        )
        term.tab("mm-pin -", lambda s: "--list" in s and "--remove" in s, "mm-pin options")
    finally:
        term.close()
