"""`e`, `exec` and `run` on the builtin runtime with real images: locks, exit codes, env values,
autoload and #DEP resolution, all through the real command line in separate processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support import REPO, World, cnt, debugfs_cat, ok
from tests.waiting import lock_on, wait_for_lock, wait_until

pytestmark = pytest.mark.root


@pytest.fixture
def image(world: World, tmp_path: Path) -> Path:
    img = tmp_path / "env.img"
    ok(cnt("o", str(img), "-s", "256M", "--sparse", "--", "cnt-hello"))
    return img


def test_two_writers_exactly_one_runs(image: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [
        sys.executable,
        "-m",
        "condatainer",
        "e",
        str(image),
        "--",
        "sh",
        "-c",
        # The winner holds the image until the loser has given up (the test says when).
        "echo ran >> /ext3/env/ran; while [ ! -e release ]; do sleep 0.05; done",
    ]
    procs = [
        subprocess.Popen(
            cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    try:
        wait_until(lambda: any(p.poll() is not None for p in procs), "one of them to give up")
    finally:
        (tmp_path / "release").touch()
    results = [(p.wait(timeout=60), p.stderr.read() if p.stderr else "") for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 1], results
    loser = next(err for code, err in results if code == 1)
    assert "in use for writing by " in loser and "(PID " in loser
    assert "condatainer: error:" in loser
    assert debugfs_cat(image, "upper/ext3/env/ran") == "ran\n"


def test_sixteen_readers_at_once(image: Path, tmp_path: Path) -> None:
    def one(_: int) -> subprocess.CompletedProcess[str]:
        return cnt("exec", "-o", str(image), "--", "sh", "-c", "cnt-hello; sleep 0.5", cwd=tmp_path)

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(16)))
    assert [r.returncode for r in results] == [0] * 16, [r.stderr for r in results]
    assert all("hello from cnt-hello" in r.stdout for r in results)


@pytest.mark.parametrize("code", [0, 3, 127])
def test_exit_codes_pass_through(image: Path, code: int) -> None:
    res = cnt("exec", "-o", str(image), "--", "sh", "-c", f"exit {code}")
    assert res.returncode == code


def test_missing_command_is_127(image: Path) -> None:
    res = cnt("exec", "-o", str(image), "--", "no-such-command-xyz")
    assert res.returncode == 127
    assert "no-such-command-xyz" in res.stderr


def test_killed_by_signal(image: Path) -> None:
    res = cnt("exec", "-o", str(image), "--", "sh", "-c", "kill -9 $$")
    assert res.returncode == 128 + 9


def test_env_values_arrive_byte_exact(image: Path, tmp_path: Path) -> None:
    canary = tmp_path / "pwned"
    value = f"$(touch {canary}) `touch {canary}` 'single' \"double\" ;|&\nline2\n, comma=x"
    res = ok(
        cnt(
            "exec",
            "-o",
            str(image),
            "--env",
            f"TRICKY={value}",
            "--",
            sys.executable,
            "-c",
            "import os,sys; sys.stdout.write(os.environ['TRICKY'])",
        )
    )
    assert res.stdout == value
    sidecar = tmp_path / "env.img.env"
    sidecar.write_text(f"FROMFILE=$(touch {canary})`x`\n#ENVNOTE:FROMFILE=a note\n")
    res = ok(
        cnt(
            "exec",
            "-o",
            str(image),
            "--",
            sys.executable,
            "-c",
            "import os,sys; sys.stdout.write(os.environ['FROMFILE'])",
        )
    )
    assert res.stdout == f"$(touch {canary})`x`"
    assert not canary.exists()


def test_container_variables(image: Path, tmp_path: Path) -> None:
    script = (
        'printf "%s|%s|%s|%s|%s\\n" "$CONDA_PREFIX" "$MAMBA_ROOT_PREFIX" "$IN_CONDATAINER"'
        ' "$CNT_OVERLAY" "${CNT_CONDA_PREFIX-unset}"'
    )
    ro = ok(cnt("exec", "-o", str(image), "--", "sh", "-c", script)).stdout.strip()
    assert ro == f"/ext3/env|/ext3/env|1|{image}|unset"
    rw = ok(cnt("exec", "-w", "-o", str(image), "--", "sh", "-c", script)).stdout.strip()
    assert rw == f"/ext3/env|/ext3/env|1|{image}|/ext3/env"
    path = ok(cnt("exec", "-o", str(image), "--", "sh", "-c", 'echo "$PATH"')).stdout
    assert path.startswith("/ext3/env/bin:")


def test_e_autoloads_from_a_subdirectory_and_keeps_cwd(image: Path, tmp_path: Path) -> None:
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    res = ok(cnt("e", "--", "sh", "-c", 'pwd; echo "$CNT_OVERLAY"; touch made-here', cwd=sub))
    assert res.stdout.splitlines() == [str(sub), str(image)]
    assert (sub / "made-here").exists(), "cwd is bound: files land on the host"


def test_e_without_image_says_what_to_do(world: World, tmp_path: Path) -> None:
    res = cnt("e", "--", "true", cwd=tmp_path)
    assert res.returncode == 2
    assert "condatainer o" in res.stderr


def test_e_read_only_flag(image: Path, tmp_path: Path) -> None:
    res = cnt("e", "-r", str(image), "--", "sh", "-c", "touch /ext3/env/x")
    assert res.returncode != 0 and "Read-only" in res.stderr


def job_script(path: Path, dep: str, body: str) -> Path:
    path.write_text(f"#!/bin/sh\n#DEP: {dep}\n#SBATCH --job-name=t # name\n#SBATCH -c 2\n{body}\n")
    return path


def test_run_resolves_dep_relative_to_cwd_then_script(image: Path, tmp_path: Path) -> None:
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    job = job_script(scripts / "job.sh", "env.img", 'cnt-hello "$@"; echo "$CNT_OVERLAY"')
    res = ok(cnt("run", "--local", str(job), "x y", cwd=tmp_path))  # found in cwd
    assert res.stdout.splitlines() == ["hello from cnt-hello 1.0", "x y", str(image)]
    other = tmp_path / "elsewhere"
    other.mkdir()
    job2 = job_script(tmp_path / "job2.sh", "env.img", "cnt-hello")
    ok(cnt("run", "--local", str(job2), cwd=other))  # found next to the script
    res = cnt("run", "--local", str(job), cwd=other)
    assert res.returncode == 1
    assert str(other / "env.img") in res.stderr and str(scripts / "env.img") in res.stderr


def test_run_dry_run_json(image: Path, tmp_path: Path) -> None:
    job = job_script(tmp_path / "job.sh", "env.img", "echo hi\n#SBATCH --ignored")
    res = ok(cnt("run", "--local", "--dry-run", "--json", str(job), cwd=tmp_path))
    data = json.loads(res.stdout)
    assert [(d["dep"], d["found"], d["path"]) for d in data["deps"]] == [
        ("env.img", True, str(image))
    ]
    assert data["scheduler"] == "slurm"
    assert [d["text"] for d in data["directives"]] == ["--job-name=t # name", "-c 2"]
    assert [d["args"] for d in data["directives"]] == [["--job-name=t"], ["-c", "2"]]
    assert data["plan"]["overlays"][0]["path"] == str(image)
    assert data["resources"]["NCPUS"] == "2"  # the script's -c 2, for a run here
    assert data["would_start"] is True and data["problems"] == []
    assert not (tmp_path / "ran").exists()


def test_run_exit_status(image: Path, tmp_path: Path) -> None:
    job = job_script(tmp_path / "job.sh", "env.img", "exit 7")
    assert cnt("run", "--local", str(job), cwd=tmp_path).returncode == 7


def test_lock_released_after_parent_is_killed(image: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "condatainer", "exec", "-w", "-o", str(image), "--", "sleep", "60"],
        cwd=tmp_path,
        env=env,
    )
    wait_for_lock(image, "write")  # mounted, the command running
    proc.kill()
    proc.wait()
    wait_until(lambda: lock_on(image) is None, "the killed run's lock to go")
    res = cnt("exec", "-w", "-o", str(image), "--", "true")
    assert res.returncode == 0, res.stderr


def test_a_double_dash_inside_the_command_is_kept(image: Path, tmp_path: Path) -> None:
    res = ok(cnt("exec", "-o", str(image), "sh", "-c", 'printf "[%s]" "$@"', "sh", "--", "x"))
    assert res.stdout == "[--][x]"
    job = tmp_path / "args.sh"
    job.write_text('#!/bin/sh\n#DEP: env.img\nprintf "[%s]" "$@"\n')
    res = ok(cnt("run", "--local", str(job), "--", "y", cwd=tmp_path))
    assert res.stdout == "[--][y]"
