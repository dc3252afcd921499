"""The cd hook's call on a change (`launcher.ACTIVATE_CODE`): answered from the record of the
same call (replay.py) when nothing it read has changed, else by the activation (activate.py),
which records its answer.  Kept apart from both so that a replayed call imports neither the
activation nor what it needs.
"""

from __future__ import annotations

import os
import sys

from condatainer import __version__
from condatainer.hook import replay

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from collections.abc import Sequence


def main(argv: Sequence[str]) -> int:
    """Answer the hook's call `argv` (see activate.main for its form); the exit status."""
    call = replay.parse(argv)
    if call is not None and call[3] == __version__:
        found = replay.replay(call, os.environ)
        if found is not None:
            code, lines = found
            for line in lines:
                sys.stderr.write(line + "\n")
            sys.stderr.flush()
            sys.stdout.flush()
            sys.stdout.buffer.write(code)
            sys.stdout.flush()
            return 0
    from condatainer.hook import activate

    return activate.main(argv)
