"""The import-light stand-ins of `condatainer o`, held to what they replace: JSON text
(`jsontext`, records and allow records) to `json.dumps`, a record's lock request to what
`struct` packs, image names to pathlib's spelling of them."""

from __future__ import annotations

import fcntl
import json
import os
import struct
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from condatainer import jsontext
from condatainer.errors import ImageError
from condatainer.image import layout, records

_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)  # fmt: skip


@settings(max_examples=2000)
@given(_VALUES)
def test_record_text_is_what_json_writes(value: object) -> None:
    assert jsontext.dumps(value) == json.dumps(value, sort_keys=True)


def test_the_record_lock_request_is_the_struct_flock_of_a_whole_file_write_lock() -> None:
    packed = struct.pack("hhqqi4x", fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
    assert packed == records._WRITE_LOCK


def test_a_real_record_reads_back(tmp_path: Path) -> None:
    target = tmp_path / 'w"eird\\ \u00e9\U0001f600\udc80.img'
    record = records.begin(target, "create", files=[records.temp_name(target, "tmp")])
    try:
        found = records.inspect(records.path_for(target))
        assert found is not None and found.facts == record.facts
    finally:
        record.end()


def _by_pathlib(name: str) -> str:
    """What `normalise_image_name` was before it stopped importing pathlib."""
    if not name or name.endswith("/") or Path(name).name in ("", ".", ".."):
        raise ImageError("not an image file name")
    base = Path(name).name.lower()
    if any(base.endswith(s) and len(base) > len(s) for s in layout.IMAGE_SUFFIXES):
        return str(Path(name))
    return str(Path(name + ".img"))


@settings(max_examples=3000)
@given(st.lists(st.sampled_from(["/", ".", "a", "I", "M", "g", "e", "x", "t", "3", " ", ".img",
                                  ".ext3", "//", ".."])).map("".join))  # fmt: skip
def test_image_names_are_spelled_as_pathlib_spells_them(name: str) -> None:
    try:
        expected: str | None = _by_pathlib(name)
    except ImageError:
        expected = None
    try:
        got: str | None = layout.image_name(name)
    except ImageError:
        got = None
    assert got == expected
    if got is not None:
        assert layout.normalise_image_name(name) == Path(got)
