"""A wrong command line, explained: argparse's complaints in condatainer's one error format.

`Parser` is the argparse parser of every condatainer command.  Whatever argparse would print
and exit for, it raises a `UsageError` instead (exit 2), which `cli.main` reports like any
other error: one `condatainer: error: ...` line naming the subcommand, and a `hint:` with the
next command -- that subcommand's `--help`, or the corrected command line:

- an unknown command, action or choice: `'overlya' is not a condatainer command; did you
  mean 'overlay'?` (difflib's close matches among the choices argparse would offer);
- an unknown option: the close matches among that subcommand's own options (`--sise` ->
  `--size`).  argparse hands words it does not know up to the top parser, so each parser
  notes on the namespace that it ran; the deepest one is the subcommand the words were for;
- a size typed with a space (`-s 10 GB`): `sizes take no space: -s 10G`;
- a missing argument: only the ones that are required (`run` needs its script, not its
  script's arguments).

Parsing is argparse's own; only `_check_value` (where argparse rejects a choice, with the
action at hand) is overridden besides `error` and `parse_args`.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from typing import Any, NoReturn

from condatainer.errors import PROG, UsageError

_DEEPEST = "_cnt_parser"  # namespace attribute: the innermost parser that ran
_UNIT = re.compile(r"(?i)[kmgt](i?b)?")
_NUMBER = re.compile(r"\d+(\.\d+)?")
_SIZE_OPTIONS = ("-s", "--size")


class Parser(argparse.ArgumentParser):
    """argparse with condatainer's error format (see the module docstring)."""

    _words: Sequence[str] = ()  # what this parser was given (its subcommand's words)

    def error(self, message: str) -> NoReturn:
        if message.startswith(_REQUIRED):
            # `--sise 2G` makes -s/--size missing too: the typo is the news, not the absence.
            known = set(_options(self))
            for word in self._words:
                if word.startswith("--") and word.split("=", 1)[0] not in known:
                    raise _unrecognized(self, [word], list(self._words))
        raise _explain(self, message)

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        choices = action.choices
        if choices is not None and value not in choices:
            raise _invalid_choice(self, action, str(value), [str(c) for c in choices])

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        self._words = tuple(args) if args is not None else ()
        ns, extras = super().parse_known_args(args, namespace)
        if not hasattr(ns, _DEEPEST):  # a subcommand's parser ran inside this one and said so
            setattr(ns, _DEEPEST, self)
        return ns, extras

    def parse_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> argparse.Namespace:
        ns, extras = self.parse_known_args(args, namespace)
        deepest = vars(ns).pop(_DEEPEST, self)
        if extras:
            raise _unrecognized(deepest, extras, list(args or ()))
        return ns


def command_of(parser: argparse.ArgumentParser) -> str:
    """`overlay resize` for the parser of `condatainer overlay resize`; "" for the top one."""
    return parser.prog.partition(" ")[2]


def _help(parser: argparse.ArgumentParser) -> str:
    return f"{parser.prog} --help"


def _error(parser: argparse.ArgumentParser, text: str, hint: str | None = None) -> UsageError:
    command = command_of(parser)
    return UsageError(f"{command}: {text}" if command else text, hint=hint or _help(parser))


def _close(word: str, candidates: Sequence[str]) -> list[str]:
    """The candidates most like `word` (difflib's ratio at least 0.6, and within 0.1 of the
    best), best first; at most two."""
    import difflib  # only when there is a mistake to explain

    scored = []
    for candidate in dict.fromkeys(c for c in candidates if c):
        ratio = difflib.SequenceMatcher(None, word, candidate).ratio()
        if ratio >= 0.6:
            scored.append((ratio, candidate))
    scored.sort(key=lambda rc: -rc[0])
    return [c for r, c in scored[:2] if r >= scored[0][0] - 0.1]


def _did_you_mean(matches: Sequence[str]) -> str:
    if not matches:
        return ""
    return "; did you mean " + " or ".join(f"'{m}'" for m in matches) + "?"


def _invalid_choice(
    parser: argparse.ArgumentParser, action: argparse.Action, value: str, choices: list[str]
) -> UsageError:
    visible = [c for c in choices if not c.startswith("_")]
    matches = _close(value, visible)
    if isinstance(action, argparse._SubParsersAction):
        command = command_of(parser)
        what = f"an action of {command}" if command else f"a {PROG} command"
        text = f"'{value}' is not {what}{_did_you_mean(matches)}"
        hint = f"{parser.prog} {matches[0]} --help" if len(matches) == 1 else _help(parser)
        return UsageError(f"{command}: {text}" if command else text, hint=hint)
    name = action.metavar if isinstance(action.metavar, str) else action.dest
    text = f"'{value}' is not a valid {name} (one of {', '.join(visible)}){_did_you_mean(matches)}"
    return _error(parser, text)


_REQUIRED = "the following arguments are required: "


def _explain(parser: argparse.ArgumentParser, message: str) -> UsageError:
    """argparse's own message (missing arguments, a value missing after an option, ...)."""
    if message.startswith(_REQUIRED):
        return _error(parser, "missing " + message[len(_REQUIRED) :])
    m = re.match(r"argument (?P<arg>[^:]+): (?P<what>.*)", message, re.DOTALL)
    if m is not None:
        arg, what = m["arg"], m["what"]
        if what in ("expected one argument", "expected at least one argument"):
            return _error(parser, f"{arg} needs a value")
        return _error(parser, f"{arg}: {what}")
    return _error(parser, message)


def _options(parser: argparse.ArgumentParser) -> list[str]:
    return [s for a in parser._actions if a.help != argparse.SUPPRESS for s in a.option_strings]


def _unrecognized(
    parser: argparse.ArgumentParser, extras: list[str], argv: list[str]
) -> UsageError:
    """Words no parser took: an unknown option, a size's unit after a space, or one word too
    many.  Said about the first of them, with that subcommand's help as the hint."""
    word = extras[0]
    if word.startswith("-") and word != "-":
        option = word.split("=", 1)[0]
        matches = _close(option, _options(parser))
        return _error(parser, f"unknown option '{option}'{_did_you_mean(matches)}")
    spaced = _spaced_size(parser, word, argv)
    if spaced is not None:
        return _error(parser, f"unexpected '{word}' after {spaced[0]}", hint=spaced[1])
    more = f" (and {len(extras) - 1} more)" if len(extras) > 1 else ""
    return _error(parser, f"unexpected argument '{word}'{more}")


def _spaced_size(
    parser: argparse.ArgumentParser, word: str, argv: list[str]
) -> tuple[str, str] | None:
    """`-s 10 GB`: ("-s 10", "sizes take no space: -s 10G"), else None."""
    if not _UNIT.fullmatch(word) or not set(_SIZE_OPTIONS) & set(_options(parser)):
        return None
    for i, flag in enumerate(argv[:-2]):
        if flag in _SIZE_OPTIONS and _NUMBER.fullmatch(argv[i + 1]) and argv[i + 2] == word:
            value = f"{argv[i + 1]}{word[0].upper()}"
            return f"{flag} {argv[i + 1]}", f"sizes take no space: {flag} {value}"
    return None
