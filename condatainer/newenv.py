"""A new, empty env image: `condatainer o [IMAGE] [-s SIZE] [-p PROFILE] [-S] [--fakeroot]`
(and `overlay create` with the same words) on an import-light path.

An empty `o` is mostly mke2fs: for a 1G image, about 45 ms.  The CLI (argparse, the parser of
every command), the configuration (YAML) and the provisioning code cost more than that before
mke2fs starts.  So `entry` hands these plain forms here first:

- `parse` reads the words exactly; anything else (help, packages after `--`, `-f`, `-c`,
  `--dry-run`, `-q`/`-v`, a repeated option, `-s1G`, an abbreviation) is None: the CLI decides.
- The configuration is what the CLI found last time: `provision.prepare` writes down the
  default size, the default profile and the `.condarc` the channels make (`remember`), and
  they are replayed while the config files and the environment variables the configuration
  reads are as they were (`memo`; any difference is a miss, and the CLI runs and writes them
  down again).
- What `provision.prepare` checks is checked here in the same order, with the same functions;
  anything it would refuse or repair (a bad size, an existing target, a record an earlier
  create left) makes this path step aside, so the CLI says it in its own words.
- Then `image.create.begin` runs (import-light up to a running mke2fs); while mke2fs works
  the little that finishing and allowing the image need is imported (`_preload`: no pathlib,
  no trust.py), and the image is finished, allowed and reported exactly as the CLI does:
  `published` and `summary` here are what `provision` and the CLI use too.
- The process ends with `os._exit` once its output is flushed (`entry._leave`).

A test runs the CLI and this path on the same words and compares what each printed and made;
another holds the modules imported before mke2fs starts.
"""

from __future__ import annotations

import os

from condatainer import __version__, memo
from condatainer.record import Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from condatainer.config import Config
    from condatainer.display import Notify
    from condatainer.image.create import CreateResult, Making
    from condatainer.image.layout import PathLike
    from condatainer.image.profiles import Profile
    from condatainer.progress import Progress

FORMAT = 1
DEFAULTS = "defaults"  # cache subdirectory of the entries
SUFFIX = ".create"
ENVIRON_NAMES = frozenset({"HOME"})  # with every CNT_ and XDG_ variable: what config.load reads
ENVIRON_PREFIXES = ("CNT_", "XDG_")

# The spellings of the options `parse` reads; the CLI defines `o`'s options with these very
# tuples (cli._add_create_options), so the two cannot come to read different words.
SIZE = ("-s", "--size")
PROFILE = ("-p", "--profile")
SPARSE = ("-S", "--sparse")
FAKEROOT = ("--fakeroot",)

_VALUED = {**dict.fromkeys(SIZE, "size"), **dict.fromkeys(PROFILE, "profile")}
_FLAGS = {**dict.fromkeys(SPARSE, "sparse"), **dict.fromkeys(FAKEROOT, "fakeroot")}


class Created(Record):
    """A published image, and what the user should be told about it."""

    path: PathLike  # as the user named it (a str on the import-light path)
    size_bytes: int
    sparse: bool
    profile: Profile
    empty: bool  # no packages installed yet
    notices: Sequence[str] = ()


def parse(words: Sequence[str]) -> dict[str, str | bool] | None:
    """The options of `o`'s plain forms (`image`, `size`, `profile`, `sparse`, `fakeroot`),
    or None for anything else."""
    found: dict[str, str | bool] = {}
    i = 0
    while i < len(words):
        word = words[i]
        name, eq, value = word.partition("=") if word.startswith("--") else (word, "", "")
        if name in _VALUED:
            if not eq:
                i += 1
                if i == len(words):
                    return None
                value = words[i]
            key = _VALUED[name]
            if key in found or value.startswith("-"):
                return None
            found[key] = value
        elif word in _FLAGS and _FLAGS[word] not in found:
            found[_FLAGS[word]] = True
        elif word.startswith("-") or "image" in found:
            return None
        else:
            found["image"] = word
        i += 1
    return found


def _key(environ: Mapping[str, str]) -> tuple[object, ...]:
    return (
        FORMAT,
        __version__,
        os.geteuid(),
        memo.environ_key(environ, ENVIRON_NAMES, ENVIRON_PREFIXES),
    )


def _entry_path(environ: Mapping[str, str]) -> str:
    key = _key(environ)
    return os.path.join(memo.cache_dir(environ), DEFAULTS, memo.entry_name([repr(key)], SUFFIX))


def remember(cfg: Config, condarc: bytes, files: Iterable[str], environ: Mapping[str, str]) -> None:
    """Write down what the configuration `cfg` (read from `files`) says about a new env:
    its default size and profile, and its `.condarc`.  Best effort, never raises."""
    entry: dict[str, object] = {
        "key": _key(environ),
        "stamps": memo.stamps(files),
        "size": cfg.default_size,
        "profile": cfg.default_profile,
        "condarc": condarc,
    }
    memo.store(_entry_path(environ), entry)


def recall(environ: Mapping[str, str]) -> tuple[str, str, bytes] | None:
    """(default size, default profile, .condarc) as last written down, while nothing they
    were read from has changed; None otherwise."""
    entry = memo.load(_entry_path(environ))
    if entry is None or entry.get("key") != _key(environ):
        return None
    if not memo.unchanged(entry.get("stamps")):
        return None
    size, profile, condarc = entry.get("size"), entry.get("profile"), entry.get("condarc")
    if isinstance(size, str) and isinstance(profile, str) and isinstance(condarc, bytes):
        return size, profile, condarc
    return None


def title(target: object, size_bytes: int, sparse: bool) -> str:
    """What the progress line of a create says."""
    from condatainer.image.sizes import format_size

    kind = "sparse" if sparse else "allocated"
    return f"creating {target} ({format_size(size_bytes)}, {kind})"


def begin(
    target: object,
    size_bytes: int,
    profile: Profile,
    condarc: bytes,
    *,
    sparse: bool,
    fakeroot: bool,
    progress: Progress,
    notify: Notify,
) -> Making:
    """Start making the image of an env (`image.create.begin`, for a `with`) with its
    `.condarc`."""
    from condatainer.image import create

    return create.begin(
        str(target), size_bytes, profile, sparse=sparse, fakeroot=fakeroot,
        files={".condarc": condarc}, progress=progress, notify=notify,
    )  # fmt: skip


def main(words: Sequence[str], environ: Mapping[str, str]) -> int | None:
    """Create the empty env image `words` ask for, as `condatainer o` would; None when the
    CLI has to (see the module docstring)."""
    options = parse(words)
    if options is None:
        return None
    defaults = recall(environ)
    if defaults is None:
        return None
    from condatainer.errors import CondatainerError
    from condatainer.image import files, layout, profiles, records, sizes

    default_size, default_profile, condarc = defaults
    size = options.get("size", default_size)
    profile = options.get("profile", default_profile)
    image = options.get("image", layout.AUTOLOAD_NAME)
    assert isinstance(size, str) and isinstance(profile, str) and isinstance(image, str)
    sparse, fakeroot = options.get("sparse") is True, options.get("fakeroot") is True
    try:  # as provision.prepare checks, in its order
        size_bytes = sizes.parse_size(size)
        prof = profiles.resolve_profile(profile)
        target = layout.image_name(image)
        if os.path.lexists(records.path_for(target)):
            return None  # what an earlier create left: the CLI repairs or names it
        files.check_target(target)
    except CondatainerError:
        return None  # the CLI says what is wrong, in its words
    warning = files.sparse_warning(target, size_bytes) if sparse else None

    from condatainer.display import Reporter
    from condatainer.errors import guarded

    def run() -> int:
        report = Reporter(show_bytes=sizes.format_size)
        report.notes([warning] if warning else [])
        progress = report.progress(title(target, size_bytes, sparse))
        with progress, begin(
            target, size_bytes, prof, condarc, sparse=sparse, fakeroot=fakeroot,
            progress=progress, notify=report.note,
        ) as making:  # fmt: skip
            _preload()
            result = making.finish()
        created = published(result.file, size_bytes, prof, result, sidecar_text=None, empty=True)
        report.notes(created.notices)
        for line in summary(created):
            print(line)
        return 0

    return guarded(run)


def _preload() -> None:
    """Import what finishing and `published` need while mke2fs works, rather than after it:
    a few small modules.  What trust.py imports (pathlib, enum, typing, json, the
    configuration), imported here, cost mke2fs 10 ms and more: a burst of imports on the
    other core slows mke2fs itself.  A test holds what the route has imported at its end."""
    from condatainer.hook import allowed  # noqa: F401


def published(
    target: PathLike,
    size_bytes: int,
    profile: Profile,
    result: CreateResult,
    *,
    sidecar_text: str | None,
    empty: bool,
    notices: Sequence[str] = (),
) -> Created:
    """After the image `target` is published (`result`): its sidecar (`sidecar_text`, the
    `variables:` of an environment file), its allow record, and what the user is told
    (`notices` so far, then the create's)."""
    from condatainer.hook import allowed

    told = [*notices, *result.notices]
    if sidecar_text is not None:
        from condatainer import atomic
        from condatainer.image import envfile

        atomic.replace(envfile.sidecar_path(target), sidecar_text)
    if not allowed.auto_allow(target):
        told.append(
            f"{target} is group- or world-writable, so the shell hook will not activate it"
            f" until you run: condatainer allow {target}"
        )
    return Created(
        path=target,
        size_bytes=size_bytes,
        sparse=result.sparse,
        profile=profile,
        empty=empty,
        notices=told,
    )


def summary(created: Created) -> list[str]:
    """What `condatainer o` prints on stdout once the image exists."""
    from condatainer.image.sizes import format_size

    alloc = "sparse" if created.sparse else "allocated"
    lines = [
        f"created {created.path} ({format_size(created.size_bytes)}, {alloc},"
        f" profile {created.profile.name})"
    ]
    if created.empty:
        lines.append("the env is empty; install packages with: condatainer mm install PKG...")
    return lines
