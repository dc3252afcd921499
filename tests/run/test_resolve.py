"""resolve: the decisions behind a Plan, on plain values (images are not touched:
check_locks=False)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from condatainer.errors import UsageError
from condatainer.run.resolve import (
    Request,
    Settings,
    binds,
    find_image,
    logical_cwd,
    named_reads,
    overlays,
    resolve,
)


def req(**kw: object) -> Request:
    return Request(command=("true",), check_locks=False, **kw)  # type: ignore[arg-type]


def test_parents_are_bound_before_children_so_a_read_only_child_stays_read_only(
    tmp_path: Path,
) -> None:
    sub = tmp_path / "sub"
    sub.mkdir()
    got = binds(req(binds=(f"{sub}::ro",)), Settings(), tmp_path, {})
    assert [(b.container, b.readonly) for b in got] == [(str(tmp_path), False), (str(sub), True)]


def test_default_binds_are_paths_even_with_a_colon(tmp_path: Path) -> None:
    odd = tmp_path / "a:b"
    odd.mkdir()
    got = binds(req(), Settings(), odd, {"TMPDIR": str(tmp_path / "missing")})
    assert [b.host for b in got] == [str(odd)]


def test_children_of_a_bound_directory_are_dropped(tmp_path: Path) -> None:
    (tmp_path / "c").mkdir()
    got = binds(req(), Settings(), tmp_path / "c", {"SCRATCH": str(tmp_path)})
    assert [b.host for b in got] == [str(tmp_path)]


def test_at_most_one_writable_image(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="more than one writable"):
        overlays(req(images=("a.img:rw", "b.img:rw")), tmp_path, {})
    got = overlays(req(images=("a.img", "b.img"), writable=True), tmp_path, {})
    assert [o.writable for o in got] == [True, False]


def test_env_is_taken_whole_and_owned_names_are_refused(tmp_path: Path) -> None:
    plan = resolve(
        req(env=("A=x,B=y", "Q=$(id)")), Settings(), environ={"PATH": "/bin"}, cwd=str(tmp_path)
    )
    env = dict(plan.env)
    assert env["A"] == "x,B=y" and env["Q"] == "$(id)" and "B" not in env
    assert env["PATH"] == "/ext3/env/bin:/bin" and env["IN_CONDATAINER"] == "1"
    for bad in ("CONDA_PREFIX=/x", "PATH=/x", "1X=y", "novalue"):
        with pytest.raises(UsageError):
            resolve(req(env=(bad,)), Settings(), environ={}, cwd=str(tmp_path))


def test_symlinked_home_stops_the_search_from_the_logical_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_home = tmp_path / "gpfs" / "home" / "u"
    (real_home / "proj").mkdir(parents=True)
    (tmp_path / "gpfs" / "home" / "env.img").write_bytes(b"")  # above $HOME: never found
    link = tmp_path / "home-u"
    link.symlink_to(real_home)
    monkeypatch.chdir(link / "proj")
    environ = {"HOME": str(link), "PWD": str(link / "proj")}
    here = logical_cwd(environ)
    assert here == link / "proj"
    assert find_image(here, environ) is None
    assert logical_cwd({"PWD": "/nonexistent"}) == Path(os.getcwd())


# --------------------------------------------------------------------------------------------
# What a command reads on the host, and the base image


def test_what_a_command_reads_is_bound_read_only(tmp_path: Path) -> None:
    channel = tmp_path / "srv" / "channel"
    channel.mkdir(parents=True)
    spec = tmp_path / "specs" / "explicit.txt"
    spec.parent.mkdir()
    spec.write_text("@EXPLICIT\n")
    words = named_reads(
        ["-c", f"file://{channel}", "--file", str(spec), "numpy", "-c", "conda-forge",
         f"--channel=file://{tmp_path}/missing", "-y"]
    )  # fmt: skip
    assert words == (f"file://{channel}", str(spec), "conda-forge", f"file://{tmp_path}/missing")
    work = tmp_path / "work"
    work.mkdir()
    got = binds(req(reads=words), Settings(), work, {})
    assert [(b.host, b.container, b.readonly) for b in got] == [
        (str(work), str(work), False),  # the working directory, as always
        (str(spec.parent), str(spec.parent), True),  # an -f file's directory
        (str(channel), str(channel), True),  # a channel directory, read-only
    ]  # names and what does not exist are skipped; parents first
    # what a bind already shows is not bound again (read-only would hide the writable one)
    inside = work / "env.txt"
    inside.write_text("x\n")
    got = binds(req(reads=(str(inside), "./env.txt")), Settings(), work, {})
    assert [b.host for b in got] == [str(work)]


def test_the_base_image_decision(tmp_path: Path) -> None:
    default = Settings(default_base="/data/images/base-1234.sif", base_source="docker://x/b:1")
    plan = resolve(req(), default, environ={}, cwd=str(tmp_path))
    assert (plan.base_image, plan.base_pull) == ("/data/images/base-1234.sif", "docker://x/b:1")
    # a configured or given base wins, is never pulled, and is made absolute
    configured = Settings(base_image="site.sif", default_base="/d.sif", base_source="docker://x")
    plan = resolve(req(), configured, environ={}, cwd=str(tmp_path))
    assert (plan.base_image, plan.base_pull) == (str(tmp_path / "site.sif"), None)
    plan = resolve(req(base_image="../b.sif"), configured, environ={}, cwd=str(tmp_path))
    assert plan.base_image == str(tmp_path.parent / "b.sif")
    plan = resolve(req(base_image="docker://x/y:1"), configured, environ={}, cwd=str(tmp_path))
    assert plan.base_image == "docker://x/y:1"
    # a runtime with a base of its own (builtin): the host root
    plan = resolve(req(), Settings(), environ={}, cwd=str(tmp_path))
    assert (plan.base_image, plan.base_pull) == (None, None)
