"""What `condatainer o -f FILE` installs: environment.yml and explicit spec files, parsed as data.

Parsed on the host before any image exists, so a bad file costs nothing.  `environment.yml`:
`name:`/`prefix:` (the prefix is ignored: the env always lives at /ext3/env), `channels:`,
`dependencies:` (conda match specs kept exactly as written, `channel::pkg` included, plus one
`pip:` list of requirements), `variables:` (saved to the image's sidecar `<image>.env`).
A `.txt` file is conda's `--file` format: one spec per line, `#` comments, or an `@EXPLICIT`
list of package URLs.  Specs that start with `-` are refused: they would reach micromamba as
options.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from condatainer.errors import EnvFileError
from condatainer.image.envfile import NAME_RE


@dataclass(frozen=True)
class EnvSpec:
    """The packages an env is initialised with."""

    name: str | None
    channels: tuple[str, ...]
    conda: tuple[str, ...]
    pip: tuple[str, ...] = ()
    variables: tuple[tuple[str, str], ...] = ()
    explicit: bool = False  # conda: holds @EXPLICIT package URLs
    source: str | None = None  # the file it was read from (absolute), for `micromamba -f`
    notes: tuple[str, ...] = field(default=(), compare=False)

    def install_specs(self) -> tuple[str, ...]:
        """The conda specs to install: as written, plus `pip` when a pip: section needs it."""
        has_pip = any(re.fullmatch(r"([\w.-]+::)?pip([=<>!~ ].*)?", s) for s in self.conda)
        return self.conda if has_pip or not self.pip else (*self.conda, "pip")

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "channels": list(self.channels),
            "conda": list(self.conda),
            "pip": list(self.pip),
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
            f"{path}: no such environment file", hint="give an environment.yml or a spec .txt file"
        ) from None
    except PermissionError:
        raise _fail(path, None, "not readable (permission denied)") from None
    except UnicodeDecodeError:
        raise _fail(path, None, "not a text file (not UTF-8)") from None
    except OSError as exc:
        raise _fail(path, None, f"cannot read: {exc.strerror}") from None
    spec = parse_txt(text, path) if path.suffix == ".txt" else parse_yaml(text, path)
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
    return EnvSpec(name=None, channels=(), conda=tuple(specs), explicit=explicit)


def parse_yaml(text: str, path: Path) -> EnvSpec:
    """environment.yml; see the module docstring for what each key means."""
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        # The context mark points at the construct left open (an unclosed [ or quote), which is
        # where the mistake is; the problem mark only at where the parser gave up.
        mark = getattr(exc, "context_mark", None) or getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise _fail(path, line, f"not valid YAML: {problem}") from None
    except RecursionError:  # PyYAML's composer recurses once per nesting level
        raise _fail(path, None, "nested too deeply to be an environment file") from None
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
    deps = data.get("dependencies") or []
    if not isinstance(deps, list):
        raise _fail(path, lines.get("dependencies"), "dependencies: must be a list")
    for item in deps:
        if isinstance(item, dict) and set(item) == {"pip"}:
            pip += _strings(path, item["pip"] or [], "pip", lines)
        elif isinstance(item, (str, int, float)) and not isinstance(item, bool):
            conda.append(_check_spec(path, str(item), lines.get("dependencies")))
        else:
            raise _fail(
                path,
                lines.get("dependencies"),
                f"dependencies: unexpected entry {item!r} (a spec string or pip: list)",
            )
    if not conda and not pip:
        raise _fail(path, lines.get("dependencies"), "lists no packages under dependencies:")
    variables = data.get("variables") or {}
    if not isinstance(variables, dict):
        raise _fail(path, lines.get("variables"), "variables: must be a mapping")
    for key in variables:
        if not isinstance(key, str) or not NAME_RE.fullmatch(key):
            raise _fail(path, lines.get("variables"), f"variables: invalid name {key!r}")
    return EnvSpec(
        name=str(name) if name is not None else None,
        channels=tuple(channels),
        conda=tuple(conda),
        pip=tuple(pip),
        variables=tuple((k, "" if v is None else str(v)) for k, v in variables.items()),
        notes=tuple(notes),
    )


def _strings(path: Path, value: object, key: str, lines: dict[str, int]) -> list[str]:
    if not isinstance(value, list):
        raise _fail(path, lines.get(key), f"{key}: must be a list")
    out = []
    for item in value:
        if not isinstance(item, (str, int, float)) or isinstance(item, bool):
            raise _fail(path, lines.get(key), f"{key}: unexpected entry {item!r}")
        out.append(_check_spec(path, str(item), lines.get(key)))
    return out


def _key_lines(text: str) -> dict[str, int]:
    """Line numbers of the top-level keys, for error messages."""
    found: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        m = re.match(r"([A-Za-z_]+)\s*:", line)
        if m:
            found.setdefault(m.group(1), number)
    return found
