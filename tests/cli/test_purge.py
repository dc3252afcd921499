"""What `install.sh --uninstall --purge` removes (purge.py through `condatainer _purge`): the
caches, the fetched micromamba, the pulled base images, the allow list -- listed with sizes
first -- and never a user's images or config file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from condatainer import cli, purge


def fill(path: Path, size: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(os.urandom(size))
    return path


@pytest.fixture
def kept(isolated_env: Path, tmp_path: Path) -> dict[str, Path]:
    """condatainer's own files in the isolated HOME, and a user's things around them."""
    home = isolated_env
    data, cache = home / ".local/share/condatainer", home / ".cache/condatainer"
    fill(cache / "shims" / "abc" / "python", 4096)
    fill(data / "micromamba" / "micromamba", 3 * 2**20)
    fill(data / "images" / "buildpack-deps-0123.sif", 2**20)
    fill(data / "images" / ".fetch.lock")
    fill(data / "allowed" / "f00d", 100)
    fill(data / "hook.bash", 10)
    fill(data / "venv" / "pyvenv.cfg", 10)  # install.sh's: removed by install.sh itself
    return {
        "config": fill(home / ".config/condatainer/config.yaml").parent,
        "user image": fill(tmp_path / "proj" / "env.img", 2**20),
        "stranger": fill(data / "images" / "mine.img", 10),
        "venv": data / "venv",
    }


def test_the_list_says_what_and_how_much(
    kept: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["_purge", "--dry-run"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert any("caches (shims, package listings, container tools)" in x for x in lines)
    assert any(
        x.strip().startswith(("3M", "3.")) and "condatainer's micromamba" in x for x in lines
    )
    assert any("base images it pulled or built (1)" in x for x in lines)
    assert any("the allow list of the cd hook" in x for x in lines)
    assert f"kept: {kept['stranger']}: not a base image condatainer made; left alone" in out
    assert "kept: your config file" in out
    assert all(path.exists() for path in kept.values()), "a dry run removes nothing"


def test_purge_removes_condatainers_own_and_nothing_else(
    kept: dict[str, Path], isolated_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["_purge"]) == 0
    data = isolated_env / ".local/share/condatainer"
    assert not (isolated_env / ".cache/condatainer").exists()
    assert not (data / "micromamba").exists()
    assert not (data / "allowed").exists() and not (data / "hook.bash").exists()
    assert sorted(p.name for p in (data / "images").iterdir()) == ["mine.img"]
    assert all(path.exists() for path in kept.values())
    said = capsys.readouterr().out
    assert "removed condatainer's micromamba" in said


def test_fetch_dir_is_honoured(
    kept: dict[str, Path], isolated_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = tmp_path / "project-space"
    fill(shared / "images" / "site-1.sif", 2**20)
    fill(shared / "micromamba" / "micromamba", 10)
    monkeypatch.setenv("CNT_FETCH_DIR", str(shared))
    found = purge.survey()
    paths = {p for item in found.items for p in item.paths}
    assert shared / "images" / "site-1.sif" in paths and shared / "micromamba" in paths
    data = isolated_env / ".local/share/condatainer"
    assert data / "micromamba" in paths  # fetched before fetch_dir was set
    purge.remove(found)
    assert not shared.joinpath("images").exists() and not shared.joinpath("micromamba").exists()
    assert shared.exists()  # the directory itself is the user's
    assert not (data / "micromamba").exists()


def test_nothing_to_purge(isolated_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["_purge", "--dry-run"]) == 0
    assert "nothing: condatainer keeps no caches" in capsys.readouterr().out
