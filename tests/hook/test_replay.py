"""hook.replay: the warm cd answers from its record, importing almost nothing, and any change to
what the activation read makes it decide again."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import pytest

from condatainer import __version__, config, memo, shellgen
from condatainer.hook import launcher, replay, shims, trust
from condatainer.image import envfile
from tests.shell.hooklib import HOSTILE, REPO, make_image

# The hook's call (launcher.ACTIVATE_CODE), reporting which modules it imported on stderr.
CHILD = (
    "import sys; before = set(sys.modules)\n"
    "from condatainer.hook.call import main\n"
    "status = main(sys.argv[1:])\n"
    "sys.stderr.write('MODULES ' + ' '.join(sorted(set(sys.modules) - before)) + '\\n')\n"
    "sys.exit(status)\n"
)
# What a replayed activation may import: our modules (not even zlib: memo's digests are ints).
REPLAYED = {
    "condatainer",
    "condatainer.hook",
    "condatainer.hook.call",
    "condatainer.hook.replay",
    "condatainer.memo",
    "condatainer.xdg",
}


class Answer(NamedTuple):
    status: int
    out: str
    err: str
    modules: set[str]

    @property
    def replayed(self) -> bool:
        return "condatainer.hook.activate" not in self.modules


@pytest.fixture
def project(tmp_path: Path, need: Callable[[str], str]) -> Path:
    need("mke2fs")
    need("debugfs")
    directory = tmp_path / f"{HOSTILE} proj"
    directory.mkdir()
    make_image(directory / "env.img", bins=("cnt-tool",))
    return directory


def activate(project: Path, *flags: str, version: str = __version__) -> Answer:
    image = project / "env.img"
    argv = ["bash", "--hook-version", version, *flags, "--", str(image), str(project)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    res = subprocess.run(
        [sys.executable, *launcher.python_safe_path(), "-c", CHILD, *argv],
        capture_output=True,
        text=True,
        cwd="/",
        env=env,
        check=False,
    )
    lines = res.stderr.splitlines(keepends=True)
    assert lines and lines[-1].startswith("MODULES"), res.stderr
    modules = set(lines[-1].split()[1:])
    return Answer(res.returncode, res.stdout, "".join(lines[:-1]), modules)


def twice(project: Path, *flags: str) -> tuple[Answer, Answer]:
    return activate(project, *flags), activate(project, *flags)


def test_the_second_activation_is_replayed_with_the_same_answer(project: Path) -> None:
    trust.allow(project / "env.img")
    first, second = twice(project)
    assert not first.replayed and second.replayed
    assert first.out.startswith("_cnt_enter ") and first.err.endswith("(1 program)\n")
    assert (second.status, second.out, second.err) == (first.status, first.out, first.err)
    assert second.modules <= REPLAYED, second.modules - REPLAYED


def test_the_replay_runs_as_the_hook_runs_it(project: Path) -> None:
    """The hook's words (launcher.ACTIVATE_CODE) lead to the replay, not to activate."""
    assert "condatainer.hook.call import main" in launcher.ACTIVATE_CODE
    assert replay.SHELLS == shellgen.SHELLS


def test_a_hook_of_another_version_is_never_answered_from_the_record(project: Path) -> None:
    trust.allow(project / "env.img")
    activate(project)
    other = activate(project, version="0.0.0-other")
    assert not other.replayed and other.out.startswith("_cnt_enter ")


def change_allow(project: Path) -> None:
    trust.allow(project / "env.img")


def change_deny(project: Path) -> None:
    trust.deny(project / "env.img")


def change_writable(project: Path) -> None:
    (project / "env.img").chmod(0o666)


def change_content(project: Path) -> None:
    make_image(project / "env.img", bins=("cnt-tool", "cnt-other"))


def change_config(project: Path) -> None:
    config.set_value("hook_messages", "off")


def change_sidecar(project: Path) -> None:
    envfile.sidecar_path(project / "env.img").write_text(
        "#ENVNOTE:GOROOT=Go lives here\nGOROOT=/x\n"
    )


def change_shim_cache(project: Path) -> None:
    shims.stamp_path(project / "env.img").unlink()


CHANGES = {
    "allow": change_allow,
    "deny": change_deny,
    "writable by others": change_writable,
    "content": change_content,
    "config": change_config,
    "sidecar": change_sidecar,
    "shim cache gone": change_shim_cache,
}


@pytest.mark.parametrize("what", CHANGES)
def test_a_change_is_seen_at_once(project: Path, what: str) -> None:
    if what != "allow":
        trust.allow(project / "env.img")
    before, replayed = twice(project)
    assert replayed.replayed and replayed.out == before.out
    CHANGES[what](project)
    after = activate(project)
    assert not after.replayed
    if what == "shim cache gone":  # the same answer, from shims built again
        assert shims.stamp_path(project / "env.img").exists() and after.out == before.out
    else:
        assert (after.out, after.err) != (before.out, before.err)
    again = activate(project)
    assert again.replayed and (again.out, again.err) == (after.out, after.err)


def test_the_arguments_and_the_environment_are_part_of_the_question(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    twice(project)  # not allowed: told, and told to wait for the record
    noticed = activate(project, "--noticed")
    assert not noticed.replayed and noticed.err == ""
    monkeypatch.setenv("CNT_AUTOLOAD", "off")
    off = activate(project)
    assert not off.replayed and off.out == ""


def test_an_entry_not_ours_alone_is_ignored(project: Path) -> None:
    trust.allow(project / "env.img")
    twice(project)
    [entry] = (Path(memo.cache_dir(os.environ)) / replay.ACTIVATIONS).iterdir()
    entry.chmod(0o666)
    assert not activate(project).replayed
