"""install.sh for real: a venv from this checkout (pip reaches PyPI for the dependencies),
links in a bin dir, the installed command works, a second run changes nothing but the
install, the rc block is added unless --no-rc, and --uninstall takes away exactly what it made."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.support import copy_checkout

pytestmark = pytest.mark.slow


def install(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "PYTHON"))}
    env["HOME"] = str(tmp_path / "home")
    env["SHELL"] = "/bin/bash"  # the user's login shell, which init sets up; CI may not set it
    # A copy of the checkout, so the test never writes build/ or *.egg-info into the real one.
    src = copy_checkout(tmp_path / "src")
    return subprocess.run(
        ["sh", str(src / "install.sh"), *args],
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=600,
        check=False,
    )


def test_install_reinstall_use_uninstall(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)  # the isolation fixture may have made it
    (home / ".bashrc").write_text("# mine\n")
    venv, bindir = tmp_path / "venv", tmp_path / "bin"
    res = install(tmp_path, "--yes", "--no-rc", "--prefix", str(venv), "--bin-dir", str(bindir))
    assert res.returncode == 0, res.stdout + res.stderr
    for name in ("condatainer", "cnt"):
        assert (bindir / name).is_symlink()
        out = subprocess.run(
            [str(bindir / name), "--version"], capture_output=True, text=True, check=True
        )
        assert out.stdout.startswith("condatainer ")
    assert (home / ".bashrc").read_text() == "# mine\n", "--no-rc leaves the rc alone"

    again = install(tmp_path, "--yes", "--prefix", str(venv), "--bin-dir", str(bindir), "--no-rc")
    assert again.returncode == 0, again.stdout + again.stderr
    assert sorted(p.name for p in bindir.iterdir()) == ["cnt", "condatainer"]

    with_rc = install(tmp_path, "--yes", "--prefix", str(venv), "--bin-dir", str(bindir))
    assert with_rc.returncode == 0, with_rc.stdout + with_rc.stderr
    assert "# >>> condatainer >>>" in (home / ".bashrc").read_text()

    gone = install(
        tmp_path, "--uninstall", "--yes", "--prefix", str(venv), "--bin-dir", str(bindir)
    )
    assert gone.returncode == 0, gone.stdout + gone.stderr
    assert not venv.exists()
    assert list(bindir.iterdir()) == []
    assert (home / ".bashrc").read_text() == "# mine\n", "uninstall restores the rc exactly"


def test_without_a_terminal_it_needs_yes(tmp_path: Path) -> None:
    (tmp_path / "home").mkdir(exist_ok=True)
    res = install(tmp_path, "--prefix", str(tmp_path / "venv"), "--bin-dir", str(tmp_path / "b"))
    assert res.returncode != 0
    assert "--yes" in res.stdout + res.stderr
    assert not (tmp_path / "venv").exists()
