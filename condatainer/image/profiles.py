"""Inode profiles: how many bytes of image each inode stands for (`mke2fs -i`).

A conda environment is mostly small files, so it runs out of inodes long before it runs out of
blocks unless the image has many of them; a data image needs few.  Three named profiles cover
this, each with aliases users reach for (`-p conda`, `-p genome`):

    small     (conda, python)  4096 bytes/inode
    balanced  (default)        16384 bytes/inode
    large     (data, genome)   1 MiB/inode

Every profile reserves 3 % of the blocks for root (`mke2fs -m 3`).  An unknown name is an error
listing the valid ones (CondaTainer silently falls back to a default; we refuse).
"""

from __future__ import annotations

from condatainer.errors import ProfileError
from condatainer.record import Record

RESERVED_PERCENT = 3
"""Blocks reserved for root, in percent (`mke2fs -m`)."""


class Profile(Record):
    """A named inode density."""

    name: str
    bytes_per_inode: int


PROFILES: dict[str, Profile] = {
    "small": Profile("small", 4096),
    "balanced": Profile("balanced", 16384),
    "large": Profile("large", 1024 * 1024),
}

ALIASES: dict[str, str] = {
    "conda": "small",
    "python": "small",
    "default": "balanced",
    "data": "large",
    "genome": "large",
}

DEFAULT_PROFILE = "balanced"


def names() -> list[str]:
    """Every name `resolve_profile` accepts, profiles first then aliases (for completion)."""
    return [*PROFILES, *ALIASES]


def _listing() -> str:
    parts = []
    for name in PROFILES:
        aliases = [a for a, target in ALIASES.items() if target == name]
        parts.append(f"{name} ({', '.join(aliases)})" if aliases else name)
    return ", ".join(parts)


def resolve_profile(name: str) -> Profile:
    """Return the profile `name` (or an alias of it) denotes, ignoring case and outer spaces."""
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    try:
        return PROFILES[key]
    except KeyError:
        shown = repr(name) if name.strip() else "an empty name"
        raise ProfileError(
            f"unknown inode profile {shown}; valid profiles (aliases): {_listing()}",
            hint="use -p small for conda environments, -p balanced for mixed use,"
            " -p large for a few big data files",
        ) from None


def guess_profile(bytes_per_inode: int) -> str:
    """Name the profile nearest to `bytes_per_inode` (for `overlay info` on any image).

    Nearness is measured on a log scale: mke2fs rounds the inode count up to fill whole inode
    table blocks, and resizing keeps the inodes per group, so real images sit near, not on, the
    profile's value; 8192 bytes/inode is as far from `small` as from `balanced`, and goes to the
    smaller one.
    """
    import math

    if bytes_per_inode <= 0:
        return PROFILES["small"].name
    wanted = math.log2(bytes_per_inode)
    best = min(
        PROFILES.values(),
        key=lambda p: (abs(math.log2(p.bytes_per_inode) - wanted), p.bytes_per_inode),
    )
    return best.name
