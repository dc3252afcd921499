"""Job-script headers: `#DEP:`, `#CNT`, `#SBATCH`, `#PBS`, `#BSUB`, read the way each reader does.

`parse(text, source)` returns what a script's header asks for.  Each scheduler's rule is its own
and comes from its source or documentation (named at each rule below); tests/jobs check them,
and tests/slurm feeds the same scripts to the real sbatch.

- **Line breaks.**  Lines end at LF only (sbatch's `next_line`, sh).  A script with DOS line
  breaks (CRLF) is refused, as sbatch refuses it ("Batch script contains DOS line breaks") and
  qsub does ("script contains cr, lf"); sh would read every `\\r` as part of a word.
- **SLURM** (sbatch 22.05, `src/sbatch/opt.c`: `_opt_batch_script`, `get_argument`): a line
  starting at column 0 with `#SBATCH` -- nothing needs to follow the tag, so `#SBATCH--time=5`
  counts and `#SBATCHX` is an option `X` that sbatch refuses -- or with the old tag `#SLURM`
  (sbatch warns).  Reading stops at the first line whose first non-blank character is not `#`
  (blank lines and indented comments do not stop it).  Arguments are split at blanks; `'` and
  `"` group, `\\` takes the next character literally, and an unquoted `#` anywhere -- even
  inside a word, so `--comment=a#b` is `--comment=a` -- ends the line.  An unbalanced quote or
  an argument starting with `:` makes sbatch fail, and so does a DirectiveError here.  A
  `hetjob` separator ends the first job component: later lines belong to other components.
- **PBS** (OpenPBS `qsub`: `get_script` in `src/cmds/qsub_sup.c`, `pbs_ispbsdir` and
  `pbs_isexecutable` in `src/lib/Libcmds/check_job_script.c`, `make_argv` in
  `src/cmds/qsub.c`; POSIX `qsub` says the same): `#PBS` after any leading blanks (indentation
  is fine).  Reading stops at the first *executable* line: not blank, first non-blank character
  not `#`; a line starting at column 0 with `:` or `#!` never counts as executable.  A directive
  ending in `\\` (blanks after it allowed) continues on the next line.  Arguments: blanks split,
  `'`/`"` group (no escapes inside), `\\` escapes outside; there are no trailing comments -- a
  `# text` after the options reaches qsub as arguments, which it refuses.
- **LSF** (IBM Spectrum LSF 10.1 `bsub` reference, "command" and "job_script": "bsub options
  can also be specified ... if the line begins with #BSUB", and its example honours a `#BSUB`
  after the commands): `#BSUB` at column 0, anywhere in the file.  LSF cannot be installed
  here and its documentation does not define quoting or comments on these lines: we split them
  like the shell, with a `# comment` after the options dropped.
- **`#DEP:` and `#CNT`** follow sbatch's rule (column 0, header block).  `#DEP` takes a colon
  (`#DEP: env.img`; `#DEP env.img` is an error, to catch the typo), `#CNT` whitespace or a
  colon.  Their arguments are split with `shlex` after a shell-style `# comment` is dropped
  (`strip_comment`) -- data, never evaluated -- so a path with spaces can be quoted and one
  line may name several images.  Malformed quoting is a DirectiveError `FILE:LINE: cause`;
  parse raises nothing else, whatever the text.
- `scheduler` is the one whose honoured directives appear; when several kinds appear, slurm
  wins over pbs over lsf, `directives` holds the winner's lines only, and `notes` says so (and
  that sbatch itself also translates `#PBS`/`#BSUB` options it knows, `src/sbatch/xlate.c`).
  `notes` also points out directives a scheduler silently ignores (after the first command,
  indented where that matters), the usual reason "my #SBATCH line does nothing".

The self-reexec header is placed by the same block rule (`header.insert`, using `header_end`).
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

_KEYWORD: dict[Scheduler, str] = {"slurm": "#SBATCH", "pbs": "#PBS", "lsf": "#BSUB"}
_DEP = re.compile(r"#DEP[ \t]*:(.*)", re.DOTALL)
_DEP_NO_COLON = re.compile(r"#DEP(?:[ \t\r\v\f]|$)")
_CNT = re.compile(r"#CNT(?::|(?=[ \t\r\v\f])|$)(.*)", re.DOTALL)
_HETJOB = ("hetjob", "packjob")


@dataclass(frozen=True)
class Directive:
    """One honoured scheduler line: where, what follows the tag, and the words the scheduler
    reads from it."""

    line: int  # 1-based
    text: str  # after the tag, blanks around it removed, as written
    args: tuple[str, ...]


@dataclass(frozen=True)
class Directives:
    """What a job script's header asks for.

    `header_end_line` is the 0-based index of the first command line by sbatch's rule, which is
    also the number of lines in the header block (the whole file's line count if it has no
    command).  `dep_lines[i]` is the 1-based line that named `deps[i]` (for error messages).
    """

    deps: tuple[str, ...]
    cnt_flags: tuple[tuple[str, ...], ...]
    scheduler: Scheduler | None
    directives: tuple[Directive, ...]
    header_end_line: int
    dep_lines: tuple[int, ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def args(self) -> tuple[str, ...]:
        """Every argument of the honoured directives, in order (what the scheduler reads)."""
        return tuple(arg for d in self.directives for arg in d.args)


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
    """`text` without its trailing `# comment` and surrounding blanks, by the shell's rule: a
    `#` that starts a word, outside quotes (`\\` escapes the next character)."""
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
    """Index of the first command line: where sbatch stops reading directives."""
    for index, line in enumerate(lines):
        if index == 0 and line.startswith("#!"):
            continue
        if _is_blank(line) or _is_comment(line):
            continue
        return index
    return len(lines)


# --------------------------------------------------------------------------------------------
# How each scheduler splits a directive's arguments


def sbatch_args(rest: str, source: str, lineno: int) -> tuple[tuple[str, ...], bool]:
    """The arguments sbatch's `get_argument` reads from `rest`, and whether a `hetjob`
    separator ended the line (see the module docstring)."""
    words: list[str] = []
    i, n = 0, len(rest)
    while True:
        while i < n and rest[i] in BLANK:
            i += 1
        for keyword in _HETJOB:
            end = i + len(keyword)
            if rest[i:end].lower() == keyword and (end == n or rest[end] in BLANK):
                return tuple(words), True
        if i < n and rest[i] == ":":
            raise DirectiveError(
                f"{source}:{lineno}: #SBATCH: unexpected ':' (sbatch refuses the script)",
                hint=f"fix line {lineno} of {source}",
            )
        word: list[str] = []
        quote: str | None = None
        escape = False
        while i < n and (quote is not None or rest[i] not in BLANK):
            char = rest[i]
            i += 1
            if escape:
                escape = False
            elif char == "\\":
                escape = True
                continue
            elif quote is not None:
                if char == quote:
                    quote = None
                    continue
            elif char in "'\"":
                quote = char
                continue
            elif char == "#":  # an unescaped, unquoted '#': the rest of the line is a comment
                i = n
                break
            word.append(char)
        if quote is not None:
            raise DirectiveError(
                f"{source}:{lineno}: #SBATCH: unmatched {quote} (sbatch refuses the script)",
                hint=f"fix the quoting on line {lineno} of {source}",
            )
        if not word:  # sbatch stops at an empty argument (end of line, comment, or "")
            return tuple(words), False
        words.append("".join(word))


def qsub_args(rest: str, source: str, lineno: int) -> tuple[str, ...]:
    """The arguments OpenPBS qsub's `make_argv` reads from `rest` (no comments)."""
    words: list[str] = []
    word: list[str] = []
    text = rest.lstrip(BLANK)
    i, n = 0, len(text)
    started = False
    while i < n:
        char = text[i]
        if char in "'\"":
            close = text.find(char, i + 1)
            if close < 0:
                raise DirectiveError(
                    f"{source}:{lineno}: #PBS: unmatched {char} (qsub refuses the script)",
                    hint=f"fix the quoting on line {lineno} of {source}",
                )
            word.append(text[i + 1 : close])
            i = close + 1
            started = True
        elif char == "\\":
            word.append(text[i + 1 : i + 2])
            i += 2
            started = True
        elif char in BLANK:
            words.append("".join(word))
            word, started = [], False
            while i < n and text[i] in BLANK:
                i += 1
        else:
            word.append(char)
            i += 1
            started = True
    if started:
        words.append("".join(word))
    return tuple(words)


def _qsub_executable(line: str) -> bool:
    """OpenPBS `pbs_isexecutable`: does this line end the directive block?"""
    if line.startswith((":", "#!")):
        return False
    stripped = line.lstrip(BLANK)
    return bool(stripped) and not stripped.startswith("#")


def _qsub_continues(text: str) -> int:
    """OpenPBS `pbs_extendable_line`: where the trailing `\\` is, or -1."""
    end = len(text.rstrip(BLANK))
    return end - 1 if end > 0 and text[end - 1] == "\\" else -1


# --------------------------------------------------------------------------------------------
# The parser


def parse(text: str, source: str) -> Directives:
    """Read the directives of a job script; `source` names it in errors and notes."""
    crlf = text.find("\r\n")
    if crlf >= 0:
        line = text.count("\n", 0, crlf) + 1
        raise DirectiveError(
            f"{source}:{line}: the script has DOS line breaks (\\r\\n) instead of UNIX line"
            " breaks (\\n); sbatch and qsub refuse it, and sh reads each \\r as part of a word",
            hint=f"convert it: sed -i 's/\\r$//' {shlex.quote(source)}   (or dos2unix)",
        )
    lines = lines_of(text)
    end = header_end(lines)
    found: dict[Scheduler, list[Directive]] = {"slurm": [], "pbs": [], "lsf": []}
    notes: list[str] = []
    deps, dep_lines, cnt_flags = _dep_cnt(lines, end, source, notes)
    found["slurm"] = _slurm(lines, end, source, notes)
    found["pbs"] = _pbs(lines, source, notes)
    found["lsf"] = _lsf(lines, source, notes)

    present = [name for name in _KEYWORD if found[name]]
    scheduler: Scheduler | None = present[0] if present else None
    if len(present) > 1:
        also = ""
        if present[0] == "slurm":  # sbatch's xlate.c: unless --ignore-pbs
            others = "/".join(_KEYWORD[n] for n in present[1:])
            also = f" (sbatch also translates the {others} options it knows, e.g. -N, -l walltime)"
        notes.append(
            f"{source}: has {', '.join(_KEYWORD[n] for n in present)} directives; "
            f"using the {_KEYWORD[present[0]]} ones{also}"
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


def _dep_cnt(
    lines: list[str], end: int, source: str, notes: list[str]
) -> tuple[list[str], list[int], list[tuple[str, ...]]]:
    """`#DEP:` and `#CNT` lines: column 0, header block (sbatch's rule)."""
    deps: list[str] = []
    dep_lines: list[int] = []
    cnt_flags: list[tuple[str, ...]] = []
    for index, line in enumerate(lines):
        lineno = index + 1
        if index >= end or line[:1] != "#":
            keyword = _dep_cnt_keyword(line.lstrip(BLANK))
            if keyword is not None:
                notes.append(_ignored(source, lineno, keyword, end if index >= end else None))
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
        elif _DEP_NO_COLON.match(line):
            raise DirectiveError(
                f"{source}:{lineno}: #DEP needs a colon", hint=f"write it as: #DEP:{line[4:]}"
            )
        else:
            cnt = _CNT.fullmatch(line)
            if cnt is not None:
                flags = _split(cnt.group(1), source, lineno, "#CNT")
                if flags:
                    cnt_flags.append(flags)
    return deps, dep_lines, cnt_flags


def _ignored(source: str, lineno: int, keyword: str, end: int | None) -> str:
    """The note for a directive its reader skips: after the first command (`end`), or
    indented (None)."""
    if end is None:
        return f"{source}:{lineno}: indented {keyword} is ignored (start it at column 0)"
    return f"{source}:{lineno}: {keyword} after the first command (line {end + 1}) is ignored"


def _dep_cnt_keyword(line: str) -> str | None:
    if _DEP.fullmatch(line) or _DEP_NO_COLON.match(line):
        return "#DEP"
    if _CNT.fullmatch(line):
        return "#CNT"
    return None


def _slurm(lines: list[str], end: int, source: str, notes: list[str]) -> list[Directive]:
    found: list[Directive] = []
    hetjob = False
    for index, line in enumerate(lines):
        lineno = index + 1
        tag = next((t for t in ("#SBATCH", "#SLURM") if line.startswith(t)), None)
        if tag is None or index >= end:
            indented = line.lstrip(BLANK)
            if (tag or indented.startswith(("#SBATCH", "#SLURM"))) and (
                index >= end or indented != line
            ):
                notes.append(_ignored(source, lineno, "#SBATCH", end if index >= end else None))
            continue
        if hetjob:
            continue
        rest = line[len(tag) :]
        if tag == "#SLURM":
            notes.append(f"{source}:{lineno}: #SLURM is the old tag: sbatch reads it but warns")
        args, hetjob = sbatch_args(rest, source, lineno)
        if hetjob:
            notes.append(
                f"{source}:{lineno}: hetjob: the lines below belong to other components of a"
                " heterogeneous job; condatainer reads the first component's"
            )
        if args:
            found.append(Directive(lineno, rest.strip(BLANK), args))
    return found


def _pbs(lines: list[str], source: str, notes: list[str]) -> list[Directive]:
    found: list[Directive] = []
    executable: int | None = None
    index = 0
    while index < len(lines):
        line = lines[index]
        stripped = line.lstrip(BLANK)
        if stripped.startswith("#PBS"):
            if executable is not None:
                notes.append(_ignored(source, index + 1, "#PBS", executable))
                index += 1
                continue
            start, rest = index, stripped[len("#PBS") :]
            cut = _qsub_continues(rest)
            while cut >= 0 and index + 1 < len(lines):
                index += 1
                rest = rest[:cut] + lines[index]
                cut = _qsub_continues(rest)
            args = qsub_args(rest, source, start + 1)
            if any(a.startswith("#") for a in args):
                notes.append(
                    f"{source}:{start + 1}: qsub has no comments on #PBS lines: it reads"
                    " '# ...' as arguments and refuses them"
                )
            if args:
                found.append(Directive(start + 1, rest.strip(BLANK), args))
        elif executable is None and _qsub_executable(line):
            executable = index
        index += 1
    return found


def _lsf(lines: list[str], source: str, notes: list[str]) -> list[Directive]:
    found: list[Directive] = []
    for index, line in enumerate(lines):
        lineno = index + 1
        if line.startswith("#BSUB"):
            rest = line[len("#BSUB") :]
            args = _split(rest, source, lineno, "#BSUB")
            if args:
                found.append(Directive(lineno, strip_comment(rest), args))
        elif line.lstrip(BLANK).startswith("#BSUB"):
            notes.append(_ignored(source, lineno, "#BSUB", None))
    return found
