"""Completion of condatainer itself: `condatainer completion bash|zsh|fish` and the static files.

What each piece is, and the decisions behind it:

- `script(shell)` is the completion of `condatainer` and its alias `cnt`, rendered from
  `shell/completion.<shell>.j2` (hook.cntcomplete, which the hook file includes too: `init`
  sets it up).  Those templates are ours, not `argcomplete.shellcode()`:
  they speak argcomplete's stable protocol (`_ARGCOMPLETE=1`, `COMP_LINE`, `COMP_POINT`,
  `_ARGCOMPLETE_SHELL`; candidates on fd 8 separated by `\\013`) but their text does not change
  when argcomplete is upgraded, so the committed files stay drift-free on every machine; zsh
  gets a native compsys function (`#compdef`, `_describe` with argcomplete's descriptions)
  instead of bash code run through `bashcompinit`; fish gets `complete -c` with argcomplete's
  descriptions after a tab; and the bash code does not glob the candidates it receives.
  The command answers its own TAB (`cli.main` → `completers.autocomplete`) before anything
  heavy is imported (argcomplete#455).
- The static files for packagers are exactly what `completion SHELL` prints:
  `completions/condatainer.bash` (bash-completion's directory; also link it as `cnt`),
  `completions/_condatainer` (zsh's `$fpath`; the `#compdef` line names both commands) and
  `completions/condatainer.fish` (fish's vendor_completions.d; also link it as `cnt.fish`:
  fish loads a completion file by the command's name).
  `python -m condatainer.completion --write completions/` regenerates them; a test checks
  that the committed ones match (`--check`).
- The completion of the host `mm-*` functions belongs to the hook (`hook.mmcomplete`).

jinja2 is imported (through shellgen) only when a script is rendered, never by completers.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from condatainer.hook.cntcomplete import COMMANDS, script

__all__ = ["COMMANDS", "STATIC_FILES", "check", "main", "script", "static_files", "write"]

#: Static file name per shell, inside completions/.
STATIC_FILES = {"bash": "condatainer.bash", "zsh": "_condatainer", "fish": "condatainer.fish"}


def static_files() -> dict[str, str]:
    """File name in completions/ → content."""
    return {name: script(shell) for shell, name in STATIC_FILES.items()}


def write(directory: Path) -> list[Path]:
    """(Re)write the static completion files into `directory`; return their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in static_files().items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def check(directory: Path) -> list[str]:
    """Names of the static files in `directory` that are missing or differ from the generated."""
    stale = []
    for name, text in static_files().items():
        path = directory / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            stale.append(name)
    return stale


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m condatainer.completion --write DIR | --check DIR` (for maintainers)."""
    parser = argparse.ArgumentParser(
        prog="python -m condatainer.completion", description="regenerate or check completions/"
    )
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--write", metavar="DIR", type=Path, help="write the static files")
    group.add_argument(
        "--check", metavar="DIR", type=Path, help="exit 1 when the files in DIR are stale"
    )
    args = parser.parse_args(argv)
    if args.write is not None:
        for path in write(args.write):
            print(path)
        return 0
    stale = check(args.check)
    for name in stale:
        print(
            f"{args.check / name}: stale; run python -m condatainer.completion --write "
            f"{args.check}",
            file=sys.stderr,
        )
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
