"""The bind spec `HOST[:CONTAINER[:ro|rw]]`: one parser for `--bind`, `#CNT --bind` and the
`binds` config key.

`split(text)` returns (host, container or None, read_only) or raises ValueError with the reason.
An empty CONTAINER (`/data::ro`) means the same path as HOST; CONTAINER must be absolute; the
third part is `ro` or `rw`.  HOST is returned as written: resolving it (`~`, symlinks,
existence) is the caller's business, since a config value is checked before it is used.
"""

from __future__ import annotations

FORM = "HOST[:CONTAINER[:ro|rw]]"


def split(text: str) -> tuple[str, str | None, bool]:
    """(host, container or None, read_only) of a bind spec; ValueError saying what is wrong."""
    if "\0" in text:  # from a config file or a script header: no path can hold one
        raise ValueError(f"bind {text!r} holds a NUL byte")
    parts = text.split(":")
    if not parts[0] or len(parts) > 3:
        raise ValueError(f"bind {text!r} is not {FORM}")
    container = parts[1] if len(parts) > 1 and parts[1] else None
    if container is not None and not container.startswith("/"):
        raise ValueError(f"bind {text!r}: the container path {container!r} must be absolute")
    if len(parts) == 3 and parts[2] not in ("ro", "rw"):
        raise ValueError(f"bind {text!r}: option {parts[2]!r} is not ro or rw")
    return parts[0], container, len(parts) == 3 and parts[2] == "ro"
