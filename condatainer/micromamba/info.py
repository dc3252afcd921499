"""What `condatainer micromamba [info]` and `doctor` say about micromamba: data, no network.

`Origin` is the record a bootstrap leaves beside the cached binary (`micromamba.json`): version,
package file, URL, sha256, channel, which index found it, when.  `info` puts together which binary
is used and why (config, cache, or none yet: it will be fetched from the channel), the version
the binary itself reports (`micromamba --version`, with a timeout), the series and where
containers see it.  A configured path that is not executable is reported, not raised: these are
the commands a user runs to find out what is wrong.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from condatainer import config, runner
from condatainer.errors import MicromambaError
from condatainer.micromamba import (
    CONTAINER_MICROMAMBA,
    ORIGIN,
    cache_dir,
    channel_url,
    locate,
)


@dataclass(frozen=True)
class Origin:
    """Where the cached binary came from (`micromamba.json`)."""

    version: str
    build: str
    filename: str
    url: str
    sha256: str
    channel: str
    subdir: str
    index: str  # "sharded index" or "repodata.json"
    fetched: str  # UTC, ISO 8601

    def text(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"


def read_origin(cfg: config.Config, env: Mapping[str, str] | None = None) -> Origin | None:
    """The recorded origin of the cached binary, None when unknown or unreadable."""
    try:
        data = json.loads((cache_dir(cfg, env) / ORIGIN).read_text(encoding="utf-8"))
        return Origin(**{k: str(data[k]) for k in Origin.__dataclass_fields__})
    except (OSError, ValueError, KeyError, TypeError):
        return None


@dataclass(frozen=True)
class Info:
    """Which micromamba condatainer uses, and why."""

    path: str | None  # None: none yet (or a broken config path, see `problem`)
    source: str  # "config", "cache" or "none"
    version: str | None  # as the binary reports it
    origin: Origin | None  # for the cache
    channel: str  # where a bootstrap fetches from (URL)
    series: str
    series_source: str
    config_source: str  # where config micromamba came from (for source "config")
    problem: str | None = None  # why the configured binary cannot be used

    def lines(self) -> list[str]:
        if self.problem is not None:
            head = "micromamba unusable"
            source = self.problem
        elif self.path is None:
            head = "micromamba not fetched yet"
            source = (
                f"will be fetched from {self.channel} on first use (or now: condatainer micromamba)"
            )
        else:
            head = f"micromamba {self.version or '(version unknown)'}"
            source = _source_text(self)
        rows = [
            ("path", self.path or "-"),
            ("source", source),
            ("series", f"{self.series}.* ({self.series_source})"),
            ("container", CONTAINER_MICROMAMBA),
        ]
        return [head, *(f"{name:10} {value}" for name, value in rows)]

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["container"] = CONTAINER_MICROMAMBA
        return data


def _source_text(info: Info) -> str:
    if info.source == "config":
        return f"config micromamba ({info.config_source})"
    origin = info.origin
    if origin is None:
        return "condatainer's cache (origin not recorded)"
    return (
        f"fetched from {origin.channel} ({origin.filename}, {origin.subdir}, found through its"
        f" {origin.index}) on {origin.fetched}"
    )


def version_of(path: str) -> str | None:
    """What `PATH --version` prints (its first line), None when it cannot say."""
    try:
        res = runner.run([path, "--version"], timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = res.stdout.strip().splitlines()
    return lines[0].strip() if res.ok and lines else None


def info(cfg: config.Config, env: Mapping[str, str] | None = None) -> Info:
    """Which micromamba condatainer uses (never fetches)."""
    common = dict(
        channel=channel_url(cfg.micromamba_channel),
        series=cfg.micromamba_version,
        series_source=cfg.source("micromamba_version"),
        config_source=cfg.source("micromamba"),
    )
    try:
        found = locate(cfg, env)
    except MicromambaError as exc:
        return Info(path=cfg.micromamba, source="config", version=None, origin=None,
                    problem=exc.message, **common)  # fmt: skip
    if found is None:
        return Info(path=None, source="none", version=None, origin=None, **common)
    origin = read_origin(cfg, env) if found.source == "cache" else None
    return Info(
        path=found.path,
        source=found.source,
        version=version_of(found.path),
        origin=origin,
        **common,
    )
