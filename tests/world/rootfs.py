"""The test world's base image: a small root filesystem assembled from host files, as a real
SIF (mksquashfs + siftool), with no network at test time.

Why not debootstrap: it needs a Debian mirror (or a cache of one), which these machines do not
have offline.  So the tree is put together from the host itself:

- a Debian-like layout (the host's merged-/usr links `bin -> usr/bin` etc. are copied as links),
  /proc, /sys, /dev, /tmp, /var/tmp, /root, /home and /run as empty mount points;
- a few programs the tests call (sh, bash, cat, id, ls, pwd, env, touch, stat, ...);
- the test interpreter and what the micromamba stand-in needs to run on it: `sys.executable`
  with its chain of links (the venv's `bin/python` -> /usr/bin/python3.11), `pyvenv.cfg`, the
  standard library, and the site-packages of py-rattler and PyYAML at the same absolute paths,
  so a script whose `#!` names the test interpreter (tests/programs.py) runs inside it;
- every shared library those ELF files load, found with `ldd` (and the dynamic loader);
- its own `/etc/os-release` (ID=cnt-testbase), `/etc/passwd` and `/etc/group` holding root and
  nobody only (the runtime must add the user), and a marker file `/cnt-test-base`.

What is absent on purpose: the host's /etc (no passwd entry of any other user, no resolv.conf,
no hosts), its home directories and everything else the host has.  `build_base(dest)` returns
the SIF; `squashfs(dest)` the bare squashfs; `assemble(dest)` the directory (a sandbox).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterable
from pathlib import Path

MARKER = "/cnt-test-base"
OS_RELEASE = 'PRETTY_NAME="condatainer test base"\nNAME="cnt-testbase"\nID=cnt-testbase\n'
PROGRAMS = (
    "sh", "bash", "cat", "id", "ls", "pwd", "env", "touch", "stat", "mkdir", "rm", "head",
    "readlink", "whoami", "grep", "true",
)  # fmt: skip
PYTHON_MODULES = ("rattler", "yaml", "_yaml")
# Parts of the standard library nothing here imports (tests, GUI, installers): a smaller base.
STDLIB_SKIP = (
    "test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "site-packages",
    "dist-packages",
)  # fmt: skip
PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n"
GROUP = "root:x:0:\nnogroup:x:65534:\n"
_ELF = b"\x7fELF"
_LDD_PATH = re.compile(r"(?:=>\s*)?(/\S+)\s+\(0x")


class Tree:
    """A root filesystem being assembled at `root` from host paths kept at the same place."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.done: set[str] = set()
        self.elves: list[str] = []

    def add(self, host_path: str) -> None:
        """Copy `host_path` into the tree at the same path, with every symlink on the way
        recreated as a link (and its target added too); directories are copied whole."""
        path = os.path.normpath(host_path)
        if path in self.done or path == "/":
            return
        self.done.add(path)
        parent = os.path.dirname(path)
        self.add(parent)
        real_parent = os.path.realpath(parent)
        host = os.path.join(real_parent, os.path.basename(path))
        dest = self.root / os.path.relpath(os.path.join(real_parent, os.path.basename(path)), "/")
        if os.path.islink(host):
            link = os.readlink(host)
            if not os.path.lexists(dest):
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.symlink(link, dest)
            self.add(os.path.join(real_parent, link))
        elif os.path.isdir(host):
            if not dest.exists():
                dest.mkdir(parents=True)
                shutil.copymode(host, dest)
        elif os.path.isfile(host) and not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(host, dest)
            with open(host, "rb") as f:
                if f.read(4) == _ELF:
                    self.elves.append(host)

    def add_tree(self, host_dir: str, skip: Iterable[str] = ()) -> None:
        """Copy a directory with everything in it (links kept as links) but the top-level
        entries named in `skip`."""
        self.add(host_dir)
        real = os.path.realpath(host_dir)
        for top, dirs, files in os.walk(real):
            if top == real:
                dirs[:] = [d for d in dirs if d not in skip]
            for name in (*dirs, *files):
                self.add(os.path.join(top, name))

    def add_libraries(self) -> None:
        """Add every shared library the ELF files in the tree load (ldd), until none is new."""
        seen: set[str] = set()
        while pending := [e for e in self.elves if e not in seen]:
            for elf in pending:
                seen.add(elf)
                for lib in ldd(elf):
                    self.add(lib)

    def write(self, path: str, text: str, mode: int = 0o644) -> None:
        dest = self.root / path.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(text)
        dest.chmod(mode)


def ldd(elf: str) -> list[str]:
    """The libraries `elf` loads, with the dynamic loader (empty for a static file)."""
    res = subprocess.run(["ldd", elf], capture_output=True, text=True, check=False)
    return _LDD_PATH.findall(res.stdout) if res.returncode == 0 else []


def module_paths(names: Iterable[str]) -> list[str]:
    """Where the test interpreter finds each module: its package directory or its file."""
    found = []
    for name in names:
        spec = importlib.util.find_spec(name)
        if spec is None:
            raise RuntimeError(f"the test interpreter has no module {name!r}")
        if spec.submodule_search_locations:
            found += list(spec.submodule_search_locations)
        elif spec.origin:
            found.append(spec.origin)
    return found


def assemble(dest: Path, *, python: str | None = sys.executable) -> Path:
    """Build the root filesystem tree at `dest` (created; must not exist); `python=None`
    leaves the interpreter out (a small base for the runtime's own tests)."""
    dest.mkdir(parents=True)
    tree = Tree(dest)
    for name in ("bin", "sbin", "lib", "lib64"):
        if os.path.islink(f"/{name}"):  # the host's merged /usr: keep its shape
            tree.add(f"/{name}")
    for program in PROGRAMS:
        host = shutil.which(program)
        if host is None:
            raise RuntimeError(f"the host has no {program!r} to put into the test base")
        tree.add(host)
        tree.add(f"/usr/bin/{program}" if os.path.exists(f"/usr/bin/{program}") else host)
    if python is not None:
        add_python(tree, python)
    tree.add_libraries()
    for name in ("proc", "sys", "dev", "root", "home", "run", "etc"):
        (dest / name).mkdir(exist_ok=True)
    for name in ("tmp", "var/tmp"):
        (dest / name).mkdir(parents=True, exist_ok=True)
        (dest / name).chmod(0o1777)
    tree.write("/etc/os-release", OS_RELEASE)
    tree.write("/etc/passwd", PASSWD)
    tree.write("/etc/group", GROUP)
    tree.write(MARKER, "this is the condatainer test base\n")
    return dest


def add_python(tree: Tree, python: str) -> None:
    """The interpreter `python` (this one's installation), its standard library, its venv's
    pyvenv.cfg and the packages the micromamba stand-in imports."""
    tree.add(python)
    prefix = sys.prefix
    if os.path.exists(os.path.join(prefix, "pyvenv.cfg")):
        tree.add(os.path.join(prefix, "pyvenv.cfg"))
        if os.path.islink(os.path.join(prefix, "lib64")):
            tree.add(os.path.join(prefix, "lib64"))
    stdlib = os.path.dirname(os.__file__)
    tree.add_tree(stdlib, skip=STDLIB_SKIP)
    dynload = sysconfig.get_config_var("DESTSHARED")
    if dynload and not os.path.realpath(dynload).startswith(os.path.realpath(stdlib) + "/"):
        tree.add_tree(dynload)
    for path in module_paths(PYTHON_MODULES):
        if os.path.isdir(path):
            tree.add_tree(path)
        else:
            tree.add(path)


def squashfs(dest: Path, *, tree: Path | None = None) -> Path:
    """The base as a bare squashfs file at `dest` (assembled next to it unless `tree`)."""
    tree = tree or assemble(dest.with_name(dest.name + ".tree"))
    subprocess.run(
        # lz4: fast to build and to read; owners as in the tree (root, since tests run as root)
        ["mksquashfs", str(tree), str(dest), "-noappend", "-quiet", "-no-progress", "-comp", "lz4"],
        check=True,
        capture_output=True,
    )
    return dest


def sif_from_squashfs(fs: Path, dest: Path) -> Path:
    """A SIF holding the squashfs `fs` as its primary system partition (what Apptainer writes
    for a pulled or built image, minus the definition and labels)."""
    subprocess.run(["siftool", "new", str(dest)], check=True, capture_output=True)
    subprocess.run(
        [
            "siftool", "add", str(dest), str(fs), "--datatype", "4", "--parttype", "2",
            "--partfs", "1", "--partarch", SIF_ARCH[os.uname().machine], "--groupid", "1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return dest


# siftool's --partarch numbers for `uname -m`.
SIF_ARCH = {"x86_64": "2", "aarch64": "4", "ppc64le": "6", "s390x": "11", "riscv64": "12"}


def build_base(dest_dir: Path, *, python: str | None = sys.executable) -> Path:
    """The test base as a SIF in `dest_dir`: `base.sif` (next to base.sqfs and base.tree)."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    tree = assemble(dest_dir / "base.tree", python=python)
    fs = squashfs(dest_dir / "base.sqfs", tree=tree)
    return sif_from_squashfs(fs, dest_dir / "base.sif")
