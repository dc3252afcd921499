# PYTHON_ARGCOMPLETE_OK
"""Where every `condatainer` process starts: the console scripts, `python -m condatainer`, shims.

One thing is decided before anything else is imported: an `exec` whose decision was recorded
and still holds is replayed (`run.replay`: the Plan and runtime of the last identical call,
every input it read unchanged), straight into the runtime; every other command line, and an
exec the replay does not cover, goes to `cli.main`, which decides it in full (and records an
exec for next time).  The test of the exec path's imports (tests/run/test_replay.py) starts
here.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (the exec path's rule)
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import NoReturn


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command line; return the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["exec"] and "_ARGCOMPLETE" not in os.environ:
        status = _replayed(args[1:])
        if status is not None:
            return status
    from condatainer import cli

    return cli.main(args)


def _replayed(words: Sequence[str]) -> int | None:
    """The exit status of exec's arguments `words` run as recorded; None when not recorded."""
    from condatainer.run import replay

    found = replay.replay(words, replay.cache_dir(os.environ), os.environ)
    if found is None:
        return None
    plan, binary = found
    from condatainer.errors import guarded
    from condatainer.run.runtime import handoff

    def run() -> int:
        replay.tell(plan.notices)
        return handoff.execute(plan, binary or None)

    return guarded(run)


def entry() -> NoReturn:
    sys.exit(main())
