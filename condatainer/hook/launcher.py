"""How the host runs condatainer again: the words the hook, the shims and the activation start.

The hook file and every shim are written once and run many times, possibly after the process
that wrote them is gone; what they run must therefore not depend on how that process happened
to be started, and must never put a project directory on Python's path (a planted
`condatainer/` package there would run as the user).
"""

from __future__ import annotations

import os
import sys

_ENTRY_POINTS = ("condatainer", "cnt")

# The hook runs `python -c ACTIVATE_CODE`, not `python -m condatainer.hook.activate`: -m imports
# runpy, which costs every cd into a project 4 ms for nothing.  hook.call answers a call seen
# before from its record and hands the others to the activation.
ACTIVATE_CODE = "import sys; from condatainer.hook.call import main; sys.exit(main(sys.argv[1:]))"


def argv() -> tuple[str, ...]:
    """The argv prefix that runs this condatainer again, the same however we were started.

    The installed console script beside this interpreter (a venv's bin/condatainer) comes
    first: it does not depend on how this process was started, so shim stamps and the hook
    file stay stable, and it never runs `python -m` from a project directory, which would put
    that directory first on sys.path (a planted condatainer/ package would run).  Then the
    console script we were started as; last, for a checkout run without installing,
    `python -m condatainer`, with -P (Python >= 3.11) to keep the working directory off
    sys.path.
    """
    beside = os.path.join(os.path.dirname(sys.executable), "condatainer")
    if os.path.isfile(beside) and os.access(beside, os.X_OK):
        return (beside,)
    script = sys.argv[0] if sys.argv else ""
    entry_point = os.path.basename(script) in _ENTRY_POINTS
    if entry_point and os.path.isfile(script) and os.access(script, os.X_OK):
        return (os.path.abspath(script),)
    return (sys.executable, *python_safe_path(), "-m", "condatainer")


def python_safe_path() -> tuple[str, ...]:
    """`-P` where the interpreter has it (3.11+): the working directory stays off sys.path."""
    return ("-P",) if sys.version_info >= (3, 11) else ()


def activate_argv() -> list[str]:
    """The argv words the hook runs the activation with (before its own arguments).

    -P and the hook's `cd /` keep the project directory off sys.path (see `argv`).
    """
    return [sys.executable, *python_safe_path(), "-c", ACTIVATE_CODE]
