# PYTHON_ARGCOMPLETE_OK
"""Where every `condatainer` process starts: the console scripts, `python -m condatainer`, shims.

Two things are decided before anything else is imported: an `exec` whose decision was
recorded and still holds is replayed (`run.replay`: the Plan and runtime of the last identical
call, every input it read unchanged), straight into the runtime; and a plain `o` (an empty env
image) is made without the CLI (`newenv`), while the configuration it read last time holds.
Every other command line, and what those two do not cover, goes to `cli.main`, which decides
it in full (and writes down what they replay next time).  The tests of the import lists
(tests/run/test_replay.py, tests/image/test_newenv.py) start here.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (the exec path's rule)
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import NoReturn


def main(argv: Sequence[str] | None = None, *, leave: bool = False) -> int:
    """Run one command line; return the exit status (`leave`: see `entry`)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["exec"] and "_ARGCOMPLETE" not in os.environ:
        status = _replayed(args[1:])
        if status is not None:
            return status
    new_env = 1 if args[:1] == ["o"] else 2 if args[:2] == ["overlay", "create"] else 0
    if new_env and "_ARGCOMPLETE" not in os.environ:
        from condatainer import newenv

        status = newenv.main(args[new_env:], os.environ)
        if status is not None:
            return _leave(status) if leave else status
    from condatainer import cli

    return cli.main(args)


def _replayed(words: Sequence[str]) -> int | None:
    """The exit status of exec's arguments `words` run as recorded; None when not recorded."""
    from condatainer import memo
    from condatainer.run import replay

    found = replay.replay(words, memo.cache_dir(os.environ), os.environ)
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
    sys.exit(main(leave=True))


def _leave(status: int) -> NoReturn:
    """End the process now that everything is written and flushed: the interpreter's own
    teardown of the ~150 modules `o` has loaded by then costs ~9 ms, a fifth of a small
    image's mke2fs.  Only after `newenv`, which leaves no thread, atexit handler or open
    file behind."""
    for stream in (sys.stdout, sys.stderr):
        try:  # noqa: SIM105  (contextlib is not imported on this path)
            stream.flush()
        except (OSError, ValueError):  # the reader went away: the output is lost either way
            pass
    os._exit(status)
