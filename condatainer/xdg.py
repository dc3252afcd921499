"""condatainer's XDG base directories, as plain strings.

`config.paths` gives them as Paths, with the config files; the import-light paths (memo's
cache for the exec and cd paths, and what `condatainer o` writes while its mke2fs runs: the
allow store and the hook's stamp) take them from here, without importing pathlib.  Relative
values are ignored, as the spec says.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from collections.abc import Mapping

# kind: (variable, the directory under $HOME when it is unset or relative)
_BASES = {
    "config": ("XDG_CONFIG_HOME", ".config"),
    "data": ("XDG_DATA_HOME", ".local/share"),
    "cache": ("XDG_CACHE_HOME", ".cache"),
    "state": ("XDG_STATE_HOME", ".local/state"),
}


def directory(kind: str, environ: Mapping[str, str] | None = None) -> str:
    """condatainer's directory of `kind` ("config", "data", "cache" or "state")."""
    env = os.environ if environ is None else environ
    var, fallback = _BASES[kind]
    value = env.get(var, "")
    if not (value and os.path.isabs(value)):
        value = os.path.join(env.get("HOME") or os.path.expanduser("~"), fallback)
    return os.path.join(value, "condatainer")
