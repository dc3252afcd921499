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
    # fish too, set up later by hand: the uninstall takes its conf.d snippet away as well
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "PYTHON"))}
    fish = subprocess.run(
        [str(bindir / "condatainer"), "init", "fish"],
        env={**env, "HOME": str(home)}, capture_output=True, text=True,
    )  # fmt: skip
    assert fish.returncode == 0, fish.stderr
    snippet = home / ".config" / "fish" / "conf.d" / "condatainer.fish"
    assert "condatainer" in snippet.read_text()

    gone = install(
        tmp_path, "--uninstall", "--yes", "--prefix", str(venv), "--bin-dir", str(bindir)
    )
    assert gone.returncode == 0, gone.stdout + gone.stderr
    assert not venv.exists()
    assert list(bindir.iterdir()) == []
    assert (home / ".bashrc").read_text() == "# mine\n", "uninstall restores the rc exactly"
    assert not snippet.exists() or "condatainer" not in snippet.read_text()


def test_without_a_terminal_it_needs_yes(tmp_path: Path) -> None:
    (tmp_path / "home").mkdir(exist_ok=True)
    res = install(tmp_path, "--prefix", str(tmp_path / "venv"), "--bin-dir", str(tmp_path / "b"))
    assert res.returncode != 0
    assert "--yes" in res.stdout + res.stderr
    assert not (tmp_path / "venv").exists()


def test_progress_on_a_terminal_man_page_and_uninstall_purge(tmp_path: Path) -> None:
    """On a terminal the pip step shows a line at once; the man page lands where man finds it
    (bin-dir on PATH); `--uninstall --purge` lists condatainer's own files with sizes, then
    removes them, the man page and the install -- and leaves the user's image and config."""
    import pexpect

    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    venv, bindir = tmp_path / "venv", tmp_path / "bin"
    src = copy_checkout(tmp_path / "src")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "PYTHON"))}
    env.update(HOME=str(home), SHELL="/bin/bash", TERM="xterm")
    env["PATH"] = f"{bindir}:/usr/bin:/bin:/usr/sbin:/sbin"
    child = pexpect.spawn(
        "sh",
        [
            str(src / "install.sh"),
            "--yes",
            "--no-rc",
            "--prefix",
            str(venv),
            "--bin-dir",
            str(bindir),
        ],
        env=env,
        encoding="utf-8",
        timeout=600,  # a hang guard for pip, not a pass/fail criterion
    )
    child.expect("pip: installing condatainer and its dependencies")  # at once, on the terminal
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    assert "\r\x1b[K" in str(child.before)  # the line is taken away before what follows

    page = tmp_path / "share" / "man" / "man1" / "condatainer.1"
    assert page.read_text().startswith(".TH CONDATAINER 1 ")
    assert page.with_name("cnt.1").read_text() == ".so man1/condatainer.1\n"
    for name in ("condatainer", "cnt"):  # man follows cnt's .so to the page
        found = subprocess.run(["man", "-w", name], env=env, capture_output=True, text=True)
        assert found.stdout.strip() == str(page), found.stderr

    # condatainer's own files (an image made and allowed, a fetched micromamba, a base image)
    # next to the user's own (that image, the config file).
    project = tmp_path / "proj"
    project.mkdir()
    made = subprocess.run(
        [str(bindir / "condatainer"), "o", "env.img", "-s", "64M"],
        cwd=project, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    data = home / ".local" / "share" / "condatainer"
    (data / "micromamba").mkdir(parents=True)
    (data / "micromamba" / "micromamba").write_bytes(os.urandom(2 * 2**20))
    (data / "images").mkdir()
    (data / "images" / "base-0123.sif").write_bytes(os.urandom(2**20))
    config = home / ".config" / "condatainer" / "config.yaml"
    config.parent.mkdir(parents=True)
    config.write_text("gpu: off\n")

    gone = install(
        tmp_path, "--uninstall", "--purge", "--yes", "--prefix", str(venv), "--bin-dir", str(bindir)
    )
    assert gone.returncode == 0, gone.stdout + gone.stderr
    listed = gone.stdout
    assert "condatainer's micromamba" in listed and "2M" in listed
    assert "base images it pulled or built (1)" in listed
    assert "the allow list of the cd hook" in listed
    assert "kept: your config file" in listed
    assert not data.exists(), "micromamba, base images, allow list and the data dir are gone"
    assert not (home / ".cache" / "condatainer").exists()
    assert not page.exists() and not page.with_name("cnt.1").exists()
    assert not venv.exists() and list(bindir.iterdir()) == []
    assert (project / "env.img").exists() and config.read_text() == "gpu: off\n"
