"""What a variable name is: letters, digits and `_`, not starting with a digit (ASCII only).

The one rule for sidecar files, `--env`, environment files and the runtimes that pass variables
into a container; written without `re` because the exec path checks names on every call.
"""

from __future__ import annotations

_FIRST = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")
_REST = _FIRST | frozenset("0123456789")


def is_variable_name(text: str) -> bool:
    """Whether `text` can name an environment variable we set."""
    return bool(text) and text[0] in _FIRST and all(c in _REST for c in text)
