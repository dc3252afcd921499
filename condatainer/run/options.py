"""The container options, spelled once: for the command line (`e`, `exec`, `overlay export`,
`run`) and for the `#CNT` lines of job scripts.

`CONTAINER` lists every option that shapes a container run (base image, binds, variables,
fakeroot, isolation, pass-through Apptainer arguments); `WRITABLE` is `-w`.  CondaTainer's
spellings are aliases here (`-f` for --fakeroot, `-B` for --bind, `--base-image`,
`--writable-img`), so every reader of the table accepts them; the first long spelling is the
one written back (`to_words`).  Apptainer's own options before the command are not in this
table: `run.apptainer_flags` holds their list.  The CLI adds them
to its parsers from this table.  On `run` and on `#CNT` lines the short forms that mean job
control there (`-c` cpus, `-e` error log, and `-C`, `-W`, `-A` with them) are dropped: the
isolation options keep their long forms (`--contain`, `--cleanenv`, ...); `RUN_CONTAINER` is
that spelling.  `parse_cnt` reads a `#CNT` line's words with it; `to_words` writes values back
as words (a submitted job's `condatainer run` gets them again).  `EXEC` is everything `exec`
takes before its command: the CLI's parser and the exec fast path (`run.replay.split`) both
read it.  Values are data: nothing here evaluates them.

The exec fast path imports this module: no `typing` at run time, Records, not NamedTuples.
"""

from __future__ import annotations

from condatainer.record import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Literal

    Kind = Literal["flag", "value", "append", "optional"]  # optional: `--opt` or `--opt=VALUE`


class Option(Record):
    """One option: its spellings, where its value goes, and how it takes one (help None: not
    shown in --help)."""

    flags: tuple[str, ...]
    dest: str
    kind: Kind
    help: str | None
    metavar: str | None = None


WRITABLE = Option(
    ("-w", "--writable", "--writable-img"), "writable", "flag", "mount the image writable"
)
OVERLAY = Option(
    ("-o", "--overlay"), "images", "append", "image (repeatable; IMAGE:rw / IMAGE:ro)", "IMAGE"
)
# Shims pass this: an image replaced or denied after activation must not run.
IF_ALLOWED = Option(("--if-allowed",), "if_allowed", "flag", None)

# `e`, `exec`, `run`, `mm` (and #CNT): wait for a busy image instead of failing at once.
WAIT_LOCK = Option(
    ("--wait-lock",),
    "wait_lock",
    "optional",
    "when the image is in use, wait until it is free (at most SECONDS with --wait-lock=SECONDS)",
    "SECONDS",
)

CONTAINER: tuple[Option, ...] = (
    Option(("-b", "--base", "--base-image"), "base", "value", "base image (SIF) to run in"),
    Option(
        ("-B", "--bind"), "bind", "append", "bind a host path (repeatable)", "HOST[:CONTAINER[:ro]]"
    ),
    Option(
        ("--env",),
        "env",
        "append",
        "set a variable in the container (repeatable; never split on commas)",
        "KEY=VALUE",
    ),
    Option(("-f", "--fakeroot"), "fakeroot", "flag", "run as root in the container"),
    Option(("-C", "--containall"), "containall", "flag", "isolate fully (apptainer --containall)"),
    Option(("-c", "--contain"), "contain", "flag", "minimal /dev, own /tmp (apptainer --contain)"),
    Option(("-e", "--cleanenv"), "cleanenv", "flag", "do not pass the host environment"),
    Option(
        ("-W", "--workdir"),
        "workdir",
        "value",
        "work dir for --contain/--containall (default $SLURM_TMPDIR in jobs)",
    ),
    Option(
        ("-A", "--apptainer-arg"),
        "extra",
        "append",
        "pass ARG to apptainer exec unchanged (repeatable)",
        "ARG",
    ),
    WAIT_LOCK,
)

# On `run` and `#CNT`: long forms, plus the short forms that mean the same there (-w, -b).
_RUN_SHORT = frozenset({"-w", "-b"})


def _run_spelling(option: Option) -> Option:
    flags = tuple(f for f in option.flags if f.startswith("--") or f in _RUN_SHORT)
    return option.replace(flags=flags)


EXEC: tuple[Option, ...] = (
    OVERLAY,
    WRITABLE.replace(help="first image writable"),
    IF_ALLOWED,
    *CONTAINER,
)
RUN_CONTAINER: tuple[Option, ...] = tuple(_run_spelling(o) for o in CONTAINER)
CNT_OPTIONS: tuple[Option, ...] = (WRITABLE, *RUN_CONTAINER)
CNT_DESTS: tuple[str, ...] = tuple(o.dest for o in CNT_OPTIONS)

# `condatainer run`'s job-control flags: on a #CNT line they are a mistake worth explaining.
JOB_FLAGS = frozenset(
    {
        *("-c", "--cpu", "-m", "--mem", "-t", "--time", "-g", "--gpu", "-n", "--name"),
        *("-o", "--output", "-e", "--error", "-p", "--partition", "-A", "--account"),
        *("--afterok", "--afternotok", "--afterany", "--array", "--array-limit"),
    }
)


def wait_seconds(value: object) -> float | None:
    """`--wait-lock`'s value as seconds to wait: None (not given), inf (given bare, or with an
    empty value), or a non-negative number; ValueError otherwise."""
    if value is None or value is False:
        return None
    if value is True or value == "":
        return float("inf")  # `--wait-lock`, or `--wait-lock=` (what cli makes of a bare one)
    try:
        seconds = float(str(value))
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise ValueError(
            f"--wait-lock={value}: not a number of seconds (--wait-lock waits until the image"
            " is free, --wait-lock=SECONDS at most that long)"
        )
    return seconds


def cnt_usage() -> str:
    """What a #CNT line takes, for hints."""
    return (
        "-w, -b IMG, --bind H:C, --env K=V, --fakeroot, --contain, --containall, --cleanenv,"
        " --workdir DIR, --apptainer-arg ARG, --wait-lock[=SECONDS]"
    )


def to_words(values: dict[str, object]) -> list[str]:
    """Container option values (dest -> value, as `parse_cnt` returns) as command-line words."""
    words: list[str] = []
    for option in CNT_OPTIONS:
        value = values.get(option.dest)
        flag = next(f for f in option.flags if f.startswith("--"))  # the first long spelling
        if option.kind == "flag":
            words += [flag] if value else []
        elif option.kind == "optional":
            words += (
                []
                if value is None or value is False
                else [flag if value is True else f"{flag}={value}"]
            )
        elif option.kind == "append":
            for item in value if isinstance(value, list) else []:
                words += [flag, str(item)]
        elif value is not None:
            words += [flag, str(value)]
    return words


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
            if name in JOB_FLAGS or word[:2] in JOB_FLAGS:
                raise ValueError(
                    f"{word!r} is a job-control flag of `condatainer run`, not a container"
                    " option: job resources go on #SBATCH lines (e.g. #SBATCH --cpus-per-task=4)"
                )
            raise ValueError(
                f"unknown option {word!r}" if word.startswith("-") else f"unexpected word {word!r}"
            )
        if option.kind == "flag":
            if eq:
                raise ValueError(f"{name} takes no value")
            found[option.dest] = True
            continue
        if option.kind == "optional":
            found[option.dest] = inline if eq else True
            wait_seconds(found[option.dest])  # the one optional option: a number, checked
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
