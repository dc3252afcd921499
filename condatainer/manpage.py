"""condatainer(1): the man page, generated from the parser, so it says what `--help` says.

`render()` walks the parser `cli.build_parser()` builds (every visible command and action,
its usage, options and `examples`) and adds what `--help` has no room for: the environment
variables, the files, the exit statuses.  `install.sh` writes it where `man` looks
(`<bin-dir>/../share/man/man1/condatainer.1`, with `cnt.1` pointing at it) from the installed
package, so page and program never differ; `python -m condatainer.manpage > condatainer.1`
is the same for packagers.  No date in the page: the same version gives the same bytes.

roff: every text goes through `_roff` (backslashes and minus signs escaped, a line starting
with `.` or `'` guarded), so help strings cannot turn into requests.
"""

from __future__ import annotations

import argparse
import sys

from condatainer import __version__, examples

_ENVIRONMENT = (
    ("CNT_<KEY>", "overrides the config key <key> (CNT_RUNTIME=builtin, CNT_CHANNELS=a,b)"),
    ("CNT_SHELL", "the shell `e` and `init` use (bash or zsh), before the detected one"),
    ("CNT_HOOK", "off: the cd hook does nothing in this shell"),
    ("CNT_CEILING_DIRS", "colon-separated directories the hook's search for env.img stops at"),
    ("NO_COLOR", "set and not empty: no colour, even on a terminal"),
    ("CONDATAINER_DEBUG", "1: a traceback with every error"),
    ("XDG_CONFIG_HOME, XDG_DATA_HOME, XDG_CACHE_HOME", "where the files below live"),
)

_FILES = (
    ("~/.config/condatainer/config.yaml", "the configuration (condatainer config show)"),
    ("~/.local/share/condatainer/allowed", "the images the cd hook may activate"),
    ("~/.local/share/condatainer/hook.bash, hook.zsh", "the shell hook `init` installs"),
    ("~/.local/share/condatainer/micromamba/", "condatainer's own micromamba"),
    ("~/.local/share/condatainer/images/", "base images condatainer pulled"),
    ("~/.cache/condatainer/", "shims, package listings, the parsed config"),
    ("IMAGE.env", "variables for the container, beside each image (KEY=VALUE lines)"),
)

_EXIT = (
    ("0", "success"),
    ("1", "an error condatainer explained (one line, and a hint)"),
    ("2", "a wrong command line"),
    ("N", "exec, e and run return the status of the command they ran"),
)


def _roff(text: str) -> str:
    """`text` as roff text: nothing in it is a request or an escape."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join("\\&" + line if line[:1] in (".", "'") else line for line in text.split("\n"))


def _commands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    """(spelling, one-line help, parser) of every visible command, in the order of --help."""
    found: list[tuple[str, str, argparse.ArgumentParser]] = []

    def walk(prefix: str, p: argparse.ArgumentParser) -> None:
        for action in p._actions:
            if not isinstance(action, argparse._SubParsersAction):
                continue
            for choice in action._choices_actions:
                sub = action.choices[choice.dest]
                spelling = f"{prefix} {choice.dest}".strip()
                found.append((spelling, choice.help or "", sub))
                walk(spelling, sub)

    walk("", parser)
    return found


_GLOBAL = ("quiet", "verbose")  # -q/-v: under OPTIONS once, not under every command


def _options(parser: argparse.ArgumentParser, *, top: bool = False) -> list[str]:
    lines: list[str] = []
    for action in parser._actions:
        if action.help == argparse.SUPPRESS or isinstance(
            action, (argparse._SubParsersAction, argparse._HelpAction)
        ):
            continue
        if action.dest in _GLOBAL and not top:
            continue
        if action.option_strings:
            metavar = "" if action.nargs == 0 else f" {action.metavar or action.dest.upper()}"
            name = ", ".join(f"\\fB{_roff(s)}\\fR" for s in action.option_strings)
            name += f"\\fI{_roff(metavar)}\\fR" if metavar else ""
        else:
            name = f"\\fI{_roff(str(action.metavar or action.dest))}\\fR"
        lines += [".TP", name, _roff(action.help or "")]
    return lines


def _usage(parser: argparse.ArgumentParser) -> str:
    usage = parser.format_usage().strip()
    return usage.removeprefix("usage: ")


def _examples(spelling: str) -> list[str]:
    lines: list[str] = []
    for line, what in examples.EXAMPLES.get(spelling, ()):
        lines += [".TP", f"\\fB{_roff(line)}\\fR", _roff(what)]
    return lines


def render(parser: argparse.ArgumentParser | None = None) -> str:
    """The whole page, as roff (man(7) macros)."""
    if parser is None:
        from condatainer import cli

        parser = cli.build_parser()
    out = [
        f'.TH CONDATAINER 1 "" "condatainer {_roff(__version__)}" "User Commands"',
        ".SH NAME",
        "condatainer, cnt \\- " + _roff(parser.description or ""),
        ".SH SYNOPSIS",
        ".nf",
        _roff(_usage(parser)),
        ".fi",
        ".SH DESCRIPTION",
        _roff(
            "condatainer keeps a whole conda (micromamba) environment in one ext3 image file"
            " (env.img) that Apptainer mounts at /ext3/env: one file instead of tens of"
            " thousands, for cluster filesystems with inode quotas.  It creates, grows, packs"
            " and checks images, runs commands and job scripts in them, and activates them"
            " when you cd into a project.  cnt is the same program."
        ),
        ".SH OPTIONS",
        *_options(parser, top=True),
        ".PP",
        _roff("-q and -v may also follow the command (condatainer overlay pack -q env.img)."),
        ".SH COMMANDS",
    ]
    for spelling, help_text, sub in _commands(parser):
        out += [f".SS {_roff(spelling)}", _roff(help_text), ".PP", ".nf", _roff(_usage(sub))]
        out += [".fi"]
        options = _options(sub)
        if options:
            out += [".PP", "Options:", ".RS", *options, ".RE"]
        listed = _examples(spelling)
        if listed:
            out += [".PP", "Examples:", ".RS", *listed, ".RE"]
    out += [".SH EXAMPLES", *_examples("")]
    out += [".SH ENVIRONMENT"]
    for name, what in _ENVIRONMENT:
        out += [".TP", f"\\fB{_roff(name)}\\fR", _roff(what)]
    out += [".SH FILES"]
    for name, what in _FILES:
        out += [".TP", f"\\fI{_roff(name)}\\fR", _roff(what)]
    out += [".SH EXIT STATUS"]
    for code, what in _EXIT:
        out += [".TP", _roff(code), _roff(what)]
    out += [".SH SEE ALSO", "\\fBapptainer\\fR(1), \\fBmicromamba\\fR(1), \\fBsbatch\\fR(1)"]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    """`python -m condatainer.manpage`: the page on stdout."""
    if argv if argv is not None else sys.argv[1:]:
        print("usage: python -m condatainer.manpage > condatainer.1", file=sys.stderr)
        return 2
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
