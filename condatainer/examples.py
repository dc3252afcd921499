"""The examples at the end of every command's `--help` (and in the man page).

`EXAMPLES` maps each command, spelled as typed after `condatainer` ("" for condatainer itself,
"overlay resize" for an action), to (command line, what it does) pairs.  `attach` puts them
on the parsers in one place, after the parser is built; a test checks that every visible
command has some.  Plain data: importing this module costs nothing worth measuring.
"""

from __future__ import annotations

import argparse

Example = tuple[str, str]

EXAMPLES: dict[str, tuple[Example, ...]] = {
    "": (
        ("condatainer o -- python numpy", "env.img (10G) with Python and numpy"),
        ("condatainer exec -o env.img -- python -V", "run a command in it"),
        ("condatainer e", "a shell in the env found from here upwards"),
        ("condatainer init", "activate env images when you cd into a project"),
        ("condatainer doctor", "what is missing on this machine, and how to get it"),
    ),
    "o": (
        ("condatainer o", "env.img: 10G, balanced profile, space allocated"),
        ("condatainer o big.img -s 50G -p small -- numpy scipy -c conda-forge", "with packages"),
        ("condatainer o -f environment.yml", "from an environment file"),
        ("condatainer o scratch.img -s 1T --sparse", "takes disk space only as it fills"),
    ),
    "overlay": (
        ("condatainer overlay info env.img", "size, usage, owner, packages"),
        ("condatainer overlay resize env.img -s 20G", "grow (or shrink) an image"),
        ("condatainer overlay pack env.img", "env.img.zst: shrunk and compressed"),
    ),
    "overlay create": (
        ("condatainer overlay create env.img -s 20G", "the same as: condatainer o env.img -s 20G"),
        ("condatainer overlay create -f environment.yml --dry-run", "show what would be installed"),
    ),
    "overlay resize": (
        ("condatainer overlay resize env.img -s 30G", "grow to 30G"),
        ("condatainer overlay resize env.img -s 4G", "shrink (refused below what is in use)"),
    ),
    "overlay check": (
        ("condatainer overlay check env.img", "e2fsck, read-only, explained in words"),
        ("condatainer overlay check env.img --repair", "repair what e2fsck can"),
    ),
    "overlay chown": (
        ("condatainer overlay chown env.img", "every file to you"),
        ("condatainer overlay chown env.img --root", "to 0:0, for --fakeroot"),
        ("condatainer overlay chown env.img -p /ext3/env/pkgs", "only the package cache"),
    ),
    "overlay info": (
        ("condatainer overlay info env.img", "a report for people"),
        ("condatainer overlay info env.img --json", "the same as JSON"),
    ),
    "overlay export": (
        ("condatainer overlay export env.img > environment.yml", "the env as a file"),
        ("condatainer overlay export -e env.img > spec.txt", "an @EXPLICIT list of URLs"),
        ("condatainer overlay export --from-history env.img", "only what was asked for"),
    ),
    "info": (("condatainer info env.img", "overlay info, as CondaTainer spells it"),),
    "export": (
        (
            "condatainer export env.img > environment.yml",
            "overlay export, as CondaTainer spells it",
        ),
    ),
    "overlay pack": (
        ("condatainer overlay pack env.img", "writes env.img.zst"),
        ("condatainer overlay pack env.img -o /archive/proj.img.zst", "somewhere else"),
    ),
    "overlay unpack": (
        ("condatainer overlay unpack env.img.zst", "env.img at its size when packed"),
        ("condatainer overlay unpack env.img.zst -o new.img -s 20G", "another name and size"),
    ),
    "e": (
        ("condatainer e", "a shell in env.img, found from here upwards"),
        ("condatainer e -r env.img", "read-only"),
        ("condatainer e env.img -- mm-install scipy", "one command, then leave"),
    ),
    "exec": (
        ("condatainer exec -o env.img -- python train.py", "read-only: many at once"),
        ("condatainer exec -w -o env.img -- pip install mypkg", "writable"),
        ("condatainer exec -o env.img -o data.img -- ls /ext3", "two images"),
    ),
    "run": (
        ("condatainer run job.sh", "submitted when it has #SBATCH lines, else run here"),
        ("condatainer run -c 8 -m 32G -t 4h job.sh", "with job flags"),
        ("condatainer run --array samples.txt quant.sh", "one task per line of samples.txt"),
        ("condatainer run --dry-run job.sh", "what would happen"),
    ),
    "mm": (
        ("condatainer mm install numpy", "into the env (writable)"),
        ("condatainer mm list", "read-only: works while jobs use the image"),
        ("condatainer mm -o other.img remove scipy", "another image"),
    ),
    "micromamba": (
        ("condatainer micromamba", "fetch condatainer's micromamba now (a login node)"),
        ("condatainer micromamba info", "which one is used, and where it came from"),
        ("condatainer micromamba --update", "the newest of its series"),
    ),
    "config": (
        ("condatainer config show", "every setting and where it came from"),
        ("condatainer config set default_size 20G", "change one"),
    ),
    "config show": (
        ("condatainer config show", "a table"),
        ("condatainer config show --json", "the same as JSON"),
    ),
    "config get": (("condatainer config get channels", "one value, for scripts"),),
    "config validate": (
        ("condatainer config validate", "check the site file, your file and CNT_* variables"),
    ),
    "config set": (
        ("condatainer config set channels conda-forge,bioconda", "lists: comma-separated"),
        ("condatainer config set gpu off", "no --nv/--rocm"),
    ),
    "config paths": (("condatainer config paths", "where config, data and cache live"),),
    "base": (
        ("condatainer base pull", "fetch the base image now (on a login node)"),
        ("condatainer base info", "which base runs, and what is in it"),
    ),
    "base pull": (
        ("condatainer base pull", "the default base (config base_source)"),
        ("condatainer base pull --force", "fetch it again (security updates)"),
    ),
    "base build": (
        ("condatainer base build --print-def > site.def", "the definition file, to edit"),
        ("condatainer base build --def site.def", "build yours"),
    ),
    "base info": (
        ("condatainer base info", "the base that runs"),
        ("condatainer base info -b site.sif --json", "another one, as JSON"),
    ),
    "header": (
        ("condatainer header --insert job.sh", "job.sh re-executes itself in its container"),
    ),
    "init": (
        ("condatainer init", "your shell (bash or zsh): hook in ~/.bashrc or ~/.zshrc"),
        ("condatainer init zsh --dry-run", "show the change, write nothing"),
        ("condatainer init --uninstall", "remove exactly what init added"),
    ),
    "hook": (('eval "$(condatainer hook bash)"', "the hook without init, in this shell"),),
    "allow": (
        ("condatainer allow", "the env.img found from here"),
        ("condatainer allow shared/env.img", "a colleague's image, after you looked at it"),
    ),
    "deny": (("condatainer deny shared/env.img", "the hook no longer activates it"),),
    "completion": (
        ('eval "$(condatainer completion bash)"', "TAB completion in this shell"),
        ("condatainer completion zsh > ~/.zfunc/_condatainer", "for zsh's $fpath"),
    ),
    "doctor": (
        ("condatainer doctor", "what is there, what is missing, how to fix it"),
        ("condatainer doctor --json", "the same as JSON"),
    ),
}


def text(examples: tuple[Example, ...]) -> str:
    """The `examples:` section of a --help: what each does as a `#` comment over its line."""
    return "examples:\n" + "\n\n".join(f"  # {what}\n  {line}" for line, what in examples)


def commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Every visible command's parser under `parser`, by its spelling ("" for `parser`)."""
    found = {"": parser}
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        visible = {choice.dest for choice in action._choices_actions}
        for name, sub in action.choices.items():
            if name in visible:
                for spelling, inner in commands(sub).items():
                    found[f"{name} {spelling}".strip()] = inner
    return found


def attach(parser: argparse.ArgumentParser, only: str | None = None) -> None:
    """Put the examples at the end of each command's --help (layout kept as written); with
    `only`, on condatainer itself and that command's parsers."""
    for spelling, sub in commands(parser).items():
        if only is not None and spelling and spelling.split()[0] != only:
            continue
        examples = EXAMPLES.get(spelling)
        if examples:
            sub.epilog = text(examples)
            sub.formatter_class = argparse.RawDescriptionHelpFormatter
