"""The main job on a real SIF base with the builtin runtime, end to end through the CLI.

The base (`world_base`, tests/world/rootfs.py) is a SIF built here with mksquashfs and siftool
from a root filesystem assembled from host files: its own /etc (os-release ID=cnt-testbase,
passwd and group with root and nobody only), a marker file, a few programs, and the test
interpreter with its standard library and the py-rattler/PyYAML it needs, at their host paths,
so the micromamba stand-in (a Python script whose `#!` names that interpreter) runs inside it.

What these tests show: the SIF is mounted (its squashfs partition, at the offset its
descriptors give) and its files are used instead of the host's; the env image lies on top and
keeps what is installed into it; HOME, the working directory, /tmp and the user's passwd entry
work in it; what a command reads on the host is bound in (a file:// channel kept under /run,
which nothing else binds), for `o -c CHANNEL` and, through the image's .condarc, for `mm`.

What they cannot show: that a static micromamba binary runs in any base (the stand-in is a
Python script that needs the interpreter put into this base), nor that a base pulled from a
registry behaves like this one (tests/run/test_base_fetch.py covers the pull, with a fake
Apptainer).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from condatainer.micromamba import CONTAINER_MICROMAMBA
from tests.support import World, cnt, ok
from tests.world import build_channel
from tests.world.channel import MICROMAMBA_NEWEST

pytestmark = [pytest.mark.root, pytest.mark.slow]


@pytest.fixture
def run_channel(world: World) -> Iterator[str]:
    """A copy of the world's channel under /run: outside $HOME, /tmp and cwd, so a container
    on a foreign base sees it only if condatainer binds it."""
    directory = Path(tempfile.mkdtemp(prefix="cnt-test-channel-", dir="/run"))
    try:
        yield f"file://{build_channel(directory / 'channel')}"
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def test_exec_sees_the_base_not_the_host(world: World, world_base: Path, wd: Path) -> None:
    ok(cnt("o", "x.img", "-s", "128M", cwd=wd))
    res = ok(cnt("exec", "-b", str(world_base), "-o", "x.img", "--", "cat", "/etc/os-release",
                 "/cnt-test-base", cwd=wd))  # fmt: skip
    assert "ID=cnt-testbase\n" in res.stdout and "this is the condatainer test base" in res.stdout
    assert Path("/etc/os-release").read_text() not in res.stdout
    # HOME, the working directory and /tmp are the host's; the user's passwd entry is there
    (Path(os.environ["HOME"]) / "in-home").write_text("from home\n")
    script = (
        'cat "$HOME/in-home"; pwd; id -un; grep "^root:" /etc/passwd;'
        f" echo tmp > {os.environ['TMPDIR']}/from-base; test -e /etc/debian_version || echo no"
    )
    res = ok(cnt("exec", "-b", str(world_base), "-o", "x.img", "--", "sh", "-c", script, cwd=wd))
    assert res.stdout.splitlines() == [
        "from home", str(wd), "root", "root:x:0:0:root:/root:/bin/bash", "no",
    ]  # fmt: skip
    assert Path(os.environ["TMPDIR"], "from-base").read_text() == "tmp\n"
    # the same with -b given relative to the working directory, and a user dropped to
    shutil.copy(world_base, wd / "base.sif")
    res = ok(cnt("exec", "-b", "base.sif", "-o", "x.img", "--", "id", "-un", cwd=wd,
                 env={"SUDO_UID": "65534", "SUDO_GID": "65534"}))  # fmt: skip
    assert res.stdout == "nobody\n"


def test_the_test_interpreter_runs_in_the_base(world: World, world_base: Path, wd: Path) -> None:
    """What the micromamba stand-in needs: this interpreter, its venv and py-rattler, inside;
    the micromamba found on PATH is condatainer's own, bound in from its fetch directory."""
    ok(cnt("o", "x.img", "-s", "128M", cwd=wd))
    code = "import rattler, yaml, sys; print(sys.prefix); print(open('/cnt-test-base').read())"
    res = ok(cnt("exec", "-b", str(world_base), "-o", "x.img", "--", sys.executable, "-c", code,
                 cwd=wd))  # fmt: skip
    assert res.stdout.splitlines()[:2] == [sys.prefix, "this is the condatainer test base"]
    which = ("exec", "-b", str(world_base), "-o", "x.img", "--", "sh", "-c",
             "command -v micromamba; micromamba --version")  # fmt: skip
    res = cnt(*which, cwd=wd)  # exec fetches nothing: the placeholder says so
    assert res.returncode == 1 and res.stdout == f"{CONTAINER_MICROMAMBA}\n"
    assert "micromamba is not available in this container" in res.stderr
    ok(cnt("micromamba"))
    assert ok(cnt(*which, cwd=wd)).stdout == f"{CONTAINER_MICROMAMBA}\n{MICROMAMBA_NEWEST}\n"


def test_the_main_job_on_a_sif_base(
    world: World, world_base: Path, run_channel: str, wd: Path
) -> None:
    """`o -b BASE.sif -c CHANNEL -- cnt-hello`, then exec and mm on the same base."""
    base = str(world_base)
    ok(cnt("o", "y.img", "-s", "256M", "-b", base, "--", "cnt-hello", "-c", run_channel, cwd=wd))
    res = ok(cnt("exec", "-b", base, "-o", "y.img", "--", "cnt-hello", cwd=wd))
    assert res.stdout == "hello from cnt-hello 1.0\n"
    # exec itself reads no channel: the one under /run is not in its container (the empty
    # mount point the install's bind left in the writable image is, as Apptainer leaves it)
    channel_dir = run_channel.removeprefix("file://")
    res = cnt("exec", "-b", base, "-o", "y.img", "--", "ls", f"{channel_dir}/noarch", cwd=wd)
    assert res.returncode != 0 and "No such file or directory" in res.stderr
    # mm reads the channel of the image's .condarc: bound for it
    env = {"CNT_BASE_IMAGE": base}
    ok(cnt("mm", "-o", "y.img", "install", "cnt-app", cwd=wd, env=env))
    res = ok(cnt("exec", "-o", "y.img", "--", "cnt-app", cwd=wd, env=env))
    assert res.stdout == "cnt-app using cnt-lib 2.0\n"
    res = ok(cnt("exec", "-o", "y.img", "--", "cat", "/etc/os-release", cwd=wd, env=env))
    assert "ID=cnt-testbase" in res.stdout  # base_image from the config, as -b
