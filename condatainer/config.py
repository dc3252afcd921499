"""User configuration: one YAML file, overridden by `CNT_<KEY>` variables, overridden by flags.

Owns the list of keys, their defaults and validation, where each value came from, and the
XDG directories condatainer uses (`paths`).  Flags are the caller's business: `cli` passes them
on top of the `Config` this module returns.

Where values come from, lowest to highest:

1. defaults (the `Config` dataclass below);
2. the site layer: `/etc/condatainer/config.yaml`, or the file `CNT_SITE_CONFIG` names (cluster
   admins set the base image, binds, channels for everyone there); same format and keys;
3. `${XDG_CONFIG_HOME:-~/.config}/condatainer/config.yaml`, a mapping of key: value;
4. environment variables `CNT_<KEY>`, the key upper-cased (`CNT_RUNTIME=builtin`).

A higher layer replaces a key's value whole (a user's `binds` replaces the site's list, as a
`CNT_BINDS` replaces both): one rule for every key, and `config show` names the layer.

Decisions, so callers and users can rely on them:

- List keys in the environment: `CNT_BINDS` and `CNT_CHANNELS` are comma-separated (the way
  `apptainer --bind` separates binds, so a bind path cannot contain a comma there);
  `CNT_SHIM_EXCLUDE` is separated by commas and/or whitespace.  Items are stripped of
  surrounding whitespace and empty items are dropped.  In the file, a list key takes a YAML list,
  or a string that is split the same way as its variable.
- An empty `CNT_<KEY>` counts as unset, the way `${VAR:-default}` does in a shell.  A null value
  in the file (`key:` or `key: null`) also counts as unset: the default applies.
- YAML 1.1 reads `on`/`off`/`yes`/`no` as booleans, so for the keys whose values include on
  and off (`gpu`, `autoload`, `hook_messages`) true means "on" and false means "off".  A bare
  number is accepted for `default_size` (it means MiB, as on the command line).
- Only the `CNT_` variables named after keys are read; others (`CNT_OVERLAY`, `CNT_HOOK`, ...)
  belong to other parts of condatainer and are ignored here.  An unknown key in the file is an
  error (with the closest valid key), because a silently ignored typo is worse.
- `set_value` edits the file in place: only the text of that one entry changes, so comments and
  the order of other keys survive; when that cannot be done safely the file is rewritten from
  its data.  The write is atomic (temporary file + rename, next to the real file when
  config.yaml is a symlink) and keeps the file's mode.  It validates the new value only, so a
  bad value elsewhere in the file can still be fixed one key at a time.
- `yaml` is imported inside functions only: importing the CLI (TAB completion) must not pay
  for it.  Only the safe loader is used; the file is data.
- The parsed files are cached as JSON in `<cache>/config.json` (the site's in
  `site-config.json`), keyed by the sha256 of the file's text: the shell hook loads the config
  on every cd into a project, and importing yaml would cost it more than everything else it
  does.  The key is the content, so an edited file is
  always parsed again; a file whose data JSON cannot carry exactly (dates, non-string keys)
  is never cached, nor is one that is not valid YAML, so YAML errors come from the parser.

Long on purpose: the keys, their validation, where each value came from, showing and editing
the file are one format, kept in one place so that `config set` can never write what `load`
would refuse.
"""

from __future__ import annotations

import os
import re
import textwrap
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Union

from condatainer import atomic, bindspec, xdg
from condatainer.errors import CondatainerError, ConfigError
from condatainer.image import profiles

if TYPE_CHECKING:
    import yaml

Runtime = Literal["auto", "apptainer", "singularity", "builtin"]
Gpu = Literal["auto", "on", "off"]
Autoload = Literal["on", "hint", "off"]
OnOff = Literal["on", "off"]
Submit = Literal["auto", "never"]
CaEnv = Literal["clear", "keep"]
Value = Union[str, tuple[str, ...], None]

PROFILES: tuple[str, ...] = tuple(profiles.names())  # names and aliases, checked here early

# Executables that never get a shim on the host: shells, coreutils and other basics an
# environment may carry its own copy of, but which must keep meaning the host's program.
DEFAULT_SHIM_EXCLUDE: tuple[str, ...] = (
    "bash", "sh", "dash", "zsh", "ksh", "csh", "tcsh", "fish", "env", "sudo", "su",
    "ls", "cat", "cp", "mv", "rm", "ln", "mkdir", "rmdir", "chmod", "chown", "echo", "printf",
    "test", "[", "true", "false", "pwd", "cd", "which", "xargs", "find", "sort", "uniq", "head",
    "tail", "tr", "cut", "sed", "awk", "grep", "tee", "touch", "date", "sleep", "kill", "ps",
    "id", "whoami", "uname", "hostname", "clear", "reset", "tput", "tset", "tic", "infocmp",
    "less", "more", "man", "vi", "vim",
    "nano", "python-config",
)  # fmt: skip


# The base image condatainer pulls on first need (Apptainer runtime, no base_image set): Docker's
# official buildpack-deps image for Debian 12, its "curl" variant -- Debian with bash, glibc 2.36
# and the CA certificates micromamba's HTTPS downloads need -- pinned to the release by tag.
# Why this one and not debian:12-slim (no CA certificates): README, "Base images".
DEFAULT_BASE_SOURCE = "docker://docker.io/library/buildpack-deps:bookworm-curl"
BASE_SCHEMES = ("docker", "oras", "library", "shub", "http", "https")
SITE_CONFIG = "/etc/condatainer/config.yaml"  # the site layer, unless CNT_SITE_CONFIG names one
SITE_VAR = "CNT_SITE_CONFIG"
NO_DEFAULTS = "nodefaults"  # in an environment file's channels: no config channels after them
_BASE_SOURCE = re.compile("(?:" + "|".join(BASE_SCHEMES) + r")://[A-Za-z0-9._/:@+-]+")


class Config(NamedTuple):
    """The effective configuration.  Field defaults are the defaults; `sources` says who set what.

    Read values as attributes (`cfg.runtime`) or by name (`cfg.get("runtime")`); lists are
    tuples.  `source(key)` is "default", "site <path>", "file <path>" or "env CNT_<KEY>".
    """

    apptainer_bin: str | None = None  # None: find apptainer, then singularity, on PATH
    runtime: Runtime = "auto"
    base_image: str | None = None
    base_source: str = DEFAULT_BASE_SOURCE
    fetch_dir: str | None = None  # None: the XDG data directory (see `fetch_dir`)
    binds: tuple[str, ...] = ()
    gpu: Gpu = "auto"
    default_size: str = "10G"
    default_profile: str = profiles.DEFAULT_PROFILE
    autoload: Autoload = "on"
    hook_messages: OnOff = "on"  # the cd hook's one line on activating and on leaving an env
    shim_exclude: tuple[str, ...] = DEFAULT_SHIM_EXCLUDE
    submit: Submit = "auto"
    logs_dir: str | None = None  # where submitted jobs write their logs; None: the script's dir
    channels: tuple[str, ...] = ("conda-forge",)
    micromamba: str | None = None  # a micromamba binary of the site's; None: condatainer's own
    micromamba_channel: str = "conda-forge"  # where condatainer fetches its own micromamba
    micromamba_version: str = "2"  # the series fetched: "2" = newest 2.*, "2.3" = newest 2.3.*
    ca_bundle: str | None = None  # CA certificates for host downloads (else SSL_CERT_FILE)
    # The host's CA path variables (SSL_CERT_FILE, ...) in containers: cleared, or kept where a
    # site binds its CA bundle at the same path (run.resolve.hygiene_env).
    host_ca_env: CaEnv = "clear"
    sources: Mapping[str, str] = MappingProxyType({})

    def get(self, key: str) -> Value:
        """The value of `key`; ConfigError listing the valid keys for an unknown one."""
        value: Value = getattr(self, _known(key))
        return value

    def source(self, key: str) -> str:
        """Where the value of `key` came from: "default", "site <path>" (the site layer),
        "file <path>" (the user's file) or "env CNT_<KEY>"."""
        return self.sources.get(_known(key), "default")


KEYS: tuple[str, ...] = tuple(f for f in Config._fields if f != "sources")
_LIST_KEYS = frozenset(k for k in KEYS if isinstance(getattr(Config(), k), tuple))
_NULLABLE_KEYS = frozenset(
    {"apptainer_bin", "base_image", "fetch_dir", "micromamba", "ca_bundle", "logs_dir"}
)
_CHOICES: dict[str, tuple[str, ...]] = {
    "runtime": ("auto", "apptainer", "singularity", "builtin"),
    "gpu": ("auto", "on", "off"),
    "autoload": ("on", "hint", "off"),
    "hook_messages": ("on", "off"),
    "submit": ("auto", "never"),
    "host_ca_env": ("clear", "keep"),
    "default_profile": PROFILES,
}
# How a string (a CNT_ variable, or a string in the file) splits into a list.
_SPLIT = {
    "binds": re.compile(r","),
    "channels": re.compile(r","),
    "shim_exclude": re.compile(r"[,\s]+"),
}
_SEPARATOR_DOC = {"binds": "commas", "channels": "commas", "shim_exclude": "commas or spaces"}


class _Invalid(Exception):
    """A value that does not fit its key; the caller adds where the value came from."""

    def __init__(self, reason: str, allowed: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.allowed = allowed


# --------------------------------------------------------------------------------------------
# Paths


def paths(env: Mapping[str, str] | None = None) -> dict[str, Path]:
    """The files and directories condatainer uses, following the XDG base directory spec.

    `config` is the user's config file, `site` the site layer's (`site_path`); `data` (hook
    files, trust store, and by default what condatainer fetches: see `fetch_dir`), `cache`
    (shims, listings) and `state` are directories.  None of them is created here.
    """
    env = os.environ if env is None else env
    return {
        "config": Path(xdg.directory("config", env)) / "config.yaml",
        "site": site_path(env),
        "data": Path(xdg.directory("data", env)),
        "cache": Path(xdg.directory("cache", env)),
        "state": Path(xdg.directory("state", env)),
    }


def fetch_dir(cfg: Config, env: Mapping[str, str] | None = None) -> Path:
    """Where condatainer keeps what it fetches on first use (base images under images/):
    config `fetch_dir`, else the XDG data directory -- under $HOME, which compute nodes share,
    unlike $XDG_CACHE_HOME, which sites may put on local disk or purge."""
    if cfg.fetch_dir:
        env = os.environ if env is None else env
        text = cfg.fetch_dir
        if text.startswith("~"):
            home = env.get("HOME") or str(Path.home())
            text = home + text[1:] if text == "~" or text.startswith("~/") else text
        return Path(os.path.expanduser(text))
    return paths(env)["data"]


def site_path(env: Mapping[str, str] | None = None) -> Path:
    """The site layer's file: `CNT_SITE_CONFIG` when set (and not empty), else SITE_CONFIG."""
    env = os.environ if env is None else env
    return Path(env.get(SITE_VAR) or SITE_CONFIG)


def files(env: Mapping[str, str] | None = None) -> tuple[Path, ...]:
    """Every file `load` reads (present or not): what a cached decision must watch."""
    found = paths(env)
    return (found["site"], found["config"])


# --------------------------------------------------------------------------------------------
# Loading


def load(env: Mapping[str, str] | None = None) -> Config:
    """Read the site file, the user's config file and the `CNT_<KEY>` variables of `env`
    (default: os.environ), each layer over the one before.

    Raises ConfigError naming the file and line (or the variable) for malformed YAML, unknown
    keys and bad values.
    """
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for layer in _layers(env):
        found = layer()
        values.update(found.values)
        for key in found.values:
            sources[key] = f"env {env_var(key)}" if found.label == "env" else found.label
    return Config()._replace(**values, sources=sources)


class _Layer(NamedTuple):
    label: str  # what `Config.source` says: "site <path>", "file <path>", "env"
    values: dict[str, Value]


def _layers(env: Mapping[str, str]) -> list[Callable[[], _Layer]]:
    """The layers above the defaults, lowest first, each read only when called."""
    where = paths(env)
    return [
        lambda: _file_layer(where["site"], "site", "site-config.json", env),
        lambda: _file_layer(where["config"], "file", "config.json", env),
        lambda: _env_layer(env),
    ]


def _file_layer(path: Path, kind: str, cache_name: str, env: Mapping[str, str]) -> _Layer:
    values: dict[str, Value] = {}
    text = _read(path)
    if text is not None:
        data = _parse_cached(text, path, env, cache_name)
        fix = f"edit {path}" if kind == "file" else f"ask your site's admins to fix {path}"
        for key, raw in data.items():
            if key not in KEYS:
                line = _line_of(text, key)
                raise ConfigError(
                    f"{path} line {line}: unknown key {key!r}{_did_you_mean(str(key))}",
                    hint=f"valid keys: {', '.join(KEYS)}; {fix}",
                )
            if raw is None:
                continue  # `key:` with no value: unset, the default applies
            try:
                values[key] = _coerce(key, raw)
            except _Invalid as bad:
                line = _line_of(text, key, value=True)
                raise _value_error(key, raw, bad, f"{path} line {line}", fix) from None
    return _Layer(f"{kind} {path}", values)


def _env_layer(env: Mapping[str, str]) -> _Layer:
    values: dict[str, Value] = {}
    for key in KEYS:
        var = env_var(key)
        raw_env = env.get(var, "")
        if not raw_env:
            continue  # empty counts as unset
        try:
            values[key] = _coerce(key, raw_env)
        except _Invalid as bad:
            raise _value_error(key, raw_env, bad, var, f"unset {var} or fix its value") from None
    return _Layer("env", values)  # `load` names each variable


def validate(env: Mapping[str, str] | None = None) -> list[tuple[str, ConfigError | None]]:
    """Check every layer on its own (`config validate`): (what, None) for a good one, (what,
    the error) for a bad one -- all of them, not only the first."""
    env = os.environ if env is None else env
    where = paths(env)
    names = [
        f"site {where['site']}" + ("" if where["site"].exists() else " (absent)"),
        f"file {where['config']}" + ("" if where["config"].exists() else " (absent)"),
        "environment (CNT_<KEY> variables)",
    ]
    results: list[tuple[str, ConfigError | None]] = []
    for name, layer in zip(names, _layers(env)):
        try:
            layer()
        except ConfigError as bad:
            results.append((name, bad))
        else:
            results.append((name, None))
    return results


def check(key: str, value: str, where: str) -> Value:
    """`value` for `key` as `load` would take it; ConfigError naming `where` (a command line
    argument, say) when it does not fit."""
    try:
        return _coerce(_known(key), value)
    except _Invalid as bad:
        raise _value_error(key, value, bad, where, f"fix {where}") from None


def env_channels(
    cfg: Config, requested: Sequence[str] = (), *, override: bool = False
) -> tuple[str, ...]:
    """An env's channels, the one rule everywhere: the user's first (`-c`, then an environment
    file's), then config `channels` (conda-forge by default, or a site's mirror); each once.
    `override` (`--override-channels`), or `nodefaults` among them (conda's word in an
    environment file for "not the default channels"): the user's only."""
    override = override or NO_DEFAULTS in requested
    given = [c for c in requested if c != NO_DEFAULTS]
    return tuple(dict.fromkeys([*given, *(() if override else cfg.channels)]))


def choices(key: str) -> tuple[str, ...]:
    """The values `key` allows when it has a fixed set (`gpu`: auto, on, off), else ()."""
    return _CHOICES.get(key, ())


def env_var(key: str) -> str:
    """The environment variable that overrides `key`: CNT_ and the key upper-cased."""
    return "CNT_" + key.upper()


def _read(path: Path) -> str | None:
    """The text of the config file, or None when there is none."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise ConfigError(
            f"{path}: is a directory, not a config file",
            hint="remove it, or see where condatainer looks: condatainer config paths",
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte {exc.start})", hint=f"fix or remove {path}"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc.strerror}") from None


def _parse_cached(text: str, path: Path, env: Mapping[str, str], cache_name: str) -> dict[Any, Any]:
    """`_parse_mapping(text)`, from the JSON cache when it holds this very text."""
    import hashlib
    import json

    digest = hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()
    cache = paths(env)["cache"] / cache_name  # one per layer: they would evict each other
    try:
        cached = json.loads(cache.read_text(encoding="utf-8"))
        if cached["sha256"] == digest and isinstance(cached["data"], dict):
            return cached["data"]
    except (OSError, ValueError, KeyError, TypeError):
        pass  # no cache yet, another file's, or damaged: parse
    data = _parse_mapping(text, path)
    try:
        dumped = json.dumps({"sha256": digest, "data": data})
    except (TypeError, ValueError):
        return data  # a date or a set: JSON cannot carry it, so parse every time
    if all(isinstance(key, str) for key in data) and json.loads(dumped)["data"] == data:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            atomic.replace(cache, dumped + "\n", 0o600)
        except OSError:
            pass  # a read-only cache directory only costs speed
    return data


def _parse_mapping(text: str, path: Path) -> dict[Any, Any]:
    """The top-level mapping of a config file; ConfigError with the line for anything else."""
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f"{path} line {mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(
            f"{where}: not valid YAML: {problem}",
            hint="fix or remove the file; `condatainer config paths` shows where it is",
        ) from None
    except RecursionError:  # PyYAML's composer recurses once per nesting level
        raise ConfigError(
            f"{path}: nested too deeply to be a configuration file",
            hint="fix or remove the file; `condatainer config paths` shows where it is",
        ) from None
    if data is None:
        return {}  # empty, or only comments
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path} line 1: the config must be a mapping of key: value,"
            f" not a {type(data).__name__}",
            hint=f"write one `key: value` per line, e.g. `runtime: auto`; keys: {', '.join(KEYS)}",
        )
    return data


def _line_of(text: str, key: object, *, value: bool = False) -> int:
    """The 1-based line of a top-level key (or of its value) in `text`; 1 when not found."""
    import yaml

    node = _entry_nodes(yaml.compose(text, Loader=yaml.SafeLoader), key)
    if node is None:
        return 1
    return (node[1] if value else node[0]).start_mark.line + 1


def _entry_nodes(root: yaml.Node | None, key: object) -> tuple[yaml.Node, yaml.Node] | None:
    import yaml

    if not isinstance(root, yaml.MappingNode):
        return None
    for key_node, value_node in root.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.value == str(key):
            return key_node, value_node
    return None


# --------------------------------------------------------------------------------------------
# Validation


def _coerce(key: str, raw: object) -> Value:
    """Turn a value from the file or the environment into the typed value of `key`.

    Raises _Invalid with the reason and the allowed values.
    """
    if key in _LIST_KEYS:
        return _coerce_list(key, raw)
    if key in ("gpu", "autoload", "hook_messages") and isinstance(raw, bool):
        raw = "on" if raw else "off"  # YAML 1.1 reads on/off as booleans
    if key == "default_size" and isinstance(raw, (int, float)) and not isinstance(raw, bool):
        raw = str(raw)
    if key == "micromamba_version" and isinstance(raw, int) and not isinstance(raw, bool):
        raw = str(raw)  # `micromamba_version: 2`
    if key == "micromamba_version" and isinstance(raw, float):
        raise _Invalid("a number: quote it (YAML reads 2.10 as the number 2.1)", _allowed(key))
    if not isinstance(raw, str):
        raise _Invalid(f"expected a string, got a {_yaml_type(raw)}", _allowed(key))
    value = raw.strip()
    if key in _CHOICES:
        if value not in _CHOICES[key]:
            raise _Invalid("not one of the allowed values", _allowed(key))
    elif key == "default_size":
        try:
            from condatainer.image.sizes import parse_size  # decimal: only when a size is set

            parse_size(value)
        except CondatainerError as exc:
            raise _Invalid(exc.message, _allowed(key)) from None
    elif not value:
        raise _Invalid("empty", _allowed(key))
    elif key == "base_source" and not _BASE_SOURCE.fullmatch(value):
        raise _Invalid("not an image reference Apptainer can pull", _allowed(key))
    elif key == "fetch_dir" and not (value.startswith(("/", "~"))):
        raise _Invalid("not an absolute path", _allowed(key))
    elif key == "micromamba_version" and not re.fullmatch(r"\d+(\.\d+){0,2}", value):
        raise _Invalid("not a version series", _allowed(key))
    elif key == "micromamba_channel" and any(c.isspace() for c in value):
        raise _Invalid("a channel contains no whitespace", _allowed(key))
    return value


def _coerce_list(key: str, raw: object) -> tuple[str, ...]:
    if isinstance(raw, str):
        items = [item.strip() for item in _SPLIT[key].split(raw)]
    elif isinstance(raw, list):
        items = []
        for item in raw:
            if not isinstance(item, str):
                raise _Invalid(f"list item {item!r} is a {_yaml_type(item)}", _allowed(key))
            items.append(item.strip())
    else:
        raise _Invalid(f"expected a list, got a {_yaml_type(raw)}", _allowed(key))
    result = tuple(item for item in items if item)
    for item in result:
        _check_item(key, item)
    return result


def _check_item(key: str, item: str) -> None:
    if key == "binds":
        try:
            bindspec.split(item)
        except ValueError as bad:
            raise _Invalid(str(bad), _allowed(key)) from None
    elif key == "shim_exclude":
        if "/" in item:
            raise _Invalid(f"{item!r} is a path, not a command name", _allowed(key))
    elif key == "channels" and any(c.isspace() for c in item):
        raise _Invalid(f"channel {item!r} contains whitespace", _allowed(key))


def _allowed(key: str) -> str:
    if key in _CHOICES:
        return "one of " + ", ".join(_CHOICES[key])
    if key == "default_size":
        return "a size like 10G, 500M, 1.5G or 20GiB (a bare number means MiB), at least 64M"
    if key == "binds":
        return f"a list of {bindspec.FORM} (in a string: separated by commas)"
    if key == "base_source":
        schemes = ", ".join(f"{s}://" for s in BASE_SCHEMES)
        return f"{schemes} and a reference like {DEFAULT_BASE_SOURCE}"
    if key == "fetch_dir":
        return "an absolute path (or ~/...), on a filesystem compute nodes share"
    if key in _LIST_KEYS:
        return f"a list of names (in a string: separated by {_SEPARATOR_DOC[key]})"
    if key == "micromamba_version":
        return "a major series like 2, or 2.3 (newest 2.3.*), or an exact 2.3.1"
    if key == "micromamba_channel":
        return "a channel name (conda-forge), a URL (https://..., file://...) or a path"
    return "a non-empty string"


def _yaml_type(value: object) -> str:
    return {bool: "boolean", int: "number", float: "number", list: "list", dict: "mapping"}.get(
        type(value), type(value).__name__
    )


def _value_error(key: str, raw: object, bad: _Invalid, where: str, fix: str) -> ConfigError:
    shown = ", ".join(map(str, raw)) if isinstance(raw, list) else str(raw)
    return ConfigError(
        f"{where}: invalid value {shown!r} for {key}: {bad.reason}; allowed: {bad.allowed}",
        hint=fix,
    )


def _known(key: str) -> str:
    if key not in KEYS:
        raise ConfigError(
            f"unknown config key {key!r}{_did_you_mean(key)}", hint=f"valid keys: {', '.join(KEYS)}"
        )
    return key


def _did_you_mean(key: str) -> str:
    import difflib  # only for a typo's suggestion: kept off the import path

    close = difflib.get_close_matches(key.lower(), KEYS, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


# --------------------------------------------------------------------------------------------
# Showing


def _render(key: str, value: Value) -> str:
    if value is None:
        return {
            "apptainer_bin": "(auto)",
            "micromamba": "(auto)",
            "fetch_dir": "(the data directory)",
        }.get(key, "(none)")
    if isinstance(value, tuple):
        return ", ".join(value) if value else "(empty)"
    return value


def show(cfg: Config, width: int = 100) -> str:
    """A table of every key, its value and where the value came from (`config show`).

    Long lists wrap inside the value column, so the table stays readable in a terminal.
    """
    key_w = max(len(k) for k in KEYS)
    rows = [(k, _render(k, cfg.get(k)), cfg.source(k)) for k in KEYS]
    src_w = max(len("SOURCE"), *(len(r[2]) for r in rows))
    value_w = max(20, width - key_w - src_w - 4)
    value_w = min(value_w, max(len("VALUE"), *(len(r[1]) for r in rows)))
    lines = [f"{'KEY':<{key_w}}  {'VALUE':<{value_w}}  SOURCE"]
    for key, text, source in rows:
        chunks = textwrap.wrap(text, value_w, break_on_hyphens=False, break_long_words=False)
        chunks = chunks or [""]
        lines.append(f"{key:<{key_w}}  {chunks[0]:<{value_w}}  {source}")
        lines.extend(f"{'':<{key_w}}  {chunk}" for chunk in chunks[1:])
    return "\n".join(line.rstrip() for line in lines)


def show_json(cfg: Config) -> dict[str, dict[str, object]]:
    """`config show --json`: each key -> {"value": ..., "source": ...}; lists are lists, an
    unset value is null, the source is "default", "site <path>", "file <path>" or "env CNT_X"."""
    result: dict[str, dict[str, object]] = {}
    for key in KEYS:
        value = cfg.get(key)
        shown: object = list(value) if isinstance(value, tuple) else value
        result[key] = {"value": shown, "source": cfg.source(key)}
    return result


def get(cfg: Config, key: str) -> str:
    """The value of `key` as text for scripts (`config get`): list items one per line,
    an unset value (apptainer_bin, base_image, fetch_dir, micromamba, ca_bundle, logs_dir) as
    the empty string."""
    value = cfg.get(key)
    if value is None:
        return ""
    if isinstance(value, tuple):
        return "\n".join(value)
    return value


# --------------------------------------------------------------------------------------------
# Writing


def set_value(
    key: str, value: str | Sequence[str] | None, *, env: Mapping[str, str] | None = None
) -> Path:
    """Validate `value` for `key` and write it into the config file; return the file's path.

    A string for a list key is split like its CNT_ variable.  None (or an empty string for
    apptainer_bin/base_image/fetch_dir/micromamba/ca_bundle/logs_dir) removes the key from the
    file, so the default applies again.
    The environment is only used to find the file; a CNT_ variable still overrides the file.
    """
    import yaml

    _known(key)
    path = paths(env)["config"]
    new: Value
    if value is None or (key in _NULLABLE_KEYS and value == ""):
        new = None
    else:
        raw: object = value if isinstance(value, str) else list(value)
        try:
            new = _coerce(key, raw)
        except _Invalid as bad:
            raise _value_error(
                key, raw, bad, "condatainer config set", f"condatainer config set {key} VALUE"
            ) from None

    text = _read(path) or ""
    data = _parse_mapping(text, path)
    expected = dict(data)
    if new is None:
        expected.pop(key, None)
    else:
        expected[key] = list(new) if isinstance(new, tuple) else new
    if expected == data and text:
        return path  # nothing changes

    new_text = _edit_entry(text, key, expected.get(key))
    if new_text is None or not _loads_as(new_text, expected):
        # Not a plain block mapping, or the edit would change more than this key: rewrite.
        new_text = yaml.safe_dump(expected, default_flow_style=False, sort_keys=False)
        if not expected:
            new_text = ""
    _write_atomic(path, new_text)
    return path


def _loads_as(text: str, expected: dict[Any, Any]) -> bool:
    import yaml

    try:
        return (yaml.safe_load(text) or {}) == expected
    except (yaml.YAMLError, RecursionError):
        return False


def _edit_entry(text: str, key: str, value: object) -> str | None:
    """`text` with only the entry of `key` replaced (value None: removed, missing: appended).

    Returns None when the file is not a plain block mapping; the caller then rewrites it.
    """
    import yaml

    entry = ""
    if value is not None:
        # Lists in flow style (`binds: [/a, /b]`) so the entry stays one line when it can.
        flow = None if isinstance(value, list) else False
        dumped = yaml.safe_dump({key: value}, default_flow_style=flow, width=88)
        entry = dumped.rstrip("\n")
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if root is None:
        if value is None:
            return text
        return (text if not text or text.endswith("\n") else text + "\n") + entry + "\n"
    if not isinstance(root, yaml.MappingNode) or root.flow_style:
        return None
    nodes = _entry_nodes(root, key)
    if nodes is None:
        if value is None:
            return text
        return (text if text.endswith("\n") else text + "\n") + entry + "\n"
    key_node, value_node = nodes
    start, end = key_node.start_mark.index, _node_end(value_node)
    if value is None:
        # Remove the whole lines of the entry, including a comment after the value.
        start = text.rfind("\n", 0, start) + 1
        newline = text.find("\n", end)
        end = len(text) if newline < 0 else newline + 1
    return text[:start] + entry + text[end:]


def _node_end(node: yaml.Node) -> int:
    """The index just after the last character of `node`'s own text.

    A block collection's end mark lies at the next token, past any comment lines that follow;
    its last child's end does not.
    """
    import yaml

    if isinstance(node, yaml.CollectionNode) and not node.flow_style and node.value:
        last = node.value[-1]
        return _node_end(last[1] if isinstance(node, yaml.MappingNode) else last)
    return int(node.end_mark.index)


def _write_atomic(path: Path, text: str) -> None:
    """Replace `path` with `text` atomically, keeping its mode; through a symlink, the target."""
    target = Path(os.path.realpath(path))
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic.replace(target, text, durable=True)
    except OSError as exc:
        raise ConfigError(
            f"{target}: cannot write the config file: {exc.strerror or exc}",
            hint=f"check the permissions of {target.parent}",
        ) from None
