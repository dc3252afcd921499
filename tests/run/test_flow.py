"""The whole life of an env image on the builtin runtime, with real images and real packages.

o -> mm install -> the package's executable runs through exec -> the files are in the image
(read back with debugfs, no mount) and survive; read-only exec cannot write; mm list while a
read-only job holds the image; pins; channels; export.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO, World, cnt, debugfs_cat, ok
from tests.waiting import wait_for_lock

pytestmark = pytest.mark.root


def make_env(tmp_path: Path, *pkgs: str) -> Path:
    image = tmp_path / "env.img"
    args = ["o", str(image), "-s", "256M", "--sparse"]
    if pkgs:
        args += ["--", *pkgs]
    ok(cnt(*args, cwd=tmp_path))
    return image


def test_install_then_run_then_files_are_in_the_image(world: World, tmp_path: Path) -> None:
    image = make_env(tmp_path)
    assert not list(tmp_path.glob(".env.img*")), "no temporary file left behind"
    ok(cnt("mm", "-o", str(image), "install", "cnt-hello", cwd=tmp_path))
    res = ok(cnt("exec", "-o", str(image), "--", "cnt-hello", "a b", "$(c)", cwd=tmp_path))
    assert res.stdout.splitlines() == ["hello from cnt-hello 1.0", "a b", "$(c)"]
    script = debugfs_cat(image, "upper/ext3/env/bin/cnt-hello")
    assert script is not None and "hello from cnt-hello" in script
    history = debugfs_cat(image, "upper/ext3/env/conda-meta/history")
    assert history is not None and "cnt-hello" in history
    # Survives: a second, independent exec still finds it.
    ok(cnt("exec", "-o", str(image), "cnt-hello", cwd=tmp_path))
    info = ok(cnt("overlay", "info", str(image), "--json"))
    assert '"cnt-hello"' in info.stdout


def test_o_with_packages_installs_and_cleans(world: World, tmp_path: Path) -> None:
    image = make_env(tmp_path, "cnt-app")
    res = ok(cnt("exec", "-o", str(image), "cnt-app", cwd=tmp_path))
    assert res.stdout.strip() == "cnt-app using cnt-lib 2.0"
    condarc = debugfs_cat(image, "upper/ext3/env/.condarc")
    assert condarc is not None and world.url in condarc


def test_o_with_a_missing_package_leaves_nothing(world: World, tmp_path: Path) -> None:
    res = cnt(
        "o", str(tmp_path / "env.img"), "-s", "256M", "--sparse", "--", "cnt-nope", cwd=tmp_path
    )
    assert res.returncode == 1
    assert "condatainer: error:" in res.stderr and "cnt-nope" in res.stderr + res.stdout
    assert [p.name for p in tmp_path.iterdir() if p.name != "home"] == [], "nothing left"


def test_o_from_environment_yml(world: World, tmp_path: Path) -> None:
    envyml = tmp_path / "environment.yml"
    envyml.write_text(
        "name: demo\nchannels:\n  - " + world.url + "\ndependencies:\n  - cnt-lib=1.0\n"
        "  - cnt-hello\nvariables:\n  GREETING: \"$(touch /tmp/pwned) `x` 'q'\"\n"
    )
    dry = ok(cnt("o", "-f", str(envyml), "--dry-run", "--json", cwd=tmp_path))
    import json

    assert json.loads(dry.stdout) == {
        "name": "demo",
        "kind": "environment",
        "source": str(envyml),
        "channels": [world.url],
        "conda": ["cnt-lib=1.0", "cnt-hello"],
        "pip": [],
        "selectors": [],
        "editable": [],
        "lock_pip": [],
    }
    assert [p for p in tmp_path.iterdir() if p.name != "home"] == [envyml], "dry-run: nothing"
    image = tmp_path / "env.img"
    ok(cnt("o", str(image), "-s", "256M", "--sparse", "-f", str(envyml), cwd=tmp_path))
    res = ok(
        cnt(
            "exec",
            "-o",
            str(image),
            "--",
            "sh",
            "-c",
            'cat /ext3/env/share/cnt-lib/VERSION; printf "%s" "$GREETING"',
            cwd=tmp_path,
        )
    )
    assert res.stdout == "1.0\n$(touch /tmp/pwned) `x` 'q'"
    assert not Path("/tmp/pwned").exists()


def test_read_only_exec_cannot_write(world: World, tmp_path: Path) -> None:
    image = make_env(tmp_path, "cnt-hello")
    before = image.read_bytes()
    res = cnt(
        "exec", "-o", str(image), "--", "sh", "-c", "echo x > /ext3/env/newfile", cwd=tmp_path
    )
    assert res.returncode != 0
    assert "Read-only file system" in res.stderr
    res = cnt("mm", "-o", f"{image}", "install", "cnt-lib", cwd=tmp_path)  # writable: fine
    ok(res)
    assert image.read_bytes() != before


def test_mm_list_while_a_read_only_job_holds_the_image(world: World, tmp_path: Path) -> None:
    image = make_env(tmp_path, "cnt-hello")
    job = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "condatainer",
            "exec",
            "-o",
            str(image),
            "--",
            "sh",
            "-c",
            "while [ ! -e release ]; do sleep 0.05; done",
        ],
        cwd=tmp_path,
        env={**__import__("os").environ, "PYTHONPATH": str(REPO)},
    )
    try:
        wait_for_lock(image, "read")
        res = ok(cnt("mm", "-o", str(image), "list", cwd=tmp_path))
        assert "cnt-hello" in res.stdout
        res = cnt("mm", "-o", str(image), "install", "cnt-lib", cwd=tmp_path)
        assert res.returncode == 1
        assert "in use for reading" in res.stderr
    finally:
        (tmp_path / "release").touch()
        job.wait(timeout=60)
    assert job.returncode == 0


def test_pin_and_update(world: World, tmp_path: Path) -> None:
    image = make_env(tmp_path, "cnt-lib=1.0")
    res = ok(cnt("mm", "-o", str(image), "pin", "cnt-lib", cwd=tmp_path))
    assert "cnt-lib ==1.0" in res.stdout
    ok(cnt("mm", "-o", str(image), "update", cwd=tmp_path))
    out = ok(cnt("exec", "-o", str(image), "cat", "/ext3/env/share/cnt-lib/VERSION"))
    assert out.stdout.strip() == "1.0", "the pin held"
    assert ok(cnt("mm", "-o", str(image), "pin", "-l")).stdout.strip() == "cnt-lib ==1.0"
    ok(cnt("mm", "-o", str(image), "pin", "-r", "cnt-lib"))
    assert ok(cnt("mm", "-o", str(image), "pin", "-l")).stdout.strip() == ""
    ok(cnt("mm", "-o", str(image), "pin", "numpy=1.21"))
    assert ok(cnt("mm", "-o", str(image), "pin", "-l")).stdout.strip() == "numpy 1.21.*"
    ok(cnt("mm", "-o", str(image), "pin", "numpy=1.21.*"))  # already fuzzy: kept as written
    assert ok(cnt("mm", "-o", str(image), "pin", "-l")).stdout.strip() == "numpy 1.21.*"
    bad = cnt("mm", "-o", str(image), "pin", "cnt-hello=2", "bad/name")
    assert bad.returncode == 2 and "pinned:" not in bad.stdout, "nothing claimed, nothing kept"
    assert ok(cnt("mm", "-o", str(image), "pin", "-l")).stdout.strip() == "numpy 1.21.*"
    ok(cnt("mm", "-o", str(image), "update", cwd=tmp_path))
    out = ok(cnt("exec", "-o", str(image), "cat", "/ext3/env/share/cnt-lib/VERSION"))
    assert out.stdout.strip() == "2.0", "unpinned, update moves on"


def test_channels_edit_only_the_channels_key(world: World, tmp_path: Path) -> None:
    image = make_env(tmp_path)
    ok(cnt("mm", "-o", str(image), "channels", "append", "extra-channel"))
    ok(cnt("mm", "-o", str(image), "channels", "prepend", "first-channel"))
    got = ok(cnt("mm", "-o", str(image), "channels", "get")).stdout
    assert got.index("first-channel") < got.index(world.url) < got.index("extra-channel")
    ok(cnt("mm", "-o", str(image), "channels", "remove", "extra-channel"))
    assert "extra-channel" not in ok(cnt("mm", "-o", str(image), "channels")).stdout


def test_overlay_export(world: World, tmp_path: Path) -> None:
    image = make_env(tmp_path, "cnt-hello")
    res = ok(cnt("overlay", "export", str(image), cwd=tmp_path))
    assert "cnt-hello" in res.stdout and "dependencies:" in res.stdout


def test_o_from_spec_files(world: World, tmp_path: Path) -> None:
    """conda's --file format: a spec list, and an @EXPLICIT list of package URLs."""
    specs = tmp_path / "specs.txt"
    specs.write_text("# pinned for the paper\ncnt-lib=1.0\ncnt-hello  # the greeter\n")
    image = tmp_path / "a.img"
    ok(cnt("o", str(image), "-s", "256M", "--sparse", "-f", str(specs), cwd=tmp_path))
    assert debugfs_cat(image, "upper/ext3/env/share/cnt-lib/VERSION") == "1.0\n"
    explicit = tmp_path / "lock" / "explicit.txt"
    explicit.parent.mkdir()
    explicit.write_text(f"@EXPLICIT\n{world.url}/noarch/cnt-hello-1.0-0.tar.bz2\n")
    image = tmp_path / "b.img"
    ok(cnt("o", str(image), "-s", "256M", "--sparse", "-f", str(explicit), cwd=tmp_path))
    res = ok(cnt("exec", "-o", str(image), "cnt-hello", cwd=tmp_path))
    assert res.stdout.strip() == "hello from cnt-hello 1.0"
    assert debugfs_cat(image, "upper/ext3/env/share/cnt-lib/VERSION") is None, "only the list"
