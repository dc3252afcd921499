"""The mm-* operation table: what each package operation runs in the container.

`condatainer mm OP ARGS` (host side) and the `mm-OP` shell functions (inside `condatainer e`,
and on the host through the hook) are all generated from `TABLE`.  An operation is either a
micromamba argv prefix (user arguments appended as data) or a small POSIX sh script rendered from
`shell/mm-<op>.sh.j2` for the two operations micromamba has no command for (pin, channels).

Whether an operation needs a writable mount depends on its arguments (`mm pin -l` only reads), so
`Op.writable(args)` decides; read operations get a read-only Plan and work while jobs hold the
image read-only.

Written for micromamba 2 (the series condatainer fetches, `condatainer.micromamba`), run by its
absolute path in the container (an env that installs its own `micromamba` does not replace
it).  `--rc-file` goes before the subcommand: it takes any number of files (CLI11), so after
the subcommand it would swallow the user's first package name (`list --rc-file RC numpy`); the
subcommand's name ends it.  `clean` needs no rc file, so it works on an image without one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from condatainer.image.layout import CONDARC, CONTAINER_PREFIX, PINNED
from condatainer.micromamba import CONTAINER_MICROMAMBA

_MM = (CONTAINER_MICROMAMBA, "-r", CONTAINER_PREFIX)
_MM_RC = (*_MM, "--rc-file", CONDARC)


def _always(_: Sequence[str]) -> bool:
    return True


def _never(_: Sequence[str]) -> bool:
    return False


def _pin_writes(args: Sequence[str]) -> bool:
    return bool(args) and args[0] not in ("-l", "--list")


def _channels_write(args: Sequence[str]) -> bool:
    return bool(args) and args[0] in ("append", "prepend", "remove")


@dataclass(frozen=True)
class Op:
    """One mm operation."""

    name: str
    summary: str
    argv: tuple[str, ...] = ()  # micromamba argv prefix; empty when `script` is set
    script: str | None = None  # template artifact name (shell/<script>.sh.j2) run with `sh -c`
    writes: Callable[[Sequence[str]], bool] = _always
    refresh: bool = False  # refresh shims and the package-name cache afterwards
    completes_installed: bool = False  # TAB offers installed package names
    completes_channel: bool = False  # TAB offers channel package names (repodata cache)
    bare_args: tuple[str, ...] = ()  # what to pass when the user gives no arguments
    options: tuple[str, ...] = ()  # options worth offering on TAB (passed on as they are)
    micromamba: bool = True  # runs micromamba (mm-pin only edits a file)

    def writable(self, args: Sequence[str]) -> bool:
        return self.writes(args)


TABLE: dict[str, Op] = {
    op.name: op
    for op in (
        Op(
            "install",
            "install packages into the env (creates it on first use)",
            (*_MM_RC, "install", "-n", "base", "-y"),
            refresh=True,
            completes_channel=True,
            options=(
                "-c",
                "--channel",
                "--override-channels",
                "-f",
                "--file",
                "--dry-run",
                "--freeze-installed",
                "--force-reinstall",
                "--no-deps",
                "--only-deps",
                "--strict-channel-priority",
                "-q",
                "--quiet",
                "-v",
                "--verbose",
            ),
        ),
        Op(
            "remove",
            "remove packages",
            (*_MM_RC, "remove", "-n", "base", "-y"),
            refresh=True,
            completes_installed=True,
            options=(
                "--dry-run",
                "--force",
                "--prune-deps",
                "--no-prune-deps",
                "-q",
                "--quiet",
                "-v",
                "--verbose",
            ),
        ),
        Op(
            "update",
            "update packages (all when none given)",
            (*_MM_RC, "update", "-n", "base", "-y"),
            refresh=True,
            completes_installed=True,
            bare_args=("--all",),  # micromamba updates nothing without specs or --all
            options=(
                "-a",
                "--all",
                "-c",
                "--channel",
                "--override-channels",
                "--dry-run",
                "-q",
                "--quiet",
                "-v",
                "--verbose",
            ),
        ),
        Op(
            "list",
            "list installed packages",
            (*_MM_RC, "list", "-n", "base"),
            writes=_never,
            options=("--json", "--explicit", "--md5"),
        ),
        Op(
            "search",
            "search the channels",
            (*_MM_RC, "search"),
            writes=_never,
            completes_channel=True,
            options=("-c", "--channel", "--override-channels", "--json", "--pretty", "--platform"),
        ),
        Op(
            "export",
            "print the env as environment.yml",
            (*_MM_RC, "env", "export", "-n", "base"),
            writes=_never,
            options=("--from-history", "-e", "--explicit", "--no-build", "--json"),
        ),
        Op("clean", "empty the package cache", (*_MM, "clean", "-a", "-y")),
        Op(
            "pin",
            "pin packages: -l lists, -r/-d removes, pkg pins the installed version,"
            " pkg=1.21 pins 1.21.*",
            script="mm-pin",
            writes=_pin_writes,
            micromamba=False,
            completes_installed=True,
            options=("-l", "--list", "-r", "-d", "--remove"),
        ),
        Op(
            "channels",
            "show or edit the channels: get | append|prepend|remove CHANNEL...",
            script="mm-channels",
            writes=_channels_write,
        ),
    )
}


#: Options whose next word is a value TAB cannot know (a channel) or a file.
VALUE_OPTIONS: dict[str, str] = {
    "-c": "channel",
    "--channel": "channel",
    "-f": "file",
    "--file": "file",
}

#: First words of `mm channels`.
CHANNEL_ACTIONS = ("get", "append", "prepend", "remove")


def names() -> list[str]:
    return list(TABLE)


def lookup(name: str) -> Op:
    """The Op called `name`; UsageError listing the valid ones otherwise."""
    from condatainer.errors import UsageError

    try:
        return TABLE[name]
    except KeyError:
        raise UsageError(
            f"unknown mm operation {name!r}",
            hint="valid operations: " + ", ".join(TABLE),
        ) from None


def script_text(op: Op) -> str:
    """The POSIX sh body of a script operation (rendered once from its template)."""
    from condatainer import shellgen

    assert op.script is not None
    return shellgen.render(
        op.script, "sh", micromamba=_MM[0], prefix=CONTAINER_PREFIX, condarc=CONDARC, pinned=PINNED
    )


def describe(argv: Sequence[str], words: int | None = None) -> str:
    """A container command for messages: `micromamba install -n base -y numpy` (its options
    for the env's root and rc file left out); with `words`, only that many, then `...`."""
    shown = list(argv)
    for prefix in (_MM_RC, _MM):
        if tuple(shown[: len(prefix)]) == prefix:
            shown = ["micromamba", *shown[len(prefix) :]]
            break
    if words is not None and len(shown) > words:
        shown = [*shown[:words], "..."]
    return " ".join(shown)


def command(op: Op, args: Sequence[str]) -> tuple[str, ...]:
    """The container command line for `mm OP ARGS`; user arguments are passed as data."""
    if op.script is None:
        return (*op.argv, *(args or op.bare_args))
    return ("sh", "-c", script_text(op), f"mm-{op.name}", *args)
