"""The base image on the Apptainer path: `condatainer base pull/build/info` and the pull on first
need, through the CLI, with the recording fake `apptainer` (tests/fakes) and a local "registry".

The registry is a TCP socket listening on 127.0.0.1 (so condatainer's reachability check and
the fake's connect succeed) plus a directory the fake serves image trees from
(CNT_FAKE_APPTAINER_IMAGES): `cnt/base:1` is the small base tree of tests/world/rootfs.py.
The fake writes real SIF files (mksquashfs + siftool), so what condatainer checks, publishes
and describes is a real SIF.

What these tests cannot prove: that real Apptainer pulls from a real registry (the OCI
protocol, authentication, layer conversion), that Docker Hub serves base_source, or that
Apptainer's SIF is laid out as siftool's (both use the sylabs/sif library, which is what we rely
on).  What they do prove: when a pull happens and when it does not, where the image lands, that
it appears whole or not at all (failures and a full disk leave nothing, the next run retries),
that one fetch runs at a time, the notice and the error texts, the refusal inside jobs, and that
a refused registry address fails at once instead of hanging.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from condatainer.run import basefs, baseimage
from tests.fakes import with_fakes_on_path
from tests.run.test_apptainer_fake import make_image
from tests.support import REPO, cnt, ok
from tests.world.rootfs import assemble


@pytest.fixture(scope="module")
def image_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return assemble(tmp_path_factory.mktemp("registry-tree") / "base", python=None)


@pytest.fixture
def registry(
    need: Callable[[str], str], image_tree: Path, tmp_path: Path
) -> Iterator[dict[str, Any]]:
    """A listening local port and the image trees behind it; yields the env to run with."""
    need("mksquashfs")
    need("siftool")
    images = tmp_path / "registry"
    shutil.copytree(image_tree, images / "cnt" / "base:1", symlinks=True)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        port = sock.getsockname()[1]
        env = {
            **with_fakes_on_path(os.environ),
            "CNT_RUNTIME": "apptainer",
            "CNT_BASE_SOURCE": f"docker://127.0.0.1:{port}/cnt/base:1",
            "CNT_FAKE_APPTAINER_IMAGES": str(images),
            "CNT_FAKE_APPTAINER_LOG": str(tmp_path / "log.jsonl"),
            "PYTHONPATH": str(REPO),
        }
        yield {"env": env, "port": port, "images": images}


def calls(env: dict[str, str], verb: str | None = None) -> list[list[str]]:
    log = Path(env["CNT_FAKE_APPTAINER_LOG"])
    lines = log.read_text().splitlines() if log.exists() else []
    argvs = [json.loads(line)["argv"] for line in lines]
    return [a for a in argvs if verb is None or a[1] == verb]


def default_base(env: dict[str, str]) -> Path:
    from condatainer import config

    return baseimage.default_path(config.load(env), env)


def leftovers(directory: Path) -> list[str]:
    """Anything but published images and the lock file: temporary files left behind."""
    if not directory.exists():
        return []
    return sorted(p.name for p in directory.iterdir() if p.name != ".fetch.lock")


def test_base_pull_publishes_a_real_sif_and_info_describes_it(
    registry: dict[str, Any], tmp_path: Path
) -> None:
    env = registry["env"]
    base = default_base(env)
    res = ok(cnt("base", "pull", env=env, cwd=tmp_path))
    assert res.stdout == f"pulled {env['CNT_BASE_SOURCE']} into {base}\n"
    assert "INFO:    Creating SIF file..." in res.stderr  # Apptainer's progress, on stderr
    [argv] = calls(env, "pull")
    assert argv[2] == "--force" and argv[4] == env["CNT_BASE_SOURCE"]
    temp = Path(argv[3])  # Apptainer wrote a hidden file beside it, then it was published
    assert temp.parent == base.parent and temp.name.startswith(f".{base.name}.fetch-")
    assert basefs.locate(str(base)).kind == "sif"
    assert leftovers(base.parent) == [base.name]

    res = ok(cnt("base", "info", env=env, cwd=tmp_path))
    assert f"base    {base}\n" in res.stdout
    assert f"source  {env['CNT_BASE_SOURCE']}\n" in res.stdout
    assert "format  SIF, squashfs root filesystem at offset" in res.stdout
    assert "shells  bash: /usr/bin/bash, zsh: not found, fish: not found" in res.stdout

    # there already: nothing is fetched again, unless --force
    res = ok(cnt("base", "pull", env=env, cwd=tmp_path))
    assert res.stdout == f"{base} is already there; --force makes it again\n"
    assert len(calls(env, "pull")) == 1
    before = base.stat().st_ino
    ok(cnt("base", "pull", "--force", env=env, cwd=tmp_path))
    assert len(calls(env, "pull")) == 2 and base.stat().st_ino != before  # replaced atomically
    assert leftovers(base.parent) == [base.name]


def test_first_need_pulls_once_with_a_notice(registry: dict[str, Any], tmp_path: Path) -> None:
    env = registry["env"]
    image = make_image(tmp_path)
    base = default_base(env)
    res = ok(cnt("exec", "-o", str(image), "--", "echo", "from the command", env=env, cwd=tmp_path))
    assert res.stdout == "from the command\n"  # Apptainer's progress never reaches stdout
    notices = [ln for ln in res.stderr.splitlines() if ln.startswith("condatainer: note:")]
    assert notices == [
        f"condatainer: note: no base image yet: pulling {env['CNT_BASE_SOURCE']} into {base}"
        " (once; later runs reuse it)"
    ]
    assert "INFO:    Converting OCI blobs to SIF format" in res.stderr
    [exec_argv] = calls(env, "exec")
    assert str(base) in exec_argv  # the container ran on the pulled base
    res = ok(cnt("exec", "-o", str(image), "--", "true", env=env, cwd=tmp_path))
    assert "note" not in res.stderr and len(calls(env, "pull")) == 1


def test_a_refused_registry_fails_at_once_naming_the_login_node_command(
    registry: dict[str, Any], tmp_path: Path
) -> None:
    """A registry address that refuses connections (no clock: refusal is immediate) stands for
    the network being down; nothing is started, nothing is written."""
    env = registry["env"]
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, never listening: connections are refused
        env = {**env, "CNT_BASE_SOURCE": f"docker://127.0.0.1:{port}/cnt/base:1"}
        image = make_image(tmp_path)
        res = cnt("exec", "-o", str(image), "--", "true", env=env, cwd=tmp_path)
    assert res.returncode == 1
    errors = [ln for ln in res.stderr.splitlines() if not ln.startswith("condatainer: note:")]
    assert errors[0] == (
        f"condatainer: error: cannot reach the registry 127.0.0.1:{port} to fetch"
        f" {env['CNT_BASE_SOURCE']}: Connection refused"
    )
    assert errors[1].startswith("hint: on a machine with network access (a login node) run:"
                                " condatainer base pull")  # fmt: skip
    assert len(errors) == 2 and calls(env) == []
    assert leftovers(default_base(env).parent) == []


def test_a_failed_pull_keeps_nothing_and_the_next_run_retries(
    registry: dict[str, Any], tmp_path: Path, image_tree: Path
) -> None:
    env = {**registry["env"]}
    env["CNT_BASE_SOURCE"] = env["CNT_BASE_SOURCE"].replace("cnt/base:1", "cnt/later:2")
    res = cnt("base", "pull", env=env, cwd=tmp_path)
    assert res.returncode == 1
    assert "FATAL:   While making image from oci registry" in res.stderr  # Apptainer's own words
    assert res.stderr.endswith(
        f"condatainer: error: apptainer pull {env['CNT_BASE_SOURCE']} failed (exit status 255);"
        " no image was kept\nhint: its messages are above; check the source and the network,"
        " then run: condatainer base pull\n"
    )
    assert leftovers(default_base(env).parent) == []
    # the image appears in the registry: the next run simply pulls it
    shutil.copytree(image_tree, registry["images"] / "cnt" / "later:2", symlinks=True)
    ok(cnt("base", "pull", env=env, cwd=tmp_path))
    assert leftovers(default_base(env).parent) == [default_base(env).name]


@pytest.mark.root
def test_a_full_disk_keeps_nothing(
    registry: dict[str, Any], tmp_path: Path, tmpfs: Callable[[str], Path]
) -> None:
    small = tmpfs("1M")  # the base tree's squashfs is larger
    env = {**registry["env"], "CNT_FETCH_DIR": str(small)}
    res = cnt("base", "pull", env=env, cwd=tmp_path)
    assert res.returncode == 1, res.stderr
    assert "no image was kept" in res.stderr
    assert leftovers(small / "images") == []


def test_no_pull_inside_a_batch_job(registry: dict[str, Any], tmp_path: Path) -> None:
    env = {**registry["env"], "SLURM_JOB_ID": "77"}
    image = make_image(tmp_path)
    res = cnt("exec", "-o", str(image), "--", "true", env=env, cwd=tmp_path)
    assert res.returncode == 1
    assert res.stderr == (
        f"condatainer: error: no base image at {default_base(env)}, and this is a batch job"
        " (SLURM_JOB_ID=77): condatainer does not download base images inside jobs\n"
        "hint: on a login node, run once: condatainer base pull\n"
    )
    assert calls(env) == []
    # pulled beforehand (on the login node), the job runs
    ok(cnt("base", "pull", env={**env, "SLURM_JOB_ID": ""}, cwd=tmp_path))
    ok(cnt("exec", "-o", str(image), "--", "true", env=env, cwd=tmp_path))


def test_concurrent_pulls_fetch_once(registry: dict[str, Any], tmp_path: Path) -> None:
    env = registry["env"]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "condatainer", "base", "pull"],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outs
    assert len(calls(env, "pull")) == 1
    firsts = sorted(o[0].split()[0] for o in outs)
    assert firsts == sorted(["pulled", str(default_base(env)), str(default_base(env))])
    assert leftovers(default_base(env).parent) == [default_base(env).name]


def test_base_build_renders_the_definition_and_builds(
    registry: dict[str, Any], tmp_path: Path
) -> None:
    env = registry["env"]
    source = env["CNT_BASE_SOURCE"]
    printed = ok(cnt("base", "build", "--print-def", env=env, cwd=tmp_path)).stdout
    assert "Bootstrap: docker\n" in printed
    assert f"From: 127.0.0.1:{registry['port']}/cnt/base:1\n" in printed
    assert calls(env) == []
    base = default_base(env)
    res = ok(cnt("base", "build", "--fakeroot", env=env, cwd=tmp_path))
    assert res.stdout == f"built {source} into {base}\n"
    [argv] = calls(env, "build")
    assert argv[2:4] == ["--force", "--fakeroot"] and argv[-1] == str(base.with_suffix(".def"))
    assert base.with_suffix(".def").read_text() == printed  # kept beside it, for the record
    listing = subprocess.run(["siftool", "list", str(base)], capture_output=True, text=True)
    assert "Def.FILE" in listing.stdout  # the definition travels in the image, as Apptainer's
    assert basefs.locate(str(base)).kind == "sif"

    # a site's own definition file
    site = tmp_path / "site.def"
    site.write_text(printed.replace("mkdir -p /ext3", "mkdir -p /ext3 /site"))
    res = ok(cnt("base", "build", "--def", str(site), env=env, cwd=tmp_path))
    built = base.parent / "site.sif"
    assert res.stdout == f"built {site} into {built}\n" and built.exists()
    res = cnt("base", "build", "--def", str(site), "--from", source, env=env, cwd=tmp_path)
    assert res.returncode == 1 and "not both" in res.stderr


def test_bad_sources_are_refused_before_apptainer_runs(
    registry: dict[str, Any], tmp_path: Path
) -> None:
    env = registry["env"]
    res = cnt("base", "pull", "debian:12", env=env, cwd=tmp_path)
    assert res.returncode == 1 and "invalid value 'debian:12' for base_source" in res.stderr
    res = cnt("base", "build", "--from", "https://example.org/x.sif", env=env, cwd=tmp_path)
    assert res.returncode == 1 and "can bootstrap from docker://, oras://" in res.stderr
    res = cnt("base", "pull", env={**env, "CNT_BASE_SOURCE": "ftp://x/y"}, cwd=tmp_path)
    assert res.returncode == 1 and "CNT_BASE_SOURCE" in res.stderr
    assert calls(env) == []


def test_submitting_a_job_pulls_the_base_on_the_login_node(
    registry: dict[str, Any], tmp_path: Path
) -> None:
    """The job itself would refuse to pull (see above): `run --submit` fetches it first."""
    env = dict(registry["env"])
    bindir = tmp_path / "bin"
    bindir.mkdir()
    sbatch = bindir / "sbatch"
    sbatch.write_text("#!/bin/sh\ncat > /dev/null\necho 42\n")
    sbatch.chmod(0o755)
    env["PATH"] = f"{bindir}:{env['PATH']}"
    make_image(tmp_path)
    (tmp_path / "job.sh").write_text("#!/bin/sh\n#SBATCH -J x\n#DEP: env.img\necho hi\n")
    res = ok(cnt("run", "--submit", "job.sh", env=env, cwd=tmp_path))
    assert res.stdout == "42\n"
    assert "no base image yet: pulling" in res.stderr and default_base(env).exists()
    assert [argv[1] for argv in calls(env)] == ["pull"]  # pulled, nothing run here
