"""`o -f`: environment.yml, conda-lock files, read as conda and micromamba read them, then
installed for real (builtin runtime, root) with the test world's channel, micromamba stand-in
and real pip (tests/world).

The files are written in the forms real projects use; each test says where such files are seen.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import textwrap
from pathlib import Path

import pytest

from condatainer.errors import EnvFileError
from condatainer.run import envspec
from tests.support import World, cnt, debugfs_cat, ok
from tests.world import wheels

SITE = f"upper/ext3/env/lib/python{sys.version_info.major}.{sys.version_info.minor}/site-packages"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


# --------------------------------------------------------------------------------------------
# Reading (no container)


def test_pip_entries_are_requirement_lines_kept_as_written(tmp_path: Path) -> None:
    # The pip: forms of popular projects' environment files: the cookiecutter-data-science
    # template (`-e .  # conda >= 4.4 only`), PyTorch projects (`--extra-index-url
    # https://download.pytorch.org/whl/cu118` before `torch==...+cu118`), pixi's test env
    # (`deepobs @ git+https://...`), older research code (`-e git+https://...#egg=name`),
    # `-r requirements.txt`, local wheels and environment markers.
    env = write(
        tmp_path / "project" / "environment.yml",
        """\
        name: demo
        channels:
          - conda-forge
        dependencies:
          - python=3.10
          - pip
          - sel(linux): pytorch-cuda=12.4
          - sel(osx): clang_osx-64
          - {sel(unix): make, sel(win): m2-make}
          - pip:
            - -e .  # conda >= 4.4 only
            - -e ./libs/helper[test]
            - --editable=file:///opt/shared/pkg
            - -e git+https://github.com/example/tool.git@v1.2#egg=tool
            - --extra-index-url https://download.pytorch.org/whl/cu118
            - torch==2.0.1+cu118
            - deepobs @ git+https://git@github.com/fsschneider/DeepOBS.git@develop
            - name @ https://example.org/name-1.0-py3-none-any.whl
            - -r requirements.txt
            - --find-links ./wheels
            - "triton; platform_system == 'Linux'"
        """,
    )
    spec = envspec.load(str(env))
    assert spec.kind == "environment" and spec.source == str(env)
    assert spec.conda == ("python=3.10", "pip", "pytorch-cuda=12.4", "make")
    assert [(s.selector, s.spec, s.applied) for s in spec.selectors] == [
        ("sel(linux)", "pytorch-cuda=12.4", True),
        ("sel(osx)", "clang_osx-64", False),
        ("sel(unix)", "make", True),
        ("sel(win)", "m2-make", False),
    ]
    assert spec.pip == (
        "-e .",
        "-e ./libs/helper[test]",
        "--editable=file:///opt/shared/pkg",
        "-e git+https://github.com/example/tool.git@v1.2#egg=tool",
        "--extra-index-url https://download.pytorch.org/whl/cu118",
        "torch==2.0.1+cu118",
        "deepobs @ git+https://git@github.com/fsschneider/DeepOBS.git@develop",
        "name @ https://example.org/name-1.0-py3-none-any.whl",
        "-r requirements.txt",
        "--find-links ./wheels",
        "triton; platform_system == 'Linux'",
    )
    project = tmp_path / "project"
    assert spec.editable() == (str(project), str(project / "libs" / "helper"), "/opt/shared/pkg")
    assert spec.install_specs() == spec.conda  # pip is listed already


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("- sel(linux64): x", "selector 'sel(linux64)'"),
        ("- sel( linux): x", "selector 'sel( linux)'"),  # micromamba: no spaces
        ("- sel(linux): [a, b]", "takes one spec"),  # "Complicated selection merge"
        ("- {nope: x}", "unexpected entry"),
        ("- --override-channels", "starts with '-'"),
        ('- pip: [""]', "pip: unexpected entry"),
    ],
)
def test_bad_dependencies(tmp_path: Path, item: str, message: str) -> None:
    env = write(tmp_path / "environment.yml", f"dependencies:\n  - cnt-hello\n  {item}\n")
    with pytest.raises(EnvFileError, match=re.escape(message)):
        envspec.load(str(env))


def lock_text(channel: Path, *, pip_wheel: Path | None = None) -> str:
    """A conda-lock unified lock file (format 1) as conda-lock writes it, for the packages of
    `channel` (the test world's): linux-64 and osx-arm64, categories main and dev, conda and
    pip packages."""

    def archive(name: str) -> tuple[str, str, str]:
        path = channel / "noarch" / name
        data = path.read_bytes()
        return path.as_uri(), hashlib.md5(data).hexdigest(), hashlib.sha256(data).hexdigest()

    packages = []
    for platform in ("linux-64", "osx-arm64"):
        for name, version, category in (
            ("python", "3.11.0", "main"),
            ("pip", "23.0", "main"),
            ("cnt-lib", "1.0", "main"),
            ("cnt-app", "1.0", "main"),
            ("cnt-hello", "1.0", "dev"),
        ):
            url, md5, sha = archive(f"{name}-{version}-0.tar.bz2")
            packages.append(
                f"- name: {name}\n  version: '{version}'\n  manager: conda\n"
                f"  platform: {platform}\n  dependencies: {{}}\n  url: {url}\n"
                f"  hash:\n    md5: {md5}\n    sha256: {sha}\n"
                f"  category: {category}\n  optional: {str(category != 'main').lower()}\n"
            )
    if pip_wheel is not None:
        packages.append(
            f"- name: alpha\n  version: '1.0'\n  manager: pip\n  platform: linux-64\n"
            f"  dependencies: {{}}\n  url: {pip_wheel.as_uri()}\n"
            f"  hash:\n    sha256: {wheels.sha256(pip_wheel)}\n  category: main\n"
            "  optional: false\n"
        )
    return (
        "# This lock file was generated by conda-lock (https://github.com/conda/conda-lock)."
        " DO NOT EDIT!\n"
        "version: 1\nmetadata:\n  content_hash:\n    linux-64: 96d7c1\n    osx-arm64: 1c8a2f\n"
        f"  channels:\n  - url: {channel.as_uri()}\n    used_env_vars: []\n"
        "  platforms:\n  - linux-64\n  - osx-arm64\n  sources:\n  - environment.yml\n"
        "package:\n" + "".join(packages)
    )


def test_conda_lock_files_are_checked_and_shown(tmp_path: Path) -> None:
    channel = tmp_path / "channel"
    (channel / "noarch").mkdir(parents=True)
    for name in ("python-3.11.0", "pip-23.0", "cnt-lib-1.0", "cnt-app-1.0", "cnt-hello-1.0"):
        (channel / "noarch" / f"{name}-0.tar.bz2").write_bytes(name.encode())
    lock = write(tmp_path / "conda-lock.yml", lock_text(channel))
    spec = envspec.load(str(lock))
    assert spec.kind == "lock" and spec.channels == (channel.as_uri(),)
    assert spec.conda == ("python==3.11.0", "pip==23.0", "cnt-lib==1.0", "cnt-app==1.0")
    # A lock file under another name is read by micromamba as an environment.yml: refused.
    other = write(tmp_path / "locked.yml", lock.read_text())
    with pytest.raises(EnvFileError, match="micromamba reads one only when its name ends in"):
        envspec.load(str(other))
    bad = write(tmp_path / "v2-lock.yml", lock.read_text().replace("version: 1", "version: 2"))
    with pytest.raises(EnvFileError, match="format version 2: micromamba reads 1"):
        envspec.load(str(bad))
    mac = write(
        tmp_path / "mac-lock.yml",
        lock.read_text().replace("platform: linux-64", "platform: osx-64"),
    )
    with pytest.raises(EnvFileError, match="nothing is locked for linux-64"):
        envspec.load(str(mac))


def test_o_dry_run_json_shows_the_file_as_read(tmp_path: Path) -> None:
    env = write(
        tmp_path / "environment.yml",
        """\
        dependencies:
          - cnt-hello
          - sel(osx): numpy
          - pip:
            - -e .
            - --extra-index-url https://download.pytorch.org/whl/cpu
        """,
    )
    res = ok(cnt("o", "-f", str(env), "--dry-run", "--json", cwd=tmp_path))
    data = json.loads(res.stdout)
    assert data["pip"] == ["-e .", "--extra-index-url https://download.pytorch.org/whl/cpu"]
    assert data["conda"] == ["cnt-hello"]
    assert data["selectors"] == [{"selector": "sel(osx)", "spec": "numpy", "applied": False}]
    assert data["editable"] == [str(tmp_path)]
    assert f"pip installs {tmp_path} in editable mode" in res.stderr
    text = ok(cnt("o", "-f", str(env), "--dry-run", cwd=tmp_path)).stdout
    assert f"-r {tmp_path}/condaenv.*.requirements.txt (in {tmp_path})" in text
    assert "selector  sel(osx): numpy (skipped)" in text


# --------------------------------------------------------------------------------------------
# Installing (root: the builtin runtime)


@pytest.mark.root
def test_environment_yml_pip_section_installs_every_form(world: World, tmp_path: Path) -> None:
    project = tmp_path / "project"
    wheels.wheel(project / "wheels", "alpha", "1.0")
    wheels.wheel(project / "wheels", "beta", "2.0")
    delta = wheels.wheel(tmp_path / "elsewhere", "delta", "3.0")
    wheels.wheel(project / "wheels", "epsilon", "1.0")
    wheels.project(project, "gamma")
    write(project / "requirements.txt", "./wheels/beta-2.0-py3-none-any.whl  # a local wheel\n")
    env = write(
        project / "environment.yml",
        f"""\
        name: demo
        channels: [{world.url}]
        dependencies:
          - sel(linux): cnt-hello
          - sel(osx): numpy
          - pip:
            - --extra-index-url https://example.invalid/simple
            - --find-links ./wheels
            - alpha==1.0
            - -r requirements.txt
            - delta @ {delta.as_uri()}
            - -e .
            - "epsilon; platform_system == 'Windows'"
        """,
    )
    before = sorted(p.name for p in project.iterdir())
    image = tmp_path / "env.img"
    res = ok(cnt("o", str(image), "-s", "256M", "--sparse", "-f", str(env), cwd=tmp_path))
    assert f"pip installs {project} in editable mode" in res.stderr
    assert debugfs_cat(image, "upper/ext3/env/share/numpy/VERSION") is None, "sel(osx)"
    hello = ok(cnt("exec", "-o", str(image), "cnt-hello", cwd=tmp_path))
    assert hello.stdout == "hello from cnt-hello 1.0\n", "sel(linux)"
    for name, version in (("alpha", "1.0"), ("beta", "2.0"), ("delta", "3.0")):
        assert debugfs_cat(image, f"{SITE}/{name}/__init__.py") == f'VERSION = "{version}"\n'
    assert debugfs_cat(image, f"{SITE}/epsilon/__init__.py") is None, "the marker says Windows"
    # `-e .`: setuptools' editable finder in the image maps the package to the host directory.
    finder = debugfs_cat(image, f"{SITE}/__editable___gamma_0_1_finder.py")
    assert finder is not None and f"{{'gamma': '{project / 'gamma'}'}}" in finder
    # The requirements file was written beside environment.yml and is gone again.
    after = {p.name for p in project.iterdir()}
    assert not [n for n in after if n.startswith("condaenv.")], after
    assert set(before) <= after


@pytest.mark.root
def test_conda_lock_file_is_installed_by_micromamba_as_locked(world: World, tmp_path: Path) -> None:
    # A conda-lock.yml next to its environment.yml, as `conda-lock lock` leaves it.
    wheel = wheels.wheel(tmp_path / "dist", "alpha", "1.0")
    lock = write(tmp_path / "conda-lock.yml", lock_text(world.channel, pip_wheel=wheel))
    image = tmp_path / "env.img"
    ok(cnt("o", str(image), "-s", "256M", "--sparse", "-f", str(lock), cwd=tmp_path))
    app = ok(cnt("exec", "-o", str(image), "cnt-app", cwd=tmp_path))
    assert app.stdout == "cnt-app using cnt-lib 1.0\n"
    assert debugfs_cat(image, "upper/ext3/env/share/cnt-hello") is None, "category dev"
    assert debugfs_cat(image, f"{SITE}/alpha/__init__.py") == 'VERSION = "1.0"\n', "pip entry"
    assert world.url in (debugfs_cat(image, "upper/ext3/env/.condarc") or "")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("mambaf")]
    # A package whose bytes do not match the lock: micromamba refuses, nothing is left.
    bad = lock.read_text().replace(wheels.sha256(wheel), "0" * 64, 0)
    first_sha = bad.split("sha256: ", 1)[1].split("\n", 1)[0]
    bad = bad.replace(first_sha, "f" * 64, 1)
    tampered = write(tmp_path / "t" / "conda-lock.yml", bad)
    res = cnt("o", str(tmp_path / "t.img"), "-s", "256M", "--sparse", "-f", str(tampered))
    assert res.returncode == 1 and "SHA256 sum doesn't match" in res.stderr + res.stdout
    assert not (tmp_path / "t.img").exists()
