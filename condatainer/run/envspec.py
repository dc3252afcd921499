"""What `condatainer o -f FILE` installs: environment.yml, spec files and conda-lock files, read
as data the way conda and micromamba read them.

Parsed on the host before any image exists, so a bad file costs nothing.  Which reader applies
is decided by the name, as micromamba decides it: `*-lock.yml`/`*-lock.yaml` is a conda-lock
unified lock file, `*.txt` a spec file, anything else an environment.yml.

- **environment.yml**: `name:`/`prefix:` (the prefix is ignored: the env always lives at
  /ext3/env), `channels:`, `dependencies:` (conda match specs kept exactly as written,
  `channel::pkg` included), `variables:` (saved to the image's sidecar `<image>.env`).
  *Selectors* (micromamba, `libmamba/src/api/install.cpp`: `eval_selector`): an item
  `- sel(linux): pkg` is installed when its selector holds for the platform the env is made
  for; `linux` and `unix` hold here, `osx` and `win` do not; anything else in `sel(...)`, or a
  list as its value, is an error (micromamba refuses them too).
  *pip*: one `pip:` list, whose entries are requirement-file lines as written -- `pkg>=1`,
  `name @ https://.../x.whl`, `-e .`, `-e git+https://...#egg=name`, `-r other.txt`,
  `--extra-index-url URL`, `--find-links ./wheels`.  conda and micromamba both write them to a
  requirements file in the environment file's directory and run `python -m pip install -r`
  on it from that directory, so relative paths (`-e .`, `./pkg.whl`) resolve against it and
  `-r`/`-c` against the file's directory; provisioning does the same (never putting an entry
  on pip's command line).  An editable install of a local path (`editable`) lives on the host,
  not in the image: provisioning says it must be bound whenever the env is used.
- **Spec file** (`.txt`): conda's `--file` format: one spec per line, `#` comments, or an
  `@EXPLICIT` list of package URLs.
- **conda-lock file** (`conda-lock.yml`, format version 1): micromamba reads it itself (`micromamba
  install -f conda-lock.yml`, libmamba `env_lockfile.cpp`): the `conda` packages locked for
  this platform in category `main` are installed as they are (no solve), and the `pip` ones
  with `pip install --no-deps` as `name @ url#sha256=...`.  So the file is passed to micromamba
  unchanged, and read here only to check it (version 1, locked for this platform) and to show
  what it holds.  A file with a lock file's content but another name is refused: micromamba
  recognises lock files by name and would read it as an environment.yml.

Conda specs that start with `-` are refused: they would reach micromamba as options.
"""

from __future__ import annotations

import os
import platform
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from condatainer.errors import EnvFileError
from condatainer.names import is_variable_name

# Where the packages came from: an environment.yml, a spec file, an @EXPLICIT file, a conda-lock
# file, the words after `o --`, or nothing (an empty env).
Kind = Literal["environment", "spec", "explicit", "lock", "packages", "empty"]
_SELECTOR = re.compile(r"sel\((.*)\)")
_VCS = re.compile(r"(?:git|hg|svn|bzr)\+|[A-Za-z][A-Za-z0-9+.-]*://")
_EDITABLE = re.compile(r"(?:-e|--editable)(?:[ \t=]+|(?=[^ \t=-]))(.+)")
LOCK_SUFFIXES = ("-lock.yml", "-lock.yaml")


def conda_platform() -> str:
    """The conda subdir of this machine (the container runs on it): linux-64, linux-aarch64..."""
    machine = platform.machine()
    return {"x86_64": "linux-64", "amd64": "linux-64", "i686": "linux-32"}.get(
        machine.lower(), f"linux-{machine}"
    )


def selector_holds(selector: str) -> bool | None:
    """micromamba's `eval_selector` for a Linux platform; None for one it cannot parse."""
    m = _SELECTOR.fullmatch(selector)
    if m is None or m.group(1) not in ("linux", "unix", "osx", "win"):
        return None
    return m.group(1) in ("linux", "unix")


@dataclass(frozen=True)
class Selected:
    """One `- sel(...): spec` item and whether it applies here."""

    selector: str
    spec: str
    applied: bool


@dataclass(frozen=True)
class EnvSpec:
    """The packages an env is initialised with."""

    name: str | None
    channels: tuple[str, ...]
    conda: tuple[str, ...]
    pip: tuple[str, ...] = ()  # requirement-file lines, as written
    variables: tuple[tuple[str, str], ...] = ()
    explicit: bool = False  # conda: holds @EXPLICIT package URLs
    source: str | None = None  # the file it was read from (absolute), for `micromamba -f`
    kind: Kind = "environment"
    selectors: tuple[Selected, ...] = ()
    lock_pip: tuple[str, ...] = ()  # a lock file's pip packages, as micromamba installs them
    notes: tuple[str, ...] = field(default=(), compare=False)

    @property
    def directory(self) -> str | None:
        """The directory relative pip entries resolve against (the file's)."""
        return os.path.dirname(self.source) if self.source else None

    def editable(self) -> tuple[str, ...]:
        """Host paths the pip entries install in editable mode (absolute)."""
        found: list[str] = []
        for entry in self.pip:
            m = _EDITABLE.fullmatch(entry.strip())
            if m is None:
                continue
            target = m.group(1).strip().strip("'\"")
            if target.startswith("file:"):
                target = re.sub(r"^file:(//)?", "", target)
            elif _VCS.match(target):
                continue  # a checkout: pip puts it under --src, in the image
            target = re.sub(r"\[[^\]]*\]$", "", target)  # extras: ./pkg[test]
            found.append(os.path.normpath(os.path.join(self.directory or os.getcwd(), target)))
        return tuple(found)

    def install_specs(self) -> tuple[str, ...]:
        """The conda specs to install: as written, plus `pip` when a pip: section needs it."""
        has_pip = any(re.fullmatch(r"([\w.-]+::)?pip([=<>!~ ].*)?", s) for s in self.conda)
        return self.conda if has_pip or not self.pip else (*self.conda, "pip")

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "source": self.source,
            "channels": list(self.channels),
            "conda": list(self.conda),
            "pip": list(self.pip),
            "selectors": [
                {"selector": s.selector, "spec": s.spec, "applied": s.applied}
                for s in self.selectors
            ],
            "editable": list(self.editable()),
            "lock_pip": list(self.lock_pip),
        }


def _fail(path: Path, line: int | None, cause: str) -> EnvFileError:
    where = f"{path}:{line}" if line else str(path)
    return EnvFileError(
        f"{where}: {cause}", hint=f"fix {path.name}, then run the same command again"
    )


def _check_spec(path: Path, spec: str, line: int | None) -> str:
    text = spec.strip()
    if not text:
        raise _fail(path, line, "empty package spec")
    if text.startswith("-"):
        raise _fail(path, line, f"package spec {text!r} starts with '-'")
    return text


def load(path_text: str) -> EnvSpec:
    """Read and parse an environment file; EnvFileError naming the file (and line) otherwise."""
    path = Path(path_text)
    try:
        text = path.read_text(encoding="utf-8")
    except IsADirectoryError:
        raise _fail(path, None, "is a directory, not an environment file") from None
    except FileNotFoundError:
        raise EnvFileError(
            f"{path}: no such environment file",
            hint="give an environment.yml, a spec .txt or a conda-lock.yml file",
        ) from None
    except PermissionError:
        raise _fail(path, None, "not readable (permission denied)") from None
    except UnicodeDecodeError:
        raise _fail(path, None, "not a text file (not UTF-8)") from None
    except OSError as exc:
        raise _fail(path, None, f"cannot read: {exc.strerror}") from None
    if path.suffix == ".txt":
        spec = parse_txt(text, path)
    elif path.name.endswith(LOCK_SUFFIXES):
        spec = parse_lock(text, path)
    else:
        spec = parse_yaml(text, path)
    return replace(spec, source=os.path.abspath(path))


def parse_txt(text: str, path: Path) -> EnvSpec:
    """conda `--file` format: specs one per line, or an `@EXPLICIT` list of URLs."""
    specs: list[str] = []
    explicit = False
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip() if not raw.startswith("@") else raw.strip()
        if not line:
            continue
        if line == "@EXPLICIT":
            explicit = True
            continue
        specs.append(_check_spec(path, line, number))
    if not specs:
        raise _fail(path, None, "lists no packages")
    return EnvSpec(
        name=None,
        channels=(),
        conda=tuple(specs),
        explicit=explicit,
        kind="explicit" if explicit else "spec",
    )


def _load_yaml(text: str, path: Path) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except RecursionError:
        raise _fail(path, None, "not valid YAML: nested too deeply") from None
    except yaml.YAMLError as exc:
        # The context mark points at the construct left open (an unclosed [ or quote), which is
        # where the mistake is; the problem mark only at where the parser gave up.
        mark = getattr(exc, "context_mark", None) or getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise _fail(path, line, f"not valid YAML: {problem}") from None


def _is_lock(data: object) -> bool:
    return isinstance(data, dict) and {"version", "metadata", "package"} <= set(data)


def parse_yaml(text: str, path: Path) -> EnvSpec:
    """environment.yml; see the module docstring for what each key means."""
    data = _load_yaml(text, path)
    if _is_lock(data):
        raise EnvFileError(
            f"{path}: this is a conda-lock file, and micromamba reads one only when its name"
            " ends in -lock.yml (it would read this one as an environment.yml)",
            hint=f"rename it, e.g. to {path.with_name('conda-lock.yml')}",
        )
    if not isinstance(data, dict):
        raise _fail(path, None, "not an environment file (expected a mapping with dependencies:)")
    lines = _key_lines(text)
    unknown = sorted(
        set(map(str, data)) - {"name", "prefix", "channels", "dependencies", "variables"}
    )
    notes = [f"{path}: ignoring unknown key(s): {', '.join(unknown)}"] if unknown else []
    if data.get("prefix"):
        notes.append(f"{path}: prefix: is ignored; the env lives at /ext3/env in the image")
    name = data.get("name")
    channels = _strings(path, data.get("channels") or [], "channels", lines)
    conda: list[str] = []
    pip: list[str] = []
    selected: list[Selected] = []
    deps = data.get("dependencies") or []
    if not isinstance(deps, list):
        raise _fail(path, lines.get("dependencies"), "dependencies: must be a list")
    where = lines.get("dependencies")
    for item in deps:
        if _scalar(item):
            conda.append(_check_spec(path, str(item), where))
        elif isinstance(item, dict) and set(item) == {"pip"}:
            pip += _pip_entries(path, item["pip"] or [], lines.get("pip"))
        elif isinstance(item, dict) and item and all(str(k).startswith("sel(") for k in item):
            for key, value in item.items():
                selected.append(_selected(path, str(key), value, where))
                if selected[-1].applied:
                    conda.append(_check_spec(path, selected[-1].spec, where))
        else:
            raise _fail(
                path,
                where,
                f"dependencies: unexpected entry {item!r} (a spec string, a pip: list or a"
                " `sel(linux): spec` selector)",
            )
    if not conda and not pip:
        raise _fail(path, where, "lists no packages under dependencies: (for this platform)")
    variables = data.get("variables") or {}
    if not isinstance(variables, dict):
        raise _fail(path, lines.get("variables"), "variables: must be a mapping")
    for key in variables:
        if not isinstance(key, str) or not is_variable_name(key):
            raise _fail(path, lines.get("variables"), f"variables: invalid name {key!r}")
    return EnvSpec(
        name=str(name) if name is not None else None,
        channels=tuple(channels),
        conda=tuple(conda),
        pip=tuple(pip),
        variables=tuple((k, "" if v is None else str(v)) for k, v in variables.items()),
        selectors=tuple(selected),
        notes=tuple(notes),
    )


def _scalar(item: object) -> bool:
    return isinstance(item, (str, int, float)) and not isinstance(item, bool)


def _selected(path: Path, key: str, value: object, line: int | None) -> Selected:
    applies = selector_holds(key)
    if applies is None:
        raise _fail(
            path,
            line,
            f"dependencies: selector {key!r}: micromamba knows sel(linux), sel(unix),"
            " sel(osx) and sel(win), without spaces",
        )
    if not _scalar(value):
        raise _fail(path, line, f"dependencies: {key}: takes one spec, not {value!r}")
    return Selected(key, str(value).strip(), applies)


def _pip_entries(path: Path, value: object, line: int | None) -> list[str]:
    """The pip: list: requirement-file lines, kept as written (options included)."""
    if not isinstance(value, list):
        raise _fail(path, line, "pip: must be a list")
    out = []
    for item in value:
        if not _scalar(item) or not str(item).strip() or "\n" in str(item):
            raise _fail(path, line, f"pip: unexpected entry {item!r} (one requirement line)")
        out.append(str(item).strip())
    return out


def parse_lock(text: str, path: Path) -> EnvSpec:
    """A conda-lock unified lock file, checked as micromamba reads it (module docstring)."""
    data = _load_yaml(text, path)
    if not isinstance(data, dict) or "package" not in data or "metadata" not in data:
        raise _fail(path, None, "not a conda-lock file (expected version:, metadata:, package:)")
    if data.get("version") != 1:
        raise _fail(
            path, None, f"conda-lock format version {data.get('version')!r}: micromamba reads 1"
        )
    meta = data["metadata"] if isinstance(data["metadata"], dict) else {}
    platforms = [str(p) for p in meta.get("platforms") or []]
    here = conda_platform()
    packages = data["package"] if isinstance(data["package"], list) else []
    conda: list[str] = []
    pip: list[str] = []
    for index, pkg in enumerate(packages):
        if not isinstance(pkg, dict):
            raise _fail(path, None, f"package {index + 1}: not a mapping")
        try:
            name, version, url = str(pkg["name"]), str(pkg["version"]), str(pkg["url"])
            manager, where = str(pkg["manager"]), str(pkg["platform"])
        except KeyError as missing:
            raise _fail(path, None, f"package {index + 1}: no {missing.args[0]}:") from None
        given = pkg.get("hash")
        hashes: dict[str, Any] = given if isinstance(given, dict) else {}
        if not (hashes.get("md5") or hashes.get("sha256")):
            raise _fail(path, None, f"package {name}: no hash (md5 or sha256)")
        if where != here or str(pkg.get("category", "main")) != "main":
            continue
        if manager == "conda":
            conda.append(f"{name}=={version}")
        elif manager == "pip":
            pip.append(f"{name} @ {url}#sha256={hashes.get('sha256', '')}")
    if not conda:
        raise _fail(
            path,
            None,
            f"nothing is locked for {here} (platforms: {', '.join(platforms) or 'none'})",
        )
    channels = [
        str(c["url"]) for c in meta.get("channels") or [] if isinstance(c, dict) and c.get("url")
    ]
    return EnvSpec(
        name=None,
        channels=tuple(channels),
        conda=tuple(conda),
        kind="lock",
        lock_pip=tuple(pip),
    )


def _strings(path: Path, value: object, key: str, lines: dict[str, int]) -> list[str]:
    if not isinstance(value, list):
        raise _fail(path, lines.get(key), f"{key}: must be a list")
    out = []
    for item in value:
        if not _scalar(item):
            raise _fail(path, lines.get(key), f"{key}: unexpected entry {item!r}")
        out.append(_check_spec(path, str(item), lines.get(key)))
    return out


def _key_lines(text: str) -> dict[str, int]:
    """Line numbers of the top-level keys (and of `pip:`), for error messages."""
    found: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        m = re.match(r"([A-Za-z_]+)\s*:", line) or re.match(r"\s*-\s*(pip)\s*:", line)
        if m:
            found.setdefault(m.group(1), number)
    return found
