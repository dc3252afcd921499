"""Inode profiles: names, aliases, refusal of unknown names, and the nearest-profile guess."""

from __future__ import annotations

import pytest

from condatainer.errors import ProfileError, UsageError
from condatainer.image import profiles
from condatainer.image.profiles import guess_profile, resolve_profile

MIB = 1024 * 1024


@pytest.mark.parametrize(
    ("name", "expected", "bytes_per_inode"),
    [
        ("small", "small", 4096),
        ("conda", "small", 4096),
        ("python", "small", 4096),
        ("balanced", "balanced", 16384),
        ("default", "balanced", 16384),
        ("large", "large", MIB),
        ("data", "large", MIB),
        ("genome", "large", MIB),
    ],
)
def test_names_and_aliases(name: str, expected: str, bytes_per_inode: int) -> None:
    prof = resolve_profile(name)
    assert prof.name == expected
    assert prof.bytes_per_inode == bytes_per_inode


@pytest.mark.parametrize("name", ["SMALL", "Conda", "  genome ", "DeFaUlT"])
def test_case_and_outer_spaces_are_ignored(name: str) -> None:
    assert resolve_profile(name).name in profiles.PROFILES


@pytest.mark.parametrize("name", ["tiny", "", "   ", "small-ish", "4096", "huge"])
def test_unknown_profile_is_refused_with_every_valid_name(name: str) -> None:
    with pytest.raises(ProfileError) as info:
        resolve_profile(name)
    err = info.value
    assert isinstance(err, UsageError) and err.exit_code == 2
    for valid in profiles.names():
        assert valid in err.message
    assert err.hint


def test_names_lists_profiles_then_aliases() -> None:
    assert profiles.names() == [
        "small",
        "balanced",
        "large",
        "conda",
        "python",
        "default",
        "data",
        "genome",
    ]
    for name in profiles.names():
        resolve_profile(name)  # every completion candidate is accepted


def test_every_alias_points_at_a_profile() -> None:
    assert set(profiles.ALIASES.values()) <= set(profiles.PROFILES)
    assert not set(profiles.ALIASES) & set(profiles.PROFILES)


def test_reserved_blocks_and_default() -> None:
    assert profiles.RESERVED_PERCENT == 3
    assert profiles.DEFAULT_PROFILE == "balanced"


@pytest.mark.parametrize(
    ("bytes_per_inode", "expected"),
    [
        (4096, "small"),
        (4100, "small"),  # what mke2fs rounding leaves on a real image
        (3000, "small"),
        (1024, "small"),
        (0, "small"),
        (8192, "small"),  # exactly between small and balanced on a log scale: the smaller
        (9000, "balanced"),
        (16384, "balanced"),
        (16250, "balanced"),
        (100_000, "balanced"),
        (140_000, "large"),
        (MIB, "large"),
        (64 * MIB, "large"),
    ],
)
def test_guess_profile_picks_the_nearest(bytes_per_inode: int, expected: str) -> None:
    assert guess_profile(bytes_per_inode) == expected


def test_guess_profile_round_trips_every_profile() -> None:
    for prof in profiles.PROFILES.values():
        assert guess_profile(prof.bytes_per_inode) == prof.name
