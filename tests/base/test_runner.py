"""runner.run: what a program reads and writes passes through files in memory, in full."""

from __future__ import annotations

import os

import pytest

from condatainer import runner
from condatainer.errors import ToolMissingError


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def test_large_input_and_output_arrive_whole() -> None:
    data = os.urandom(3 << 20).hex()  # 6 MB of text, far beyond any pipe buffer
    before = open_fds()
    res = runner.run(["sh", "-c", "cat; echo done >&2; exit 3"], input=data)
    assert (res.returncode, res.ok) == (3, False)
    assert res.stdout == data
    assert res.stderr == "done\n"
    assert open_fds() == before  # the memory files are closed again


def test_bytes_that_are_not_utf8_survive() -> None:
    raw = bytes(range(256))
    res = runner.run(["cat"], input=raw)
    assert res.stdout.encode("utf-8", "surrogateescape") == raw


def test_empty_input_is_end_of_file_and_no_input_inherits() -> None:
    assert runner.run(["cat"], input=b"").stdout == ""
    assert runner.run(["sh", "-c", "echo out"]).stdout == "out\n"


def test_a_missing_program_is_named_and_leaks_nothing() -> None:
    before = open_fds()
    with pytest.raises(ToolMissingError, match="no-such-tool-here"):
        runner.run(["no-such-tool-here"], input="x")
    assert open_fds() == before
