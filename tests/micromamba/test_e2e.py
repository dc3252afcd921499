"""The main job with condatainer's own micromamba, on the builtin runtime, with no micromamba
anywhere on the machine: config `channels` and `micromamba_channel` point at the local
channel, `o -- cnt-hello` fetches micromamba once (and only once), and every way of reaching it
works -- exec, `e -- mm-*`, `condatainer mm`, the host's mm-* functions of the shell hook, `o -f`.
Then the other routes: a site's micromamba from config, and the explained failures that
replace a `micromamba: command not found` (exit 127).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from condatainer.micromamba import CONTAINER_BIN
from tests.micromamba.netlib import refused_url
from tests.support import World, cnt, debugfs_cat, ok
from tests.world import MICROMAMBA
from tests.world.channel import MICROMAMBA_NEWEST, build_channel

pytestmark = pytest.mark.root

FETCHING = "fetching micromamba"


def configure(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """The channels in the config file (as a user would set them), not in CNT_* variables."""
    monkeypatch.delenv("CNT_CHANNELS")
    monkeypatch.delenv("CNT_MICROMAMBA_CHANNEL")
    ok(cnt("config", "set", "channels", world.url))
    ok(cnt("config", "set", "micromamba_channel", world.url))


def test_the_main_job_fetches_micromamba_once(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert shutil.which("micromamba") is None, "the world has no micromamba on PATH"
    configure(world, monkeypatch)
    image = tmp_path / "x.img"
    created = ok(cnt("o", str(image), "-s", "256M", "--sparse", "-c", world.url, "--",
                     "cnt-hello", cwd=tmp_path))  # fmt: skip
    assert created.stderr.count(FETCHING) == 1
    assert f"{FETCHING} {MICROMAMBA_NEWEST}" in created.stderr
    ran = ok(cnt("exec", "-o", str(image), "--", "cnt-hello", "hi", cwd=tmp_path))
    assert ran.stdout == "hello from cnt-hello 1.0\nhi\n"
    assert FETCHING not in ran.stderr  # cached afterwards

    listed = ok(cnt("e", str(image), "--", "mm-list", cwd=tmp_path))
    assert "cnt-hello" in listed.stdout
    ok(cnt("e", str(image), "--", "mm-install", "cnt-lib=1.0", cwd=tmp_path))
    assert debugfs_cat(image, "upper/ext3/env/share/cnt-lib/VERSION") == "1.0\n"
    ok(cnt("mm", "-o", str(image), "remove", "cnt-lib", cwd=tmp_path))
    assert debugfs_cat(image, "upper/ext3/env/share/cnt-lib/VERSION") is None

    probe = 'echo "$PATH"; command -v micromamba; command -v mm-install; micromamba --version'
    where = ok(cnt("exec", "-o", str(image), "--", "sh", "-c", probe, cwd=tmp_path))
    path, micromamba, mm_install, version = where.stdout.splitlines()
    assert path.split(":")[:2] == ["/ext3/env/bin", CONTAINER_BIN]
    assert (micromamba, mm_install) == (
        f"{CONTAINER_BIN}/micromamba",
        f"{CONTAINER_BIN}/mm-install",
    )
    assert version == MICROMAMBA_NEWEST
    condarc = debugfs_cat(image, "upper/ext3/env/.condarc")
    assert condarc == f'channels:\n  - "{world.url}"\n'  # -c and config: the same one, once
    assert FETCHING not in where.stderr + listed.stderr


def test_host_mm_functions_use_it(world: World, tmp_path: Path) -> None:
    """The shell hook's mm-install/mm-list (host side) run `condatainer mm`, whose container
    has condatainer's micromamba; the first of them fetches it."""
    project = tmp_path / "project"
    project.mkdir()
    ok(cnt("o", str(project / "env.img"), "-s", "256M", "--sparse", cwd=project))
    script = (
        'condatainer() { "$CNT_TEST_PY" -m condatainer "$@"; }\n'
        'eval "$(condatainer hook bash)"\n'
        "mm-install cnt-hello\n"
        "mm-list\n"
    )
    res = subprocess.run(
        ["bash", "--norc", "-c", script],
        cwd=project,
        env={**os.environ, "CNT_TEST_PY": sys.executable},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stderr.count(FETCHING) == 1
    assert "cnt-hello" in res.stdout.split("List of packages", 1)[1]


def test_o_from_an_environment_file_with_the_channels_rule(world: World, tmp_path: Path) -> None:
    other = f"file://{build_channel(tmp_path / 'other', micromamba=())}"
    env_file = tmp_path / "environment.yml"
    env_file.write_text(f"channels: [{world.url}/]\ndependencies: [cnt-hello]\n")
    image = tmp_path / "env.img"
    ok(cnt("o", str(image), "-s", "256M", "--sparse", "-f", str(env_file), "-c", other,
           cwd=tmp_path))  # fmt: skip
    condarc = debugfs_cat(image, "upper/ext3/env/.condarc")
    # -c first, then the file's, then config channels (CNT_CHANNELS here), each once
    assert condarc == f'channels:\n  - "{other}"\n  - "{world.url}/"\n  - "{world.url}"\n'
    res = ok(cnt("exec", "-o", str(image), "--", "cnt-hello", cwd=tmp_path))
    assert res.stdout.startswith("hello from cnt-hello")


def test_a_site_micromamba_from_config(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """config `micromamba`: used as it is, nothing fetched (the channel would refuse)."""
    monkeypatch.setenv("CNT_MICROMAMBA_CHANNEL", refused_url())
    ok(cnt("config", "set", "micromamba", str(MICROMAMBA)))
    image = tmp_path / "x.img"
    created = ok(cnt("o", str(image), "-s", "256M", "--sparse", "--", "cnt-hello", cwd=tmp_path))
    assert FETCHING not in created.stderr
    ok(cnt("exec", "-o", str(image), "--", "cnt-hello", cwd=tmp_path))
    listed = ok(cnt("e", str(image), "--", "mm-list", cwd=tmp_path))
    assert "cnt-hello" in listed.stdout
    assert not (Path(os.environ["XDG_DATA_HOME"]) / "condatainer" / "micromamba").exists()


def test_no_exit_127_without_micromamba(world: World, tmp_path: Path) -> None:
    """Nothing cached and the channel unreachable: what needs micromamba stops with one line
    naming the channel; what does not still runs; a micromamba typed in the container
    explains itself (exit 1, never 127)."""
    image = tmp_path / "x.img"
    ok(cnt("o", str(image), "-s", "256M", "--sparse", cwd=tmp_path))  # empty: needs nothing
    url = refused_url()
    env = {"CNT_MICROMAMBA_CHANNEL": url}
    for argv in (
        ["mm", "-o", str(image), "install", "cnt-hello"],
        ["exec", "-o", str(image), "--", "mm-list"],
        ["o", str(tmp_path / "y.img"), "-s", "256M", "--sparse", "--", "cnt-hello"],
    ):
        res = cnt(*argv, env=env, cwd=tmp_path)
        assert res.returncode == 1, res.stderr
        assert res.stderr.startswith(f"condatainer: error: cannot fetch micromamba from {url}: ")
        assert "connection refused" in res.stderr
    assert not (tmp_path / "y.img").exists()
    plain = ok(cnt("exec", "-o", str(image), "--", "true", env=env, cwd=tmp_path))
    assert plain.stderr == ""
    typed = cnt("exec", "-o", str(image), "--", "sh", "-c", "micromamba list", env=env,
                cwd=tmp_path)  # fmt: skip
    assert typed.returncode == 1
    assert "micromamba is not available in this container" in typed.stderr
    assert "condatainer micromamba" in typed.stderr
    pinned = ok(cnt("mm", "-o", str(image), "pin", "-l", env=env, cwd=tmp_path))
    assert pinned.stdout == ""  # mm pin edits a file: it needs no micromamba
