"""Take `bin/micromamba` out of a downloaded conda package, and nothing else.

Two archive formats exist: `.conda` (a zip holding `metadata.json`, `info-*.tar.zst` and
`pkg-*.tar.zst`; the files are in the `pkg-` tarball) and `.tar.bz2` (one tarball, files and
`info/` together).  Only the one member is read, by name: it must be a regular file (a link or
device is refused), and nothing is ever extracted by the archive's own paths.  The zstd tarball
is decompressed with the `zstd` program into the caller's private work directory.
"""

from __future__ import annotations

import shutil
import tarfile
import zipfile
from pathlib import Path

from condatainer.micromamba.channel import decompress_zstd

MEMBER = "bin/micromamba"


class PackageError(Exception):
    """The archive is not a conda package holding bin/micromamba; `str()` says why."""


def extract(archive: Path, filename: str, out: Path, work: Path) -> None:
    """Write the package's bin/micromamba to the new file `out` (mode 0755).

    `filename` is the package's file name (its format); `work` a private directory.
    """
    if filename.endswith(".conda"):
        tar_path = _pkg_tarball(archive, filename, work)
        try:
            _from_tar(tar_path, "r:", filename, out)
        finally:
            tar_path.unlink(missing_ok=True)
    elif filename.endswith(".tar.bz2"):
        _from_tar(archive, "r:bz2", filename, out)
    else:
        raise PackageError(f"{filename}: not a conda package (.conda or .tar.bz2)")


def _pkg_tarball(archive: Path, filename: str, work: Path) -> Path:
    """The decompressed `pkg-*.tar` of a `.conda` file, in `work`."""
    try:
        with zipfile.ZipFile(archive) as zf:
            names = [n for n in zf.namelist() if n.startswith("pkg-") and n.endswith(".tar.zst")]
            if len(names) != 1:
                raise PackageError(f"{filename}: no pkg-*.tar.zst inside (not a .conda package)")
            packed = work / "pkg.tar.zst"
            with zf.open(names[0]) as src, open(packed, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
        raise PackageError(f"{filename}: not a valid .conda (zip) file ({exc})") from None
    tar_path = work / "pkg.tar"
    try:
        decompress_zstd(packed, tar_path)
    finally:
        packed.unlink(missing_ok=True)
    return tar_path


def _from_tar(path: Path, mode: str, filename: str, out: Path) -> None:
    try:
        with tarfile.open(path, mode) as tar:  # type: ignore[call-overload]
            try:
                member = tar.getmember(MEMBER)
            except KeyError:
                raise PackageError(f"{filename}: it has no {MEMBER}") from None
            if not member.isfile():
                raise PackageError(f"{filename}: its {MEMBER} is not a regular file")
            src = tar.extractfile(member)
            if src is None:
                raise PackageError(f"{filename}: cannot read its {MEMBER}")
            with src, open(out, "xb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
                out.chmod(0o755)
    except (tarfile.TarError, EOFError) as exc:
        raise PackageError(f"{filename}: damaged archive ({exc})") from None
    except OSError as exc:
        if exc.errno is not None:
            raise  # our own write (a full disk): the caller names it
        raise PackageError(f"{filename}: damaged archive ({exc})") from None  # bz2's data errors
