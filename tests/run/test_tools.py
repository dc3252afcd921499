"""condatainer's tools in every container: the generated mm-* scripts and micromamba placeholder
(run.tools), the binds and PATH resolve gives them, and how much a run needs micromamba.

The scripts run for real in tests/micromamba/test_e2e.py; here they are checked as files: POSIX
sh (dash -n, shellcheck), what they execute, written once per content."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from condatainer.micromamba import CONTAINER_BIN, CONTAINER_MICROMAMBA
from condatainer.run import mm, tools
from condatainer.run.resolve import (
    NEED,
    USE,
    WANT,
    Request,
    Settings,
    Tools,
    binds,
    micromamba_need,
    resolve,
)


def test_one_script_per_operation_and_the_placeholder() -> None:
    files = tools.scripts()
    assert sorted(files) == sorted(["micromamba", *(f"mm-{name}" for name in mm.TABLE)])
    assert files["mm-install"].splitlines()[-1] == (
        f"exec {CONTAINER_MICROMAMBA} -r /ext3/env --rc-file /ext3/env/.condarc install -n base"
        ' -y "$@"'
    )
    assert "[ $# -gt 0 ] || set -- --all\n" in files["mm-update"]
    assert files["mm-clean"].splitlines()[-1] == (
        f'exec {CONTAINER_MICROMAMBA} -r /ext3/env clean -a -y "$@"'
    )
    assert mm.script_text(mm.TABLE["pin"]) in files["mm-pin"]
    assert all(text.startswith("#!/bin/sh\n") for text in files.values())


@pytest.mark.parametrize("name", sorted(["micromamba", *(f"mm-{n}" for n in mm.TABLE)]))
def test_each_script_is_posix_sh(name: str, need: Callable[[str], str], tmp_path: Path) -> None:
    script = tmp_path / name
    script.write_text(tools.scripts()[name])
    subprocess.run([need("dash"), "-n", str(script)], check=True)
    res = subprocess.run(
        [need("shellcheck"), "-s", "sh", str(script)], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stdout


def test_the_placeholder_explains_and_exits_1(tmp_path: Path) -> None:
    script = tmp_path / "micromamba"
    script.write_text(tools.scripts()["micromamba"])
    res = subprocess.run(["sh", str(script), "install", "x"], capture_output=True, text=True)
    assert res.returncode == 1  # never 127
    assert res.stdout == ""
    assert res.stderr.splitlines()[0].startswith(
        "condatainer: error: micromamba is not available in this container"
    )
    assert "condatainer micromamba" in res.stderr


def test_the_directory_is_written_once_per_content() -> None:
    first = tools.directory()
    assert first.parent == Path(os.environ["XDG_CACHE_HOME"]) / "condatainer" / "tools"
    names = sorted(p.name for p in first.iterdir())
    assert names == sorted(tools.scripts())
    assert all(os.access(p, os.X_OK) for p in first.iterdir())
    stamp = (first / "mm-install").stat().st_mtime_ns
    assert tools.directory() == first
    assert (first / "mm-install").stat().st_mtime_ns == stamp
    assert [p.name for p in first.parent.iterdir()] == [first.name], "no temporary left"


def test_an_unwritable_cache_is_one_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    from condatainer.errors import MicromambaError

    with pytest.raises(MicromambaError, match="cannot write condatainer's mm-\\* commands"):
        tools.directory()


# ---------------------------------------------------------------- resolve


def req(command: tuple[str, ...] = ("true",), **kw: object) -> Request:
    return Request(command=command, check_locks=False, **kw)  # type: ignore[arg-type]


def test_tools_are_bound_read_only_and_micromamba_over_the_placeholder(tmp_path: Path) -> None:
    directory = tmp_path / "tools"
    directory.mkdir()
    binary = tmp_path / "cache" / "micromamba"
    binary.parent.mkdir()
    binary.write_text("")
    settings = Settings(tools=Tools(str(directory), str(binary)))
    got = binds(req(default_binds=False), settings, tmp_path, {})
    assert [(b.host, b.container, b.readonly) for b in got] == [
        (str(directory), CONTAINER_BIN, True),
        (str(binary), CONTAINER_MICROMAMBA, True),
    ]
    without = binds(req(default_binds=False), Settings(tools=Tools(str(directory))), tmp_path, {})
    assert [b.container for b in without] == [CONTAINER_BIN]
    assert binds(req(default_binds=False), Settings(), tmp_path, {}) == ()


def test_path_puts_the_tools_right_after_the_env(tmp_path: Path) -> None:
    settings = Settings(tools=Tools(str(tmp_path)))
    environ = {"PATH": f"/usr/bin:{CONTAINER_BIN}:/bin"}
    plan = resolve(req(), settings, environ=environ, cwd=str(tmp_path))
    assert dict(plan.env)["PATH"] == f"/ext3/env/bin:{CONTAINER_BIN}:/usr/bin:/bin"
    bare = resolve(req(), Settings(), environ=environ, cwd=str(tmp_path))
    assert dict(bare.env)["PATH"] == f"/ext3/env/bin:/usr/bin:{CONTAINER_BIN}:/bin"


@pytest.mark.parametrize(
    ("command", "explicit", "level"),
    [
        ((), None, WANT),  # an interactive shell
        (("mm-install", "numpy"), None, NEED),
        (("micromamba", "list"), None, NEED),
        ((f"{CONTAINER_BIN}/micromamba", "list"), None, NEED),
        (("python", "job.py"), None, USE),
        (("sh", "-c", "mm-list"), None, USE),  # what a command does inside is not guessed
        (("sh", "-c", "script"), NEED, NEED),  # mm operations say so themselves
    ],
)
def test_how_much_a_run_needs_micromamba(
    command: tuple[str, ...], explicit: str | None, level: str
) -> None:
    assert micromamba_need(req(command, micromamba=explicit)) == level


# ---------------------------------------------------------------- provide


def test_provide_as_far_as_the_run_needs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing cached and the channel refusing: NEED fails with the reason, WANT goes on with a
    notice, USE says nothing and asks nobody."""
    from condatainer import config
    from condatainer.errors import MicromambaError
    from tests.micromamba.netlib import refused_url

    monkeypatch.setenv("CNT_MICROMAMBA_CHANNEL", refused_url())
    cfg = config.load()
    heard: list[str] = []
    with pytest.raises(MicromambaError, match="connection refused"):
        tools.provide(NEED, cfg, heard.append)
    wanted = tools.provide(WANT, cfg, heard.append)
    assert wanted.micromamba is None and Path(wanted.directory).is_dir()
    assert len(heard) == 1 and heard[0].endswith("; mm-* commands will fail in this container")
    used = tools.provide(USE, cfg, heard.append)
    assert used == wanted and len(heard) == 1
