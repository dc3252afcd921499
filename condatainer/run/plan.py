"""The Plan: everything a container run needs, decided up front by `resolve`.

A Plan is data.  `resolve` builds it (all decisions live there); a runtime only carries it out:
`runtime.apptainer` turns it into an `apptainer exec` argv, `runtime.builtin` into mounts.
`to_json`/`from_json` carry one between processes (a multi-task job's tasks each run the Plan
their batch step decided) and show it (`run --dry-run --json`).
"""

from __future__ import annotations

from condatainer.record import Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (the exec path's rule)
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any


class Overlay(Record):
    """One overlay image and how it is mounted."""

    path: str  # absolute, symlinks resolved
    writable: bool

    @property
    def mode(self) -> str:
        return "rw" if self.writable else "ro"


class Bind(Record):
    """A host path made visible in the container."""

    host: str  # absolute, resolved
    container: str  # absolute
    readonly: bool = False

    def spec(self) -> str:
        """Apptainer's `--bind` form: `host[:container[:ro]]`."""
        text = self.host if self.host == self.container else f"{self.host}:{self.container}"
        if self.readonly:
            text = f"{self.host}:{self.container}:ro"
        return text


class Plan(Record):
    """One container run.  `env` holds the variables set inside, in order, as data.

    A `Record`, not a dataclass: the exec path builds Plans and cannot afford `dataclasses`."""

    _unequal = frozenset({"notices"})

    command: tuple[str, ...]
    overlays: tuple[Overlay, ...] = ()
    cwd: str = "/"
    env: tuple[tuple[str, str], ...] = ()
    unset: tuple[str, ...] = ()  # host variables the container must not inherit (removed)
    # Run before the command, inside the container: condatainer's expansion wrapper and its
    # arguments (sidecar values that reference variables), ending in "--"; () for none.
    wrapper: tuple[str, ...] = ()
    binds: tuple[Bind, ...] = ()
    base_image: str | None = None  # None: the runtime's own (the builtin runtime: the host root)
    base_pull: str | None = None  # base_image is condatainer's default: pull it from here
    gpu: tuple[str, ...] = ()  # "nv" and/or "rocm"
    fakeroot: bool = False
    contain: bool = False  # -c: minimal /dev, no host $HOME, /tmp
    containall: bool = False  # -C: contain + clean env + separate IPC/PID
    cleanenv: bool = False  # -e: do not pass the host environment
    workdir: str | None = None  # -W: where -c/-C keep /tmp and /var/tmp
    extra_args: tuple[str, ...] = ()  # explicit apptainer options, passed through unchanged
    wait_lock: float | None = None  # a busy image: wait this long for its lock (inf: no limit)
    notices: tuple[str, ...] = ()  # printed before running (not compared)

    @property
    def argv(self) -> tuple[str, ...]:
        """What the runtime executes in the container: the wrapper (if any), then the command."""
        return (*self.wrapper, *self.command)

    @property
    def writable(self) -> Overlay | None:
        """The one writable overlay, if any (resolve guarantees at most one)."""
        return next((o for o in self.overlays if o.writable), None)

    def to_json(self) -> dict[str, Any]:
        """The Plan as JSON data: lists for tuples, `env` as an object (order kept)."""
        data = self.as_dict()
        data["env"] = dict(self.env)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Plan:
        """The Plan `to_json` wrote (ValueError for anything else)."""
        try:
            values: dict[str, Any] = {name: data[name] for name in cls._fields if name in data}
            values["command"] = tuple(str(w) for w in data["command"])
            values["overlays"] = tuple(
                Overlay(str(o["path"]), bool(o["writable"])) for o in data["overlays"]
            )
            values["binds"] = tuple(
                Bind(str(b["host"]), str(b["container"]), bool(b["readonly"]))
                for b in data["binds"]
            )
            values["env"] = tuple((str(k), str(v)) for k, v in data["env"].items())
            for name in ("gpu", "extra_args", "notices", "unset", "wrapper"):
                values[name] = tuple(str(w) for w in data.get(name, ()))
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a Plan: {exc}") from None
        return cls(**values)
