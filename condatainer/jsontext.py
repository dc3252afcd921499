"""JSON text as `json.dumps(value, sort_keys=True)` writes it, without importing json (which
imports `re`, and that `enum`, `functools`, `collections`...).

For the small files written on `condatainer o`'s import-light path: an image's record before
its mke2fs starts, the allow record while it runs (where a burst of imports on the other core
slows mke2fs itself).  Reading them imports json.  A property test holds `dumps` to
`json.dumps`.
"""

from __future__ import annotations

_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
}


def dumps(value: object) -> str:
    """`json.dumps(value, sort_keys=True)` for strings, numbers, booleans, None, and lists and
    objects of them (TypeError for anything else)."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        return float.__repr__(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(dumps(item) for item in value) + "]"
    if isinstance(value, dict) and all(isinstance(key, str) for key in value):
        items = sorted(value.items())
        return "{" + ", ".join(f"{_string(k)}: {dumps(v)}" for k, v in items) + "}"
    raise TypeError(f"not written as JSON here: {type(value).__name__}")


def _string(text: str) -> str:
    """A JSON string as json.dumps writes it (ASCII only: everything else as \\uXXXX)."""
    out = ['"']
    for ch in text:
        if " " <= ch <= "~" and ch not in '"\\':
            out.append(ch)
        elif ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        else:
            n = ord(ch)
            if n > 0xFFFF:  # a surrogate pair
                n -= 0x10000
                out.append(f"\\u{0xD800 | (n >> 10):04x}\\u{0xDC00 | (n & 0x3FF):04x}")
            else:
                out.append(f"\\u{n:04x}")
    out.append('"')
    return "".join(out)
