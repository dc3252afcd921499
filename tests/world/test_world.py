"""Tests of the test world itself: the local channel and the micromamba stand-in.

The stand-in runs as a subprocess, the way condatainer runs micromamba, against a channel built
in a temporary directory and a temporary root prefix.  It behaves as micromamba 2 where the mm
table relies on it: `--rc-file` takes every following word (CLI11), a named rc file must exist,
and `config` edits take `--file` after the action.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from condatainer.micromamba import SERIES, channel_url
from condatainer.micromamba.channel import in_series
from tests.fakes import with_fakes_on_path

from . import MICROMAMBA, PACKAGES, build_channel
from .channel import MICROMAMBA_NEWEST, MICROMAMBA_VERSIONS, main

Run = Callable[..., "subprocess.CompletedProcess[str]"]


@pytest.fixture(scope="module")
def channel(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"file://{build_channel(tmp_path_factory.mktemp('world') / 'channel')}"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "root"


@pytest.fixture
def mm(root: Path, channel: str, tmp_path: Path) -> Run:
    """``micromamba -r ROOT ARGS...``; ROOT/.condarc lists the channel, as condatainer's does."""
    rc = root / ".condarc"
    root.mkdir()
    rc.write_text(yaml.safe_dump({"channels": [channel]}))
    env = {**os.environ, "HOME": str(tmp_path / "home")}
    env.pop("MAMBA_ROOT_PREFIX", None)

    def run(
        *args: str, ok: bool = True, root_prefix: Path = root
    ) -> subprocess.CompletedProcess[str]:
        argv = [str(MICROMAMBA), "-r", str(root_prefix), *args]
        result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
        assert "Traceback" not in result.stderr, result.stderr
        if ok:
            assert result.returncode == 0, result.stdout + result.stderr
        return result

    return run


@pytest.fixture
def op(mm: Run, root: Path) -> Run:
    """``micromamba -r ROOT --rc-file ROOT/.condarc OP -n base ARGS...``: the mm table's shape."""

    def run(name: str, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        rc = str(root / ".condarc")
        return mm("--rc-file", rc, *name.split(), "-n", "base", *args, ok=ok)

    return run


def installed(root: Path) -> dict[str, str]:
    records = [json.loads(p.read_text()) for p in root.glob("conda-meta/*.json")]
    return {r["name"]: r["version"] for r in records}


# ---------------------------------------------------------------- the channel


def test_channel_is_indexed_and_reproducible(tmp_path: Path) -> None:
    path = build_channel(tmp_path / "chan")
    archives = {p.name: p.read_bytes() for p in path.glob("*/*.tar.bz2")}
    archives.update({p.name: p.read_bytes() for p in path.glob("*/*.conda")})
    build_channel(tmp_path / "chan")
    again = {p.name: p.read_bytes() for p in path.glob("*/*.tar.bz2")}
    again.update({p.name: p.read_bytes() for p in path.glob("*/*.conda")})
    assert again == archives
    repodata = json.loads((path / "noarch" / "repodata.json").read_text())
    assert set(repodata["packages"]) == {p.filename for p in PACKAGES}
    linux = json.loads((path / "linux-64" / "repodata.json").read_text())
    assert {**linux["packages"], **linux["packages.conda"]}.keys() == {
        f"micromamba-{version}-0{fmt}" for version, fmt in MICROMAMBA_VERSIONS
    }
    for subdir in ("noarch", "linux-64"):
        assert (path / subdir / "repodata_shards.msgpack.zst").is_file()


def read_zstd_msgpack(path: Path) -> object:
    import msgpack

    raw = subprocess.run(["zstd", "-d", "-c", str(path)], capture_output=True, check=True).stdout
    return msgpack.unpackb(raw, raw=False)


def test_the_sharded_index_follows_cep_16(tmp_path: Path) -> None:
    """py-rattler's shards, checked against CEP 16: the index maps names to 32 raw sha256 bytes,
    each shard lives at shards_base_url + hex + .msgpack.zst and is named after the sha256 of
    its (compressed) bytes, and its records carry sha256/md5 as raw bytes.  (rattler leaves out
    the index's `version`; CEP 16 says it is 1, and condatainer reads a missing one as 1.)"""
    path = build_channel(tmp_path / "chan")
    index = read_zstd_msgpack(path / "linux-64" / "repodata_shards.msgpack.zst")
    assert isinstance(index, dict)
    assert index["info"]["subdir"] == "linux-64"
    assert index["info"]["shards_base_url"] == "./shards/"
    assert index.get("version", 1) == 1
    digest = index["shards"]["micromamba"]
    assert isinstance(digest, bytes) and len(digest) == 32
    shard_file = path / "linux-64" / "shards" / f"{digest.hex()}.msgpack.zst"
    assert hashlib.sha256(shard_file.read_bytes()).digest() == digest
    shard = read_zstd_msgpack(shard_file)
    assert isinstance(shard, dict)
    newest = shard["packages.conda"][f"micromamba-{MICROMAMBA_NEWEST}-0.conda"]
    archive = path / "linux-64" / f"micromamba-{MICROMAMBA_NEWEST}-0.conda"
    assert newest["sha256"] == hashlib.sha256(archive.read_bytes()).digest()
    assert newest["size"] == archive.stat().st_size


def test_a_plain_channel_has_no_shards(tmp_path: Path) -> None:
    path = build_channel(tmp_path / "chan", shards=False)
    assert (path / "linux-64" / "repodata.json").is_file()
    assert not list(path.rglob("repodata_shards.msgpack.zst"))
    assert not list(path.rglob("shards"))


def test_the_micromamba_packages_hold_the_stand_in_of_their_version(tmp_path: Path) -> None:
    import tarfile
    import zipfile

    path = build_channel(tmp_path / "chan", python="/the/test/python")
    conda = path / "linux-64" / f"micromamba-{MICROMAMBA_NEWEST}-0.conda"
    with zipfile.ZipFile(conda) as zf:
        assert sorted(zf.namelist())[0] == "info-micromamba-2.3.3-0.tar.zst"
        pkg = zf.read(f"pkg-micromamba-{MICROMAMBA_NEWEST}-0.tar.zst")
    tar = subprocess.run(["zstd", "-d", "-c"], input=pkg, capture_output=True, check=True).stdout
    tar_path = tmp_path / "pkg.tar"
    tar_path.write_bytes(tar)
    with tarfile.open(tar_path) as tf:
        member = tf.getmember("bin/micromamba")
        assert member.mode == 0o755
        text = tf.extractfile(member).read().decode()  # type: ignore[union-attr]
    assert text.startswith("#!/the/test/python\n")
    assert f'MICROMAMBA_VERSION = "{MICROMAMBA_NEWEST}"' in text
    with tarfile.open(path / "linux-64" / "micromamba-2.0.5-0.tar.bz2") as tf:
        text = tf.extractfile("bin/micromamba").read().decode()  # type: ignore[union-attr]
        index = json.loads(tf.extractfile("info/index.json").read())  # type: ignore[union-attr]
    assert 'MICROMAMBA_VERSION = "2.0.5"' in text
    assert (index["name"], index["version"], index["subdir"]) == ("micromamba", "2.0.5", "linux-64")


def test_the_newest_micromamba_is_of_the_series_condatainer_uses() -> None:
    newest_of_series = max(
        (v for v, _ in MICROMAMBA_VERSIONS if in_series(v, SERIES)),
        key=lambda v: tuple(map(int, v.split("."))),
    )
    assert newest_of_series == MICROMAMBA_NEWEST
    assert any(not in_series(v, SERIES) for v, _ in MICROMAMBA_VERSIONS), "an old series too"


def test_python_m_tests_world_channel_writes_a_channel(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(tmp_path / "offline")]) == 0
    out = capsys.readouterr().out
    url = channel_url(str(tmp_path / "offline"))
    assert f"export CNT_CHANNELS={url} CNT_MICROMAMBA_CHANNEL={url}" in out
    assert (tmp_path / "offline" / "noarch" / "cnt-hello-1.0-0.tar.bz2").is_file()
    assert (tmp_path / "offline" / "linux-64" / "repodata_shards.msgpack.zst").is_file()


# ---------------------------------------------------------------- install, run, history


def test_install_pulls_the_newest_dependency_and_relocates(op: Run, root: Path) -> None:
    result = op("install", "-y", "cnt-app")
    assert "+ cnt-app 1.0 0" in result.stdout
    assert "+ cnt-lib 2.0 0" in result.stdout
    assert "Transaction finished" in result.stdout
    assert installed(root) == {"cnt-app": "1.0", "cnt-lib": "2.0"}
    assert (root / "conda-meta" / "cnt-app-1.0-0.json").is_file()
    app = subprocess.run([root / "bin" / "cnt-app"], capture_output=True, text=True, check=True)
    assert app.stdout == "cnt-app using cnt-lib 2.0\n"
    assert not (root / "CACHEDIR.TAG").exists()


def test_installed_script_runs_with_arguments(op: Run, root: Path) -> None:
    op("install", "-y", "cnt-hello", "cnt-activate")
    hello = subprocess.run(
        [root / "bin" / "cnt-hello", "a b", "$c"], capture_output=True, text=True, check=True
    )
    assert hello.stdout == "hello from cnt-hello 1.0\na b\n$c\n"
    activate = root / "etc" / "conda" / "activate.d" / "cnt-activate.sh"
    assert activate.read_text() == "export CNT_ACTIVATED=yes\n"


def test_history_is_written_like_micromamba(op: Run, root: Path, channel: str) -> None:
    op("install", "-y", "cnt-hello")
    op("remove", "-y", "cnt-hello")
    lines = (root / "conda-meta" / "history").read_text().splitlines()
    assert re.fullmatch(r"==> \d{4}-\d\d-\d\d \d\d:\d\d:\d\d <==", lines[0])
    assert lines[1].startswith("# cmd: micromamba ")
    assert " install -n base " in lines[1]
    assert lines[2:5] == [
        "# conda version: 3.8.0",
        f"+{channel}/noarch::cnt-hello-1.0-0",
        '# update specs: ["cnt-hello"]',
    ]
    assert lines[-2:] == [f"-{channel}/noarch::cnt-hello-1.0-0", '# remove specs: ["cnt-hello"]']


def test_first_install_creates_the_root_prefix(mm: Run, channel: str, tmp_path: Path) -> None:
    fresh = tmp_path / "fresh" / "env"
    rc = tmp_path / "empty.rc"
    rc.write_text("")
    mm("--rc-file", str(rc), "install", "-n", "base", "-y", "-c", channel, "cnt-hello",
       root_prefix=fresh)  # fmt: skip
    assert installed(fresh) == {"cnt-hello": "1.0"}
    assert (fresh / "conda-meta" / "history").read_text().startswith("==> ")


def test_a_named_rc_file_must_exist(mm: Run, channel: str, tmp_path: Path) -> None:
    missing = tmp_path / "no.rc"
    result = mm("--rc-file", str(missing), "install", "-n", "base", "-y", "-c", channel,
                "cnt-hello", ok=False)  # fmt: skip
    assert result.returncode == 1
    assert f"Configuration file specified but does not exist at '{missing}'" in result.stderr


def test_rc_file_takes_every_following_word_like_cli11(op: Run, mm: Run, root: Path) -> None:
    """Why the mm table puts --rc-file before the subcommand: after it, the user's first
    argument becomes a second rc file (micromamba 2 and 1.x both parse it so)."""
    op("install", "-y", "cnt-hello")
    rc = str(root / ".condarc")
    swallowed = mm("list", "-n", "base", "--rc-file", rc, "cnt-hello", ok=False)
    assert swallowed.returncode == 1
    assert "does not exist at 'cnt-hello'" in swallowed.stderr
    assert "cnt-hello" in mm("--rc-file", rc, "list", "-n", "base", "cnt-hello").stdout


def test_it_reports_a_micromamba_2_version(mm: Run) -> None:
    version = mm("--version").stdout.strip()
    assert version == MICROMAMBA_NEWEST
    assert in_series(version, SERIES)


def test_install_into_an_existing_env_keeps_what_is_there(op: Run, root: Path) -> None:
    op("install", "-y", "cnt-lib=1.0")
    op("install", "-y", "cnt-hello")
    assert installed(root) == {"cnt-lib": "1.0", "cnt-hello": "1.0"}
    result = op("install", "-y", "cnt-hello")
    assert "All requested packages already installed" in result.stdout


# ---------------------------------------------------------------- pins, update, remove


def test_pin_holds_on_update_and_refuses_a_conflicting_install(op: Run, root: Path) -> None:
    op("install", "-y", "cnt-lib=1.0", "numpy=1.21")
    (root / "conda-meta" / "pinned").write_text("cnt-lib=1.0\n")
    op("update", "-y")
    assert installed(root) == {"cnt-lib": "1.0", "numpy": "1.26.0"}
    refused = op("install", "-y", "cnt-lib=2.0", ok=False)
    assert refused.returncode == 1
    assert "cnt-lib=1.0" in refused.stderr
    assert installed(root)["cnt-lib"] == "1.0"
    (root / "conda-meta" / "pinned").unlink()
    op("update", "-y", "cnt-lib")
    assert installed(root)["cnt-lib"] == "2.0"


def test_fuzzy_pin_like_mm_pin(op: Run, root: Path) -> None:
    (root / "conda-meta").mkdir(parents=True)
    (root / "conda-meta" / "pinned").write_text("numpy 1.21.*\n")
    op("install", "-y", "numba")
    assert installed(root) == {"numba": "0.1", "numpy": "1.21.0"}


def test_remove_takes_dependents_and_prunes_dependencies(op: Run, root: Path) -> None:
    op("install", "-y", "cnt-app", "cnt-hello")
    op("remove", "-y", "cnt-lib")  # cnt-app needs it: both go
    assert installed(root) == {"cnt-hello": "1.0"}
    op("install", "-y", "cnt-app")
    result = op("remove", "-y", "cnt-app")  # cnt-lib was only a dependency: pruned
    assert "- cnt-app 1.0 0" in result.stdout
    assert installed(root) == {"cnt-hello": "1.0"}
    assert not (root / "bin" / "cnt-app").exists()


# ---------------------------------------------------------------- read-only operations


def test_list_table_regex_and_json(op: Run) -> None:
    op("install", "-y", "cnt-app")
    table = op("list").stdout
    assert re.search(r"Name\s+Version\s+Build\s+Channel", table)
    assert re.search(r"cnt-lib\s+2\.0\s+0\s+file://", table)
    only = op("list", "^cnt-a").stdout
    assert "cnt-app" in only
    assert "cnt-lib" not in only
    listed = json.loads(op("list", "--json").stdout)
    assert [(p["name"], p["version"], p["build_string"]) for p in listed] == [
        ("cnt-app", "1.0", "0"),
        ("cnt-lib", "2.0", "0"),
    ]
    assert all(p["channel"].startswith("file://") for p in listed)


def test_export_full_and_from_history(op: Run, channel: str) -> None:
    op("install", "-y", "cnt-app", "numpy=1.21")
    full = yaml.safe_load(op("env export").stdout)
    assert full == {
        "name": "base",
        "channels": [channel],
        "dependencies": ["cnt-app=1.0=0", "cnt-lib=2.0=0", "numpy=1.21.0=0"],
    }
    requested = yaml.safe_load(op("env export", "--from-history").stdout)
    assert requested["dependencies"] == ["cnt-app", "numpy=1.21"]


def test_search_globs_and_versions(mm: Run, channel: str, tmp_path: Path) -> None:
    rc = tmp_path / "empty.rc"
    rc.write_text("")
    found = mm("--rc-file", str(rc), "search", "-c", channel, "nu*").stdout
    assert re.search(r"numba\s+0\.1", found)
    assert re.search(r"numpy\s+1\.26\.0", found)
    assert found.index("1.26.0") < found.index("1.21.0")
    pinned = mm("search", "-c", channel, "numpy=1.21").stdout
    assert "1.21.0" in pinned
    assert "1.26.0" not in pinned
    assert "No entries matching" in mm("search", "-c", channel, "cnt-nope").stdout


def test_repodata_cache_lands_in_pkgs_and_clean_empties_it(
    mm: Run, op: Run, root: Path, channel: str
) -> None:
    op("install", "-y", "cnt-hello")
    key = hashlib.md5(f"{channel}/noarch/".encode()).hexdigest()[:8]
    cached = json.loads((root / "pkgs" / "cache" / f"{key}.json").read_text())
    assert {r["name"] for r in cached["packages"].values()} >= {"cnt-hello", "numba", "numpy"}
    state = json.loads((root / "pkgs" / "cache" / f"{key}.state.json").read_text())
    assert state["url"] == f"{channel}/noarch/repodata.json"
    assert (root / "pkgs" / "cnt-hello-1.0-0").is_dir()
    mm("clean", "-a", "-y")
    assert list((root / "pkgs").iterdir()) == []
    assert subprocess.run([root / "bin" / "cnt-hello"], capture_output=True).returncode == 0


# ---------------------------------------------------------------- config


def test_config_edits_only_channels(mm: Run, tmp_path: Path) -> None:
    rc = tmp_path / "sub" / "condarc"
    mm("config", "append", "--file", str(rc), "channels", "file:///a")
    assert yaml.safe_load(rc.read_text()) == {"channels": ["file:///a"]}
    rc.write_text("channel_priority: strict\nchannels:\n- file:///a\npkgs_dirs:\n- /x\n")
    mm("config", "append", "--file", str(rc), "channels", "file:///b")
    mm("config", "prepend", "--file", str(rc), "channels", "file:///c")
    mm("config", "append", "channels", "file:///a", "--file", str(rc))  # moves to the end
    assert yaml.safe_load(rc.read_text()) == {
        "channel_priority": "strict",
        "channels": ["file:///c", "file:///b", "file:///a"],
        "pkgs_dirs": ["/x"],
    }
    mm("config", "remove", "--file", str(rc), "channels", "file:///c")
    assert yaml.safe_load(rc.read_text())["channels"] == ["file:///b", "file:///a"]
    listed = mm("--rc-file", str(rc), "config", "list", "channels").stdout
    assert listed == "channels:\n  - file:///b\n  - file:///a\n"
    missing = mm("config", "remove", "--file", str(rc), "channels", "file:///zz")
    assert missing.stdout == "Key is not present in file\n"


def test_config_file_goes_after_the_action(mm: Run, tmp_path: Path) -> None:
    """micromamba's `config` has no --file of its own; its editing actions have."""
    rc = tmp_path / "condarc"
    for argv in (["config", "--file", str(rc), "append", "channels", "x"],
                 ["config", "list", "--file", str(rc)]):  # fmt: skip
        result = mm(*argv, ok=False)
        assert result.returncode == 1
        assert "The following argument was not expected: --file" in result.stderr


# ---------------------------------------------------------------- command lines and failures


def test_flags_in_any_order(mm: Run, root: Path, channel: str) -> None:
    rc = str(root / ".condarc")
    mm("install", "cnt-hello", "--yes", "--rc-file", rc, "--name", "base", "-q")
    mm("install", "-yq", f"--channel={channel}", "cnt-lib", "-n", "base", f"--rc-file={rc}")
    mm("update", "--root-prefix", str(root), "-n", "base", "--rc-file", rc, "-y", "--all")
    assert installed(root) == {"cnt-hello": "1.0", "cnt-lib": "2.0"}


@pytest.mark.parametrize(
    ("argv", "unexpected"),
    [
        (["frobnicate"], "frobnicate"),
        (["install", "--bogus", "x"], "--bogus"),
        (["list", "--from-history"], "--from-history"),
        (["-n", "base", "list"], "-n"),
        (["clean", "-a", "-y", "extra"], "extra"),
    ],
)
def test_unexpected_arguments_fail_like_cli11(mm: Run, argv: list[str], unexpected: str) -> None:
    result = mm(*argv, ok=False)
    assert result.returncode == 1
    assert f"The following argument was not expected: {unexpected}" in result.stderr


def test_missing_package_fails_like_micromamba(op: Run, root: Path) -> None:
    result = op("install", "-y", "cnt-hello", "cnt-nope", ok=False)
    assert result.returncode == 1
    assert "nothing provides requested cnt-nope" in result.stderr
    assert "critical libmamba" in result.stderr
    assert installed(root) == {}


def test_unreachable_channel_is_refused(op: Run) -> None:
    result = op("install", "-y", "-c", "conda-forge", "cnt-hello", ok=False)
    assert result.returncode == 1
    assert "https://conda.anaconda.org/conda-forge/" in result.stderr


def test_environment_and_explicit_files(op: Run, root: Path, channel: str, tmp_path: Path) -> None:
    env_file = tmp_path / "environment.yml"
    env_file.write_text(yaml.safe_dump({"channels": [channel], "dependencies": ["numpy=1.21"]}))
    op("install", "-y", "-f", str(env_file))
    explicit = tmp_path / "spec.txt"
    explicit.write_text(f"@EXPLICIT\n{channel}/noarch/cnt-lib-1.0-0.tar.bz2\n")
    op("install", "-y", "--file", str(explicit))
    assert installed(root) == {"numpy": "1.21.0", "cnt-lib": "1.0"}


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for a read-only bind mount")
def test_read_only_root_fails_cleanly(op: Run, mm: Run, root: Path, tmp_path: Path) -> None:
    op("install", "-y", "cnt-hello")
    mount = tmp_path / "ro"
    mount.mkdir()
    subprocess.run(["mount", "--bind", "-o", "ro", root, mount], check=True)
    try:
        rc = str(mount / ".condarc")
        for argv in (["install", "cnt-lib"], ["remove", "cnt-hello"]):
            result = mm(
                "--rc-file", rc, argv[0], "-n", "base", "-y", *argv[1:], root_prefix=mount, ok=False
            )
            assert result.returncode == 1
            assert "Read-only file system" in result.stderr
        listed = mm("--rc-file", rc, "list", "-n", "base", root_prefix=mount)
        assert "cnt-hello" in listed.stdout
        mm("--rc-file", rc, "search", "cnt-hello", root_prefix=mount)
    finally:
        subprocess.run(["umount", mount], check=True)
    assert installed(root) == {"cnt-hello": "1.0"}


# ---------------------------------------------------------------- started by the test interpreter


@pytest.mark.parametrize("name", ["python3", "python"])
def test_the_stand_in_ignores_the_python_first_on_path(
    name: str, channel: str, tmp_path: Path
) -> None:
    """The suite starts the stand-in the way it is started here: by name, from PATH.  A fresh
    machine's first python3 lacks py-rattler; the stand-in must not care which one is first."""
    hostile = tmp_path / "hostile"
    hostile.mkdir()
    (hostile / name).write_text("#!/bin/sh\necho 'the hostile python ran' >&2\nexit 99\n")
    (hostile / name).chmod(0o755)
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        "PATH": os.pathsep.join([str(hostile), str(MICROMAMBA.parent), os.environ["PATH"]]),
    }
    res = subprocess.run(
        [
            "micromamba",
            "-r",
            str(tmp_path / "root"),
            "create",
            "-n",
            "base",
            "-y",
            "-c",
            channel,
            "cnt-hello",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "hostile" not in res.stderr
    assert (tmp_path / "root" / "bin" / "cnt-hello").is_file()
    assert MICROMAMBA.read_text().startswith(f"#!{sys.executable}\n")


def test_the_fake_apptainer_ignores_the_python_first_on_path(tmp_path: Path) -> None:
    hostile = tmp_path / "hostile"
    hostile.mkdir()
    (hostile / "python3").write_text("#!/bin/sh\nexit 99\n")
    (hostile / "python3").chmod(0o755)
    env = with_fakes_on_path({**os.environ, "PATH": f"{hostile}:{os.environ['PATH']}"})
    res = subprocess.run(
        ["apptainer", "--version"], capture_output=True, text=True, env=env, timeout=60
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("apptainer version")
