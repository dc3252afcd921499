"""A tiny local conda channel for the test world.

No conda channel is reachable from the machines the tests run on, so the tests build their own:
a handful of noarch ``.tar.bz2`` packages written with the standard library, plus ``micromamba``
for linux-64, indexed with py-rattler's ``index_fs`` (the conda ecosystem's own indexer), with
a CEP 16 sharded index (``repodata_shards.msgpack.zst`` and ``shards/``) unless
``shards=False``. Use it as ``f"file://{path}"``.

The ``micromamba`` packages are real conda packages (``info/index.json``, ``info/paths.json``,
sha256 in the index) whose ``bin/micromamba`` is the stand-in (tests/world/micromamba) with its
``#!`` line naming the test interpreter and its version line rewritten to the package's: so
condatainer's bootstrap fetches, checks and extracts it like the real one, and the extracted
copy runs wherever it lands. Versions ``MICROMAMBA_VERSIONS``: the newest of series 2 as a
``.conda`` (zip + zstd tarballs, built with the ``zstd`` program), the others as ``.tar.bz2``.

Archives are byte-for-byte reproducible (fixed mtimes, owners and order), so building twice into
the same directory rewrites nothing, keeps sha256 sums stable across builds, and costs a few ms.

``python -m tests.world.channel DIR`` writes the channel for anyone to try condatainer offline
(run it with an interpreter that has py-rattler and PyYAML: the micromamba stand-in runs with it).
"""

from __future__ import annotations

import argparse
import bz2
import hashlib
import io
import json
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import zipfile
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
asyncio.run(index_fs(sys.argv[1], write_zst=False, write_shards=sys.argv[2] == "shards"))
os._exit(0)
"""

STAND_IN = Path(__file__).resolve().with_name("micromamba")
# micromamba versions the channel serves for linux-64: (version, file format).  The newest of
# series 2 is what condatainer fetches by default; 2.0.5 is older (and a .tar.bz2); 1.5.10 is
# of the old series condatainer does not use.
MICROMAMBA_VERSIONS: tuple[tuple[str, str], ...] = (
    ("1.5.10", ".tar.bz2"),
    ("2.0.5", ".tar.bz2"),
    ("2.3.3", ".conda"),
)
MICROMAMBA_NEWEST = "2.3.3"

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
        {
            "etc/conda/activate.d/cnt-activate.sh": "export CNT_ACTIVATED=yes\n",
            "etc/conda/activate.d/cnt-activate.fish": "set -gx CNT_ACTIVATED yes\n",
        },
    ),
    FakePackage("numpy", "1.21.0", {"share/numpy/VERSION": "1.21.0\n"}),
    FakePackage("numpy", "1.26.0", {"share/numpy/VERSION": "1.26.0\n"}),
    FakePackage("numba", "0.1", {"share/numba/VERSION": "0.1\n"}, depends=("numpy",)),
)


def build_channel(
    dest: Path,
    *,
    shards: bool = True,
    python: str = sys.executable,
    micromamba: tuple[tuple[str, str], ...] = MICROMAMBA_VERSIONS,
) -> Path:
    """Build (or refresh) the test channel in ``dest``; return its absolute path.

    ``python``: the interpreter named in the packaged micromamba stand-in's ``#!`` line.
    ``micromamba``: the (version, format) pairs to serve; packages of other versions already
    in ``dest/linux-64`` are removed (a test can add a newer one later and index again).
    """
    dest = Path(dest).resolve()
    noarch = dest / "noarch"
    noarch.mkdir(parents=True, exist_ok=True)
    linux = dest / "linux-64"
    linux.mkdir(exist_ok=True)
    for package in PACKAGES:
        _write_if_changed(noarch / package.filename, package_archive(package))
    wanted = set()
    for version, fmt in micromamba:
        name = f"micromamba-{version}-0{fmt}"
        wanted.add(name)
        _write_if_changed(linux / name, micromamba_archive(version, fmt, python))
    for old in linux.glob("micromamba-*"):
        if old.name not in wanted:
            old.unlink()
    subprocess.run(
        [sys.executable, "-c", _INDEX_SCRIPT, str(dest), "shards" if shards else "plain"],
        check=True,
    )
    if not shards:  # a channel that never had a sharded index
        for subdir in (noarch, linux):
            (subdir / "repodata_shards.msgpack.zst").unlink(missing_ok=True)
            shutil.rmtree(subdir / "shards", ignore_errors=True)
    return dest


def stand_in_text(version: str, python: str) -> bytes:
    """The stand-in as ``bin/micromamba`` of version ``version``, run by ``python``."""
    text = STAND_IN.read_text(encoding="utf-8")
    _, _, rest = text.partition("\n")
    rest, count = re.subn(
        r'^MICROMAMBA_VERSION = "[^"]*"$', f'MICROMAMBA_VERSION = "{version}"', rest, flags=re.M
    )
    assert count == 1, "the stand-in's version line moved"
    return f"#!{python}\n{rest}".encode()


def micromamba_archive(version: str, fmt: str, python: str) -> bytes:
    """A linux-64 ``micromamba`` package (``.conda`` or ``.tar.bz2``), deterministic."""
    data = stand_in_text(version, python)
    index = {
        "arch": "x86_64",
        "build": "0",
        "build_number": 0,
        "depends": [],
        "license": "BSD-3-Clause",
        "name": "micromamba",
        "platform": "linux",
        "subdir": "linux-64",
        "timestamp": _EPOCH * 1000,
        "version": version,
    }
    paths = {
        "paths": [
            {
                "_path": "bin/micromamba",
                "path_type": "hardlink",
                "sha256": hashlib.sha256(data).hexdigest(),
                "size_in_bytes": len(data),
            }
        ],
        "paths_version": 1,
    }
    info = {
        "info/index.json": (_json(index), 0o644),
        "info/paths.json": (_json(paths), 0o644),
        "info/files": (b"bin/micromamba\n", 0o644),
    }
    files = {"bin/micromamba": (data, 0o755)}
    if fmt == ".tar.bz2":
        return bz2.compress(_tar({**files, **info}))
    assert fmt == ".conda", fmt
    stem = f"micromamba-{version}-0"
    members = {
        "metadata.json": json.dumps({"conda_pkg_format_version": 2}).encode(),
        f"info-{stem}.tar.zst": _zstd(_tar(info)),
        f"pkg-{stem}.tar.zst": _zstd(_tar(files)),
    }
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w", zipfile.ZIP_STORED) as zf:
        for name, member in members.items():
            zf.writestr(zipfile.ZipInfo(name, date_time=(2023, 11, 14, 0, 0, 0)), member)
    return raw.getvalue()


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

    return bz2.compress(_tar(members))


def _tar(members: dict[str, tuple[bytes, int]]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, (data, mode) in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, _EPOCH
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


def _zstd(data: bytes) -> bytes:
    return subprocess.run(
        ["zstd", "-q", "-c", "-19"], input=data, capture_output=True, check=True
    ).stdout


def _json(value: object) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True) + "\n").encode()


def _write_if_changed(path: Path, data: bytes) -> None:
    """Leave an identical file alone so repeated builds keep mtimes (and caches) valid."""
    if path.exists() and path.read_bytes() == data:
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.world.channel",
        description="Write condatainer's local test channel (cnt-hello and the rest, and a"
        " micromamba stand-in for linux-64) into DIR, for trying condatainer offline.",
    )
    parser.add_argument("dir", type=Path)
    parser.add_argument("--no-shards", action="store_true", help="repodata.json only")
    args = parser.parse_args(argv)
    if not shutil.which("zstd"):
        parser.error("needs the zstd program (apt-get install zstd)")
    channel = build_channel(args.dir, shards=not args.no_shards)
    url = f"file://{channel}"
    print(f"channel written: {url}")
    print("use it for both the envs and condatainer's own micromamba:")
    print(f"  export CNT_CHANNELS={url} CNT_MICROMAMBA_CHANNEL={url}")
    print(f"(the micromamba stand-in runs with {sys.executable})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
