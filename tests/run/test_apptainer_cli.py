"""The command line on the Apptainer runtime: `condatainer exec`/`e`/`overlay export` resolve a
Plan and hand it to the recording fake `apptainer` (tests/fakes), which takes Apptainer's locks
and runs the command on the host.  Checks the wiring cli -> resolve -> launch -> apptainer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fakes import with_fakes_on_path
from tests.run.test_apptainer_fake import make_image
from tests.support import REPO, cnt
from tests.waiting import wait_for_lock


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    base = tmp_path / "base.sif"
    base.write_bytes(b"not read by the fake\n")
    return {
        **with_fakes_on_path(os.environ),
        "CNT_RUNTIME": "apptainer",
        "CNT_BASE_IMAGE": str(base),
        "CNT_FAKE_APPTAINER_LOG": str(tmp_path / "log.jsonl"),
        "PYTHONPATH": str(REPO),
    }


def calls(env: dict[str, str]) -> list[dict[str, object]]:
    lines = Path(env["CNT_FAKE_APPTAINER_LOG"]).read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_exec_is_read_only_and_passes_the_status(tmp_path: Path, env: dict[str, str]) -> None:
    image = make_image(tmp_path)
    res = cnt(
        "exec",
        "-o",
        str(image),
        "--",
        "sh",
        "-c",
        'echo "$IN_CONDATAINER"; exit 5',
        cwd=tmp_path,
        env=env,
    )
    assert res.returncode == 5, res.stderr
    assert res.stdout.strip() == "1"
    argv = calls(env)[0]["argv"]
    assert isinstance(argv, list)
    assert argv[1] == "exec" and "--no-eval" in argv
    assert argv[argv.index("--overlay") + 1] == f"{image}:ro"
    assert argv[-3:] == ["sh", "-c", 'echo "$IN_CONDATAINER"; exit 5']


def test_e_is_writable_and_a_second_writer_gets_our_message(
    tmp_path: Path, env: dict[str, str]
) -> None:
    image = make_image(tmp_path)
    first = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "condatainer",
            "e",
            str(image),
            "--",
            "sh",
            "-c",
            "while [ ! -e release ]; do sleep 0.05; done",
        ],
        cwd=tmp_path,
        env=env,
    )
    try:
        wait_for_lock(image, "write")
        res = cnt("e", str(image), "--", "true", cwd=tmp_path, env=env)
        assert res.returncode == 1
        assert "in use for writing by " in res.stderr and "(PID " in res.stderr
        assert "FATAL" not in res.stderr
    finally:
        (tmp_path / "release").touch()
        assert first.wait(timeout=60) == 0
    argv = calls(env)[0]["argv"]
    assert isinstance(argv, list)
    assert argv[argv.index("--overlay") + 1] == str(image)


def test_missing_base_image_is_explained(tmp_path: Path, env: dict[str, str]) -> None:
    """A configured base that is not there (condatainer's default base is pulled instead: see
    test_base_fetch.py)."""
    image = make_image(tmp_path)
    env["CNT_BASE_IMAGE"] = str(tmp_path / "gone.sif")
    res = cnt("exec", "-o", str(image), "--", "true", cwd=tmp_path, env=env)
    assert res.returncode == 1
    assert res.stderr.startswith(f"condatainer: error: base image {tmp_path}/gone.sif: no such")
    assert "hint: " in res.stderr and "base_image" in res.stderr.split("hint: ")[1]
    assert not Path(env["CNT_FAKE_APPTAINER_LOG"]).exists()  # Apptainer was never started
