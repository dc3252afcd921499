"""scheduler.probe: is SLURM absent, ready or broken here -- with the real sbatch of this machine
(installed, not configured: the case that used to submit and fail) and with stand-ins for what
the machine cannot show (a hung sbatch).  tests/slurm checks `ready` against the real cluster.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from condatainer import runner
from condatainer.jobs import scheduler


def fake_sbatch(tmp_path: Path, body: str) -> dict[str, str]:
    bindir = tmp_path / "fakebin"
    bindir.mkdir(exist_ok=True)
    path = bindir / "sbatch"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return {"PATH": str(bindir)}


def test_no_sbatch_is_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "which", lambda name: None)
    found = scheduler.probe({})
    assert (found.state, found.sbatch, found.detail) == ("absent", None, "no sbatch on PATH")


def test_real_sbatch_without_configuration_is_absent(
    need: Callable[[str], str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # This machine: slurm-client installed, no /etc/slurm/slurm.conf, no SLURM_CONF, no
    # configless controller -- sbatch itself says "Could not establish a configuration source".
    sbatch = need("sbatch")
    if Path("/etc/slurm/slurm.conf").exists() or Path("/etc/slurm-llnl/slurm.conf").exists():
        pytest.skip("this machine has a system-wide slurm.conf")
    monkeypatch.delenv("SLURM_CONF", raising=False)
    found = scheduler.probe({"PATH": str(Path(sbatch).parent)})
    assert found.state == "absent", found
    assert "installed but not configured" in found.detail


def test_real_sbatch_with_a_missing_slurm_conf_is_broken_at_once(
    need: Callable[[str], str], tmp_path: Path
) -> None:
    # sbatch itself would retry for 60 s, then fail: the probe answers from the file's absence.
    need("sbatch")
    t0 = time.monotonic()
    found = scheduler.probe({"SLURM_CONF": str(tmp_path / "nope.conf")})
    assert found.state == "broken" and "does not exist" in found.detail
    assert time.monotonic() - t0 < 30, "the probe must not wait for sbatch's retries"


def test_real_sbatch_with_a_bad_configuration_is_broken(
    need: Callable[[str], str], tmp_path: Path
) -> None:
    need("sbatch")
    conf = tmp_path / "slurm.conf"
    conf.write_text("ThisIsNot=a slurm configuration\n")
    found = scheduler.probe({"SLURM_CONF": str(conf)})
    assert found.state == "broken"
    assert "does not work" in found.detail and "configuration" in found.detail


def test_working_sbatch_is_ready_with_its_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = fake_sbatch(tmp_path, 'echo "slurm 23.11.4"')
    monkeypatch.setenv("PATH", env["PATH"])
    found = scheduler.probe(env)
    assert (found.state, found.version) == ("ready", "23.11.4")
    assert found.to_json() == {
        "state": "ready",
        "sbatch": str(tmp_path / "fakebin" / "sbatch"),
        "version": "23.11.4",
        "detail": f"slurm 23.11.4 ({tmp_path / 'fakebin' / 'sbatch'})",
    }


def test_a_hung_sbatch_is_broken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = fake_sbatch(tmp_path, "exec /bin/sleep 60")
    monkeypatch.setenv("PATH", env["PATH"])
    monkeypatch.setattr(scheduler, "_TIMEOUT", 0.5)
    found = scheduler.probe(env)
    assert found.state == "broken" and "did not answer" in found.detail
