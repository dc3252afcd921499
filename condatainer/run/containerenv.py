"""The container's environment, decided for `run.resolve`: what is set, what is unset, and
the words of the wrapper that expands sidecar values inside the container.

Layers, each over the ones before: the hygiene defaults (`hygiene`), the sidecar files
`<image>.env`, `--env K=V` (taken whole, byte-exact: no comma splitting, no expansion), then
the variables condatainer owns (CONDA_PREFIX, MAMBA_ROOT_PREFIX, PATH, IN_CONDATAINER and
CNT_LEVEL -- the nesting level, 1 in a first container --, CNT_OVERLAY, CNT_CONDA_PREFIX).
The host's CA variables are unset (`HOST_CA_VARS`) unless config `host_ca_env` is `keep`.

Sidecar values that reference variables (`$NAME`, `${NAME}`, or hold `$$`:
`image.envfile.segments`) are not set here: only inside the container is the base's own
environment known, so they become the words of the wrapper (`expansion`), which
`runtime`s run in front of the command (`Plan.argv`).  The wrapper itself is written once
into condatainer's tools directory (`run.tools`), never per run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from condatainer.errors import UsageError
from condatainer.image import envfile
from condatainer.image.layout import CONTAINER_PREFIX
from condatainer.micromamba import CONTAINER_BIN
from condatainer.run.plan import Overlay

# The wrapper that expands sidecar values inside the container (shell/cnt-env.sh.j2), in
# condatainer's tools directory (run.tools writes it there once per content).
EXPANDER = f"{CONTAINER_BIN}/cnt-env"

# The host's CA certificate variables: they name host files that a base image may not have,
# and a TLS library given a missing file fails instead of using the base's own certificates.
HOST_CA_VARS = ("SSL_CERT_FILE", "SSL_CERT_DIR", "CURL_CA_BUNDLE", "REQUESTS_CA_BUNDLE")


def _user_env(items: Sequence[str]) -> list[tuple[str, str]]:
    """`--env KEY=VALUE` items, each taken whole; the names follow the sidecar file's rules."""
    pairs = []
    for item in items:
        key, sep, value = item.partition("=")
        problem = envfile.check_name(key) if sep else "it has no '='"
        if problem:
            raise UsageError(
                f"invalid --env {item!r}: {problem}",
                hint="use --env KEY=VALUE (one variable each)",
            )
        pairs.append((key, value))
    return pairs


def hygiene(host_ca_env: str = "clear") -> tuple[tuple[tuple[str, str], ...], tuple[str, ...]]:
    """The clean container environment: (defaults, names to unset).

    Defaults, set below the sidecar file and `--env` (either can change or empty them):
    PYTHONNOUSERSITE=1 (the host's ~/.local site-packages stay out of the env's Python),
    R_LIBS_USER in the env (not the host's ~/R), RETICULATE_PYTHON the env's Python.  Unset:
    the host's CA variables (HOST_CA_VARS), unless config `host_ca_env` is `keep` (a site that
    binds its CA bundle at the same path in every container).
    """
    defaults = (
        ("PYTHONNOUSERSITE", "1"),
        ("R_LIBS_USER", f"{CONTAINER_PREFIX}/lib/R/library"),
        ("RETICULATE_PYTHON", f"{CONTAINER_PREFIX}/bin/python"),
    )
    return defaults, (HOST_CA_VARS if host_ca_env != "keep" else ())


def level(environ: Mapping[str, str]) -> int:
    """The nesting level a container started from `environ` gets: 1, or one more than ours."""
    try:
        return int(environ.get("IN_CONDATAINER", "0") or 0) + 1
    except ValueError:
        return 1


def sidecar_env(
    ovls: Sequence[Overlay],
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The sidecar files' variables as (plain, expanding): values that reference variables
    (or hold `$$`) are expanded in the container (`expansion`); the others are data as they
    are.  A later image's value for a name replaces an earlier one's."""
    merged: dict[str, str] = {}
    for overlay in ovls:
        side = envfile.load(overlay.path)
        if side is not None:
            merged.update(side.vars)
    plain = [(k, v) for k, v in merged.items() if not envfile.expands(v)]
    return plain, [(k, v) for k, v in merged.items() if envfile.expands(v)]


def expansion(expanding: Sequence[tuple[str, str]]) -> tuple[str, ...]:
    """The wrapper's words for `expanding` (shell/cnt-env.sh.j2): `=NAME` starts a variable,
    `+TEXT` is literal text, `$NAME` the value of NAME in the container; then `--`.  The
    values are parsed here (`envfile.segments`) so the wrapper only joins text: it never
    parses, let alone evaluates, anything it is given."""
    if not expanding:
        return ()
    words = [EXPANDER]
    for key, value in expanding:
        words.append("=" + key)
        words += [
            ("$" if kind == envfile.NAME else "+") + part for kind, part in envfile.segments(value)
        ]
    words.append("--")
    return tuple(words)


def container_env(
    ovls: Sequence[Overlay],
    user_env: Sequence[str],
    environ: Mapping[str, str],
    path_tail: Sequence[str] = (),
    *,
    tools: bool = False,
    host_ca_env: str = "clear",
) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...], tuple[str, ...]]:
    """The container's environment: (variables set, in order; variables unset; the wrapper
    words that expand sidecar values referencing variables).

    Set, each over the ones before: the hygiene defaults, sidecar files, --env, then ours.
    PATH: /ext3/env/bin first, then (with `tools`) condatainer's tools, then the host's PATH,
    then `path_tail`.  A sidecar value to expand is left to the wrapper, unless --env sets
    that name (the command line wins).
    """
    defaults, unset = hygiene(host_ca_env)
    plain, expanding = sidecar_env(ovls)
    given = _user_env(user_env)
    pairs: list[tuple[str, str]] = [*defaults, *plain, *given]
    host_path = environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")
    ours_first = [f"{CONTAINER_PREFIX}/bin", *([CONTAINER_BIN] if tools else [])]
    rest = [p for p in host_path.split(":") if p and p not in ours_first]
    depth = str(level(environ))
    ours = [
        ("CONDA_PREFIX", CONTAINER_PREFIX),
        ("MAMBA_ROOT_PREFIX", CONTAINER_PREFIX),
        ("PATH", ":".join([*ours_first, *rest, *path_tail])),
        ("IN_CONDATAINER", depth),
        ("CNT_LEVEL", depth),
    ]
    if ovls:
        ours.append(("CNT_OVERLAY", ovls[0].path))
    if any(o.writable for o in ovls):
        ours.append(("CNT_CONDA_PREFIX", CONTAINER_PREFIX))
    merged = dict(pairs)
    merged.update(ours)
    overridden = {k for k, _ in given}
    wrapper = expansion([(k, v) for k, v in expanding if k not in overridden])
    return tuple(merged.items()), unset, wrapper
