"""A tiny local conda channel for the test world.

No conda channel is reachable from the machines the tests run on, so the tests build their own:
a handful of noarch ``.tar.bz2`` packages written with the standard library, indexed with
py-rattler's ``index_fs`` (the conda ecosystem's own indexer). Use it as ``f"file://{path}"``.

Archives are byte-for-byte reproducible (fixed mtimes, owners and order), so building twice into
the same directory rewrites nothing, keeps sha256 sums stable across builds, and costs a few ms.
"""

from __future__ import annotations

import bz2
import hashlib
import io
import json
import shlex
import subprocess
import sys
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

# Text files carrying this string are relocated at install time: the installer replaces it with
# the real prefix (conda's ``file_mode: text`` + ``prefix_placeholder`` in info/paths.json).
PREFIX_PLACEHOLDER = "/opt/anaconda1anaconda2anaconda3"

# py-rattler's runtime threads can crash the interpreter at exit (SIGSEGV/SIGABRT, a few runs
# in a hundred), which would fail a passing pytest session: index in a child that leaves
# with os._exit.
_INDEX_SCRIPT = """\
import asyncio, os, sys
from rattler.index import index_fs
asyncio.run(index_fs(sys.argv[1], write_zst=False, write_shards=False))
os._exit(0)
"""

# Fixed build time (2023-11-14), in seconds for tar members and milliseconds for index.json.
_EPOCH = 1_700_000_000


@dataclass(frozen=True)
class FakePackage:
    """One noarch package: its metadata and the files it installs (path -> text)."""

    name: str
    version: str
    files: dict[str, str]
    depends: tuple[str, ...] = ()
    build: str = "0"
    # Paths (keys of ``files``) whose text contains PREFIX_PLACEHOLDER and must be relocated.
    relocate: frozenset[str] = field(default_factory=frozenset)

    @property
    def filename(self) -> str:
        return f"{self.name}-{self.version}-{self.build}.tar.bz2"


_HELLO = """\
#!/bin/sh
echo "hello from cnt-hello 1.0"
for arg in "$@"; do
    printf '%s\\n' "$arg"
done
"""

_APP = f"""\
#!/bin/sh
echo "cnt-app using cnt-lib $(cat '{PREFIX_PLACEHOLDER}/share/cnt-lib/VERSION')"
"""

# A stand-in interpreter whose `python -m pip install ...` is the real pip of the interpreter the
# tests run under, installing into this env's prefix: real requirement files, `-e`, `-r`,
# `--find-links`, wheels by path or `name @ file://` URL, hash checks.  Offline by design
# (--no-index: test requirements name local files; --no-build-isolation: an editable project is
# built with that interpreter's setuptools), and blind to the packages of the test
# interpreter's own environment (--ignore-installed).
_PYTHON = f"""\
#!/bin/sh
if [ "$1 $2 $3" = "-m pip install" ]; then
    shift 3
    exec {shlex.quote(sys.executable)} -m pip install --prefix '{PREFIX_PLACEHOLDER}' \\
        --no-index --no-build-isolation --ignore-installed --root-user-action=ignore \\
        --disable-pip-version-check --no-warn-script-location "$@"
fi
echo "cnt test python: only '-m pip install' is supported" >&2
exit 2
"""

PACKAGES: tuple[FakePackage, ...] = (
    FakePackage("python", "3.11.0", {"bin/python": _PYTHON}, relocate=frozenset({"bin/python"})),
    FakePackage("pip", "23.0", {"share/pip/VERSION": "23.0\n"}, depends=("python",)),
    FakePackage("cnt-hello", "1.0", {"bin/cnt-hello": _HELLO}),
    FakePackage("cnt-lib", "1.0", {"share/cnt-lib/VERSION": "1.0\n"}),
    FakePackage("cnt-lib", "2.0", {"share/cnt-lib/VERSION": "2.0\n"}),
    FakePackage(
        "cnt-app",
        "1.0",
        {"bin/cnt-app": _APP},
        depends=("cnt-lib",),
        relocate=frozenset({"bin/cnt-app"}),
    ),
    FakePackage(
        "cnt-activate",
        "1.0",
        {"etc/conda/activate.d/cnt-activate.sh": "export CNT_ACTIVATED=yes\n"},
    ),
    FakePackage("numpy", "1.21.0", {"share/numpy/VERSION": "1.21.0\n"}),
    FakePackage("numpy", "1.26.0", {"share/numpy/VERSION": "1.26.0\n"}),
    FakePackage("numba", "0.1", {"share/numba/VERSION": "0.1\n"}, depends=("numpy",)),
)


def build_channel(dest: Path) -> Path:
    """Build (or refresh) the test channel in ``dest``; return its absolute path."""
    dest = Path(dest).resolve()
    noarch = dest / "noarch"
    noarch.mkdir(parents=True, exist_ok=True)
    # A channel lists the platform subdirs it serves; an empty linux-64 is what clients expect
    # next to noarch (they fetch both).
    (dest / "linux-64").mkdir(exist_ok=True)
    for package in PACKAGES:
        _write_if_changed(noarch / package.filename, package_archive(package))
    subprocess.run([sys.executable, "-c", _INDEX_SCRIPT, str(dest)], check=True)
    return dest


def package_archive(package: FakePackage) -> bytes:
    """The ``.tar.bz2`` bytes of one package (deterministic)."""
    paths = []
    members: dict[str, tuple[bytes, int]] = {}
    for path, text in sorted(package.files.items()):
        data = text.encode()
        mode = 0o755 if path.startswith("bin/") else 0o644
        members[path] = (data, mode)
        entry: dict[str, object] = {
            "_path": path,
            "path_type": "hardlink",
            "sha256": hashlib.sha256(data).hexdigest(),
            "size_in_bytes": len(data),
        }
        if path in package.relocate:
            entry["file_mode"] = "text"
            entry["prefix_placeholder"] = PREFIX_PLACEHOLDER
        paths.append(entry)
    index = {
        "name": package.name,
        "version": package.version,
        "build": package.build,
        "build_number": int(package.build),
        "depends": list(package.depends),
        "license": "MIT",
        "noarch": "generic",
        "subdir": "noarch",
        "timestamp": _EPOCH * 1000,
    }
    members["info/index.json"] = (_json(index), 0o644)
    members["info/paths.json"] = (_json({"paths": paths, "paths_version": 1}), 0o644)
    members["info/files"] = ("".join(f"{p}\n" for p in sorted(package.files)).encode(), 0o644)

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, (data, mode) in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, _EPOCH
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(data))
    return bz2.compress(raw.getvalue())


def _json(value: object) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True) + "\n").encode()


def _write_if_changed(path: Path, data: bytes) -> None:
    """Leave an identical file alone so repeated builds keep mtimes (and caches) valid."""
    if path.exists() and path.read_bytes() == data:
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
