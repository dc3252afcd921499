"""Job-script headers: `#DEP:`, `#CNT`, `#SBATCH`, `#PBS`, `#BSUB`, and the self-reexec header.

`parse(text, source)` reads a script the way each scheduler reads it (design §1):

- The *header block* is the top of the file: the shebang (first line only), blank lines and
  comment lines -- indented comments too -- up to the first command line.  Anything else is a
  command, including a stray word and a line holding only a zero-width space: "blank" means the
  C locale's whitespace (space, tab, CR, VT, FF), as in sbatch, not Python's `str.isspace()`.
- `#SBATCH`, `#DEP:` and `#CNT` are honoured only in the header block and only at column 0
  (sbatch's rule).  `#PBS` is honoured in the header block, indented or not (qsub's rule).
  `#BSUB` is honoured anywhere in the file, indented or not (bsub reads the whole script).
- A keyword must be followed by whitespace or the end of the line (`#SBATCHX` is a comment);
  `#DEP` takes a colon (`#DEP: env.img`, blanks before the colon allowed; `#DEP env.img` is an
  error, to catch the typo), `#CNT` takes whitespace or a colon.
- Trailing comments: a `#` that starts a word (at the start of the arguments or after
  whitespace) and is outside single and double quotes begins a comment, with `\\` escaping the
  next character -- the shell's rule.  So `--comment="a # b"` and `--comment=a#b` keep their
  `#`; `-n 4 # four tasks` is `-n 4`.  (sbatch itself is cruder; scripts that depend on the
  difference are rare and this rule is the one users can predict.)
- CRLF line ends are read as LF (sbatch refuses such scripts; we do not need to).
- `#DEP:` and `#CNT` arguments are split with `shlex.split` -- data, never evaluated -- so a
  path with spaces can be quoted and one line may name several images.  An unbalanced quote
  is a DirectiveError `FILE:LINE: cause`; parse raises nothing else, whatever the text.
- `scheduler` is the one whose honoured directives appear; when several kinds appear, slurm
  wins over pbs over lsf, `directives` holds the winner's lines only, and `notes` says so.
  `notes` also points out directives a scheduler will silently ignore (an `#SBATCH` after the
  first command or indented), the usual reason "my #SBATCH line does nothing".

The self-reexec header is placed by the same rule (`header.insert`, using `header_end`).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from typing import Literal

from condatainer.errors import DirectiveError

Scheduler = Literal["slurm", "pbs", "lsf"]

# C isspace() in the C locale, minus LF (lines are already split on LF).
BLANK = " \t\r\v\f"

_SCHEDULER_KEYWORDS: tuple[tuple[Scheduler, str], ...] = (
    ("slurm", "#SBATCH"),
    ("pbs", "#PBS"),
    ("lsf", "#BSUB"),
)
_DEP = re.compile(r"#DEP[ \t]*:(.*)", re.DOTALL)
_DEP_NO_COLON = re.compile(r"#DEP(?:[ \t\r\v\f]|$)")
_CNT = re.compile(r"#CNT(?::|(?=[ \t\r\v\f])|$)(.*)", re.DOTALL)


@dataclass(frozen=True)
class Directives:
    """What a job script's header asks for.

    `header_end_line` is the 0-based index of the first command line, which is also the number
    of lines in the header block (the whole file's line count if it has no command).
    `dep_lines[i]` is the 1-based line that named `deps[i]` (for error messages).
    """

    deps: tuple[str, ...]
    cnt_flags: tuple[tuple[str, ...], ...]
    scheduler: Scheduler | None
    directives: tuple[str, ...]
    header_end_line: int
    dep_lines: tuple[int, ...] = ()
    notes: tuple[str, ...] = field(default=())


def lines_of(text: str) -> list[str]:
    """Lines split on LF only (as sh and sbatch split them), each without a trailing CR."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def _after_keyword(line: str, keyword: str) -> str | None:
    """The text after `keyword` if `line` starts with it as a whole word, else None."""
    if not line.startswith(keyword):
        return None
    rest = line[len(keyword) :]
    if rest and rest[0] not in BLANK:
        return None
    return rest


def strip_comment(text: str) -> str:
    """`text` without its trailing `# comment` and surrounding blanks (see the module doc)."""
    quote: str | None = None
    word_start = True
    i = 0
    while i < len(text):
        char = text[i]
        if quote == "'":
            if char == "'":
                quote = None
        elif quote == '"':
            if char == "\\":
                i += 1
            elif char == '"':
                quote = None
        elif char == "\\":
            i += 1
        elif char in "'\"":
            quote = char
        elif char == "#" and word_start:
            return text[:i].strip(BLANK)
        word_start = quote is None and char in BLANK
        i += 1
    return text.strip(BLANK)


def _split(args: str, source: str, lineno: int, what: str) -> tuple[str, ...]:
    try:
        return tuple(shlex.split(strip_comment(args), comments=False, posix=True))
    except ValueError as exc:  # "No closing quotation", "No escaped character"
        raise DirectiveError(
            f"{source}:{lineno}: {what}: {str(exc).lower()}",
            hint=f"fix the quoting on line {lineno} of {source}",
        ) from None


def _is_blank(line: str) -> bool:
    return line.strip(BLANK) == ""


def _is_comment(line: str) -> bool:
    return line.lstrip(BLANK).startswith("#")


def header_end(lines: list[str]) -> int:
    """Index of the first command line: where sbatch and qsub stop reading directives."""
    for index, line in enumerate(lines):
        if index == 0 and line.startswith("#!"):
            continue
        if _is_blank(line) or _is_comment(line):
            continue
        return index
    return len(lines)


def parse(text: str, source: str) -> Directives:
    """Read the directives of a job script; `source` names it in errors and notes."""
    lines = lines_of(text)
    end = header_end(lines)
    deps: list[str] = []
    dep_lines: list[int] = []
    cnt_flags: list[tuple[str, ...]] = []
    found: dict[Scheduler, list[str]] = {"slurm": [], "pbs": [], "lsf": []}
    notes: list[str] = []

    for index, line in enumerate(lines[:end]):
        lineno = index + 1
        if index == 0 and line.startswith("#!"):
            continue
        indented = line.lstrip(BLANK)
        # Column 0 only: #SBATCH, #DEP:, #CNT.
        rest = _after_keyword(line, "#SBATCH")
        if rest is not None:
            _add(found["slurm"], rest)
            continue
        dep = _DEP.fullmatch(line)
        if dep is not None:
            names = _split(dep.group(1), source, lineno, "#DEP")
            if not names:
                raise DirectiveError(
                    f"{source}:{lineno}: #DEP: names no image",
                    hint="write it as: #DEP: path/to/env.img",
                )
            deps.extend(names)
            dep_lines.extend([lineno] * len(names))
            continue
        if _DEP_NO_COLON.match(line):
            raise DirectiveError(
                f"{source}:{lineno}: #DEP needs a colon",
                hint=f"write it as: #DEP:{line[4:]}",
            )
        cnt = _CNT.fullmatch(line)
        if cnt is not None:
            flags = _split(cnt.group(1), source, lineno, "#CNT")
            if flags:
                cnt_flags.append(flags)
            continue
        # Indentation allowed: #PBS (here) and #BSUB (anywhere, below).
        rest = _after_keyword(indented, "#PBS")
        if rest is not None:
            _add(found["pbs"], rest)
            continue
        keyword = _column0_keyword(indented)
        if keyword is not None:
            notes.append(f"{source}:{lineno}: indented {keyword} is ignored (start it at column 0)")

    for index, line in enumerate(lines):
        rest = _after_keyword(line.lstrip(BLANK), "#BSUB")
        if rest is not None:
            _add(found["lsf"], rest)
        elif index >= end:
            indented = line.lstrip(BLANK)
            keyword = _column0_keyword(indented)
            if keyword is None and _after_keyword(indented, "#PBS") is not None:
                keyword = "#PBS"
            if keyword is not None:
                notes.append(
                    f"{source}:{index + 1}: {keyword} after the first command "
                    f"(line {end + 1}) is ignored"
                )

    present = [name for name, _ in _SCHEDULER_KEYWORDS if found[name]]
    scheduler: Scheduler | None = present[0] if present else None
    if len(present) > 1:
        notes.append(
            f"{source}: has {', '.join(_keyword(n) for n in present)} directives; "
            f"using the {_keyword(present[0])} ones"
        )
    return Directives(
        deps=tuple(deps),
        cnt_flags=tuple(cnt_flags),
        scheduler=scheduler,
        directives=tuple(found[scheduler]) if scheduler else (),
        header_end_line=end,
        dep_lines=tuple(dep_lines),
        notes=tuple(notes),
    )


def _column0_keyword(line: str) -> str | None:
    """Which column-0-only directive `line` is written as, if any."""
    if _after_keyword(line, "#SBATCH") is not None:
        return "#SBATCH"
    if _DEP.fullmatch(line) or _DEP_NO_COLON.match(line):
        return "#DEP"
    if _CNT.fullmatch(line):
        return "#CNT"
    return None


def _keyword(scheduler: Scheduler) -> str:
    return dict(_SCHEDULER_KEYWORDS)[scheduler]


def _add(into: list[str], rest: str) -> None:
    args = strip_comment(rest)
    if args:
        into.append(args)
