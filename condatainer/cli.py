# PYTHON_ARGCOMPLETE_OK
"""The command line: builds the parser, dispatches to one small adapter per subcommand.

Adapters turn flags into plain values and call the modules that do the work; core code never
sees an argparse Namespace.  `main(argv) -> int` is the only place that catches
CondatainerError and turns it into `condatainer: error: ...` / `hint: ...` and an exit code;
`sys.exit` happens only in `entry`.  Heavy modules (jinja2, yaml, e2fsprogs wrappers) are imported
inside the adapters, after argcomplete has had its chance to answer a TAB press.

The parser is `usage.Parser` (a wrong command line becomes a UsageError with "did you mean"
and the subcommand's help as the hint); `examples.attach` adds the examples to every --help.
How much is shown (-q/-v, before or after the command) is decided here, once per run, in the
one `display.Reporter` the adapters share (`_reporter()`): the core reports notices and the
progress of long operations to it, and it decides what reaches the terminal.

Long on purpose: each subcommand's parser and its adapter sit side by side, and the whole
command line is read in one place; neither part decides anything.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any, Callable

from condatainer import __version__
from condatainer.errors import PROG, CondatainerError, UsageError, guarded, report
from condatainer.shellgen import SHELLS
from condatainer.usage import Parser

# Subcommands whose arguments after the first `--` are a command line or package list.  (Not
# exec: its command starts at the first positional word and may hold a `--` of its own.)
_DASHDASH = {"e", "o"}

Handler = Callable[[argparse.Namespace], int]


# --- completers (argcomplete calls them with prefix=...; kept import-light) ----------------


def _complete_images(prefix: str, **_: Any) -> list[str]:
    from condatainer import completers

    return completers.images(prefix)


def _complete_profiles(prefix: str, **_: Any) -> list[str]:
    from condatainer import completers

    return completers.profiles(prefix)


def _complete_mm(prefix: str, parsed_args: argparse.Namespace, **_: Any) -> list[str]:
    from condatainer import completers

    return completers.complete_mm(prefix, parsed_args)


def _complete_mm_ops(prefix: str, **_: Any) -> dict[str, str]:
    from condatainer import completers

    return completers.mm_ops(prefix)


def _complete_shells(prefix: str, **_: Any) -> list[str]:
    from condatainer import completers

    return completers.shells(prefix)


def _complete_scripts(prefix: str, **_: Any) -> list[str]:
    from condatainer import completers

    return completers.scripts(prefix)


def _complete_config_keys(prefix: str, **_: Any) -> dict[str, str]:
    from condatainer import completers

    return completers.config_keys(prefix)


def _complete_config_values(prefix: str, parsed_args: argparse.Namespace, **_: Any) -> list[str]:
    from condatainer import completers

    return completers.config_values(prefix, getattr(parsed_args, "key", None))


def _arg(parser: argparse.ArgumentParser, *names: str, completer: Any = None, **kw: Any) -> None:
    action = parser.add_argument(*names, **kw)
    if completer is not None:
        action.completer = completer  # type: ignore[attr-defined]


# --- parser ------------------------------------------------------------------------------------


def _add_create_options(p: argparse.ArgumentParser) -> None:
    _arg(
        p,
        "image",
        nargs="?",
        default=None,
        completer=_complete_images,
        help="image to create (default env.img; .img added when no extension)",
    )
    from condatainer import newenv  # the spellings its import-light path reads

    p.add_argument(*newenv.SIZE, help="image size, e.g. 10G, 500M (default from config: 10G)")
    _arg(
        p,
        *newenv.PROFILE,
        completer=_complete_profiles,
        help="inode profile: small|balanced|large (aliases conda, python, default, data, genome)",
    )
    _arg(
        p, "-t", "--type", dest="profile_type", completer=_complete_profiles, help=argparse.SUPPRESS
    )
    p.add_argument("-f", "--file", help="environment.yml or explicit spec .txt to install")
    p.add_argument(
        "-c",
        "--channel",
        action="append",
        default=[],
        help="channel for the packages after -- (repeatable), before config channels",
    )
    p.add_argument(
        "--override-channels",
        action="store_true",
        help="use only the channels given (-c, the environment file's), not config channels",
    )
    p.add_argument(*newenv.FAKEROOT, action="store_true", help="owner 0:0, for --fakeroot use")
    p.add_argument(
        "-b", "--base", "--base-image", dest="base", help="base image the packages are installed in"
    )
    p.add_argument(*newenv.SPARSE, action="store_true", help="do not allocate the space up front")
    p.add_argument("--dry-run", action="store_true", help="show what would be installed")
    p.add_argument("--json", action="store_true", help="with --dry-run: print JSON")
    p.add_argument("pkgs", nargs="*", help=argparse.SUPPRESS)
    p.set_defaults(handler=_cmd_create)


def _add_option(p: Any, option: Any, completer: Any = None) -> None:
    """Add one `run.options.Option` to a parser, spelled as the table spells it."""
    help_text = argparse.SUPPRESS if option.help is None else option.help
    kw: dict[str, Any] = {"dest": option.dest, "help": help_text, "completer": completer}
    if option.metavar:
        kw["metavar"] = option.metavar
    if option.kind == "flag":
        kw["action"] = "store_true"
    elif option.kind == "append":
        kw.update(action="append", default=[])
    elif option.kind == "optional":  # `--opt` is True, `--opt=VALUE` the text (_attach_values)
        kw.update(nargs="?", const=True, default=None, type=lambda text: text or True)
    _arg(p, *option.flags, **kw)


def _add_container_options(p: argparse.ArgumentParser) -> None:
    from condatainer.run import options

    for option in options.CONTAINER:
        _add_option(p, option)


def _add_overlay(ov: argparse.ArgumentParser) -> None:
    ovs = ov.add_subparsers(dest="overlay_command", metavar="ACTION")
    ov.set_defaults(handler=lambda a: _usage(ov))
    _add_create_options(ovs.add_parser("create", help="create an env image"))
    p = ovs.add_parser("resize", help="grow or shrink an image")
    _arg(p, "image", completer=_complete_images)
    p.add_argument("-s", "--size", required=True, help="new size, e.g. 20G")
    p.set_defaults(handler=_cmd_resize)
    p = ovs.add_parser("check", help="check the filesystem (e2fsck) and explain the result")
    _arg(p, "image", completer=_complete_images)
    p.add_argument("-f", "--force", action="store_true", help="check even if marked clean")
    p.add_argument(
        "--repair",
        action="store_true",
        help="repair what e2fsck can, and what an interrupted resize, chown or create left",
    )
    p.add_argument(
        "--from-host",
        metavar="HOST",
        help="with --repair: also repair what an interrupted command on HOST left (only once"
        " you know it is no longer running there)",
    )
    p.set_defaults(handler=_cmd_check)
    p = ovs.add_parser("chown", help="change the owner of the env files in an image")
    _arg(p, "image", completer=_complete_images)
    p.add_argument("-u", "--uid", type=int, help="user id (default: yours)")
    p.add_argument("-g", "--gid", type=int, help="group id (default: yours)")
    p.add_argument("--root", action="store_true", help="0:0, for --fakeroot use")
    p.add_argument(
        "-p",
        "--path",
        action="append",
        default=[],
        dest="paths",
        help="only this in-container path, e.g. /ext3/env/pkgs (repeatable)",
    )
    p.set_defaults(handler=_cmd_chown)
    _add_info(ovs.add_parser("info", help=_COMMANDS["info"][0]))
    _add_export(ovs.add_parser("export", help=_COMMANDS["export"][0]))
    p = ovs.add_parser("pack", help="shrink to minimum and compress with zstd")
    _arg(p, "image", completer=_complete_images)
    p.add_argument("-o", "--output", help="packed file (default IMAGE.zst)")
    p.set_defaults(handler=_cmd_pack)
    p = ovs.add_parser("unpack", help="decompress a packed image back to its size")
    p.add_argument("packed")
    p.add_argument("-o", "--output", help="image to write (default: name without .zst)")
    p.add_argument("-s", "--size", help="size to grow back to (default: the size at pack time)")
    p.set_defaults(handler=_cmd_unpack)


def _add_info(p: argparse.ArgumentParser) -> None:
    _arg(p, "image", completer=_complete_images)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=_cmd_info)


def _add_export(p: argparse.ArgumentParser) -> None:
    from condatainer.run import mm, options

    _arg(p, "image", completer=_complete_images)
    for flags, dest, help_text in mm.EXPORT_FLAGS:  # CondaTainer's, passed to micromamba
        p.add_argument(*flags, dest=dest, action="store_true", help=help_text)
    for option in options.CONTAINER:  # -e is --explicit here, as in CondaTainer
        _add_option(p, option.replace(flags=tuple(f for f in option.flags if f != "-e")))
    p.set_defaults(handler=_cmd_export)


def _add_e(p: argparse.ArgumentParser) -> None:
    _arg(
        p,
        "images",
        nargs="*",
        metavar="OVERLAY",
        completer=_complete_images,
        help="images (default: env.img found from here upwards)",
    )
    from condatainer.run import options

    p.add_argument("-r", "--read-only", action="store_true", help="mount read-only")
    p.add_argument("-n", "--no-autoload", action="store_true", help="do not look for env.img")
    _add_option(p, options.WRITABLE.replace(help="mount writable (the default; not with -r)"))
    _add_container_options(p)
    p.add_argument("cmd", nargs="*", help=argparse.SUPPRESS)
    p.set_defaults(handler=_cmd_e)


def _add_exec(p: argparse.ArgumentParser) -> None:
    from condatainer.run import options

    for option in options.EXEC:  # the table the exec fast path reads too (run.replay)
        _add_option(p, option, _complete_images if option is options.OVERLAY else None)
    p.add_argument("cmd", nargs=argparse.REMAINDER, help="command and its arguments")
    p.set_defaults(handler=_cmd_exec)


# `run`'s job flags (CondaTainer's names): (flags, dest, metavar, help).  Each takes a value.
_RUN_JOB_FLAGS: tuple[tuple[tuple[str, ...], str, str, str], ...] = (
    (("-c", "--cpu"), "cpu", "N", "CPUs per task (sbatch --cpus-per-task)"),
    (("-m", "--mem"), "mem", "SIZE", "memory per node, e.g. 4G, 8192M (sbatch --mem)"),
    (("-t", "--time"), "time", "TIME", "time limit, e.g. 2h30m, 4d12h, 01:30:00 (sbatch --time)"),
    (("-g", "--gpu"), "gpu", "GPU", "GPUs per node: N, TYPE:N or TYPE (sbatch --gpus-per-node)"),
    (("-n", "--name"), "name", "NAME", "job name (sbatch --job-name)"),
    (("-o", "--output"), "output", "FILE", "job output log (sbatch --output)"),
    (("-e", "--error"), "error", "FILE", "job error log (sbatch --error)"),
    (("-p", "--partition"), "partition", "NAME", "partition (sbatch --partition)"),
    (("-A", "--account"), "account", "NAME", "account to charge (sbatch --account)"),
    (("--array",), "array", "FILE", "one array task per line of FILE; its words are appended"),
    (("--array-limit",), "array_limit", "N", "with --array: at most N tasks at once"),
)
_RUN_DEPENDENCIES = ("afterok", "afternotok", "afterany")


def _run_value_flags() -> frozenset[str]:
    """Every `run` option that takes a value (for `_split_run`, which runs before argparse)."""
    from condatainer.run import options

    flags = {f for spec in _RUN_JOB_FLAGS for f in spec[0]}
    flags |= {f"--{d}" for d in _RUN_DEPENDENCIES}
    flags |= {f for o in options.RUN_CONTAINER if o.kind in ("value", "append") for f in o.flags}
    return frozenset(flags)


def _add_run(p: argparse.ArgumentParser) -> None:
    from condatainer.run import options

    p.add_argument("--submit", action="store_true", help="submit with sbatch")
    p.add_argument("--local", action="store_true", help="run here, even with #SBATCH lines")
    p.add_argument(
        "--dry-run", action="store_true", help="say what would happen (exit 1: it would not start)"
    )
    p.add_argument("--json", action="store_true", help="with --dry-run: print JSON")
    p.add_argument("--reexec", action="store_true", help=argparse.SUPPRESS)
    jobs = p.add_argument_group("job control (submitted jobs; -c and -m also set NCPUS, MEM here)")
    for flags, dest, metavar, help_text in _RUN_JOB_FLAGS:
        jobs.add_argument(*flags, dest=dest, metavar=metavar, help=help_text)
    for kind in _RUN_DEPENDENCIES:
        jobs.add_argument(
            f"--{kind}",
            action="append",
            default=[],
            metavar="IDS",
            help=f"start after these jobs ({kind}; colon-separated ids)",
        )
    box = p.add_argument_group("container")
    _add_option(box, options.WRITABLE.replace(help="mount #DEP images writable"))
    for option in options.RUN_CONTAINER:
        _add_option(box, option)
    _arg(p, "script", completer=_complete_scripts)
    rest = p.add_argument("args", nargs=argparse.REMAINDER)
    rest.required = False  # argparse counts an empty REMAINDER as missing
    p.set_defaults(handler=_cmd_run)


def _add_task(p: argparse.ArgumentParser) -> None:
    p.add_argument("plan")
    p.set_defaults(handler=_cmd_task)


def _add_mm(p: argparse.ArgumentParser) -> None:
    from condatainer.run import mm, options

    p.add_argument("-o", "--overlay", help="image (default: $CNT_OVERLAY, else autoload)")
    _add_option(p, options.WAIT_LOCK)
    _arg(
        p,
        "op",
        choices=mm.names(),
        metavar="OP",
        completer=_complete_mm_ops,
        help=" | ".join(mm.names()),
    )
    _arg(p, "args", nargs=argparse.REMAINDER, completer=_complete_mm)
    p.set_defaults(handler=_cmd_mm)


def _add_micromamba(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "action",
        nargs="?",
        choices=["info"],
        help="info: only show which micromamba is used (never fetches)",
    )
    p.add_argument(
        "--update", action="store_true", help="fetch the newest micromamba of the series"
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=_cmd_micromamba)


def _add_config(p: argparse.ArgumentParser) -> None:
    cs = p.add_subparsers(dest="config_command", metavar="ACTION")
    p.set_defaults(handler=_cmd_config, config_command="show")
    p.add_argument("--json", action="store_true", help="config show as JSON")
    show = cs.add_parser("show", help="every key, its value and where it came from")
    show.add_argument("--json", action="store_true", help="print JSON", default=argparse.SUPPRESS)
    g = cs.add_parser("get", help="print one value")
    _arg(g, "key", completer=_complete_config_keys)
    s = cs.add_parser("set", help="set a value in the config file")
    _arg(s, "key", completer=_complete_config_keys)
    _arg(s, "value", completer=_complete_config_values)
    cs.add_parser("paths", help="where config, data and cache live")
    cs.add_parser("validate", help="check the site file, your file and CNT_* variables")


def _add_header(p: argparse.ArgumentParser) -> None:
    _arg(
        p,
        "--insert",
        metavar="SCRIPT",
        completer=_complete_scripts,
        help="insert it into SCRIPT in place (or bring it up to date)",
    )
    p.set_defaults(handler=_cmd_header)


def _add_init(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "shell",
        nargs="?",
        choices=SHELLS,
        help="bash, zsh or fish (default: CNT_SHELL, else your shell)",
    )
    p.add_argument("--uninstall", action="store_true", help="remove the hook again")
    p.add_argument("--dry-run", action="store_true", help="show the change, write nothing")
    p.set_defaults(handler=_cmd_init)


def _add_hook(p: argparse.ArgumentParser) -> None:
    p.add_argument("shell", choices=SHELLS)
    p.set_defaults(handler=_cmd_hook)


def _add_trust_verb(handler: Handler) -> Callable[[argparse.ArgumentParser], None]:
    def add(p: argparse.ArgumentParser) -> None:
        _arg(
            p,
            "image",
            nargs="?",
            default=None,
            completer=_complete_images,
            help="image (default: the one found from here upwards)",
        )
        p.set_defaults(handler=handler)

    return add


def _add_activate(p: argparse.ArgumentParser) -> None:
    p.add_argument("shell", choices=SHELLS)
    p.add_argument("--hook-version")
    p.add_argument("--noticed", action="store_true")
    p.add_argument("--noted", action="store_true")
    p.add_argument("image")
    p.add_argument("project")
    p.set_defaults(handler=_cmd_activate)


def _add_purge(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dry-run", action="store_true")
    p.set_defaults(handler=_cmd_purge)


def _add_completion(p: argparse.ArgumentParser) -> None:
    _arg(
        p,
        "shell",
        choices=SHELLS,
        completer=_complete_shells,
        help="bash (eval it, or save it in bash-completion's directory), zsh (eval it, or"
        " save it as _condatainer on $fpath) or fish (source it, or save it as"
        " condatainer.fish and cnt.fish in a completions directory); `condatainer init` sets"
        " it up with the hook",
    )
    p.set_defaults(handler=_cmd_completion)


def _add_base(p: argparse.ArgumentParser) -> None:
    bs = p.add_subparsers(dest="base_command", metavar="ACTION")
    p.set_defaults(handler=lambda a: _usage(p))
    q = bs.add_parser(
        "pull", help="fetch the base image with apptainer pull (do it on a login node)"
    )
    q.add_argument("source", nargs="?", help="image reference (default: config base_source)")
    q.add_argument("-o", "--output", help="image file to write (default: condatainer's images dir)")
    q.add_argument("--force", action="store_true", help="fetch it again even if it is there")
    q.set_defaults(handler=_cmd_base_pull)
    q = bs.add_parser("build", help="build a base image from a definition file (apptainer build)")
    q.add_argument("--from", dest="source", help="image to start from (default: base_source)")
    q.add_argument("--def", dest="def_file", metavar="FILE", help="your own definition file")
    q.add_argument("-o", "--output", help="image file to write (default: condatainer's images dir)")
    q.add_argument("--force", action="store_true", help="build it again even if it is there")
    q.add_argument(
        "--fakeroot", action="store_true", help="build with --fakeroot (default when not root)"
    )
    q.add_argument(
        "--print-def", action="store_true", help="print the definition file, build nothing"
    )
    q.set_defaults(handler=_cmd_base_build)
    q = bs.add_parser("info", help="which base image runs, where it is, and what is in it")
    q.add_argument("-b", "--base", help="describe this image instead")
    q.add_argument("--json", action="store_true", help="print JSON")
    q.set_defaults(handler=_cmd_base_info)


def _add_doctor(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=_cmd_doctor)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


# --- adapters ----------------------------------------------------------------------------------


# How much this run shows (-q/-v): display.QUIET, NORMAL or VERBOSE; set by `main`, which
# also forgets the Reporter of a previous run in this process (tests call main many times).
_level = 0
_report: Any = None


def _set_output(*, quiet: bool, verbose: bool) -> None:
    global _level, _report
    _level = -1 if quiet else (1 if verbose else 0)
    _report = None
    loaded = sys.modules.get("condatainer.runner")  # not imported just to say "no trace"
    if loaded is not None:
        loaded.trace = None  # type: ignore[attr-defined]
    if verbose:  # every external program, as it starts
        import shlex

        from condatainer import runner

        runner.trace = lambda argv: _reporter().detail("running: " + shlex.join(argv))


def _reporter() -> Any:
    """The run's one formatter of notices, progress and captured output (display.Reporter),
    showing as much as -q/-v asked for."""
    global _report
    if _report is None:
        from condatainer.display import Reporter

        _report = Reporter(level=_level, show_bytes=_show_bytes)
    return _report


def _show_bytes(n: int) -> str:
    """Sizes on the progress line, spelled as users type them (imported when first shown)."""
    from condatainer.image.sizes import format_size

    return format_size(n)


def _print_lines(lines: Sequence[str]) -> None:
    from condatainer.display import printable

    for line in lines:
        print(printable(line, lines=True))


def _print_json(data: object) -> None:
    import json

    print(json.dumps(data, indent=2))


def _cmd_create(a: argparse.Namespace) -> int:
    from condatainer import newenv, provision

    pkgs, channels, override = _split_pkg_channels(a.pkgs)
    report = _reporter()
    creation = provision.prepare(
        image=a.image,
        size=a.size,
        profile=a.profile if a.profile is not None else a.profile_type,
        deprecated_type=a.profile_type is not None,
        envfile=a.file,
        pkgs=pkgs,
        channels=[*a.channel, *channels],
        override_channels=a.override_channels or override,
        fakeroot=a.fakeroot,
        sparse=a.sparse,
        dry_run=a.dry_run,
        base=a.base,
    )
    report.notes(creation.notices)
    if a.dry_run:
        if a.json:
            _print_json(provision.dry_run_report(creation))
        else:
            _print_lines(provision.dry_run_lines(creation))
        return 0
    created = provision.create(creation, report)
    report.notes(created.notices)
    for line in newenv.summary(created):
        print(line)
    return 0


def _split_pkg_channels(words: Sequence[str]) -> tuple[list[str], list[str], bool]:
    """`-- numpy scipy -c conda-forge`: package specs, with `-c/--channel CH` (and
    `--override-channels`, as micromamba spells it there too) taken out."""
    pkgs: list[str] = []
    channels: list[str] = []
    override = False
    it = iter(words)
    for word in it:
        if word == "--override-channels":
            override = True
        elif word in ("-c", "--channel"):
            value = next(it, None)
            if value is None:
                raise UsageError(f"{word} needs a channel name", hint="-- PKG... -c CHANNEL")
            channels.append(value)
        elif word.startswith("--channel="):
            channels.append(word.split("=", 1)[1])
        else:
            pkgs.append(word)
    return pkgs, channels, override


def _cmd_resize(a: argparse.Namespace) -> int:
    from condatainer.image import resize, sizes

    size = sizes.parse_size(a.size)
    report = _reporter()
    with report.progress(f"resizing {a.image} to {sizes.format_size(size)}") as progress:
        result = resize.resize(a.image, size, progress=progress, notify=report.note)
    report.notes(result.notices)
    if result.changed:
        print(
            f"{a.image}: resized from {sizes.format_size(result.old_bytes)}"
            f" to {sizes.format_size(result.new_bytes)}"
        )
    else:
        print(f"{a.image}: already {sizes.format_size(result.new_bytes)}; nothing to do")
    return 0


def _cmd_check(a: argparse.Namespace) -> int:
    from condatainer.image import check

    if a.from_host and not a.repair:
        raise UsageError("--from-host goes with --repair", hint=f"add --repair: {a.image}")
    verb = "repairing" if a.repair else "checking"
    with _reporter().progress(f"{verb} {a.image}") as progress:
        result = check.check(
            a.image, force=a.force, repair=a.repair, from_host=a.from_host, progress=progress
        )
    print(result.explanation)
    return 0 if result.clean else 1


def _cmd_chown(a: argparse.Namespace) -> int:
    from condatainer.image import chown

    uid = 0 if a.root else (a.uid if a.uid is not None else os.getuid())
    gid = 0 if a.root else (a.gid if a.gid is not None else os.getgid())
    report = _reporter()
    with report.progress(f"changing the owner of {a.image}'s files") as progress:
        result = chown.chown(a.image, uid, gid, a.paths, progress=progress, notify=report.note)
    print(f"{a.image}: {result.changed} inodes now owned by {uid}:{gid} ({result.seconds:.2f} s)")
    return 0


def _cmd_info(a: argparse.Namespace) -> int:
    from condatainer.image import envfile, info

    details = info.info(a.image)
    if a.json:
        _print_json(details.to_json())
    else:
        print(details.render())
    # A broken sidecar does not hide the rest of the report, but it is still an error: the
    # same file would stop `exec` and `e`, so say so with its line number and exit 1.
    envfile.load(a.image)
    return 0


def _cmd_pack(a: argparse.Namespace) -> int:
    import time

    from condatainer.image import pack
    from condatainer.image.sizes import format_size
    from condatainer.terminal import duration

    started = time.monotonic()
    report = _reporter()
    with report.progress(f"packing {a.image}") as progress:
        result = pack.pack(a.image, a.output, progress=progress, notify=report.note)
    print(
        f"{a.image}: packed into {result.output}: {format_size(result.original_bytes)}"
        f" ({format_size(result.used_bytes)} in use) -> {format_size(result.packed_bytes)}"
        f" in {duration(time.monotonic() - started)}"
    )
    return 0


def _cmd_unpack(a: argparse.Namespace) -> int:
    import time

    from condatainer.image import pack, sizes
    from condatainer.terminal import duration

    size = sizes.parse_size(a.size) if a.size is not None else None
    started = time.monotonic()
    report = _reporter()
    with report.progress(f"unpacking {a.packed}") as progress:
        result = pack.unpack(
            a.packed, a.output, size_bytes=size, progress=progress, notify=report.note
        )
    report.notes(result.notices)
    packed_bytes = os.stat(a.packed).st_size
    alloc = "sparse" if result.sparse else "allocated"
    print(
        f"{a.packed}: unpacked into {result.output}: {sizes.format_size(packed_bytes)}"
        f" -> {sizes.format_size(result.size_bytes)} ({alloc})"
        f" in {duration(time.monotonic() - started)}"
    )
    return 0


def _wait_lock(a: argparse.Namespace) -> float | None:
    from condatainer.run import options

    try:
        return options.wait_seconds(getattr(a, "wait_lock", None))
    except ValueError as exc:
        raise UsageError(str(exc), hint="e.g. --wait-lock=600, or --wait-lock") from None


def _request(a: argparse.Namespace, **kw: Any) -> Any:
    from condatainer.run.resolve import Request

    return Request(
        apptainer=tuple(getattr(a, "apptainer", ())),
        wait_lock=_wait_lock(a),
        base_image=a.base,
        binds=tuple(a.bind),
        env=tuple(a.env),
        fakeroot=a.fakeroot,
        contain=a.contain,
        containall=a.containall,
        cleanenv=a.cleanenv,
        workdir=a.workdir,
        extra_args=tuple(a.extra),
        **kw,
    )


def _cmd_e(a: argparse.Namespace) -> int:
    from condatainer import config, session
    from condatainer.run import launch

    if a.writable and a.read_only:
        raise UsageError("-w and -r contradict each other", hint="condatainer e -r IMAGE")
    req = _request(
        a,
        command=tuple(a.cmd),
        images=tuple(a.images),
        writable=not a.read_only,
        autoload=not a.no_autoload,
    )
    cfg = config.load(os.environ)
    report = _reporter()
    entry = session.entry(req, cfg, report.note)
    for line in entry.banner:
        report.step(line)
    return launch.execute(entry.plan, cfg, report.note)


def _cmd_exec(a: argparse.Namespace) -> int:
    from condatainer import config
    from condatainer.run import launch

    cmd = a.cmd[1:] if a.cmd[:1] == ["--"] else a.cmd
    if not a.images:
        raise UsageError("exec needs at least one image", hint="condatainer exec -o IMAGE -- CMD")
    from condatainer.hook import trust

    if a.if_allowed:
        for image in a.images:
            trust.require_allowed(image)
    req = _request(a, command=tuple(cmd), images=tuple(a.images), writable=a.writable)
    cfg = config.load(os.environ)
    report = _reporter()
    if not cmd:  # CondaTainer's `exec -o IMG`: a shell, as `e` opens one (read-only unless -w)
        from condatainer import session

        entry = session.entry(req, cfg, report.note)
        for line in entry.banner:
            report.step(line)
        return launch.execute(entry.plan, cfg, report.note)
    plan = launch.plan_for(req, cfg, notify=report.note)
    if a.words is not None:  # the command line as typed: the next identical call replays this
        records = [str(trust.record_path(i)) for i in a.images] if a.if_allowed else []
        launch.remember(a.words, req, plan, cfg, os.environ, also=records)
    return launch.execute(plan, cfg, report.note)


def _cmd_export(a: argparse.Namespace) -> int:
    from condatainer import session
    from condatainer.run import mm

    req = _request(a, command=(), images=(a.image,), writable=False)
    args = [flags[-1] for flags, dest, _ in mm.EXPORT_FLAGS if getattr(a, dest)]
    return session.mm_op(req, "export", args, _reporter())


def _cmd_run(a: argparse.Namespace) -> int:
    from condatainer.jobs import control, run
    from condatainer.run import options

    _wait_lock(a)  # checked here: the value goes on as the word typed

    ctl = control.from_flags(
        **{dest: getattr(a, dest) for _, dest, _, _ in _RUN_JOB_FLAGS},
        **{kind: getattr(a, kind) for kind in _RUN_DEPENDENCIES},
    )
    container = {
        o.dest: getattr(a, o.dest)
        for o in options.RUN_CONTAINER
        if getattr(a, o.dest) not in (None, False, [])
    }
    flags = run.RunFlags(
        writable=a.writable,
        submit=a.submit,
        local=a.local,
        dry_run=a.dry_run,
        reexec=a.reexec,
        control=ctl,
        container=container,
    )
    outcome = run.run_command(a.script, list(a.args), flags, _reporter())
    if outcome.job_id is not None:
        print(outcome.job_id)
    elif a.json and outcome.report is not None:
        _print_json(outcome.report)
    else:
        _print_lines(outcome.lines)
    return outcome.status


def _cmd_task(a: argparse.Namespace) -> int:
    from condatainer.jobs import run

    return run.run_task(a.plan, _reporter())


def _cmd_mm(a: argparse.Namespace) -> int:
    from condatainer import session
    from condatainer.run import mm
    from condatainer.run.resolve import Request

    op = mm.lookup(a.op)
    args, after = mm.take_overlay(a.args)  # `mm OP -o IMG ...` as well as `mm -o IMG OP ...`
    if a.overlay and after and a.overlay != after:
        raise UsageError(
            f"two images: -o {a.overlay} and -o {after}", hint=f"condatainer mm -o IMAGE {a.op}"
        )
    if mm.wants_help(args):  # answered here: no image needed
        sys.stdout.write(mm.help_text(op))
        return 0
    image = a.overlay or after or os.environ.get("CNT_OVERLAY") or None
    req = Request(
        command=(),
        images=(image,) if image else (),
        autoload=image is None,
        wait_lock=_wait_lock(a),
    )
    return session.mm_op(req, a.op, args, _reporter())


def _cmd_micromamba(a: argparse.Namespace) -> int:
    from condatainer import config
    from condatainer.micromamba import info

    if a.update and a.action:
        raise UsageError("--update does not go with info", hint="condatainer micromamba --update")
    cfg = config.load(os.environ)
    report = _reporter()
    if a.update or a.action is None:  # fetch (pre-fetch on a login node) or update
        from condatainer.micromamba import bootstrap

        with report.progress("condatainer's micromamba") as progress:
            if a.update:
                fetched = bootstrap.update(cfg, report.note, progress=progress)
            else:
                bootstrap.ensure(cfg, report.note, progress=progress)
        if a.update and not fetched.changed and fetched.origin is not None:
            report.note(
                f"micromamba {fetched.origin.version} is already the newest"
                f" {cfg.micromamba_version}.* in {fetched.origin.channel}"
            )
    details = info.info(cfg)
    if a.json:
        _print_json(details.to_json())
    else:
        _print_lines(details.lines())
    return 0 if details.problem is None else 1


def _cmd_config(a: argparse.Namespace) -> int:
    from condatainer import config

    action = a.config_command
    if action == "set":  # must work when the file is broken: it is how users fix it
        path = config.set_value(a.key, a.value)
        print(f"{a.key} = {a.value}  (written to {path})")
        try:
            source = config.load(os.environ).source(a.key)
        except CondatainerError:
            source = ""  # another layer is broken: `config validate` says which
        if source.startswith("env "):
            _reporter().note(f"{source[4:]} is set and overrides the file")
    elif action == "paths":
        for name, path in config.paths().items():
            print(f"{name:8} {path}")
    elif action == "get":
        print(config.get(config.load(os.environ), a.key))
    elif action == "validate":
        bad = 0
        for layer, problem in config.validate(os.environ):
            if problem is None:
                print(f"ok      {layer}")
            else:
                bad += 1
                print(f"invalid {layer}", flush=True)
                report(problem)
        return 1 if bad else 0
    elif a.json:
        _print_json(config.show_json(config.load(os.environ)))
    else:
        print(config.show(config.load(os.environ)))
    return 0


def _cmd_header(a: argparse.Namespace) -> int:
    from condatainer.jobs import header

    if a.insert is None:
        sys.stdout.write(header.text())
    elif header.insert_file(a.insert):
        print(f"{a.insert}: header inserted")
    else:
        print(f"{a.insert}: header already up to date")
    return 0


def _cmd_init(a: argparse.Namespace) -> int:
    from condatainer.hook import init

    _print_lines(init.init(a.shell, uninstall=a.uninstall, dry_run=a.dry_run))
    return 0


def _cmd_hook(a: argparse.Namespace) -> int:
    from condatainer.hook import init

    sys.stdout.write(init.hook(a.shell))  # rendered in full before anything is printed
    return 0


def _cmd_allow(a: argparse.Namespace) -> int:
    from condatainer.hook import init

    _print_lines([init.allow(a.image)])
    return 0


def _cmd_deny(a: argparse.Namespace) -> int:
    from condatainer.hook import init

    _print_lines([init.deny(a.image)])
    return 0


def _cmd_activate(a: argparse.Namespace) -> int:
    from condatainer.hook import activate

    return activate.command(
        a.shell, a.image, a.project, hook_version=a.hook_version, noticed=a.noticed, noted=a.noted
    )


def _cmd_completion(a: argparse.Namespace) -> int:
    from condatainer import completion

    sys.stdout.write(completion.script(a.shell))
    return 0


def _cmd_purge(a: argparse.Namespace) -> int:
    from condatainer import purge
    from condatainer.image.sizes import format_size

    found = purge.survey()
    if a.dry_run:
        if found.items:
            for item in found.items:
                where = (
                    ", ".join(map(str, item.paths)) if len(item.paths) < 3 else item.paths[0].parent
                )
                print(f"  {format_size(item.bytes):>7}  {item.what}: {where}")
        else:
            print("  nothing: condatainer keeps no caches, micromamba or base images here")
        for line in found.kept:
            print(f"  kept: {line}")
        return 0
    _print_lines(purge.remove(found))
    return 0


def _fetched(fetched: Any, verb: str, started: float) -> None:
    import time

    from condatainer.image.sizes import format_size
    from condatainer.terminal import duration

    if fetched.made:
        size = format_size(os.stat(fetched.path).st_size)
        took = duration(time.monotonic() - started)
        print(f"{verb} {fetched.source} into {fetched.path} ({size} in {took})")
    else:
        print(f"{fetched.path} is already there; --force makes it again")


def _cmd_base_pull(a: argparse.Namespace) -> int:
    import time

    from condatainer import config
    from condatainer.run import basefetch

    cfg = config.load(os.environ)
    started = time.monotonic()
    fetched = basefetch.pull_for(cfg, a.source, a.output, force=a.force, notify=_reporter().note)
    _fetched(fetched, "pulled", started)
    return 0


def _cmd_base_build(a: argparse.Namespace) -> int:
    import time

    from condatainer import config
    from condatainer.run import basefetch

    cfg = config.load(os.environ)
    if a.print_def:
        sys.stdout.write(basefetch.definition(a.source or cfg.base_source))
        return 0
    started = time.monotonic()
    fetched = basefetch.build_for(
        cfg,
        a.source,
        a.def_file,
        a.output,
        force=a.force,
        fakeroot=a.fakeroot,
        notify=_reporter().note,
    )
    _fetched(fetched, "built", started)
    return 0


def _cmd_base_info(a: argparse.Namespace) -> int:
    from condatainer import config
    from condatainer.run import baseimage

    details = baseimage.describe(a.base, config.load(os.environ))
    if a.json:
        _print_json(details.to_json())
    else:
        _print_lines(baseimage.render(details).splitlines())
    return 0 if details.usable else 1


def _cmd_doctor(a: argparse.Namespace) -> int:
    from condatainer import doctor

    checks = doctor.check(os.environ)
    if a.json:
        _print_json(doctor.to_json(checks))
    else:
        print(doctor.render(checks))
    return doctor.exit_code(checks)


# Every subcommand: its help line (None: hidden) and the function that adds its arguments.
_COMMANDS: dict[str, tuple[str | None, Callable[[argparse.ArgumentParser], None]]] = {
    "o": ("create an env image (= overlay create)", _add_create_options),
    "overlay": ("create, resize, check, chown, inspect images", _add_overlay),
    "info": ("size, usage, owner, channels and packages of an image (= overlay info)", _add_info),
    "export": ("print the env as environment.yml (= overlay export)", _add_export),
    "e": ("enter the env (a shell, or -- CMD), writable by default", _add_e),
    "exec": ("run a command with images, read-only by default", _add_exec),
    "run": ("run a job script in its container (#DEP / #CNT)", _add_run),
    "mm": ("micromamba operations on the env image", _add_mm),
    "micromamba": ("show (and fetch) the micromamba condatainer uses; --update", _add_micromamba),
    "config": ("show, get and set configuration", _add_config),
    "base": ("fetch, build or describe the base image containers run in", _add_base),
    "header": ("print the self-reexec header for job scripts", _add_header),
    "init": (
        "activate env images on cd, with TAB completion: add the hook to your shell",
        _add_init,
    ),
    "hook": ('print the shell hook, for eval "$(condatainer hook bash)"', _add_hook),
    "allow": ("let the cd hook activate an image", _add_trust_verb(_cmd_allow)),
    "deny": ("stop the cd hook activating an image", _add_trust_verb(_cmd_deny)),
    # Hidden: called by the hook when the image it found changes (stdout is eval'd).
    "_activate": (None, _add_activate),
    # Hidden: one task of a multi-task job runs the Plan its batch step made (jobs.run).
    "_task": (None, _add_task),
    # Hidden: install.sh --uninstall --purge lists (--dry-run) and removes condatainer's own
    # caches, micromamba, base images and allow list (purge.py).
    "_purge": (None, _add_purge),
    "completion": ("print the TAB completion script for bash, zsh or fish", _add_completion),
    "doctor": ("check what condatainer needs and say how to fix it", _add_doctor),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser; with `only`, just that subcommand gets its arguments (the others keep
    their names and help), which is all `main` needs to parse one command line and saves
    building thirty parsers on every exec and every cd into a project."""
    from condatainer import examples

    parser = Parser(
        prog=PROG,
        description="Keep a conda environment in one ext3 image and use it through Apptainer.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    _add_output_options(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_text, add) in _COMMANDS.items():
        if help_text is None and (only != name or "_ARGCOMPLETE" in os.environ):
            continue  # hidden commands exist only when they are the one being run
        p = sub.add_parser(name, help=help_text) if help_text else sub.add_parser(name)
        if only is None or only == name:
            add(p)
    # -q/-v after the command, and the examples of --help: on the commands that can be run
    # (with `only`, the others are names and help lines, never parsed).
    for spelling, command in examples.commands(parser).items():
        if spelling and (only is None or spelling.split()[0] == only):
            _add_output_options(command, top=False)
    examples.attach(parser, only)
    return parser


def _add_output_options(p: argparse.ArgumentParser, *, top: bool) -> None:
    """-q/-v, before the command or after it.  A subcommand's copy has no default, so that it
    does not overwrite what was given before the command (argparse copies its namespace up)."""
    default: dict[str, Any] = {} if top else {"default": argparse.SUPPRESS}
    group = p.add_argument_group("output") if top else p
    group.add_argument(
        "-q", "--quiet", action="store_true", help="only errors and results", **default
    )
    group.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="also each step's time and every program run",
        **default,
    )


# --- entry points ------------------------------------------------------------------------------


def _split_dashdash(argv: list[str]) -> tuple[list[str], list[str] | None]:
    """Split off what follows the first `--` for subcommands whose tail is a command line."""
    if "--" not in argv:
        return argv, None
    words = [w for w in argv[: argv.index("--")] if not w.startswith("-")]
    if not words or (words[0] not in _DASHDASH and words[:2] != ["overlay", "create"]):
        return argv, None
    i = argv.index("--")
    return argv[:i], argv[i + 1 :]


def _attach_values(only: str | None, head: list[str], script: bool) -> list[str]:
    """An "optional" option (`--wait-lock[=SECONDS]`) takes its value only after `=`, as GNU
    getopt's optional arguments do; argparse would take the next word.  So a bare one becomes
    `--wait-lock=` (no limit) before parsing -- among our own options only, never in the
    command's own arguments: for `exec` up to its command (`replay.split`), for `mm` up to
    its operation, for `run` up to its script (the last word of `head` when `script`)."""
    from condatainer.run import options, replay

    bare = {f for o in options.EXEC if o.kind == "optional" for f in o.flags}
    if only not in ("e", "exec", "run", "mm", "overlay") or not bare & set(head):
        return head
    start = head.index(only) + 1
    end = len(head) - 1 if only == "run" and script else len(head)
    if only == "exec":
        parts = replay.split(head[start:])
        end = start + len(parts[0]) if parts is not None else start
    elif only == "mm":
        end = start
        while end < len(head) and head[end].startswith("-"):
            end += 2 if head[end] in ("-o", "--overlay") else 1
    return [*head[:start], *(f"{w}=" if w in bare else w for w in head[start:end]), *head[end:]]


def _split_run(argv: list[str]) -> tuple[list[str], list[str] | None]:
    """`run [OPTIONS] SCRIPT ARGS...`: everything after the script word is the script's, as is
    (argparse would take a script argument that looks like one of run's options, and drop a
    leading `--`).  The script is the first word after `run` that is neither an option nor the
    value of one (`-c 4`; `-c4` and `--cpu=4` carry theirs)."""
    takes_value = _run_value_flags()
    start = argv.index("run") + 1
    i = start
    while i < len(argv):
        word = argv[i]
        if word == "--" and i + 1 < len(argv):
            return [*argv[:i], argv[i + 1]], argv[i + 2 :]
        if not word.startswith("-") or word == "-":
            return argv[: i + 1], argv[i + 1 :]
        i += 2 if word in takes_value else 1
    return argv, None


# Subcommands whose words before the command may hold Apptainer's own options, passed through.
_PASSTHROUGH = {"e", "exec"}


def _take_apptainer_flags(command: str, head: list[str]) -> tuple[list[str], list[str]]:
    """`head` without the Apptainer options before the command (`run.apptainer_flags`), and
    those options.  exec's command starts at its first word that is not an option (as in
    `run.replay.split`); e's words before `--` are all options and images."""
    from condatainer.run import apptainer_flags, options

    table = options.EXEC if command == "exec" else (options.WRITABLE, *options.CONTAINER)
    takes_value = {f: o.kind != "flag" for o in table for f in o.flags}
    if command == "e":
        takes_value |= dict.fromkeys(("-r", "--read-only", "-n", "--no-autoload"), False)
    at = head.index(command) + 1
    rest, passed = apptainer_flags.take(head[at:], takes_value, stop_at_word=command == "exec")
    return [*head[:at], *rest], passed


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    first = next((w for w in args_list if not w.startswith("-")), None)
    only = first if first in _COMMANDS and "_ARGCOMPLETE" not in os.environ else None
    parser = build_parser(only)
    if "_ARGCOMPLETE" in os.environ:  # a TAB press: print the candidates and exit
        from condatainer import completers

        completers.autocomplete(parser)
    head, tail = _split_run(args_list) if only == "run" else _split_dashdash(args_list)
    head = _attach_values(only, head, script=tail is not None)
    passed: list[str] = []
    if only in _PASSTHROUGH:
        try:
            head, passed = _take_apptainer_flags(only, head)
        except UsageError as exc:
            return report(exc)
    try:
        ns = parser.parse_args(head)
    except SystemExit as exc:  # argparse: --help/--version (0)
        return int(exc.code or 0)
    except UsageError as err:  # usage.Parser: a wrong command line
        return report(err)
    ns.apptainer = passed
    quiet, verbose = getattr(ns, "quiet", False), getattr(ns, "verbose", False)
    _set_output(quiet=quiet, verbose=verbose)
    if only == "exec":  # the words a replay of this call will be keyed by (run.replay);
        # not with -q/-v, which a replay (it prints the Plan's notices itself) would not honour
        plain = args_list[:1] == ["exec"] and not (quiet or verbose)
        ns.words = args_list[1:] if plain else None
    if tail is not None:
        if only == "run":
            ns.args = tail
        elif hasattr(ns, "pkgs"):
            ns.pkgs = [*ns.pkgs, *tail]
        else:
            ns.cmd = [*ns.cmd, *tail]
    handler: Handler | None = getattr(ns, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    return guarded(lambda: handler(ns))
