"""Tiny Python distributions for the pip tests, written with the standard library.

`wheel(dest, name, version)` writes a pure-Python wheel (a package `name` whose `VERSION` is
`version`) the way the wheel format (PEP 427) lays it out, RECORD hashes included, so real pip
installs it; `project(dest, name)` writes a source project (pyproject.toml, setuptools backend)
that pip can install in editable mode from its directory.
"""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return f"sha256={digest.decode()}"


def wheel(dest: Path, name: str, version: str = "1.0") -> Path:
    """Write `<name>-<version>-py3-none-any.whl` into `dest`; its path."""
    dest.mkdir(parents=True, exist_ok=True)
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f'VERSION = "{version}"\n'.encode(),
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: condatainer-tests\n"
        b"Root-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{path},{_record_hash(data)},{len(data)}\n" for path, data in files.items())
    files[f"{dist}/RECORD"] = (record + f"{dist}/RECORD,,\n").encode()
    path = dest / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for member, data in files.items():
            info = zipfile.ZipInfo(member, date_time=(2023, 11, 14, 0, 0, 0))
            archive.writestr(info, data)
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def project(dest: Path, name: str, version: str = "0.1") -> Path:
    """Write a setuptools project `dest` (package `name`) for `pip install -e`; `dest`."""
    (dest / name).mkdir(parents=True, exist_ok=True)
    (dest / name / "__init__.py").write_text(f'VERSION = "{version}"\n')
    (dest / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
        f'[project]\nname = "{name}"\nversion = "{version}"\n'
        f'[tool.setuptools]\npackages = ["{name}"]\n'
    )
    return dest
