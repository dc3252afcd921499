"""TAB completion of the host `mm-*` functions, which the hook file includes.

Rendered from shell/complete-mm.<shell>.j2: options, the actions of `mm-channels`, and package
names read from the listings kept per image (`pkgcache.installed_file`, whose path the hook holds in
`_cnt_pkgs` while an image is active, and its sibling `pkgcache.channel_file`) -- in pure
shell, since it runs on every TAB.  The data comes from the mm table (`run.mm`).
"""

from __future__ import annotations

from typing import Any

from condatainer import shellgen
from condatainer.hook import pkgcache
from condatainer.run import mm


def _kind(op: mm.Op) -> str:
    if op.name == "channels":
        return "actions"
    if op.completes_installed:
        return "installed"
    if op.completes_channel:
        return "channel"
    return "none"


def context() -> dict[str, Any]:
    """The data the mm-* completion templates print (asserted on by the tests)."""
    return {
        "ops": [
            {"name": op.name, "options": list(op.options), "kind": _kind(op)}
            for op in mm.TABLE.values()
        ],
        "file_options": [o for o, k in mm.VALUE_OPTIONS.items() if k == "file"],
        "channel_options": [o for o, k in mm.VALUE_OPTIONS.items() if k == "channel"],
        "actions": list(mm.CHANNEL_ACTIONS),
        "channel_suffix": pkgcache.CHANNEL_SUFFIX,
        "buckets_suffix": pkgcache.BUCKETS_SUFFIX,
        "bucket_chars": pkgcache.BUCKET_CHARS,
    }


def script(shell: str) -> str:
    """TAB completion of the host mm-* functions for `shell`, for the hook to include."""
    return shellgen.render("complete-mm", shell, **context())
