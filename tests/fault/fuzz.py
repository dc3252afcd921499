"""Random input for every parser and every command family: one clear failure or success, never a
traceback, and nothing touched that the input did not name.

A *family* is a Hypothesis strategy and a check.  Parser families feed text (or bytes) to one
parser and accept only a `CondatainerError` (or the parser's documented result) back.  Command
families run `cli.main(argv)` in this process, in a directory holding an image, a job script, an
environment file and a packed image, with argv drawn from each family's words (options, sizes,
paths, commands, hostile text); they accept the exit statuses condatainer promises (0, 1, 2,
130, 141; any for `exec`, `e`, `run` and `mm`, which return their command's), no traceback, no
leftover record or temporary file, and no change to a file the argv does not name.

`run_family(family, examples, seed)` runs one family and returns its `Counts` (no shrinking:
the bench wants counts, the tests print the broken examples); the tests run a few dozen
examples per family, `bench/bench_crash.py` thousands.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from condatainer import bindspec, config
from condatainer.errors import CondatainerError
from condatainer.image import envfile, info, layout, profiles, records, recovery, sizes
from condatainer.image.pack import read_pack_record
from condatainer.jobs import directives
from condatainer.run import containerenv, envspec, mm, resolve

HOSTILE = ["", " ", "-", "--", "~", "~nosuchuser/x", "/", ".", "..", "a\nb", "a\0b", "\udcff",
           "'\";&&e-$ èрт🚒中-j", "$(id)", "`id`", "x" * 300, "\x1b[31m", "\u202e"]  # fmt: skip
text = st.one_of(st.text(max_size=60), st.sampled_from(HOSTILE))


@dataclass
class Counts:
    family: str
    inputs: int = 0
    tracebacks: int = 0
    bad_exits: int = 0
    changes: int = 0
    leftovers: int = 0
    examples: list[str] = field(default_factory=list)  # the first broken inputs, and why

    def broken(self, kind: str, example: object, why: str) -> None:
        setattr(self, kind, getattr(self, kind) + 1)
        if len(self.examples) < 5:
            self.examples.append(f"{kind}: {example!r}: {why}")

    @property
    def ok(self) -> bool:
        return not (self.tracebacks or self.bad_exits or self.changes or self.leftovers)


@dataclass
class Family:
    name: str
    strategy: st.SearchStrategy[Any]
    check: Callable[[Any, Counts, Path], None]


def run_family(family: Family, examples: int, seed_: int, workdir: Path) -> Counts:
    counts = Counts(family.name)

    @settings(
        max_examples=examples,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @seed(seed_)
    @given(family.strategy)
    def one(example: Any) -> None:
        counts.inputs += 1
        family.check(example, counts, workdir)

    one()
    return counts


# --------------------------------------------------------------------------- parsers


def parser(
    name: str, strategy: st.SearchStrategy[Any], call: Callable[[Any, Path], object]
) -> Family:
    """A family that only accepts a result or a CondatainerError from `call`."""

    def check(example: Any, counts: Counts, workdir: Path) -> None:
        try:
            call(example, workdir)
        except CondatainerError:
            pass
        except BaseException as exc:  # anything else: a traceback
            counts.broken("tracebacks", example, f"{type(exc).__name__}: {exc}")

    return Family(name, strategy, check)


def _bind(spec: str, workdir: Path) -> object:
    with contextlib.suppress(ValueError):  # its documented failure, turned into ours below
        bindspec.split(spec)
    return resolve._parse_bind(spec)


def _config_file(yaml_text: str, workdir: Path) -> object:
    xdg = workdir / "xdg"
    (xdg / "condatainer").mkdir(parents=True, exist_ok=True)
    (xdg / "condatainer" / "config.yaml").write_bytes(yaml_text.encode("utf-8", "surrogateescape"))
    return config.load({"XDG_CONFIG_HOME": str(xdg), "XDG_CACHE_HOME": str(workdir / "cache")})


def _record(raw: bytes, workdir: Path) -> object:
    """A record file with random content: parsed as data, never obeyed beyond its own files."""
    d = workdir / "records"
    d.mkdir(exist_ok=True)
    keep = d / "keep.txt"
    keep.write_text("keep")
    (d / ".env.img.record").write_bytes(raw)
    try:
        recovery.leftovers(d)
        recovery.repair_target(d / "env.img")
    finally:
        if keep.read_text() != "keep" or not keep.exists():
            raise AssertionError("a record made recovery touch another file")
        (d / ".env.img.record").unlink(missing_ok=True)
    return records.parse(raw, "env.img") if raw else None


def _pack_record(raw: bytes, workdir: Path) -> object:
    f = workdir / "p.zst"
    f.write_bytes(raw)
    return read_pack_record(f)


yaml_like = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)


def _json(value: object) -> bytes:
    return json.dumps(value).encode()


def _yaml_text(value: object) -> str:
    import yaml

    return str(yaml.safe_dump(value))


yaml_text = st.one_of(
    text,
    yaml_like.map(_yaml_text),
    st.integers(1, 600).map(lambda n: "dependencies:\n  - " + "[" * n + "]" * n + "\n"),
    st.integers(1, 600).map(lambda n: "a:\n" + "".join(" " * i + "b:\n" for i in range(1, n))),
)
script_text = st.lists(
    st.one_of(
        st.sampled_from(["#!/bin/bash", "#DEP: env.img", "#DEP: /", "#DEP:", "#DEP: ..",
                         "#CNT -w", "#CNT --bind /x:y", "#CNT --env A=1", "#CNT '", "#SBATCH -n 2",
                         "#SBATCH --array=1-3", "#PBS -l x", "#BSUB -n 1", "echo hi", ""]),
        text.map(lambda t: "#DEP: " + t),
        text.map(lambda t: "#CNT " + t),
        text,
    ),
    max_size=8,
).map("\n".join)  # fmt: skip

PARSERS = [
    parser("sizes", text, lambda s, _: sizes.parse_size(s)),
    parser("profiles", text, lambda s, _: profiles.resolve_profile(s)),
    parser("bind specs", text, _bind),
    parser("image names", text, lambda s, _: layout.normalise_image_name(s)),
    parser("sidecar env files", text, lambda s, _: envfile.parse(s, "env.img.env")),
    parser("job script headers", script_text, lambda s, _: directives.parse(s, "job.sh")),
    parser("environment.yml", yaml_text, lambda s, _: envspec.parse_yaml(s, Path("env.yml"))),
    parser("spec .txt files", text, lambda s, _: envspec.parse_txt(s, Path("spec.txt"))),
    parser(".condarc", yaml_text, lambda s, _: info.parse_channels(s)),
    parser("conda-meta/history", text, lambda s, _: info.requested_specs(s)),
    parser("config.yaml", yaml_text, _config_file),
    parser("--env values", st.lists(text, max_size=3), lambda s, _: containerenv._user_env(s)),
    parser(
        "mm arguments",
        st.tuples(st.sampled_from(mm.names()), st.lists(text, max_size=4)),
        lambda a, _: mm.command(mm.lookup(a[0]), a[1]),
    ),
    parser("recovery records", st.one_of(st.binary(max_size=300), yaml_like.map(_json)), _record),
    parser("pack size records", st.binary(max_size=600), _pack_record),
]


# --------------------------------------------------------------------------- command families

SIZES = ["64M", "100M", "1G", "0", "-5G", "63M", "10X", "1e3", "70M", "256M"]
PATHS = [
    "env.img",
    "env",
    "other.img",
    "missing.img",
    "/",
    ".",
    "..",
    "dir",
    "env.img:ro",
    "env.img:rw",
    "~nosuchuser/env.img",
    "env.img.zst",
    "job.sh",
    "env.yml",
    "spec.txt",
]
COMMANDS = [["true"], ["false"], ["sh", "-c", "exit 3"], ["nosuchcommand"], ["env"]]  # fmt: skip
word = st.one_of(st.sampled_from(SIZES + PATHS), text)

FAMILIES: dict[str, st.SearchStrategy[list[str]]] = {
    "o / overlay create": st.tuples(
        st.sampled_from([["o"], ["overlay", "create"]]),
        st.lists(st.one_of(st.sampled_from(["-s", "-p", "-f", "-c", "--sparse", "--fakeroot",
                                            "--dry-run", "--json", "--", "small", "default"]),
                           word), max_size=6),
    ).map(lambda t: [*t[0], *t[1]]),
    "overlay (image operations)": st.tuples(
        st.sampled_from([["overlay", c] for c in
                         ("resize", "check", "chown", "info", "pack", "unpack", "export")]),
        st.lists(st.one_of(st.sampled_from(["-s", "-u", "-g", "-p", "-o", "--root", "--repair",
                                            "--from-host", "-f", "--json", "/ext3/env",
                                            "/ext3/env/a", "4242"]), word), max_size=5),
    ).map(lambda t: [*t[0], *t[1]]),
    "exec / e / run": st.tuples(
        st.sampled_from([["exec"], ["e"], ["run", "--dry-run"], ["run", "--local"]]),
        st.lists(st.one_of(st.sampled_from(["-o", "-w", "-r", "-n", "--bind", "--env",
                                            "--cleanenv", "-c", "-C", "A=1", "/tmp:/x:ro",
                                            "--fakeroot", "-b", "--json"]), word), max_size=6),
        st.sampled_from(COMMANDS),
    ).map(lambda t: [*t[0], *t[1], "--", *t[2]]),
    "config, header, trust, shell, mm": st.tuples(
        st.sampled_from([["config", "get"], ["config", "set"], ["config", "show"],
                         ["config", "paths"], ["header"], ["header", "--insert"], ["allow"],
                         ["deny"], ["init", "--dry-run"], ["completion"], ["hook"], ["doctor"],
                         ["mm", "-o", "missing.img"], ["mm"], ["mm", "list"]]),
        st.lists(st.one_of(st.sampled_from(["bash", "zsh", "fish", "default_size", "runtime",
                                            "channels", "gpu", "off", "install", "pin"]), word),
                 max_size=4),
    ).map(lambda t: [*t[0], *t[1]]),
}  # fmt: skip

ANY_STATUS = ("exec", "e", "run", "mm")


def _snapshot(d: Path) -> dict[str, tuple[int, int, int]]:
    out = {}
    for root, dirs, files in os.walk(d):
        for name in files + dirs:
            p = Path(root, name)
            with contextlib.suppress(OSError):
                st_ = p.lstat()
                out[str(p.relative_to(d))] = (st_.st_size, st_.st_mtime_ns, st_.st_mode)
    return out


def _named(rel: str, argv: list[str]) -> bool:
    """Whether `rel` (a path in the work directory) is one the argv may change.  `e` and `mm`
    find env.img by themselves (autoload), and job.sh names it (#DEP)."""
    top = rel.split("/")[0]
    if top == "env.img" and argv[0] in ("e", "mm", "run"):
        return True
    base = top.lstrip(".").split(".record")[0]
    stems = {base, base.removesuffix(".img"), base.removesuffix(".zst"), base.removesuffix(".env")}
    return any(s and any(s in w or w.split(":")[0] in (s, base) for w in argv) for s in stems)


@contextlib.contextmanager
def _in(workdir: Path) -> Iterator[tuple[io.StringIO, io.StringIO]]:
    """Run in `workdir` with stdin from /dev/null, condatainer's stdout/stderr captured, and
    what the commands it starts print (descriptors 1 and 2) thrown away."""
    cwd = os.getcwd()
    out, err = io.StringIO(), io.StringIO()
    saved = [os.dup(fd) for fd in (0, 1, 2)]
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    os.chdir(workdir)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            yield out, err
    finally:
        os.chdir(cwd)
        for fd, copy in enumerate(saved):
            os.dup2(copy, fd)
            os.close(copy)


def command_family(name: str, strategy: st.SearchStrategy[list[str]]) -> Family:
    from condatainer import cli

    def check(argv: list[str], counts: Counts, workdir: Path) -> None:
        argv = [a.replace("\0", "") for a in argv]  # no argv word can hold a NUL
        before = _snapshot(workdir)
        with _in(workdir) as (_, err):
            try:
                code = cli.main(argv)
            except BaseException as exc:  # main must never raise
                counts.broken("tracebacks", argv, f"{type(exc).__name__}: {exc}")
                return
        said = err.getvalue()
        if "Traceback" in said:
            counts.broken("tracebacks", argv, said[-300:])
        if argv[0] not in ANY_STATUS and code not in (0, 1, 2, 130, 141):
            counts.broken("bad_exits", argv, f"exit {code}: {said[-200:]}")
        after = _snapshot(workdir)
        left = [p for p in after if p.split("/")[0].startswith(".") and p not in before]
        if left:
            counts.broken("leftovers", argv, str(left))
        changed = [p for p in set(before) | set(after)
                   if before.get(p) != after.get(p) and not _named(p, argv)
                   and not p.startswith("home")]  # fmt: skip
        if changed:
            counts.broken("changes", argv, str(sorted(changed)[:5]))

    return Family(name, strategy, check)


COMMANDS_FAMILIES = [command_family(n, s) for n, s in FAMILIES.items()]
ALL = PARSERS + COMMANDS_FAMILIES


@contextlib.contextmanager
def small_filesystem(mount_point: Path, size: str = "1G") -> Iterator[Path]:
    """A tmpfs of `size` at `mount_point` for the command families: a fuzzed `-s 9T` fails in
    it instead of filling the machine's disk for everyone on it."""
    import subprocess

    mount_point.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount_point)],
                   check=True)  # fmt: skip
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def workdir_for_commands(base: Path) -> Path:
    """The directory the command families run in: an image, a packed one, a script, env files.
    `base` should be a `small_filesystem`."""
    from condatainer.image.create import create
    from condatainer.image.pack import pack

    d = base / "work"
    d.mkdir(parents=True)
    create(d / "env.img", 64 * 1024 * 1024, "balanced", sparse=True)
    pack(d / "env.img", d / "packed.img.zst")
    (d / "job.sh").write_text("#!/bin/sh\n#DEP: env.img\necho hi\n")
    (d / "env.yml").write_text("dependencies:\n  - cnt-hello\n")
    (d / "spec.txt").write_text("cnt-hello\n")
    (d / "dir").mkdir()
    return d
