"""The last-resort error handler: one line without a traceback, and with CONDATAINER_DEBUG=1
the traceback of where the original exception happened (not of the error made from it)."""

from __future__ import annotations

import pytest

from condatainer import cli
from condatainer.hook import init


def _deep_down_where_it_happened(image: str | None) -> str:
    raise PermissionError(13, "Permission denied", "/srv/somewhere/env.img")


def test_an_os_error_is_one_line_and_debug_shows_where_it_happened(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(init, "allow", _deep_down_where_it_happened)
    assert cli.main(["allow", "x.img"]) == 1
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "condatainer: error: /srv/somewhere/env.img: Permission denied",
        "hint: CONDATAINER_DEBUG=1 shows where it happened",
    ]
    monkeypatch.setenv("CONDATAINER_DEBUG", "1")
    assert cli.main(["allow", "x.img"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert "_deep_down_where_it_happened" in err and "PermissionError" in err
    assert err.rstrip().endswith("hint: CONDATAINER_DEBUG=1 shows where it happened")
