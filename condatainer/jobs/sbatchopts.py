"""sbatch's options as sbatch reads them, from its command line or from `#SBATCH` lines.

The table is sbatch 22.05's (`common_options` in `src/common/slurm_opt.c`: every option with a
`set_func` or `set_func_sbatch`, and its `has_arg`); `read` applies glibc `getopt_long`'s rules to
it the way sbatch does (`_set_options`): `--name=value` or `--name value` for options that need a
value, `--name[=value]` for the few whose value is optional, a long name may be shortened to any
unambiguous prefix, short options bundle (`-Hc4`), and the first word that is not an option is
an error ("Invalid directive found in batch script").  The arguments of all `#SBATCH` lines form
one argument list, so an option at the end of one line takes its value from the next.

Used to see what a script asks for (an array, several tasks, its own `--output`) and which of
its options a `condatainer run` flag must override (`jobs.control`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

NO_ARGUMENT = frozenset(
    {
        "contiguous",
        "help",
        "hold",
        "ignore-pbs",
        "no-requeue",
        "overcommit",
        "oversubscribe",
        "parsable",
        "quiet",
        "reboot",
        "requeue",
        "spread-job",
        "test-only",
        "usage",
        "use-min-nodes",
        "verbose",
        "version",
        "wait",
    }
)
OPTIONAL_ARGUMENT = frozenset({"exclusive", "get-user-env", "nice", "no-kill", "propagate"})
REQUIRED_ARGUMENT = frozenset(
    {
        *("account", "acctg-freq", "array", "batch", "bb", "bbf", "begin", "chdir"),
        *("cluster", "cluster-constraint", "clusters", "comment", "constraint"),
        *("container", "context", "core-spec", "cores-per-socket", "cpu-freq"),
        *("cpus-per-gpu", "cpus-per-task", "deadline", "delay-boot", "dependency"),
        *("distribution", "error", "exclude", "export", "export-file", "extra-node-info"),
        *("gid", "gpu-bind", "gpu-freq", "gpus", "gpus-per-node", "gpus-per-socket"),
        *("gpus-per-task", "gres", "gres-flags", "hint", "input", "job-name"),
        *("kill-on-invalid-dep", "licenses", "mail-type", "mail-user", "mcs-label", "mem"),
        *("mem-bind", "mem-per-cpu", "mem-per-gpu", "mincpus", "network", "nodefile"),
        *("nodelist", "nodes", "ntasks", "ntasks-per-core", "ntasks-per-gpu"),
        *("ntasks-per-node", "ntasks-per-socket", "ntasks-per-tres", "open-mode", "output"),
        *("partition", "power", "prefer", "priority", "profile", "qos", "reservation"),
        *("signal", "sockets-per-node", "switches", "tasks-per-node", "thread-spec"),
        *("threads-per-core", "time", "time-min", "tmp", "uid", "wait-all-nodes", "wckey"),
        "wrap",
    }
)
LONG = NO_ARGUMENT | OPTIONAL_ARGUMENT | REQUIRED_ARGUMENT
SHORT = {
    "A": "account",
    "a": "array",
    "b": "begin",
    "B": "extra-node-info",
    "C": "constraint",
    "c": "cpus-per-task",
    "D": "chdir",
    "d": "dependency",
    "e": "error",
    "F": "nodefile",
    "G": "gpus",
    "h": "help",
    "H": "hold",
    "i": "input",
    "J": "job-name",
    "k": "no-kill",
    "L": "licenses",
    "M": "clusters",
    "m": "distribution",
    "N": "nodes",
    "n": "ntasks",
    "O": "overcommit",
    "o": "output",
    "p": "partition",
    "Q": "quiet",
    "q": "qos",
    "S": "core-spec",
    "s": "oversubscribe",
    "t": "time",
    "V": "version",
    "v": "verbose",
    "W": "wait",
    "w": "nodelist",
    "x": "exclude",
}
# Aliases sbatch accepts for the same option.
ALIASES = {"tasks-per-node": "ntasks-per-node"}


@dataclass(frozen=True)
class Option:
    """One option as read: its canonical long name, its value, and how it was written."""

    name: str  # e.g. "cpus-per-task", for -c, --cpus-per-task, --cpus-per
    value: str | None
    spelled: str  # the word as written, e.g. "-c4" or "--cpus-per-task=4"
    line: int | None = None  # the #SBATCH line it came from


@dataclass(frozen=True)
class Reading:
    """The options of an argument list, and what sbatch would refuse in it."""

    options: tuple[Option, ...]
    problems: tuple[str, ...]

    def values(self, *names: str) -> list[Option]:
        """The options with one of these canonical names, in order."""
        return [o for o in self.options if o.name in names]

    def last(self, *names: str) -> Option | None:
        """The one that counts: sbatch keeps the last occurrence."""
        found = self.values(*names)
        return found[-1] if found else None


def long_name(written: str) -> tuple[str | None, str | None]:
    """The canonical name for `--written` (a getopt_long prefix is enough), or (None, why)."""
    if written in LONG:
        return ALIASES.get(written, written), None
    matches = sorted(n for n in LONG if n.startswith(written))
    if len(matches) == 1:
        return ALIASES.get(matches[0], matches[0]), None
    if not matches:
        return None, f"unrecognized option '--{written}'"
    return None, f"option '--{written}' is ambiguous ({', '.join('--' + m for m in matches)})"


def read(args: Sequence[str], lines: Sequence[int | None] | None = None) -> Reading:
    """Read `args` as sbatch does; `lines[i]` is the #SBATCH line of `args[i]`, if any."""
    where = list(lines) if lines is not None else [None] * len(args)
    options: list[Option] = []
    problems: list[str] = []
    i = 0
    while i < len(args):
        word, line = args[i], where[i]
        i += 1
        at = f"line {line}: " if line is not None else ""
        if word.startswith("--") and len(word) > 2:
            written, eq, inline = word[2:].partition("=")
            name, why = long_name(written)
            if name is None:
                problems.append(f"{at}{why}")
                continue
            if name in NO_ARGUMENT and eq:
                problems.append(f"{at}option '--{name}' doesn't allow an argument")
            elif name in REQUIRED_ARGUMENT and not eq:
                if i >= len(args):
                    problems.append(f"{at}option '--{name}' requires an argument")
                    continue
                inline, eq = args[i], "="
                i += 1
            options.append(Option(name, inline if eq else None, word, line))
        elif word.startswith("-") and len(word) > 1 and word != "--":
            j = 1
            while j < len(word):
                letter = word[j]
                name = SHORT.get(letter)
                if name is None:
                    problems.append(f"{at}invalid option -- '{letter}'")
                    break
                if name in NO_ARGUMENT:
                    options.append(Option(name, None, word, line))
                    j += 1
                    continue
                value: str | None = word[j + 1 :] or None
                if value is None and name in REQUIRED_ARGUMENT:
                    if i >= len(args):
                        problems.append(f"{at}option requires an argument -- '{letter}'")
                        break
                    value = args[i]
                    i += 1
                options.append(Option(name, value, word, line))
                break
        else:
            problems.append(f"{at}Invalid directive found in batch script: {word}")
            break  # sbatch stops at the first word that is not an option
    return Reading(tuple(options), tuple(problems))
