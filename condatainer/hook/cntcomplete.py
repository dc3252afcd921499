"""TAB completion of condatainer itself and its alias cnt, from shell/completion.<shell>.j2.

The same text is what `condatainer completion SHELL` prints, what packagers install from
completions/ (completion.py writes and drift-checks those files), and what the hook file
includes, so `condatainer init` sets up completion with the hook and a new shell still starts
no Python.  It lives here, beside the mm-* completion (mmcomplete.py), because the hook needs
it and hook/ sits below the orchestrators.
"""

from __future__ import annotations

from condatainer import shellgen

#: The command names completed: the program and its alias.
COMMANDS = ("condatainer", "cnt")


def script(shell: str) -> str:
    """The completion script of condatainer and cnt for `shell` (bash, zsh or fish)."""
    return shellgen.render("completion", shell, commands=list(COMMANDS))
