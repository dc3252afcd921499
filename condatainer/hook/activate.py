"""Host-side activation: what the cd hook does when the image it found changes.

The hook (shell/hook.<shell>.j2) searches for an image in pure shell and, only when the image
found changes, runs `main` below from `/` with `SHELL -- IMAGE PROJECT` (`hook_argv`: python -c,
or by hand `python -m condatainer.hook.activate`; `condatainer _activate` is the same call through
the CLI, the hook's fallback).  This module
answers that call: `decide` computes an `Outcome` (data), `render` turns it into shell code
(shell/activate.<shell>.j2, every value quoted), `command` prints the code on stdout for the
hook to eval and the messages on stderr.

What the hook is told, in order of the checks:

- `autoload: off` (config): nothing.  An image that vanished since the search: nothing.
- `autoload: hint`: a notice that the image is there and how to use it; no activation.
- not allowed (trust.status is not ALLOWED): a notice, never activation.  When the image has
  no trust record yet, the hook is told to wait for one (`_cnt_wait RECORD`): it tests that
  file with `[ -e ]` on each prompt -- no program started -- so `condatainer allow` activates
  the project at the next prompt.  (A record that exists but no longer matches -- the file was
  replaced, or became writable by others -- cannot be watched that way; `allow` also rewrites
  the hook's stamp, below, and a found image that is not active is asked about again then.)
- allowed: `_cnt_enter IMAGE PROJECT SHIMS MARKER RECORD PKGS BYE`: the hook saves PATH, PS1,
  CNT_OVERLAY and CNT_PROJECT exactly (set or not, exported or not), exports
  CNT_OVERLAY=IMAGE and CNT_PROJECT=PROJECT (the directory the search found the image from),
  puts the shim directory first on PATH and the marker in front of PS1 (fish: in front of
  what fish_prompt prints).  It watches RECORD going away (`condatainer deny`) the same way.
  Leaving is done by the hook alone, in shell; it prints BYE on stderr (with the shell's own
  printf: no process), the line this call prepared.

One line says what happened, as direnv does: `condatainer: env.img active (12 programs)` on
stderr when an env is activated, `condatainer: env.img deactivated` when the hook leaves it
(config `hook_messages: off` turns both off; BYE is then empty).

The hook looks for images when $PWD changes, and also when the hook's stamp changes
(stamp.py): the commands that create, allow or deny an image rewrite it, so an image created
(`condatainer o`) or allowed in the current directory is found at the next prompt.

Notices and the "Overlay envs:" notes (#ENVNOTE lines of the sidecar `<image>.env`) are shown
once per image per shell session: the hook remembers which images it was told about
(`_cnt_told notice|notes IMAGE`) and passes `--noticed` / `--noted` on later calls.

The marker is prompt.marker of the project directory's name (`(cnt:NAME) `, the same marker
`condatainer e` shows), with control characters replaced by `?`; the hook escapes it for the
prompt options in force (bash promptvars, zsh prompt_subst and prompt_percent), so a directory
called `$(touch x)` is shown, never run.

The output contract (the hook evals stdout): on success stdout is shell code from the templates
and nothing else; on any failure stdout is empty and stderr gets one line.  That is why this
command catches errors itself instead of leaving them to cli.main.

The same call keeps the hook file fresh: the hook passes the version it was rendered by, and a
different version makes this command rewrite the hook file (`hostshell.refresh_hook_file`).  The
running shell keeps the hook it has loaded; new shells get the new one.

Speed: a warm cd into a project is interpreter start plus imports.  The modules this path
imports (this one, config, trust, shims, profiles, envfile, display, atomic, shellgen) keep
jinja2 and yaml out (cached render, cached config) and use typing.NamedTuple rather than
dataclasses, whose import of `inspect` alone would add ~9 ms to every cd; a test checks it.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Sequence
from typing import NamedTuple, TextIO

from condatainer import __version__, atomic, config, display, shellgen
from condatainer.errors import CondatainerError
from condatainer.hook import pkgcache, prompt, shims, trust


class Enter(NamedTuple):
    """What `_cnt_enter` gets: everything the hook needs to activate, as plain strings."""

    image: str
    project: str
    shims: str
    marker: str
    record: str
    pkgs: str
    bye: str  # the line the hook prints on leaving ("" for none)


class Outcome(NamedTuple):
    """The answer to one `_activate` call (data first; `render` makes the shell code)."""

    image: str
    enter: Enter | None = None
    wait: str | None = None  # trust record whose appearance means "allowed now"
    messages: tuple[str, ...] = ()  # for stderr, shown now
    told: tuple[str, ...] = ()  # what the messages were: "notice" and/or "notes"


def record_path(image: str | os.PathLike[str]) -> str:
    """The trust record of `image` (exists once it is allowed; see trust.py)."""
    return os.fspath(trust.record_path(image))


def marker(project: str) -> str:
    """The prompt marker for a project directory: `(cnt:NAME) `, control characters as `?`."""
    return prompt.marker(prompt.project_name(project))


def active_line(image: str, programs: int) -> str:
    """The line shown when the hook activates `image`."""
    name = display.printable(os.path.basename(image))
    return f"condatainer: {name} active ({programs} program{'' if programs == 1 else 's'})"


def bye_line(image: str) -> str:
    """The line the hook shows when it leaves `image`."""
    return f"condatainer: {display.printable(os.path.basename(image))} deactivated"


def _programs(directory: str) -> int:
    """How many shims a shim directory holds (every entry but the dispatcher)."""
    try:
        return sum(1 for name in os.listdir(directory) if name != shims.DISPATCHER)
    except OSError:
        return 0


def notice_lines(image: str, state: trust.TrustStatus) -> tuple[str, ...]:
    """The notice for an image that was found but is not allowed."""
    return (
        f"{display.NOTE_PREFIX}{trust.explain(image, state)}; not activating it",
        f"hint: check it, then run: condatainer allow {shellgen.quote(image)}",
    )


def hint_lines(image: str, state: trust.TrustStatus) -> tuple[str, ...]:
    """The notice of `autoload: hint`: the image is here, and how to use it."""
    lines = [f"{display.NOTE_PREFIX}found {image} (autoload: hint, so not activating it)"]
    if state is not trust.TrustStatus.ALLOWED:
        lines.append(f"hint: it is not allowed yet: condatainer allow {shellgen.quote(image)}")
    lines.append("hint: use it with: condatainer e   (or: condatainer config set autoload on)")
    return tuple(lines)


def note_lines(image: str) -> tuple[str, ...]:
    """The "Overlay envs:" lines of the sidecar, as `condatainer e` shows them (or none)."""
    from condatainer.image import envfile

    side = envfile.load(image)
    lines = envfile.banner(side) if side is not None else []
    return ("Overlay envs:", *lines) if lines else ()


def decide(
    image: str,
    project: str,
    *,
    autoload: str,
    exclude: Sequence[str],
    noticed: bool = False,
    noted: bool = False,
    announce: bool = True,
) -> Outcome:
    """What the hook should do about `image`, found from `project` (see the module docstring).

    `announce`: config `hook_messages`, the activation and leaving lines."""
    if autoload == "off":
        return Outcome(image)
    state = trust.status(image)
    if state is trust.TrustStatus.MISSING:
        return Outcome(image)
    if autoload == "hint":
        if noticed:
            return Outcome(image)
        return Outcome(image, messages=hint_lines(image, state), told=("notice",))
    record = record_path(image)
    if state is not trust.TrustStatus.ALLOWED:
        wait = None if os.path.lexists(record) else record
        if noticed:
            return Outcome(image, wait=wait)
        return Outcome(image, wait=wait, messages=notice_lines(image, state), told=("notice",))
    directory = os.fspath(shims.ensure(image, exclude))
    notes = () if noted else note_lines(image)
    enter = Enter(
        image=image,
        project=project,
        shims=directory,
        marker=marker(project),
        record=record,
        pkgs=os.fspath(pkgcache.installed_file(image)),
        bye=bye_line(image) if announce else "",
    )
    said = (active_line(image, _programs(directory)),) if announce else ()
    return Outcome(image, enter=enter, messages=(*said, *notes), told=("notes",) if notes else ())


def render(outcome: Outcome, shell: str) -> str:
    """The shell code the hook evals for `outcome` (shell/activate.<shell>.j2).

    The text is cached under `<cache>/activate/`, keyed by everything it is made from (the
    context, the shell, condatainer's version and the template file's size and mtime): a warm
    activation then does not pay for importing jinja2, about a third of its cost.
    """
    context = {
        "image": outcome.image,
        "enter": outcome.enter._asdict() if outcome.enter is not None else None,
        "wait": outcome.wait,
        "told": list(outcome.told),
    }
    template = shellgen.TEMPLATE_DIR / shellgen.template_name("activate", shell)
    st = template.stat()
    key = repr((shell, __version__, st.st_mtime_ns, st.st_size, sorted(context.items())))
    digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:32]
    cached = config.paths()["cache"] / "activate" / f"{digest}.{shell}"
    try:
        return cached.read_text(encoding="utf-8", errors="surrogateescape")
    except OSError:
        pass
    text = shellgen.render("activate", shell, **context)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        atomic.replace(cached, text, 0o644)
    except OSError:
        pass  # a cache we cannot write only costs time
    return text


def command(
    shell: str,
    image: str,
    project: str,
    *,
    hook_version: str | None = None,
    noticed: bool = False,
    noted: bool = False,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """`condatainer _activate`: shell code on stdout, or nothing and one line on stderr."""
    out = sys.stdout if stdout is None else stdout
    err = sys.stderr if stderr is None else stderr
    try:
        cfg = config.load(os.environ)
        outcome = decide(
            image, project, autoload=cfg.autoload, exclude=cfg.shim_exclude,
            noticed=noticed, noted=noted, announce=cfg.hook_messages == "on",
        )  # fmt: skip
        code = render(outcome, shell)
    except CondatainerError as exc:
        print(display.printable(f"condatainer: error: {exc.message}"), file=err)
        if exc.hint:
            print(display.printable(f"hint: {exc.hint}"), file=err)
        return 1
    except Exception as exc:  # the hook must never see a traceback on its prompt
        if os.environ.get("CONDATAINER_DEBUG") == "1":
            raise
        print(
            display.printable(
                f"condatainer: error: cannot activate {image}: {type(exc).__name__}: {exc}"
            ),
            file=err,
        )
        return 1
    if hook_version is not None and hook_version != __version__:
        _refresh_hook(shell, err)
    for line in outcome.messages:
        print(display.printable(line), file=err)
    # Bytes, not text: a path that is not UTF-8 (kept as surrogates) must reach the shell as
    # the bytes it was, not as an encoding error on every cd.
    out.flush()
    if hasattr(out, "buffer"):
        out.buffer.write(code.encode("utf-8", "surrogateescape"))
    else:  # a StringIO in tests
        out.write(code)
    out.flush()
    return 0


def _refresh_hook(shell: str, err: TextIO) -> None:
    """Rewrite a hook file rendered by another version; never fail the activation for it."""
    from condatainer.hook import hookfile  # only on a version change: kept off the cd path

    try:
        hookfile.refresh(shell)
    except (CondatainerError, OSError) as exc:
        print(
            display.printable(f"{display.NOTE_PREFIX}cannot update the {shell} hook file: {exc}"),
            file=err,
        )


USAGE = (
    "usage: python -m condatainer.hook.activate bash|zsh|fish [--hook-version V] [--noticed]"
    " [--noted]"
    " [--] IMAGE PROJECT"
)


def main(argv: Sequence[str]) -> int:
    """The hook's call on a change: `python -c launcher.ACTIVATE_CODE ...` (or `-m ...`).

    The same call as the hidden `condatainer _activate`, without the CLI: no argparse and none
    of the CLI's imports, which is a third of the time a cd into a project costs.  The argv
    form is fixed (the hook writes it), so it is parsed by hand.
    """
    words = list(argv)
    flags = {"--noticed": False, "--noted": False}
    version: str | None = None
    positional: list[str] = []
    while words:
        word = words.pop(0)
        if word == "--":
            positional += words
            break
        if word == "--hook-version" and words:
            version = words.pop(0)
        elif word in flags:
            flags[word] = True
        else:
            positional.append(word)
    if len(positional) != 3 or positional[0] not in shellgen.SHELLS:
        print(USAGE, file=sys.stderr)
        return 2
    shell, image, project = positional
    try:
        return command(
            shell,
            image,
            project,
            hook_version=version,
            noticed=flags["--noticed"],
            noted=flags["--noted"],
        )
    except KeyboardInterrupt:  # Ctrl-C during a slow first listing: the prompt comes back
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
