"""display.printable: what reaches a terminal from an image, a sidecar or a path is shown,
never interpreted."""

from __future__ import annotations

import pytest

from condatainer.display import printable


@pytest.mark.parametrize("text", ["numpy 1.26", "Zürich ünïcode 数据", "a b", ""])
def test_plain_text_is_unchanged(text: str) -> None:
    assert printable(text) == text


@pytest.mark.parametrize(("text", "shown"), [
    ("\x1b]0;owned\x07title", "?]0;owned?title"),  # OSC: retitle the window
    ("\x1b[2J\x1b[Hclear", "?[2J?[Hclear"),  # CSI: clear the screen
    ("\x9b31mred", "?31mred"),  # the 8-bit CSI
    ("ok\rFAKE", "ok?FAKE"),  # CR rewrites the line
    ("a\nhint: rm -rf ~", "a?hint: rm -rf ~"),  # a forged second line
    ("evil\u202egnp.exe", "evil?gnp.exe"),  # a bidi override makes it read as another name
    ("\x00\x7f", "??"),
])  # fmt: skip
def test_control_characters_are_shown_as_question_marks(text: str, shown: str) -> None:
    assert printable(text) == shown


def test_lines_keeps_line_breaks_and_tabs_only() -> None:
    assert printable("one\n\ttwo\x1b[0m", lines=True) == "one\n\ttwo?[0m"
