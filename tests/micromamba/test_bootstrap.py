"""condatainer's micromamba, fetched for real: from the world's channel over file:// and over a
local HTTP(S) server, through a proxy, and every way it can fail.

The channel's micromamba package holds the stand-in (tests/world/channel.py), so what the
bootstrap does -- read the sharded index, then one shard, download, check size and sha256,
extract bin/micromamba from a .conda or .tar.bz2, publish atomically under a lock -- is the
product's own code against a real conda channel layout; nothing here special-cases the test
world.  Each failure must be one `condatainer: error:` line naming the channel and the cause,
plus a hint, leave nothing in the cache but its lock file, and let the next run succeed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from condatainer import config
from condatainer.errors import MicromambaError
from condatainer.micromamba import bootstrap, fetch
from tests.micromamba.netlib import ChannelServer, Proxy, Silent, refused_url, tls_files
from tests.support import REPO, World, cnt, ok
from tests.world.channel import MICROMAMBA_NEWEST, build_channel


def cache() -> Path:
    return Path(os.environ["XDG_DATA_HOME"]) / "condatainer" / "micromamba"


def left_in_cache() -> list[str]:
    """What a failed fetch left in the cache, besides its lock file (must be nothing)."""
    if not cache().exists():
        return []
    return sorted(p.name for p in cache().iterdir() if p.name != ".lock")


def fetch_cli(*extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return cnt("micromamba", *extra, env=env)


def one_error(res: subprocess.CompletedProcess[str], channel: str, cause: str) -> None:
    """Exit 1; exactly an error line naming the channel and the cause, and a hint."""
    assert res.returncode == 1, res.stdout + res.stderr
    lines = [line for line in res.stderr.splitlines() if not line.startswith("condatainer: note:")]
    assert len(lines) == 2, res.stderr
    assert lines[0].startswith(f"condatainer: error: cannot fetch micromamba from {channel}: ")
    assert cause in lines[0], lines[0]
    assert lines[1].startswith("hint: ")
    assert "Traceback" not in res.stderr


def version_of_cached() -> str:
    res = subprocess.run([cache() / "micromamba", "--version"], capture_output=True, text=True)
    return res.stdout.strip()


# ---------------------------------------------------------------- it works


def test_bootstrap_from_a_sharded_channel_then_cached(world: World) -> None:
    first = ok(fetch_cli())
    assert f"fetching micromamba {MICROMAMBA_NEWEST} (micromamba-{MICROMAMBA_NEWEST}-0.conda)" in (
        first.stderr
    )
    assert first.stdout.splitlines()[0] == f"micromamba {MICROMAMBA_NEWEST}"
    assert "found through its sharded index" in first.stdout
    assert version_of_cached() == MICROMAMBA_NEWEST
    assert sorted(p.name for p in cache().iterdir()) == [".lock", "micromamba", "micromamba.json"]
    again = ok(fetch_cli())
    assert again.stderr == ""  # cached: nothing fetched, nothing said
    info = ok(fetch_cli("info", "--json"))
    assert '"source": "cache"' in info.stdout
    assert f'"channel": "{world.url}"' in info.stdout


def test_bootstrap_from_a_plain_repodata_channel(tmp_path: Path) -> None:
    channel = build_channel(tmp_path / "plain", shards=False)
    res = ok(fetch_cli(env={"CNT_MICROMAMBA_CHANNEL": f"file://{channel}"}))
    assert "found through its repodata.json" in res.stdout
    assert version_of_cached() == MICROMAMBA_NEWEST


def test_a_pinned_series_picks_its_newest_and_a_tar_bz2_works(world: World) -> None:
    res = ok(fetch_cli(env={"CNT_MICROMAMBA_VERSION": "2.0"}))
    assert "micromamba-2.0.5-0.tar.bz2" in res.stderr
    assert version_of_cached() == "2.0.5"


def test_only_the_index_one_shard_and_one_package_are_read(tmp_path: Path) -> None:
    """The point of the sharded index: repodata.json is never downloaded."""
    channel = build_channel(tmp_path / "ch")
    with ChannelServer(channel) as server:
        ok(fetch_cli(env={"CNT_MICROMAMBA_CHANNEL": server.url}))
        requests = list(server.requests)
    assert requests[0] == "/linux-64/repodata_shards.msgpack.zst"
    assert requests[1].startswith("/linux-64/shards/") and requests[1].endswith(".msgpack.zst")
    assert requests[2:] == [f"/linux-64/micromamba-{MICROMAMBA_NEWEST}-0.conda"]


def test_without_a_sharded_index_repodata_json_is_read(tmp_path: Path) -> None:
    channel = build_channel(tmp_path / "ch", shards=False)
    with ChannelServer(channel) as server:
        ok(fetch_cli(env={"CNT_MICROMAMBA_CHANNEL": server.url}))
        requests = list(server.requests)
    assert requests == [
        "/linux-64/repodata_shards.msgpack.zst",  # 404: no sharded index here
        "/linux-64/repodata.json",
        f"/linux-64/micromamba-{MICROMAMBA_NEWEST}-0.conda",
    ]


def test_update_fetches_a_newer_one_of_the_series(tmp_path: Path) -> None:
    channel = build_channel(tmp_path / "ch", micromamba=(("2.0.5", ".tar.bz2"),))
    env = {"CNT_MICROMAMBA_CHANNEL": f"file://{channel}"}
    ok(fetch_cli(env=env))
    assert version_of_cached() == "2.0.5"
    same = ok(fetch_cli("--update", env=env))
    assert "micromamba 2.0.5 is already the newest 2.* in" in same.stderr
    build_channel(channel, micromamba=(("2.0.5", ".tar.bz2"), ("2.3.3", ".conda")))
    newer = ok(fetch_cli("--update", env=env))
    assert "fetching micromamba 2.3.3" in newer.stderr
    assert version_of_cached() == "2.3.3"
    assert newer.stdout.splitlines()[0] == "micromamba 2.3.3"


def test_concurrent_first_uses_download_once(tmp_path: Path) -> None:
    channel = build_channel(tmp_path / "ch")
    with ChannelServer(channel) as server:
        env = {**os.environ, "PYTHONPATH": str(REPO), "CNT_MICROMAMBA_CHANNEL": server.url}
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "condatainer", "micromamba"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(4)
        ]
        outputs = [p.communicate(timeout=120) for p in procs]
        requests = list(server.requests)
    assert [p.returncode for p in procs] == [0, 0, 0, 0], outputs
    package = f"/linux-64/micromamba-{MICROMAMBA_NEWEST}-0.conda"
    assert requests.count(package) == 1
    assert version_of_cached() == MICROMAMBA_NEWEST
    assert left_in_cache() == ["micromamba", "micromamba.json"]


def test_a_site_micromamba_from_config_is_used_as_it_is(tmp_path: Path) -> None:
    site = tmp_path / "site" / "micromamba"
    site.parent.mkdir()
    site.write_text("#!/bin/sh\necho 2.1.0\n")
    site.chmod(0o755)
    env = {"CNT_MICROMAMBA": str(site), "CNT_MICROMAMBA_CHANNEL": refused_url()}
    res = ok(fetch_cli(env=env))
    assert res.stderr == ""  # nothing fetched: the channel is never asked
    assert res.stdout.splitlines()[:3] == [
        "micromamba 2.1.0",
        f"path       {site}",
        "source     config micromamba (env CNT_MICROMAMBA)",
    ]
    refused = fetch_cli("--update", env=env)
    assert refused.returncode == 1
    assert "--update only manages condatainer's own copy" in refused.stderr


def test_fetched_once_into_a_shared_fetch_dir_then_used_without_a_network(
    world: World, tmp_path: Path
) -> None:
    """A login node fetches into config `fetch_dir`; a compute node (another data directory,
    no channel it can reach) uses that copy as it is."""
    shared = tmp_path / "shared"
    login = {"CNT_FETCH_DIR": str(shared)}
    ok(fetch_cli(env=login))
    assert (shared / "micromamba" / "micromamba").is_file()
    assert not cache().exists()  # not the data directory
    compute = {
        "CNT_FETCH_DIR": str(shared),
        "XDG_DATA_HOME": str(tmp_path / "elsewhere"),
        "CNT_MICROMAMBA_CHANNEL": refused_url(),
    }
    res = ok(fetch_cli("info", env=compute))
    assert f"path       {shared}/micromamba/micromamba" in res.stdout
    assert "source     fetched from " in res.stdout


# ---------------------------------------------------------------- it fails, cleanly


def test_a_channel_that_is_not_there(world: World, tmp_path: Path) -> None:
    missing = f"file://{tmp_path}/nowhere"
    res = fetch_cli(env={"CNT_MICROMAMBA_CHANNEL": missing})
    one_error(res, missing, f"{missing} has no linux-64 index (repodata_shards.msgpack.zst or")
    assert "micromamba_channel" in res.stderr
    assert left_in_cache() == []
    ok(fetch_cli())  # the next run, with the good channel, just works
    assert version_of_cached() == MICROMAMBA_NEWEST


def test_a_channel_without_micromamba(tmp_path: Path) -> None:
    channel = build_channel(tmp_path / "ch", micromamba=())
    url = f"file://{channel}"
    one_error(fetch_cli(env={"CNT_MICROMAMBA_CHANNEL": url}), url, "has no micromamba package")
    assert left_in_cache() == []


def test_a_series_the_channel_does_not_have(world: World) -> None:
    res = fetch_cli(env={"CNT_MICROMAMBA_VERSION": "3"})
    one_error(res, world.url, "has no micromamba 3.* for linux-64 (it has 2.3.3, 2.0.5, 1.5.10)")
    assert left_in_cache() == []


def test_checksum_mismatch(tmp_path: Path, world: World) -> None:
    channel = build_channel(tmp_path / "ch")
    package = channel / "linux-64" / f"micromamba-{MICROMAMBA_NEWEST}-0.conda"
    data = bytearray(package.read_bytes())
    data[-1] ^= 0xFF  # same size, other bytes: replaced on the server after indexing
    package.write_bytes(bytes(data))
    url = f"file://{channel}"
    res = fetch_cli(env={"CNT_MICROMAMBA_CHANNEL": url})
    one_error(res, url, "checksum mismatch: its sha256 is ")
    assert "run the same command again" in res.stderr
    assert left_in_cache() == []
    ok(fetch_cli())
    assert version_of_cached() == MICROMAMBA_NEWEST


def test_a_download_cut_short(tmp_path: Path, world: World) -> None:
    channel = build_channel(tmp_path / "ch")
    name = f"micromamba-{MICROMAMBA_NEWEST}-0.conda"
    size = (channel / "linux-64" / name).stat().st_size
    with ChannelServer(channel, cut=(name,)) as server:
        res = fetch_cli(env={"CNT_MICROMAMBA_CHANNEL": server.url})
    one_error(res, server.url, f"the download was cut short ({size // 2} of {size} bytes")
    assert left_in_cache() == []
    ok(fetch_cli())
    assert version_of_cached() == MICROMAMBA_NEWEST


def test_no_network(world: World) -> None:
    """A refused local address: the failure is immediate, no clock involved."""
    url = refused_url()
    res = fetch_cli(env={"CNT_MICROMAMBA_CHANNEL": url})
    one_error(res, url, "connection refused")
    assert "HTTPS_PROXY" in res.stderr  # the hint names what to check
    assert left_in_cache() == []
    ok(fetch_cli())


def test_a_server_that_never_answers_times_out(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The read timeout, made short for the test: the fetch fails instead of hanging."""
    monkeypatch.setattr(fetch, "READ_TIMEOUT", 0.5)
    with Silent() as silent:
        monkeypatch.setenv("CNT_MICROMAMBA_CHANNEL", silent.url)
        with pytest.raises(MicromambaError) as failure:
            bootstrap.ensure(config.load(), lambda _: None)
    assert "no answer within" in failure.value.message
    assert left_in_cache() == []


@pytest.mark.root
def test_disk_full(world: World, tmpfs: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmpfs("24k")
    monkeypatch.setenv("XDG_DATA_HOME", str(data))
    res = fetch_cli()
    one_error(res, world.url, "no space left in")
    assert left_in_cache() == []
    subprocess.run(["mount", "-o", "remount,size=4m", str(data)], check=True)
    ok(fetch_cli())
    assert version_of_cached() == MICROMAMBA_NEWEST


def test_zstd_missing_is_explained(world: World, tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "python3").symlink_to(sys.executable)
    res = fetch_cli(env={"PATH": str(bindir)})
    one_error(res, world.url, "'zstd' is not installed or not on PATH (it reads the channel's")
    assert "apt-get install zstd" in res.stderr
    assert left_in_cache() == []


# ---------------------------------------------------------------- HTTP details


def test_an_http_proxy_is_used_and_no_proxy_honoured(tmp_path: Path) -> None:
    channel = build_channel(tmp_path / "ch")
    with ChannelServer(channel) as server, Proxy() as proxy:
        env = {"CNT_MICROMAMBA_CHANNEL": server.url, "HTTP_PROXY": proxy.url, "NO_PROXY": ""}
        ok(fetch_cli(env=env))
        assert proxy.requests[0] == f"GET {server.url}/linux-64/repodata_shards.msgpack.zst"
        assert len(proxy.requests) == 3
        shutil.rmtree(cache())
        ok(fetch_cli(env={**env, "NO_PROXY": "127.0.0.1"}))
        assert len(proxy.requests) == 3  # not asked again


def test_https_with_a_site_ca_bundle_and_through_a_proxy(
    tmp_path: Path, need: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    need("openssl")
    ca, cert, key = tls_files(tmp_path / "tls")
    channel = build_channel(tmp_path / "ch")
    with ChannelServer(channel, tls=(cert, key)) as server, Proxy() as proxy:
        env = {"CNT_MICROMAMBA_CHANNEL": server.url}
        untrusted = fetch_cli(env=env)
        one_error(untrusted, server.url, "certificate verification failed")
        assert "ca_bundle" in untrusted.stderr
        assert left_in_cache() == []
        ok(cnt("config", "set", "ca_bundle", str(ca)))
        ok(fetch_cli(env={**env, "HTTPS_PROXY": proxy.url, "NO_PROXY": ""}))
        assert proxy.requests == [f"CONNECT 127.0.0.1:{server.port}"] * len(proxy.requests)
        assert proxy.requests, "the proxy tunnelled the https requests"
        ok(cnt("config", "set", "ca_bundle", ""))
        shutil.rmtree(cache())
        ok(fetch_cli(env={**env, "SSL_CERT_FILE": str(ca)}))
    assert version_of_cached() == MICROMAMBA_NEWEST


def test_an_unreadable_ca_bundle_is_named(world: World, tmp_path: Path) -> None:
    bundle = tmp_path / "missing.pem"
    res = fetch_cli(env={"CNT_CA_BUNDLE": str(bundle), "CNT_MICROMAMBA_CHANNEL": refused_url()})
    assert res.returncode == 1
    assert "cannot load the CA bundle (config ca_bundle)" in res.stderr
    assert str(bundle) in res.stderr
