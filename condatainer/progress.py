"""The progress of a long operation, as the core reports it (shown by `terminal.Live`).

`Progress.stage(text, total=, measure=)` says what an operation does now and, where it can
tell, how far it is: `measure()` returns the bytes done so far (the size of the file being
written, say) and is asked again on every redraw while the stage lasts; `advance(done)` is for
callers that count themselves (a download).  This base class shows nothing: it is what the core
gets on a pipe, with `-q`, and when it is used as a library (`SILENT`), so core code reports
unconditionally and never asks where its words go.  Import-light on purpose (the image
modules import it): the terminal side, with its thread, lives in `terminal`.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (`o`'s import-light path)
if TYPE_CHECKING:
    from types import TracebackType
    from typing import Callable, Optional

    Measure = Callable[[], Optional[int]]
    """How far a stage is, in bytes (None: cannot tell right now)."""


class Progress:
    """A long operation's progress, as the core reports it.  This one shows nothing."""

    def stage(self, text: str, *, total: int | None = None, measure: Measure | None = None) -> None:
        """Say what the operation does now (`total`: bytes it will reach; `measure()`: so far)."""

    def advance(self, done: int) -> None:
        """How many bytes of the current stage are done, for callers that count them."""

    def close(self) -> None:
        """The operation is over (done or failed): take the line away."""

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


SILENT = Progress()
"""The progress of an operation nobody watches."""
