"""The Apptainer `exec` options condatainer passes through unchanged, in one list.

CondaTainer lets its users put Apptainer's own options before the command (`e --nv`,
`exec --home=/x -- CMD`); so do we.  A word before the command that is not one of our options
is passed to `apptainer exec` when it names an option of this list in the form CondaTainer
documents: `--flag` for a switch, `--flag=value` for an option with a value (a separate value
word would be read as an image or the command, so `--home /x` is refused with that reason).
Any other unknown word stays for the parser, which says `unrecognized arguments`.

The list is ours, written from Apptainer 1.3/1.4's `exec` options (cmd/internal/cli/
action_flags.go).  Left out on purpose: the options condatainer has itself (`--bind`,
`--overlay`, `--env`, `--fakeroot`, `--contain`, `--containall`, `--cleanenv`, `--workdir`,
`--writable`: ours win, with their meaning), `--shell` (Apptainer's `shell` only), and the
registry login options (a pull is `condatainer base pull`'s business).

Readers: the CLI (`take`, before argparse) and the exec fast path (`run.replay.split`, through
`passes`), so both agree on where the command starts.  `run.resolve.apptainer_args` decides
what the pass-through words change in the Plan.  The exec fast path imports this module when
it meets an unknown `--word`: plain data, no imports at module level.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

# Switches: `--flag`, no value.
SWITCHES = frozenset(
    {
        *("nv", "nvccli", "rocm", "no-nv", "no-rocm"),
        *("no-home", "no-init", "no-umask", "no-eval", "no-privs", "keep-privs"),
        *("writable-tmpfs", "compat", "allow-setuid", "disable-cache", "unsquash", "underlay"),
        *("pid", "ipc", "net", "uts", "userns", "oom-kill-disable"),
        *("vm", "vm-err", "ignore-subuid", "ignore-fakeroot-command", "ignore-userns"),
    }
)
# Options with a value: `--flag=value` only.
VALUED = frozenset(
    {
        *("home", "scratch", "mount", "no-mount", "pwd", "app", "env-file", "fusemount"),
        *("hostname", "network", "network-args", "dns", "security", "add-caps", "drop-caps"),
        *("apply-cgroups", "cpus", "cpu-shares", "cpuset-cpus", "cpuset-mems", "memory"),
        *("memory-reservation", "memory-swap", "pids-limit", "blkio-weight"),
        *("blkio-weight-device", "vm-ram", "vm-cpu", "vm-ip", "dmtcp-launch", "dmtcp-restart"),
    }
)


def _name(word: str) -> str:
    return word[2:].partition("=")[0] if word.startswith("--") else ""


def known(word: str) -> bool:
    """Whether `word` names an option of the list (in any form)."""
    name = _name(word)
    return name in SWITCHES or name in VALUED


def problem(word: str) -> str | None:
    """Why `word`, an option of the list, cannot be passed as written; None when it can."""
    name, eq, _ = word[2:].partition("=")
    if name in SWITCHES and eq:
        return f"the Apptainer option --{name} takes no value"
    if name in VALUED and not eq:
        return (
            f"the Apptainer option --{name} needs its value in the same word: --{name}=VALUE"
            " (a separate word would be read as an image or the command)"
        )
    return None


def passes(word: str) -> bool:
    """Whether `word` is passed through to Apptainer as it is."""
    return known(word) and problem(word) is None


def take(
    words: Sequence[str], takes_value: Mapping[str, bool], *, stop_at_word: bool
) -> tuple[list[str], list[str]]:
    """(the words for our parser, the pass-through words), in their order.

    `takes_value` maps each of our option spellings to whether its value may be the next word.
    The scan ends at `--`, and, with `stop_at_word` (exec: the command is the first word that
    is not an option), at the first such word.  An option of the list written in a form that
    cannot be passed is a UsageError naming the form that works."""
    from condatainer.errors import UsageError

    ours: list[str] = []
    passed: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        if word == "--" or (stop_at_word and (not word.startswith("-") or word == "-")):
            break
        i += 1
        name = word.partition("=")[0] if word.startswith("--") else word
        if name in takes_value or not word.startswith("--") or not known(word):
            ours.append(word)
            if takes_value.get(name) and name == word and i < len(words):
                ours.append(words[i])  # its value (-oIMG and --opt=VALUE carry theirs)
                i += 1
            continue
        why = problem(word)
        if why is not None:
            form = f"--{_name(word)}" + ("" if _name(word) in SWITCHES else "=VALUE")
            raise UsageError(why, hint=f"write {form} before the command")
        passed.append(word)
    return [*ours, *words[i:]], passed
