"""Fetch condatainer's micromamba into its cache: once on first need, again on `--update`.

One bootstrap, under an exclusive lock on `<cache>/.lock` (`fcntl.lockf`, which NFS home
directories support), so that concurrent first uses wait for one download instead of
corrupting each other's; whoever waited finds the binary there and uses it:

1. find the newest package of the series for this platform in config `micromamba_channel`
   (`channel.find`: the sharded index, then the one shard; repodata.json only where there is no
   sharded index);
2. download it into a private work directory inside the cache (`.work-<pid>-<random>`),
   checking its size and sha256 against the index;
3. extract `bin/micromamba` (`package.extract`), sync it, and rename it over
   `<cache>/micromamba` (atomic: a reader sees the old binary or the new one), then record its
   origin in `<cache>/micromamba.json`.

Every failure -- a bad or unreachable channel, a checksum mismatch, a cut-short download, a full
disk -- is one `MicromambaError` line naming the channel and the cause, with a hint; the work
directory is removed, so nothing half-written stays in the cache and the next run starts over.
Work directories of killed processes are removed by the next bootstrap (it holds the lock, so
nobody else is writing).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import shutil
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from condatainer import atomic, config, signals
from condatainer.display import Notify
from condatainer.errors import MicromambaError, ToolMissingError
from condatainer.micromamba import (
    BINARY,
    ORIGIN,
    Located,
    cache_dir,
    cached_binary,
    channel_url,
    locate,
    package,
    subdir,
)
from condatainer.micromamba import channel as channels
from condatainer.micromamba.fetch import Damaged, Fetcher, FetchError
from condatainer.micromamba.info import Origin, read_origin
from condatainer.progress import SILENT, Progress

LOCK = ".lock"
WORK_PREFIX = ".work-"


@dataclass(frozen=True)
class Fetched:
    """The outcome of a bootstrap or an update."""

    located: Located
    origin: Origin | None
    previous: Origin | None = None
    changed: bool = False


def ensure(
    cfg: config.Config,
    notify: Notify,
    env: Mapping[str, str] | None = None,
    *,
    progress: Progress = SILENT,
) -> Located:
    """The micromamba to use; fetched into the cache first when there is none (`progress`
    hears the download, with its bytes)."""
    found = locate(cfg, env)
    if found is not None:
        return found
    return _fetch(cfg, notify, env, update=False, progress=progress).located


def update(
    cfg: config.Config,
    notify: Notify,
    env: Mapping[str, str] | None = None,
    *,
    progress: Progress = SILENT,
) -> Fetched:
    """Fetch the newest micromamba of the series if the cache holds another one (or none)."""
    if cfg.micromamba:
        raise MicromambaError(
            f"config micromamba ({cfg.source('micromamba')}) names {cfg.micromamba!r}:"
            " --update only manages condatainer's own copy",
            hint="update that binary yourself, or unset it to let condatainer fetch one:"
            " condatainer config set micromamba ''",
        )
    return _fetch(cfg, notify, env, update=True, progress=progress)


def _fetch(
    cfg: config.Config,
    notify: Notify,
    env: Mapping[str, str] | None,
    *,
    update: bool,
    progress: Progress = SILENT,
) -> Fetched:
    env = os.environ if env is None else env
    url = channel_url(cfg.micromamba_channel)
    cache = cache_dir(cfg, env)
    platform = subdir()
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _failed(url, f"cannot create {cache}: {exc.strerror}", _space_hint(cache)) from None
    with _locked(cache, url, notify):
        previous = read_origin(cfg, env)
        binary = cached_binary(cfg, env)
        if not update and locate(cfg, env) is not None:
            # Another process fetched it while this one waited for the lock.
            return Fetched(Located(str(binary), "cache"), previous)
        _remove_stale_work(cache)
        work = cache / f"{WORK_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        try:
            work.mkdir()
            fetcher = Fetcher(cfg.ca_bundle)
            progress.stage(f"reading the index of {url}")
            choice = channels.find(url, platform, cfg.micromamba_version, fetcher, work)
            record = choice.record
            unchanged = previous is not None and previous.sha256 == record.sha256
            if update and unchanged and locate(cfg, env) is not None:
                return Fetched(Located(str(binary), "cache"), previous, previous)
            index = "sharded index" if choice.sharded else "repodata.json"
            notify(f"fetching micromamba {record.version} ({record.filename}) from {url}")
            progress.stage(
                f"downloading micromamba {record.version}",
                total=record.size,
                measure=lambda: (work / record.filename).stat().st_size,
            )
            _download(record, work, fetcher)
            fresh = work / BINARY
            package.extract(work / record.filename, record.filename, fresh, work)
            with open(fresh, "rb") as f:
                os.fsync(f.fileno())
            origin = Origin(
                version=record.version,
                build=record.build,
                filename=record.filename,
                url=record.url,
                sha256=record.sha256,
                channel=url,
                subdir=record.subdir,
                index=index,
                fetched=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            )
            with signals.blocked():  # the binary and its record, never one alone
                os.replace(fresh, binary)
                atomic.replace(cache / ORIGIN, origin.text())
        except Damaged as exc:
            raise _failed(url, f"{exc.cause} ({exc.url})", _damaged_hint()) from None
        except FetchError as exc:
            raise _failed(url, f"{exc.cause} ({exc.url})", _network_hint(cache)) from None
        except channels.ChannelError as exc:
            raise _failed(url, str(exc), _channel_hint(cfg)) from None
        except package.PackageError as exc:
            raise _failed(url, str(exc), _channel_hint(cfg)) from None
        except ToolMissingError as exc:
            raise _failed(url, f"{exc.message} (it reads the channel's index)", exc.hint) from None
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise _failed(
                    url, f"no space left in {cache} ({exc.strerror})", _space_hint(cache)
                ) from None
            where = f"{exc.filename}: " if exc.filename else ""
            raise _failed(url, f"{where}{exc.strerror or exc}", _space_hint(cache)) from None
        finally:
            shutil.rmtree(work, ignore_errors=True)
    notify(f"micromamba {origin.version} is cached in {binary}")
    return Fetched(Located(str(binary), "cache"), origin, previous, changed=True)


def _download(record: channels.Record, work: Path, fetcher: Fetcher) -> None:
    """Download the package into `work` and check it against the index."""
    with open(work / record.filename, "xb") as out:
        got = fetcher.download(record.url, out)
        os.fsync(out.fileno())
    if record.size is not None and got.size < record.size:
        raise Damaged(record.url, f"the download was cut short ({got.size} of {record.size} bytes)")
    if got.sha256 != record.sha256:
        raise Damaged(
            record.url,
            f"checksum mismatch: its sha256 is {got.sha256}, the channel's index says"
            f" {record.sha256} (damaged in transit, or replaced on the server)",
        )


@contextlib.contextmanager
def _locked(cache: Path, url: str, notify: Notify) -> Iterator[None]:
    path = cache / LOCK
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise _failed(url, f"cannot open {path}: {exc.strerror}", _space_hint(cache)) from None
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EAGAIN):
                raise _failed(url, f"cannot lock {path}: {exc.strerror}", None) from None
            notify(f"waiting for another condatainer that is fetching micromamba ({path})")
            fcntl.lockf(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _remove_stale_work(cache: Path) -> None:
    """Work directories of processes that died mid-fetch (we hold the lock: none is live)."""
    with contextlib.suppress(OSError):
        for entry in cache.iterdir():
            if entry.name.startswith(WORK_PREFIX):
                shutil.rmtree(entry, ignore_errors=True)


def _failed(url: str, cause: str, hint: str | None) -> MicromambaError:
    return MicromambaError(f"cannot fetch micromamba from {url}: {cause}", hint=hint)


def _network_hint(cache: Path) -> str:
    return (
        "check the network (HTTPS_PROXY, NO_PROXY, config ca_bundle), or fetch it where there"
        f" is network with `condatainer micromamba` (it is kept in {cache}), or use your own:"
        " condatainer config set micromamba /path/to/micromamba"
    )


def _damaged_hint() -> str:
    return (
        "run the same command again (a download can be damaged in transit, or a mirror be in"
        " the middle of an update); if it keeps failing, the channel serves a file its index"
        " does not describe: tell its maintainers"
    )


def _channel_hint(cfg: config.Config) -> str:
    return (
        "point at a channel that has micromamba for this platform:"
        " condatainer config set micromamba_channel CHANNEL"
        f" (now {cfg.micromamba_channel!r}, {cfg.source('micromamba_channel')});"
        f" series: config micromamba_version (now {cfg.micromamba_version!r})"
    )


def _space_hint(cache: Path) -> str:
    return (
        f"make room in {cache.parent} (or point XDG_DATA_HOME elsewhere), then run the command"
        " again"
    )
