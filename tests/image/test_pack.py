"""`pack` / `unpack`: a round trip keeps every byte of every file, the size and the
allocation; the original is never touched; outputs are never clobbered; the size record is a
zstd skippable frame that plain `zstd -d` ignores."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from condatainer import runner
from condatainer.errors import ImageError, ImageExistsError, LockError
from condatainer.image import e2fs
from condatainer.image.create import create
from condatainer.image.pack import pack, read_pack_record, unpack
from tests.imagelib import fsck_clean, get, put, sha256

REPO = Path(__file__).resolve().parents[2]
MIB = 1024 * 1024
GIB = 1024 * MIB


@pytest.fixture
def data(tmp_path: Path) -> dict[str, str]:
    out = {}
    for name, content in (
        ("random.bin", os.urandom(8 * MIB)),
        ("text.txt", b"numpy 1.26\n" * 50_000),
        ("tiny", b"x"),
    ):
        (tmp_path / name).write_bytes(content)
        out[name] = sha256(tmp_path / name)
    return out


def make_image(
    wd: Path, tmp_path: Path, data: dict[str, str], *, sparse: bool, size: int = 1 * GIB
) -> Path:
    img = create(
        wd / "env.img", size, "small", sparse=sparse, files={".condarc": b"channels: [local]\n"}
    ).path
    for name in data:
        put(img, tmp_path / name, name)
    # Data written and deleted leaves stale blocks: pack must not carry them.
    junk = tmp_path / "junk"
    junk.write_bytes(os.urandom(30 * MIB))
    put(img, junk, "junk")
    assert runner.run(["debugfs", "-w", "-R", "rm upper/junk", str(img)]).ok
    return img


@pytest.mark.parametrize("sparse", [False, True], ids=["allocated", "sparse"])
def test_round_trip(wd: Path, tmp_path: Path, data: dict[str, str], sparse: bool) -> None:
    img = make_image(wd, tmp_path, data, sparse=sparse)
    original = sha256(img)
    blocks = os.stat(img).st_blocks

    packed = pack(img)
    assert packed.output == wd / "env.img.zst"
    assert packed.original_bytes == 1 * GIB
    assert packed.packed_bytes == os.stat(packed.output).st_size
    assert packed.packed_bytes < 10 * MIB  # 8M of random data, the rest compresses away
    assert sha256(img) == original and os.stat(img).st_blocks == blocks  # untouched
    record = read_pack_record(packed.output)
    assert record is not None
    assert record["size_bytes"] == 1 * GIB and record["allocated"] is (not sparse)
    assert sorted(os.listdir(wd)) == ["env.img", "env.img.zst"]

    img.rename(tmp_path / "original.img")
    res = unpack(packed.output)
    assert res.output == wd / "env.img"
    assert res.size_bytes == 1 * GIB and res.sparse is sparse
    st = os.stat(res.output)
    assert st.st_size == 1 * GIB
    if sparse:
        assert st.st_blocks * 512 < 200 * MIB
    else:
        assert st.st_blocks * 512 >= 1 * GIB
    assert fsck_clean(res.output)
    sb = e2fs.superblock(res.output)
    assert sb.size_bytes == 1 * GIB and sb.bytes_per_inode == 4096  # the profile survives
    for name, digest in data.items():
        assert get(res.output, name, tmp_path / "out") == digest, name
    cat = runner.run(["debugfs", "-R", "cat upper/ext3/env/.condarc", str(res.output)])
    assert cat.stdout == "channels: [local]\n"
    assert sorted(os.listdir(wd)) == ["env.img", "env.img.zst"]


def test_pack_to_a_chosen_file_and_unpack_elsewhere(
    wd: Path, tmp_path: Path, data: dict[str, str]
) -> None:
    img = make_image(wd, tmp_path, data, sparse=True, size=512 * MIB)
    out = tmp_path / "elsewhere" / "backup.zst"
    out.parent.mkdir()
    assert pack(img, out).output == out
    res = unpack(out, tmp_path / "restored")
    assert res.output == tmp_path / "restored.img"
    assert e2fs.superblock(res.output).size_bytes == 512 * MIB
    for name, digest in data.items():
        assert get(res.output, name, tmp_path / "out") == digest


def test_plain_zstd_reads_the_packed_file(wd: Path, tmp_path: Path, data: dict[str, str]) -> None:
    img = make_image(wd, tmp_path, data, sparse=True, size=512 * MIB)
    packed = pack(img).output
    plain = tmp_path / "plain.img"
    subprocess.run([runner.require("zstd"), "-d", "-q", str(packed), "-o", str(plain)], check=True)
    assert fsck_clean(plain)
    size = e2fs.superblock(plain).size_bytes
    assert size < 100 * MIB  # shrunk to its minimum
    assert os.stat(plain).st_size == size

    # A plain .zst (no size record) unpacks when given a size.
    bare = tmp_path / "bare.img.zst"
    subprocess.run([runner.require("zstd"), "-q", str(plain), "-o", str(bare)], check=True)
    assert read_pack_record(bare) is None
    with pytest.raises(ImageError, match="no size record"):
        unpack(bare)
    res = unpack(bare, size_bytes=300 * MIB)
    assert res.output == tmp_path / "bare.img"
    assert e2fs.superblock(res.output).size_bytes == 300 * MIB
    for name, digest in data.items():
        assert get(res.output, name, tmp_path / "out") == digest


def test_never_clobbers(wd: Path, tmp_path: Path, data: dict[str, str]) -> None:
    img = make_image(wd, tmp_path, data, sparse=True, size=256 * MIB)
    (wd / "env.img.zst").write_bytes(b"someone else's")
    with pytest.raises(ImageExistsError):
        pack(img)
    assert (wd / "env.img.zst").read_bytes() == b"someone else's"
    packed = pack(img, wd / "second.zst").output
    with pytest.raises(ImageExistsError):
        unpack(packed, img)  # the original is still there
    assert sorted(os.listdir(wd)) == ["env.img", "env.img.zst", "second.zst"]


def test_unpack_size_below_the_packed_filesystem(wd: Path, tmp_path: Path) -> None:
    img = create(wd / "env.img", 256 * MIB, "balanced", sparse=True).path
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(80 * MIB))
    put(img, big, "big.bin")
    packed = pack(img).output
    img.unlink()
    with pytest.raises(ImageError, match="more than the requested"):
        unpack(packed, size_bytes=64 * MIB)
    assert sorted(os.listdir(wd)) == ["env.img.zst"]


def test_unpack_name_needs_zst(tmp_path: Path) -> None:
    odd = tmp_path / "env.pack"
    odd.write_bytes(b"x")
    with pytest.raises(ImageError, match=r"does not end in \.zst") as info:
        unpack(odd)
    assert info.value.hint == "name the output: -o IMAGE.img"


def test_unpack_garbage_leaves_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.img.zst"
    bad.write_bytes(b"not zstd at all" * 100)
    with pytest.raises(ImageError, match="zstd failed"):
        unpack(bad, size_bytes=128 * MIB)
    assert sorted(os.listdir(tmp_path)) == ["bad.img.zst", "home"]


def test_pack_refuses_an_image_needing_recovery(wd: Path) -> None:
    img = create(wd / "env.img", 256 * MIB, "balanced", sparse=True).path
    assert runner.run(["debugfs", "-w", "-R", "feature needs_recovery", str(img)]).ok
    with pytest.raises(ImageError, match="journal needs recovery") as info:
        pack(img)
    assert "--repair" in (info.value.hint or "")
    assert sorted(os.listdir(wd)) == ["env.img"]


def test_pack_refuses_an_image_in_use_for_writing(wd: Path) -> None:
    img = create(wd / "env.img", 256 * MIB, "balanced", sparse=True).path
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom condatainer.image import locks\n"
            "l = locks.acquire(sys.argv[1], write=True)\nprint('locked', flush=True)\n"
            "time.sleep(60)\n",
            str(img),
        ],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(LockError, match=f"PID {holder.pid}"):
            pack(img)
    finally:
        holder.kill()
        holder.wait()
    assert sorted(os.listdir(wd)) == ["env.img"]


def test_failing_zstd_leaves_nothing(
    wd: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data: dict[str, str]
) -> None:
    img = make_image(wd, tmp_path, data, sparse=True, size=256 * MIB)
    original = sha256(img)
    real = runner.run_hook

    def hook(argv: list[str], **kw: Any) -> runner.Result:
        if argv[0] == "zstd":
            return runner.Result(tuple(argv), 1, "", "zstd: injected failure\n")
        return real(argv, **kw)

    monkeypatch.setattr(runner, "run_hook", hook)
    with pytest.raises(ImageError, match="zstd failed: zstd: injected failure"):
        pack(img)
    assert sorted(os.listdir(wd)) == ["env.img"]
    assert sha256(img) == original


@pytest.mark.root
def test_pack_onto_a_full_disk(wd: Path, tmp_path: Path, tmpfs: Any) -> None:
    img = create(wd / "env.img", 256 * MIB, "small", sparse=True).path
    noise = tmp_path / "noise.bin"
    noise.write_bytes(os.urandom(12 * MIB))  # incompressible: the packed file needs >12M
    put(img, noise, "noise.bin")
    full = tmpfs("4M")
    with pytest.raises(ImageError) as info:
        pack(img, full / "env.img.zst")
    msg = info.value.message
    assert "not enough space" in msg and str(full) in msg
    hint = str(info.value.hint)
    assert "(-o)" in hint and "--sparse" not in hint and "(-s)" not in hint
    assert os.listdir(full) == []
    assert fsck_clean(img)


@pytest.mark.root
def test_unpack_onto_a_full_disk(
    wd: Path, tmp_path: Path, data: dict[str, str], tmpfs: Any
) -> None:
    packed = pack(make_image(wd, tmp_path, data, sparse=True, size=256 * MIB)).output
    full = tmpfs("4M")  # the image holds 8M of random data
    with pytest.raises(ImageError) as info:
        unpack(packed, full / "env.img")
    msg = info.value.message
    assert "not enough space" in msg and str(full) in msg
    hint = str(info.value.hint)
    assert "(-o)" in hint and "(-s)" in hint and "--sparse" not in hint
    assert os.listdir(full) == []
    assert packed.exists()
