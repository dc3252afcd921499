"""The shells condatainer integrates with, and which one the user is in.

`detect(name)` is the one rule for choosing a shell (`init`, `hook`, `e`): the argument, else
`CNT_SHELL`, else the shell we were started from (shellingham) when it is one we support, else
`$SHELL`, else the login shell of the passwd entry (cron, `env -i`, CI runners and containers
set no `$SHELL`).  Anything but the supported shells (`shellgen.SHELLS`) is a ShellError.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Mapping

from condatainer import shellgen
from condatainer.errors import ShellError


def detect(name: str | None, environ: Mapping[str, str] | None = None) -> str:
    """The shell `init` sets up: argument, CNT_SHELL, shellingham, $SHELL -- bash, zsh, fish."""
    env = os.environ if environ is None else environ
    source = "the argument"
    if not name and env.get("CNT_SHELL"):
        name, source = env["CNT_SHELL"], "CNT_SHELL"
    if not name:
        name, source = _detected(env), "your shell"
    name = os.path.basename(name or "")
    if name not in shellgen.SHELLS:
        what = f"'{name}'" if name else "an unknown shell"
        raise ShellError(
            f"cannot set up {what} ({source}); condatainer integrates with bash, zsh and fish",
            hint="name the shell: condatainer init bash   (or: zsh, fish)",
        )
    return name


def _detected(env: Mapping[str, str]) -> str:
    """The shell we were started from when it is one we support, else the login shell.

    `sh install.sh` or a Makefile starts us from sh: that is not the shell the user types in,
    so it must not decide (nor make init fail); the login shell does: `$SHELL`, or, where
    nothing set it (cron, `env -i`, a CI runner, a container), the user's passwd entry, which
    is where login would have taken it from.
    """
    try:
        import shellingham

        name: str = shellingham.detect_shell()[0]
    except Exception:  # shellingham's ShellDetectionFailure, or an OS error reading /proc
        name = ""
    if name in shellgen.SHELLS:
        return name
    return env.get("SHELL") or _login_shell()


def _login_shell() -> str:
    """The login shell in the passwd database, or "" when the uid has no entry."""
    try:
        return pwd.getpwuid(os.getuid()).pw_shell
    except KeyError:
        return ""
