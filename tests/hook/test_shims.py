"""shims: what gets a shim, the cache and its stamp, the package list, and shims run in dash."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from condatainer import config, runner, shellgen
from condatainer.hook import launcher, pkgcache, shims
from condatainer.image import e2fs
from tests.shell.hooklib import HOSTILE, listed_shims, make_image


def entry(name: str, mode: int) -> e2fs.Entry:
    return e2fs.Entry(name=name, inode=12, mode=mode, uid=0, gid=0, size=1)


REG, LNK, DIR = stat.S_IFREG, stat.S_IFLNK, stat.S_IFDIR


def test_shim_names_takes_executables_and_links_minus_the_deny_list() -> None:
    entries = [
        entry("python3.11", REG | 0o755),
        entry("python", LNK | 0o777),
        entry("data.txt", REG | 0o644),
        entry("lib", DIR | 0o755),
        entry("bash", REG | 0o755),
        entry(".hidden", REG | 0o755),
        entry("-oops", REG | 0o755),
        entry("bad\nname", REG | 0o755),
        entry("caf\udce9", REG | 0o755),  # not UTF-8
        entry(HOSTILE, REG | 0o700),
        entry("$(touch x)", REG | 0o755),
    ]
    assert shims.shim_names(entries, config.DEFAULT_SHIM_EXCLUDE) == sorted(
        ["python3.11", "python", HOSTILE, "$(touch x)"]
    )
    assert "bash" in shims.shim_names(entries, ())


def test_package_names_from_conda_meta() -> None:
    files = [
        "numpy-1.21.0-py39_0.json",
        "python-dateutil-2.8.2-pyhd8ed1ab_0.json",
        "history",
        "pinned",
        "weird.json",
        "cnt-hello-1.0-0.json",
    ]
    names = pkgcache.package_names([entry(f, REG | 0o644) for f in files])
    assert names == ["cnt-hello", "numpy", "python-dateutil"]


def test_launcher_is_the_console_script_or_this_interpreter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = tmp_path / "bin" / "condatainer"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    # No console script beside the interpreter: the one we were started as, else python -m
    # (with -P where Python has it, so the working directory stays off sys.path).
    monkeypatch.setattr(sys, "executable", str(tmp_path / "py" / "python3"))
    monkeypatch.setattr(sys, "argv", [str(script), "_activate"])
    assert launcher.argv() == (str(script),)
    monkeypatch.setattr(sys, "argv", ["/somewhere/condatainer/__main__.py"])
    assert launcher.argv() == (sys.executable, *launcher.python_safe_path(), "-m", "condatainer")
    # The console script beside the interpreter wins, however we were started.
    beside = tmp_path / "py" / "condatainer"
    beside.parent.mkdir()
    beside.write_text("#!/bin/sh\n")
    beside.chmod(0o755)
    assert launcher.argv() == (str(beside),)


def test_cache_paths_are_under_the_cache_dir(tmp_path: Path) -> None:
    image = tmp_path / "env.img"
    cache = config.paths()["cache"]
    key = pkgcache.cache_key(image)
    assert len(key) == 32
    assert shims.shim_dir(image) == cache / "shims" / key / "bin"
    assert pkgcache.installed_file(image) == cache / "pkgs" / f"{key}.txt"
    link = tmp_path / "link.img"
    link.symlink_to(image)
    assert pkgcache.cache_key(link) == key  # the real path names the cache


@pytest.fixture
def debugfs_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, ...]]:
    calls: list[tuple[str, ...]] = []
    real = runner.run_hook

    def recording(argv: Any, **kw: Any) -> runner.Result:
        calls.append(tuple(argv))
        return real(argv, **kw)

    monkeypatch.setattr(runner, "run_hook", recording)
    return calls


def test_ensure_builds_once_then_is_warm(
    tmp_path: Path, need: Callable[[str], str], debugfs_calls: list[tuple[str, ...]]
) -> None:
    need("mke2fs")
    image = make_image(
        tmp_path / "env.img", bins=("cnt-tool", "python", "bash"), pkgs=("numpy", "cnt-hello")
    )
    directory = shims.ensure(image, config.DEFAULT_SHIM_EXCLUDE)
    assert listed_shims(directory) == ["cnt-tool", "python"]
    assert (directory / "python").stat().st_mode & 0o777 == 0o755
    assert pkgcache.installed_file(image).read_text() == "cnt-hello\nnumpy\n"
    assert debugfs_calls, "a cold cache lists the image"
    debugfs_calls.clear()
    assert shims.ensure(image, config.DEFAULT_SHIM_EXCLUDE) == directory
    assert debugfs_calls == [], "a warm cache runs no program"


def test_ensure_rebuilds_when_image_or_config_changes(
    tmp_path: Path, need: Callable[[str], str], debugfs_calls: list[tuple[str, ...]]
) -> None:
    need("mke2fs")
    image = make_image(tmp_path / "env.img", bins=("a", "b"))
    directory = shims.ensure(image, ())
    assert listed_shims(directory) == ["a", "b"]
    debugfs_calls.clear()
    assert listed_shims(shims.ensure(image, ("a",))) == ["b"]  # deny-list changed
    assert debugfs_calls
    # The image is replaced by one with other executables (same path): stale shims go.
    make_image(tmp_path / "env.img", bins=("c",))
    assert sorted(listed_shims(shims.ensure(image, ()))) == ["c"]
    # Written in place (new mtime, same inode), as a loop mount would.
    before = image.stat()
    os.utime(image, ns=(before.st_atime_ns, before.st_mtime_ns + 10**9))
    debugfs_calls.clear()
    shims.ensure(image, ())
    assert debugfs_calls


def test_shims_are_hard_links_kept_across_rebuilds(
    tmp_path: Path, need: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One inode for every shim: a new program adds a link and keeps the others; a changed
    dispatcher (another launcher) replaces every link with it."""
    need("mke2fs")
    image = make_image(tmp_path / "env.img", bins=("a", "b"))
    directory = shims.ensure(image, ())
    dispatcher = (directory / shims.DISPATCHER).stat()
    assert not (directory / "a").is_symlink()
    assert dispatcher.st_nlink == 3  # the dispatcher and two shims
    kept = (directory / "a").stat().st_ino
    make_image(tmp_path / "env.img", bins=("a", "b", "c"))
    assert listed_shims(shims.ensure(image, ())) == ["a", "b", "c"]
    assert (directory / "a").stat().st_ino == kept == dispatcher.st_ino
    monkeypatch.setattr(launcher, "argv", lambda: ("/elsewhere/condatainer",))
    assert listed_shims(shims.refresh(image, ())) == ["a", "b", "c"]
    assert "/elsewhere/condatainer" in (directory / "c").read_text()
    assert (directory / "a").stat().st_ino != kept


def test_without_hard_links_the_shims_are_symlinks(
    tmp_path: Path, need: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    need("mke2fs")

    def refuse(*_: object, **__: object) -> None:
        raise PermissionError(1, "Operation not permitted")  # as on a filesystem without them

    monkeypatch.setattr(os, "link", refuse)
    image = make_image(tmp_path / "env.img", bins=("a", "b"))
    directory = shims.ensure(image, ())
    assert listed_shims(directory) == ["a", "b"]
    assert os.readlink(directory / "a") == shims.DISPATCHER


def test_image_without_env_bin_gets_an_empty_shim_dir(
    tmp_path: Path, need: Callable[[str], str]
) -> None:
    need("mke2fs")
    tree = tmp_path / "tree"
    (tree / "upper").mkdir(parents=True)
    image = tmp_path / "env.img"
    subprocess.run(
        [str(runner.which("mke2fs")), "-q", "-F", "-t", "ext3", "-d", str(tree), str(image), "8M"],
        check=True,
        capture_output=True,
    )
    assert listed_shims(shims.ensure(image, ())) == []
    assert pkgcache.installed_file(image).read_text() == ""


def test_after_mm_refreshes_shims_and_both_listings(
    tmp_path: Path, need: Callable[[str], str]
) -> None:
    need("mke2fs")
    image = make_image(tmp_path / "env.img", bins=("a",), pkgs=("numpy",))
    assert shims.after_mm(image, ()) is None
    assert listed_shims(shims.shim_dir(image)) == ["a"]
    assert pkgcache.installed_file(image).read_text() == "numpy\n"
    assert pkgcache.channel_file(image).read_text() == ""  # no repodata cache in this image


def test_after_mm_reports_instead_of_failing(tmp_path: Path) -> None:
    note = shims.after_mm(tmp_path / "missing.img", ())
    assert note is not None and "could not refresh the shims" in note


def test_not_an_image_is_an_image_error(tmp_path: Path, need: Callable[[str], str]) -> None:
    need("debugfs")
    bogus = tmp_path / "env.img"
    bogus.write_bytes(b"\0" * 65536)
    from condatainer.errors import ImageError

    with pytest.raises(ImageError):
        shims.ensure(bogus, ())


# --------------------------------------------------------------------------------------------
# The shim itself, run by dash


def fake_launcher(tmp_path: Path) -> Path:
    fake = tmp_path / "fake-condatainer"
    fake.write_text('#!/bin/sh\nprintf "%s\\0" "$@"\nprintf "PATH=%s\\0" "$PATH"\n')
    fake.chmod(0o755)
    return fake


def write_shim(tmp_path: Path, directory: Path, image: str, name: str) -> Path:
    """The dispatcher (with a recording launcher) and one link to it, as shims.py lays them."""
    dispatcher = directory / shims.DISPATCHER
    dispatcher.write_text(
        shellgen.render(
            "shim",
            "sh",
            launcher=[str(fake_launcher(tmp_path))],
            image=image,
            dispatcher=shims.DISPATCHER,
            shims=str(directory),
        )
    )
    dispatcher.chmod(0o755)
    (directory / name).symlink_to(shims.DISPATCHER)
    return directory / name


def test_the_dispatcher_itself_refuses_to_run(tmp_path: Path, need: Callable[[str], str]) -> None:
    need("dash")
    directory = tmp_path / "bin"
    directory.mkdir()
    write_shim(tmp_path, directory, "/x.img", "tool")
    res = subprocess.run(["dash", str(directory / shims.DISPATCHER)], capture_output=True,
                         text=True, check=False, env={"PATH": "/usr/bin:/bin"})  # fmt: skip
    assert res.returncode == 2
    assert res.stderr.startswith("condatainer: error: run the shims")


@pytest.mark.parametrize("name", ["python", HOSTILE, "$(touch pwned)"])
def test_shim_runs_exec_with_its_dir_off_path(
    tmp_path: Path, need: Callable[[str], str], name: str
) -> None:
    need("dash")
    directory = tmp_path / f"shims {HOSTILE}" / "bin"
    directory.mkdir(parents=True)
    image = f"/data/{HOSTILE}/env.img"
    shim = write_shim(tmp_path, directory, image, name)
    path = f"/usr/bin:{directory}:/bin"
    out = subprocess.run(
        ["dash", str(shim), "a b", "$(x)"],
        capture_output=True,
        check=True,
        env={"PATH": path},
        cwd=tmp_path,
    ).stdout.decode()
    assert out.split("\0")[:-1] == [
        "exec",
        "--if-allowed",
        "-o",
        image,
        "--",
        name,
        "a b",
        "$(x)",
        "PATH=/usr/bin:/bin",
    ]
    assert not (tmp_path / "pwned").exists()


def test_shim_inside_a_container_runs_the_next_one_on_path(
    tmp_path: Path, need: Callable[[str], str]
) -> None:
    need("dash")
    directory = tmp_path / "shims"
    directory.mkdir()
    other = tmp_path / "other"
    other.mkdir()
    real = other / "tool"
    real.write_text('#!/bin/sh\necho "real tool $*"\n')
    real.chmod(0o755)
    shim = write_shim(tmp_path, directory, "/x.img", "tool")
    out = subprocess.run(
        [str(shim), "x"],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": f"{directory}:{other}:/usr/bin:/bin", "IN_CONDATAINER": "1"},
    ).stdout
    assert out == "real tool x\n"
