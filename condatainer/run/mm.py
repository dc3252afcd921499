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
            options=(
                "--from-history",
                "-e",
                "--explicit",
                "--no-builds",
                "--channel-subdir",
                "--no-md5",
                "--json",
            ),
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


#: `overlay export`'s flags, CondaTainer's spellings: (flags, dest, help).  The last spelling is
#: the one micromamba 2's `env export` takes, so `mm export` takes them all as they are.
EXPORT_FLAGS: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (("-e", "--explicit"), "explicit", "an explicit spec (package URLs), not YAML"),
    (("--from-history",), "from_history", "only the specs you asked for, not every package"),
    (("--no-builds",), "no_builds", "versions without build strings"),
    (("--channel-subdir",), "channel_subdir", "name each package's channel and platform"),
    (("--no-md5",), "no_md5", "with -e: URLs without their #md5"),
)

# Options that choose another env than the image's one: micromamba would create or use a
# nested env under /ext3/env/envs that nothing activates.
_OTHER_ENV = ("-n", "--name", "-p", "--prefix")


def problem(op: Op, args: Sequence[str]) -> tuple[str, str] | None:
    """(why, hint) when `mm OP ARGS` must be refused before it runs; None when it may run."""
    if op.script is not None:
        return None
    for word in args:
        if word == "--":
            break
        name = word.partition("=")[0] if word.startswith("--") else word[:2]
        if name in _OTHER_ENV:
            return (
                f"mm {op.name} works on the image's one env ({CONTAINER_PREFIX});"
                f" {word} would make micromamba use another env inside it"
                f" ({CONTAINER_PREFIX}/envs/NAME), which condatainer never activates",
                f"drop {word}; for a second env, make a second image:"
                " condatainer o OTHER.img -- PKGS",
            )
    return None


def take_overlay(args: Sequence[str]) -> tuple[list[str], str | None]:
    """`mm OP`'s arguments without `-o IMG`/`--overlay IMG` (before any `--`), and that image:
    `mm install -o env.img numpy` is `mm -o env.img install numpy`.  A leading `--` ends our
    options and is dropped."""
    rest: list[str] = []
    image = None
    i = 0
    while i < len(args):
        word = args[i]
        i += 1
        if word == "--":
            rest += list(args[i:]) if not rest else ["--", *args[i:]]
            break
        if word in ("-o", "--overlay") and i < len(args):
            image = args[i]
            i += 1
        elif word.startswith("--overlay="):
            image = word.partition("=")[2]
        elif word.startswith("-o") and len(word) > 2:
            image = word[2:]
        else:
            rest.append(word)
    return rest, image


def wants_help(args: Sequence[str]) -> bool:
    """Whether `mm OP ARGS` asks for help (answered without an image)."""
    for word in args:
        if word == "--":
            return False
        if word in ("-h", "--help"):
            return True
    return False


def help_text(op: Op) -> str:
    """`condatainer mm OP --help`: what OP does and runs, from the table."""
    runs = (
        f"runs in the container: {describe(op.argv)} [ARGS...]"
        if op.script is None
        else "runs condatainer's own script in the container (no micromamba command)"
    )
    lines = [
        f"usage: condatainer mm [-o IMAGE] {op.name} [ARGS...]"
        f"   (inside the env: mm-{op.name} ARGS...)",
        "",
        op.summary,
        "",
        runs,
    ]
    if op.bare_args:
        lines.append(f"without arguments: {' '.join(op.bare_args)}")
    if op.options:
        lines.append("options often used: " + " ".join(op.options))
    if op.script is None:
        lines.append("other micromamba options are passed on as they are")
    lines += [
        "",
        "-o IMAGE  the image (before or after the operation; default: $CNT_OVERLAY, else the"
        " env.img found from here upwards)",
    ]
    return "\n".join(lines) + "\n"


def _same_channel(listed: str, wanted: str) -> bool:
    a, b = listed.rstrip("/"), wanted.rstrip("/")
    return a == b or a.endswith("/" + b) or b.endswith("/" + a)


def order_channels(text: str, priority: Sequence[str]) -> str:
    """An exported environment.yml with its `channels:` list in `priority` order (the image's
    .condarc): micromamba lists channels in its own order, and a solve from the file takes
    them in the file's order.  Channels .condarc does not name keep their place after those
    it does; every other line stays as it is (an explicit spec has no such list)."""
    if not priority:
        return text
    lines = text.splitlines(keepends=True)
    try:
        start = next(i for i, line in enumerate(lines) if line.rstrip() == "channels:") + 1
    except StopIteration:
        return text
    end = start
    while end < len(lines) and lines[end].lstrip().startswith("- "):
        end += 1
    items = lines[start:end]

    def rank(item: str) -> int:
        name = item.strip()[2:].strip()
        found = (i for i, wanted in enumerate(priority) if _same_channel(name, wanted))
        return next(found, len(priority))

    lines[start:end] = sorted(items, key=rank)  # stable: the rest keep their order
    return "".join(lines)
