"""Size strings <-> bytes: the one parser behind every `-s SIZE`.

Accepted: a decimal number with an optional unit, case-insensitive, no spaces inside:
`10G`, `500M`, `1.5G`, `20GiB`, `2T`, `4096` (a bare number means MiB).  Units K, M, G, T with
optional `B` or `iB` are all binary (`10GB` is 10 GiB, the way Apptainer and CondaTainer read it).
The result is rounded up to whole 4 KiB blocks.  Apptainer refuses overlays under 64 MiB and ext3
with 4 KiB blocks ends at 16 TiB, so both bounds are errors that name the limit.
"""

from __future__ import annotations

from condatainer.errors import SizeError

KIB = 1024
MIB = KIB * 1024
GIB = MIB * 1024
TIB = GIB * 1024

BLOCK = 4 * KIB
MIN_IMAGE_BYTES = 64 * MIB
MAX_IMAGE_BYTES = 16 * TIB - 64 * KIB  # ext3 with 4 KiB blocks: 2**32 blocks at most

_UNITS = {"": MIB, "k": KIB, "m": MIB, "g": GIB, "t": TIB}
_DIGITS = frozenset("0123456789")

_HINT = "give a size like 10G, 500M, 1.5G or 20GiB (a bare number means MiB)"


def _split(raw: str) -> tuple[int, int, str, str] | None:
    """`1.5GiB` -> (15, 10, "g", "ib"): the number as a fraction, its unit and the B/iB after
    it; None when `raw` is not a decimal number with an optional unit.  Plain string work and
    integers (no `re`, no `decimal`): `condatainer o` starts on an import-light path."""
    low = raw.lower()
    for suffix in ("ib", "b", ""):
        if not low.endswith(suffix):
            continue
        body = low[: len(low) - len(suffix)]
        unit = body[-1:] if body[-1:] in ("k", "m", "g", "t") else ""
        whole, dot, frac = body[: len(body) - len(unit)].partition(".")
        digits = whole + frac
        if digits and set(digits) <= _DIGITS and (frac or not dot):
            return int(digits), 10 ** len(frac), unit, suffix
    return None


def parse_size(text: str, *, minimum: int = MIN_IMAGE_BYTES) -> int:
    """Return the size `text` names, in bytes, rounded up to whole 4 KiB blocks.

    Raises SizeError for anything else: empty, negative, zero, exponents, unknown units, below
    `minimum` (64 MiB for images) or above the ext3 limit.
    """
    raw = text.strip()
    if raw.startswith("-"):
        raise SizeError(f"invalid size {text!r}: it must be greater than zero", hint=_HINT)
    parts = _split(raw) if raw else None
    if parts is None:
        shown = repr(text) if text.strip() else "an empty string"
        raise SizeError(f"invalid size {shown}", hint=_HINT)
    numerator, denominator, unit, suffix = parts
    if suffix and not unit:
        # "100B" or "100iB": bytes are never meant for an image; refuse rather than guess.
        raise SizeError(f"invalid size {text!r}: give a unit K, M, G or T", hint=_HINT)
    exact = numerator * _UNITS[unit]  # the size is exact / denominator bytes
    nbytes = -(-exact // (denominator * BLOCK)) * BLOCK  # whole blocks, rounded up
    if exact <= 0:
        raise SizeError(f"invalid size {text!r}: it must be greater than zero", hint=_HINT)
    if nbytes < minimum:
        raise SizeError(
            f"size {text!r} is below the minimum of {format_size(minimum)}"
            " (Apptainer refuses smaller overlay images)",
            hint=f"use at least -s {format_size(minimum)}",
        )
    if nbytes > MAX_IMAGE_BYTES:
        raise SizeError(
            f"size {text!r} is above the ext3 limit of 16T",
            hint="use a size of at most 16T",
        )
    return nbytes


def format_size(nbytes: int) -> str:
    """Render bytes the way users type sizes: 10G, 1.5G, 512M, 4K (binary units, <=2 decimals)."""
    for unit, factor in (("T", TIB), ("G", GIB), ("M", MIB), ("K", KIB)):
        if abs(nbytes) >= factor:
            value = nbytes / factor
            text = f"{value:.2f}".rstrip("0").rstrip(".")
            return f"{text}{unit}"
    return f"{nbytes}B"


def image_size(size_bytes: int) -> int:
    """`size_bytes` as an image size: at least the minimum (SizeError), rounded up to blocks."""
    if size_bytes < MIN_IMAGE_BYTES:
        raise SizeError(
            f"size {format_size(size_bytes)} is below the minimum of"
            f" {format_size(MIN_IMAGE_BYTES)} (Apptainer refuses smaller overlay images)",
            hint=f"use at least -s {format_size(MIN_IMAGE_BYTES)}",
        )
    return -(-size_bytes // BLOCK) * BLOCK


def size_argument(nbytes: int) -> str:
    """A `-s` value at least `nbytes` (whole MiB, at least the image minimum)."""
    mib = max(-(-nbytes // MIB), MIN_IMAGE_BYTES // MIB)
    return f"{mib}M"
