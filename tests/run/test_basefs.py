"""run.basefs: where a base image's root filesystem lies, checked against real SIF files built
by siftool (Debian's build of sylabs/sif, the library Apptainer itself writes SIFs with) and
real squashfs files from mksquashfs.  The offset we compute must be the one siftool reports,
and unsquashfs must find the filesystem there."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from condatainer.errors import BaseImageError
from condatainer.run import basefs
from tests.world.rootfs import SIF_ARCH


@pytest.fixture
def tools(need: Callable[[str], str]) -> None:
    need("mksquashfs")
    need("siftool")
    need("unsquashfs")


@pytest.fixture
def squash(tmp_path: Path, tools: None) -> Path:
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc" / "os-release").write_text("ID=basefs-test\n")
    fs = tmp_path / "root.sqfs"
    subprocess.run(["mksquashfs", str(tree), str(fs), "-noappend", "-quiet"], check=True)
    return fs


def siftool(*args: str) -> str:
    res = subprocess.run(["siftool", *args], capture_output=True, text=True, check=True)
    return res.stdout


def make_sif(
    path: Path,
    *objects: tuple[Path, list[str]],
) -> Path:
    siftool("new", str(path))
    for obj, flags in objects:
        siftool("add", str(path), str(obj), *flags)
    return path


def partition(parttype: str = "2", fs: str = "1", arch: str | None = None) -> list[str]:
    arch = arch or SIF_ARCH[os.uname().machine]
    return ["--datatype", "4", "--parttype", parttype, "--partfs", fs, "--partarch", arch]


def test_sif_root_is_where_siftool_says(squash: Path, tmp_path: Path) -> None:
    definition = tmp_path / "base.def"
    definition.write_text("Bootstrap: docker\nFrom: debian:12-slim\n")
    sif = make_sif(
        tmp_path / "base.sif",
        (definition, ["--datatype", "1"]),  # a definition file first, as Apptainer writes it
        (squash, [*partition(), "--groupid", "1"]),
    )
    found = basefs.locate(str(sif))
    listing = siftool("list", str(sif))
    start, end = re.search(r"\|(\d+)-(\d+)\s+\|FS \(Squashfs/\*System", listing).groups()  # type: ignore[union-attr]
    assert (found.kind, found.offset, found.offset + found.size) == ("sif", int(start), int(end))
    assert found.arch == basefs.host_arch() and found.path == str(sif)
    # the filesystem is really there: unsquashfs reads it at that offset
    res = subprocess.run(
        ["unsquashfs", "-o", str(found.offset), "-cat", str(sif), "etc/os-release"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert res.stdout == "ID=basefs-test\n"


def test_squashfs_file_and_directory(squash: Path, tmp_path: Path) -> None:
    assert basefs.locate(str(squash)) == basefs.RootFs(
        str(squash), "squashfs", 0, squash.stat().st_size
    )
    link = tmp_path / "link.sqfs"
    link.symlink_to(squash)
    assert basefs.locate(str(link)).path == str(squash)  # symlinks resolved
    assert basefs.locate(str(tmp_path)) == basefs.RootFs(str(tmp_path), "directory")


def test_the_primary_partition_is_chosen(squash: Path, tmp_path: Path) -> None:
    """A plain system partition (an extra one) is not the root; the primary one is."""
    sif = make_sif(
        tmp_path / "two.sif", (squash, partition(parttype="1")), (squash, partition(parttype="2"))
    )
    found = basefs.locate(str(sif))
    first = re.findall(r"\|(\d+)-\d+\s+\|FS", siftool("list", str(sif)))
    assert found.offset == int(first[1]) != int(first[0])


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (partition(parttype="1"), "no primary system partition"),
        (partition(fs="2"), "root filesystem is ext3, not squashfs"),
        (partition(arch="11" if os.uname().machine != "s390x" else "2"), "built for"),
    ],
)
def test_unusable_sif_files_are_refused_in_words(
    squash: Path, tmp_path: Path, flags: list[str], message: str
) -> None:
    sif = make_sif(tmp_path / "bad.sif", (squash, flags))
    with pytest.raises(BaseImageError, match=message) as err:
        basefs.locate(str(sif))
    assert str(sif) in err.value.message


def test_truncated_and_foreign_files_are_refused(squash: Path, tmp_path: Path) -> None:
    sif = make_sif(tmp_path / "base.sif", (squash, partition()))
    data = sif.read_bytes()
    cut = tmp_path / "cut.sif"
    cut.write_bytes(data[: basefs.locate(str(sif)).offset + 100])
    with pytest.raises(BaseImageError, match="truncated SIF file"):
        basefs.locate(str(cut))
    header_only = tmp_path / "header.sif"
    header_only.write_bytes(data[:200])
    with pytest.raises(BaseImageError, match="truncated SIF file"):
        basefs.locate(str(header_only))
    # the descriptor points at bytes that are not squashfs
    offset = basefs.locate(str(sif)).offset
    broken = tmp_path / "broken.sif"
    broken.write_bytes(data[:offset] + b"\0" * 4 + data[offset + 4 :])
    with pytest.raises(BaseImageError, match=f"no squashfs filesystem at offset {offset}"):
        basefs.locate(str(broken))
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    with pytest.raises(BaseImageError, match="neither a SIF file nor a squashfs"):
        basefs.locate(str(text))
    with pytest.raises(BaseImageError, match="no such file or directory") as err:
        basefs.locate(str(tmp_path / "missing.sif"))
    assert err.value.hint is not None and "condatainer base info" in err.value.hint


def test_base_info_lists_the_shells_e_can_start(
    tmp_path: Path, tools: None, need: Callable[[str], str]
) -> None:
    """bash, zsh and fish, found through the base's own links (`/bin` -> `usr/bin`), in a
    sandbox directory and in a squashfs file alike; the builtin runtime's base is the host."""
    from condatainer.run import baseimage

    tree = tmp_path / "tree"
    (tree / "usr" / "bin").mkdir(parents=True)
    (tree / "bin").symlink_to("usr/bin")
    (tree / "usr" / "bin" / "bash").write_text("")
    (tree / "usr" / "local" / "bin").mkdir(parents=True)
    (tree / "usr" / "local" / "bin" / "fish").symlink_to("/bin/bash")  # a link inside the base
    fs = tmp_path / "root.sqfs"
    subprocess.run(["mksquashfs", str(tree), str(fs), "-noappend", "-quiet"], check=True)
    want = {"bash": "/usr/bin/bash", "zsh": None, "fish": "/usr/local/bin/fish"}
    for base in (tree, fs):
        assert baseimage.info(baseimage.Choice(str(base), "test")).shells == want, base
    host = baseimage.info(baseimage.Choice(None, "the host")).shells
    assert host is not None and host["fish"] is not None and host["fish"].endswith("/fish")
    assert os.path.samefile(host["fish"], need("fish"))
    assert "shells  bash: /usr/bin/bash, zsh: not found, fish: /usr/local/bin/fish" in (
        baseimage.render(baseimage.info(baseimage.Choice(str(fs), "test")))
    )
