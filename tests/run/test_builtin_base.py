"""The builtin runtime on a base image (run/runtime/_base.py): real SIF, squashfs and directory
bases built from host files (tests/world/rootfs.py, without Python here: small and fast), real
loop devices at the SIF's partition offset, real overlayfs.

What these show: the base's files replace the host's (its os-release, its marker file; host-only
files are absent), the env image still lies on top, and the container gets what Apptainer gives
it on a foreign base -- /proc, /sys, /dev, $HOME, /tmp, the working directory, the user's
passwd and group entries, the host's resolv.conf and hosts -- plus the Plan's binds.  Every
test also checks it left nothing mounted or attached on the host.
"""

from __future__ import annotations

import functools
import os
import pwd
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from condatainer.errors import BaseImageError
from condatainer.image import locks
from condatainer.run.plan import Bind, Overlay, Plan
from condatainer.run.runtime import _base, builtin
from tests.run.test_builtin_runtime import attached_loops, debugfs_cat, make_image, sha256
from tests.world.rootfs import MARKER, build_base

KINDS = ("sif", "squashfs", "directory")


@functools.cache
def _bases(directory: str) -> dict[str, Path]:
    sif = build_base(Path(directory), python=None)
    return {
        "sif": sif,
        "squashfs": sif.with_name("base.sqfs"),
        "directory": sif.with_name("base.tree"),
    }


@pytest.fixture
def bases(need: Callable[[str], str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    need("mksquashfs")
    need("siftool")
    return _bases(str(tmp_path_factory.getbasetemp() / "mini-base"))


@pytest.fixture
def image(tmp_path: Path) -> Path:
    return make_image(tmp_path / "env.img")


@pytest.fixture(autouse=True)
def leaves_nothing_behind(bases: dict[str, Path], tmp_path: Path) -> Iterator[None]:
    mounts_before = set(Path("/proc/self/mountinfo").read_text().splitlines())
    yield
    new = set(Path("/proc/self/mountinfo").read_text().splitlines()) - mounts_before
    assert not new, f"left mounted on the host: {new}"
    ours = (str(tmp_path), str(bases["sif"].parent))
    leaked = {d: f for d, f in attached_loops().items() if f.startswith(ours)}
    assert not leaked, f"loop devices left attached: {leaked}"


def run(
    script: str, image: Path, base: str | Path, *, writable: bool = False, **fields: Any
) -> tuple[int, str, str]:
    plan = Plan(
        command=("sh", "-c", script),
        overlays=(Overlay(str(image), writable),),
        base_image=str(base),
        env=(("PATH", "/ext3/env/bin:/usr/bin:/bin"),),
        **{"cwd": "/", **fields},
    )
    rc, out, err = builtin.run_captured(plan)
    return rc, out.decode(), err.decode()


@pytest.mark.root
@pytest.mark.parametrize("kind", KINDS)
def test_the_base_replaces_the_host_root(
    kind: str, bases: dict[str, Path], image: Path, tmp_path: Path, isolated_env: Path
) -> None:
    (isolated_env / "in-home").write_text("home\n")
    work = tmp_path / "work: dir"
    work.mkdir()
    in_tmp = Path("/tmp") / f"cnt-base-{os.getpid()}-{tmp_path.name}"
    script = (
        f"cat /etc/os-release {MARKER}; test -e /etc/debian_version && echo HOST-ETC;"
        f" hello; pwd; cat $HOME/in-home; echo written > {in_tmp};"
        " test -r /proc/self/status && test -c /dev/null && test -d /sys/fs && echo system;"
        " cat /etc/resolv.conf /etc/hosts"
    )
    try:
        rc, out, err = run(script, image, bases[kind], cwd=str(work))
        assert in_tmp.read_text() == "written\n"  # /tmp is the host's
    finally:
        in_tmp.unlink(missing_ok=True)
    assert (rc, err) == (0, "")
    lines = out.splitlines()
    assert "ID=cnt-testbase" in lines and "this is the condatainer test base" in lines
    assert "HOST-ETC" not in lines  # the host's /etc is not there
    assert "hello from the image" in lines  # the env image lies on top of the base
    assert str(work) in lines and "home" in lines and "system" in lines
    host_net = Path("/etc/resolv.conf").read_text() + Path("/etc/hosts").read_text()
    assert out.endswith(host_net)


@pytest.mark.root
def test_the_users_entries_are_added(
    bases: dict[str, Path], image: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As Apptainer does: the base's passwd and group, with the user's entry and groups."""
    monkeypatch.setenv("SUDO_UID", "65534")
    monkeypatch.setenv("SUDO_GID", "65534")
    monkeypatch.setenv("HOME", "/nonexistent")
    rc, out, err = run("id -un; id -u; cat /etc/passwd; cat /etc/group", image, bases["sif"])
    assert (rc, err) == (0, "")
    host = pwd.getpwuid(65534)
    line = ":".join(
        [host.pw_name, "x", "65534", "65534", host.pw_gecos, host.pw_dir, host.pw_shell]
    )
    lines = out.splitlines()
    assert lines[:2] == [host.pw_name, "65534"]
    assert lines.count(line) == 1
    assert "root:x:0:0:root:/root:/bin/sh" in lines  # the base's own entries stay
    assert [ln for ln in lines if ln.startswith("nobody:x:65534:")] == [line]  # replaced, once
    assert "nogroup:x:65534:nobody" in lines and "root:x:0:" in lines


def test_passwd_and_group_merge() -> None:
    ident = _base.Identity(
        "ana", 1000, "ana:x:1000:100:Ana:/home/ana:/bin/bash", (("users", 100), ("lab", 2000))
    )
    base_passwd = "root:x:0:0:root:/root:/bin/sh\nana:x:999:999::/old:/bin/sh\nbob:x:1000:1:::\n"
    assert _base.merge_passwd(base_passwd, ident) == (
        "root:x:0:0:root:/root:/bin/sh\nana:x:1000:100:Ana:/home/ana:/bin/bash\n"
    )
    base_group = "root:x:0:\nusers:x:100:bob\nlab:x:3000:\n"
    assert _base.merge_group(base_group, ident) == (
        "root:x:0:\nusers:x:100:bob,ana\nlab:x:2000:ana\n"
    )
    assert _base.merge_passwd("", ident) == ident.passwd_line + "\n"


@pytest.mark.root
def test_binds_on_a_base(bases: dict[str, Path], image: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "f").write_text("bound\n")
    binds = (Bind(str(data), "/srv/data"), Bind(str(data), "/srv/ro", readonly=True))
    rc, out, err = run(
        "cat /srv/data/f; echo new > /srv/data/g; echo no > /srv/ro/h",
        image,
        bases["sif"],
        binds=binds,
    )
    assert out == "bound\n" and "Read-only file system" in err and rc != 0
    assert (data / "g").read_text() == "new\n" and not (data / "h").exists()


@pytest.mark.root
def test_writes_land_in_the_image_never_in_the_base(bases: dict[str, Path], image: Path) -> None:
    before = sha256(bases["sif"])
    rc, _, err = run(
        "echo env > /ext3/env/x && echo etc > /etc/cnt-new", image, bases["sif"], writable=True
    )
    assert (rc, err) == (0, "")
    assert debugfs_cat(image, "upper/ext3/env/x") == "env\n"
    assert debugfs_cat(image, "upper/etc/cnt-new") == "etc\n"
    assert sha256(bases["sif"]) == before
    assert not (bases["directory"] / "etc" / "cnt-new").exists()
    # read-only: /ext3/env refuses writes, as on the host root
    rc, _, err = run("echo x > /ext3/env/y", image, bases["squashfs"])
    assert rc != 0 and "Read-only file system" in err


@pytest.mark.root
def test_a_bad_base_is_refused_before_anything_is_mounted(
    bases: dict[str, Path], image: Path, tmp_path: Path
) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not an image\n")
    with pytest.raises(BaseImageError, match="neither a SIF file nor a squashfs"):
        run("true", image, text)
    with pytest.raises(BaseImageError, match="needs a local file or directory"):
        run("true", image, "docker://debian:12-slim")
    truncated = tmp_path / "cut.sif"
    truncated.write_bytes(bases["sif"].read_bytes()[:100_000])
    with pytest.raises(BaseImageError, match="truncated SIF file"):
        run("true", image, truncated)
    locks.acquire(image, write=True).release()  # and the image is free again
