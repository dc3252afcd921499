"""trust: allow/deny records keyed by real path, device, inode and owner; never in the project."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest

from condatainer import config, shellgen
from condatainer.errors import TrustError
from condatainer.hook import trust
from condatainer.hook.trust import TrustStatus

HOSTILE = "'\";&&e-$ èрт🚒中-j"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    path = tmp_path / f"proj {HOSTILE}"
    path.mkdir()
    return path


@pytest.fixture
def image(project: Path) -> Path:
    path = project / "env.img"
    path.write_bytes(b"\0" * 1024)
    path.chmod(0o644)
    return path


def listing(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


def test_store_lives_in_user_data(isolated_env: Path) -> None:
    assert trust.store_dir() == isolated_env / ".local/share/condatainer/allowed"
    assert trust.store_dir() == config.paths()["data"] / "allowed"


def test_record_names_are_the_sha256_of_the_real_path(image: Path) -> None:
    import hashlib

    from condatainer.hook import allowed

    trust.allow(image)
    (entry,) = trust.store_dir().iterdir()
    real = os.fsencode(os.path.realpath(image))
    assert entry.name == hashlib.sha256(real).hexdigest()
    for data in (b"", b"x" * 1000, "\u00e9\udc80".encode("utf-8", "surrogateescape")):
        assert allowed._sha256_hex(data) == hashlib.sha256(data).hexdigest()


def test_unknown_image_is_not_allowed(image: Path) -> None:
    assert trust.status(image) is TrustStatus.NOT_ALLOWED


def test_allow_then_deny(image: Path, project: Path) -> None:
    before = listing(project)
    record = trust.allow(image)
    assert record.path == os.path.realpath(image) and record.how == "allow"
    assert trust.status(image) is TrustStatus.ALLOWED
    assert listing(project) == before  # nothing written next to the image
    assert trust.deny(image) is True
    assert trust.status(image) is TrustStatus.NOT_ALLOWED
    assert trust.deny(image) is False


def test_store_permissions_and_format(image: Path) -> None:
    trust.allow(image)
    store = trust.store_dir()
    assert stat.S_IMODE(store.stat().st_mode) == 0o700
    (entry,) = store.iterdir()
    assert stat.S_IMODE(entry.stat().st_mode) == 0o600
    data = json.loads(entry.read_text())
    st = image.stat()
    assert data["path"] == os.path.realpath(image)
    assert (data["dev"], data["ino"], data["uid"]) == (st.st_dev, st.st_ino, st.st_uid)


def test_allowed_through_a_symlink_is_the_same_image(image: Path, tmp_path: Path) -> None:
    link = tmp_path / "link.img"
    link.symlink_to(image)
    trust.allow(link)
    assert trust.status(image) is TrustStatus.ALLOWED
    assert trust.status(link) is TrustStatus.ALLOWED


def test_content_changes_keep_it_allowed(image: Path) -> None:
    trust.allow(image)
    with image.open("r+b") as f:  # what mm-install does: writes inside the same file
        f.write(b"changed")
    assert trust.status(image) is TrustStatus.ALLOWED


def test_replaced_file_is_no_longer_allowed(image: Path) -> None:
    trust.allow(image)
    other = image.with_name("other.img")
    other.write_bytes(b"evil")
    other.chmod(0o644)
    os.replace(other, image)  # new inode at the same path
    assert trust.status(image) is TrustStatus.REPLACED
    with pytest.raises(TrustError, match="replaced") as info:
        trust.require_allowed(image)
    assert info.value.hint and "condatainer allow" in info.value.hint
    trust.allow(image)
    assert trust.status(image) is TrustStatus.ALLOWED


def test_moved_file_is_not_allowed_at_its_new_place(image: Path, project: Path) -> None:
    trust.allow(image)
    moved = project / "moved.img"
    image.rename(moved)
    assert trust.status(moved) is TrustStatus.NOT_ALLOWED
    assert trust.status(image) is TrustStatus.MISSING


@pytest.mark.parametrize("bits", [stat.S_IWGRP, stat.S_IWOTH])
def test_writable_by_others_needs_an_explicit_allow(image: Path, bits: int) -> None:
    image.chmod(0o644 | bits)
    assert trust.status(image) is TrustStatus.UNSAFE
    assert trust.auto_allow(image) is TrustStatus.UNSAFE  # created, but not safe: not recorded
    assert trust.status(image) is TrustStatus.UNSAFE
    trust.allow(image)
    assert trust.status(image) is TrustStatus.ALLOWED


def test_allowed_image_that_becomes_writable_by_others_is_unsafe(image: Path) -> None:
    trust.allow(image)
    image.chmod(0o664)
    assert trust.status(image) is TrustStatus.UNSAFE
    trust.allow(image)  # accepts group write
    assert trust.status(image) is TrustStatus.ALLOWED
    image.chmod(0o666)  # world write was not accepted
    assert trust.status(image) is TrustStatus.UNSAFE
    image.chmod(0o644)  # fewer bits than accepted is fine
    assert trust.status(image) is TrustStatus.ALLOWED


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_image_owned_by_someone_else(image: Path) -> None:
    os.chown(image, 12345, 12345)
    assert trust.status(image) is TrustStatus.UNSAFE
    assert trust.auto_allow(image) is TrustStatus.UNSAFE
    trust.allow(image)
    assert trust.status(image) is TrustStatus.ALLOWED
    os.chown(image, 23456, 23456)  # a different owner than the one accepted
    assert trust.status(image) is TrustStatus.REPLACED


def test_auto_allow_of_a_safe_new_image(image: Path) -> None:
    assert trust.auto_allow(image) is TrustStatus.ALLOWED
    assert trust.status(image) is TrustStatus.ALLOWED
    (entry,) = trust.store_dir().iterdir()
    assert json.loads(entry.read_text())["how"] == "auto"


def test_missing_and_non_file_images(tmp_path: Path) -> None:
    assert trust.status(tmp_path / "nope.img") is TrustStatus.MISSING
    with pytest.raises(TrustError, match="no such image"):
        trust.allow(tmp_path / "nope.img")
    with pytest.raises(TrustError, match="no such image"):
        trust.require_allowed(tmp_path / "nope.img")
    with pytest.raises(TrustError, match="not an image file"):
        trust.allow(tmp_path)
    assert trust.deny(tmp_path / "nope.img") is False


def test_deny_works_after_the_file_is_gone(image: Path) -> None:
    trust.allow(image)
    image.unlink()
    assert trust.deny(image) is True


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"not json",
        b"[]",
        b'{"path": 1}',
        b'{"path":"x","dev":"1","ino":1,"uid":0,"write_bits":0,"how":"allow"}',
    ],
)
def test_corrupt_record_allows_nothing(image: Path, content: bytes) -> None:
    trust.allow(image)
    (entry,) = trust.store_dir().iterdir()
    entry.write_bytes(content)
    assert trust.status(image) is TrustStatus.NOT_ALLOWED


def test_record_for_another_path_with_the_same_key_allows_nothing(image: Path) -> None:
    trust.allow(image)
    (entry,) = trust.store_dir().iterdir()
    data = json.loads(entry.read_text())
    data["path"] = "/somewhere/else.img"
    entry.write_text(json.dumps(data))
    assert trust.status(image) is TrustStatus.NOT_ALLOWED


def test_require_allowed_hint_quotes_the_path(image: Path) -> None:
    with pytest.raises(TrustError) as info:
        trust.require_allowed(image)
    assert info.value.hint is not None
    assert shellgen.quote(str(image)) in info.value.hint
    trust.allow(image)
    trust.require_allowed(image)


def test_unwritable_store_is_a_trust_error(image: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("")
    with pytest.raises(TrustError, match="cannot record"):
        trust.allow(image, store=blocker / "allowed")


def test_status_is_cheap(image: Path) -> None:
    trust.allow(image)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(200):
            trust.status(image)
        best = min(best, (time.perf_counter() - start) / 200)
    assert best < 0.001, f"status() took {best * 1e6:.0f} µs"
