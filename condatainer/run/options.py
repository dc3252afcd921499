"""The container options, spelled once: for the command line (`e`, `exec`, `overlay export`)
and for the `#CNT` lines of job scripts.

`CONTAINER` lists every option that shapes a container run (base image, binds, variables,
fakeroot, isolation, pass-through Apptainer arguments); `WRITABLE` is `-w`.  The CLI adds them
to its parsers from this table; `parse_cnt` reads a `#CNT` line's words with the same spelling,
accepting the subset a job header may carry (`CNT_DESTS`).  Values are data: nothing here
evaluates them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, NamedTuple

Kind = Literal["flag", "value", "append"]


class Option(NamedTuple):
    """One option: its spellings, where its value goes, and how it takes one."""

    flags: tuple[str, ...]
    dest: str
    kind: Kind
    help: str
    metavar: str | None = None


WRITABLE = Option(("-w", "--writable"), "writable", "flag", "mount the image writable")

CONTAINER: tuple[Option, ...] = (
    Option(("-b", "--base"), "base", "value", "base image (SIF) to run in"),
    Option(("--bind",), "bind", "append", "bind a host path (repeatable)", "HOST[:CONTAINER[:ro]]"),
    Option(
        ("--env",),
        "env",
        "append",
        "set a variable in the container (repeatable; never split on commas)",
        "KEY=VALUE",
    ),
    Option(("--fakeroot",), "fakeroot", "flag", "run as root in the container"),
    Option(("-C", "--containall"), "containall", "flag", "isolate fully (apptainer -C)"),
    Option(("-c", "--contain"), "contain", "flag", "minimal /dev, own /tmp (-c)"),
    Option(("-e", "--cleanenv"), "cleanenv", "flag", "do not pass the host environment"),
    Option(
        ("-W", "--workdir"),
        "workdir",
        "value",
        "work dir for -c/-C (default $SLURM_TMPDIR in jobs)",
    ),
    Option(
        ("-A", "--apptainer-arg"),
        "extra",
        "append",
        "pass ARG to apptainer exec unchanged (repeatable)",
        "ARG",
    ),
)

CNT_DESTS = ("writable", "fakeroot", "base", "env", "bind")
"""What a `#CNT` line may set: the options that belong to the job rather than to the site."""

CNT_OPTIONS: tuple[Option, ...] = tuple(o for o in (WRITABLE, *CONTAINER) if o.dest in CNT_DESTS)


def cnt_usage() -> str:
    """`-w, --fakeroot, -b IMG, --env K=V, --bind H:C`: what a #CNT line takes, for hints."""
    shown = {
        "writable": "-w",
        "fakeroot": "--fakeroot",
        "base": "-b IMG",
        "env": "--env K=V",
        "bind": "--bind H:C",
    }
    return ", ".join(shown[d] for d in CNT_DESTS)


def parse_cnt(words: Sequence[str], into: dict[str, object] | None = None) -> dict[str, object]:
    """Read `#CNT` words into `into` (flags True, values set, repeatables appended).

    Accepts `--opt VALUE`, `--opt=VALUE`, `-b VALUE` and `-bVALUE`; ValueError naming the
    word for anything else (an unknown option, a value missing, a bare word).
    """
    found: dict[str, object] = {} if into is None else into
    by_flag = {flag: o for o in CNT_OPTIONS for flag in o.flags}
    i = 0
    while i < len(words):
        word = words[i]
        i += 1
        name, eq, inline = word.partition("=") if word.startswith("--") else (word, "", "")
        option = by_flag.get(name)
        if option is None and len(word) > 2 and word[0] == "-" and word[1] != "-":
            option = by_flag.get(word[:2])  # -bIMG
            if option is not None and option.kind != "flag":
                name, eq, inline = word[:2], "=", word[2:]
            else:
                option = None
        if option is None:
            raise ValueError(
                f"unknown option {word!r}" if word.startswith("-") else f"unexpected word {word!r}"
            )
        if option.kind == "flag":
            if eq:
                raise ValueError(f"{name} takes no value")
            found[option.dest] = True
            continue
        if eq:
            value = inline
        elif i < len(words):
            value = words[i]
            i += 1
        else:
            raise ValueError(f"{name} needs a value")
        if option.kind == "append":
            existing = found.setdefault(option.dest, [])
            assert isinstance(existing, list)
            existing.append(value)
        else:
            found[option.dest] = value
    return found
