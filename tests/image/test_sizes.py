"""The one size parser: accepted spellings, refused ones, and a property test that nothing but
SizeError ever escapes."""

from __future__ import annotations

import re
from decimal import ROUND_CEILING, Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from condatainer.errors import SizeError, UsageError
from condatainer.image.sizes import GIB, KIB, MIB, MIN_IMAGE_BYTES, TIB, format_size, parse_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10G", 10 * GIB),
        ("500M", 500 * MIB),
        ("1.5G", 1536 * MIB),
        ("20GiB", 20 * GIB),
        ("2T", 2 * TIB),
        ("4096", 4096 * MIB),  # bare number = MiB
        ("10g", 10 * GIB),
        ("10gb", 10 * GIB),  # binary, like Apptainer
        ("64M", MIN_IMAGE_BYTES),
        (" 1G ", GIB),
        ("65537K", 65540 * KIB),  # rounded up to whole 4 KiB blocks
        ("8T", 8 * TIB),
    ],
)
def test_accepted(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("0", "greater than zero"),
        ("-5G", "greater than zero"),
        ("1.5", "below the minimum of 64M"),
        ("10X", "invalid size"),
        ("63M", "below the minimum of 64M"),
        ("1e3G", "invalid size"),
        ("", "empty"),
        ("   ", "empty"),
        ("17T", "16T"),
        ("100B", "unit"),
        ("1,5G", "invalid size"),
        ("G", "invalid size"),
        ("1 G", "invalid size"),
    ],
)
def test_refused_with_a_reason(text: str, needle: str) -> None:
    with pytest.raises(SizeError, match=needle) as info:
        parse_size(text)
    assert info.value.hint
    assert isinstance(info.value, UsageError) and info.value.exit_code == 2


def test_result_is_whole_blocks() -> None:
    assert parse_size("100.3M") % 4096 == 0


@pytest.mark.parametrize("nbytes", [10 * GIB, 1536 * MIB, 512 * MIB, 2 * TIB, 64 * MIB])
def test_format_round_trips(nbytes: int) -> None:
    assert parse_size(format_size(nbytes)) == nbytes


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=20))
def test_never_anything_but_size_error(text: str) -> None:
    try:
        value = parse_size(text)
    except SizeError:
        return
    assert value >= MIN_IMAGE_BYTES and value % 4096 == 0


@settings(max_examples=300, deadline=None)
@given(
    st.decimals(min_value=0, max_value=100000, places=3, allow_nan=False, allow_infinity=False),
    st.sampled_from(["", "k", "K", "m", "M", "g", "G", "t", "T", "GiB", "MB", "kib"]),
)
def test_numbers_with_units(number: object, unit: str) -> None:
    try:
        value = parse_size(f"{number}{unit}")
    except SizeError:
        return
    assert value % 4096 == 0


# The grammar as a regular expression and the arithmetic as decimals: what parse_size did
# before it gave up `re` and `decimal` (condatainer o's import-light path).  Both must agree.
_REFERENCE = re.compile(r"([0-9]+(?:\.[0-9]+)?|\.[0-9]+)([kmgt]?)(i?b)?", re.I)
_UNIT = {"": MIB, "k": KIB, "m": MIB, "g": GIB, "t": TIB}


def reference_bytes(text: str) -> int | None:
    """The exact size `text` names, rounded up to 4 KiB blocks; None when it names none."""
    raw = text.strip()
    m = _REFERENCE.fullmatch(raw)
    if m is None or raw.startswith("-") or (m.group(3) and not m.group(2)):
        return None
    exact = Decimal(m.group(1)) * _UNIT[m.group(2).lower()]
    if exact <= 0:
        return None
    return int((exact / 4096).to_integral_value(rounding=ROUND_CEILING)) * 4096


@settings(max_examples=3000)
@given(st.text(alphabet="0123456789.kmgtKMGTiIbB -+e٣", max_size=8))
def test_the_plain_parser_agrees_with_the_reference(text: str) -> None:
    try:
        got: int | None = parse_size(text, minimum=1)
    except SizeError:
        got = None
    expected = reference_bytes(text)
    if expected is not None and expected > 16 * TIB - 64 * KIB:
        expected = None  # above ext3's limit
    assert got == expected
