"""doctor: checks against a PATH of fake tools made per test, runtime selection, report text,
and `condatainer doctor` through `cli.main`.

The fake tools are tiny shell scripts that print what the real ones print for `-V`/`--version`.
The sbin fallback of runner.which is switched off so the real e2fsprogs cannot leak in.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

from condatainer import cli, config, doctor, micromamba, runner
from condatainer.errors import RuntimeUnavailableError
from condatainer.hook import init as hostshell
from condatainer.hook import rcfile
from condatainer.micromamba import info
from condatainer.run.runtime import builtin, selection

VERSIONS = {
    "mke2fs": "mke2fs 1.47.0 (5-Feb-2023)",
    "debugfs": "debugfs 1.47.0 (5-Feb-2023)",
    "e2fsck": "e2fsck 1.47.0 (5-Feb-2023)",
    "resize2fs": "resize2fs 1.47.0 (5-Feb-2023)",
    "dumpe2fs": "dumpe2fs 1.47.0 (5-Feb-2023)",
    "zstd": "*** Zstandard CLI (64-bit) v1.5.4, by Yann Collet ***",
    "apptainer": "apptainer version 1.3.4",
    "singularity": "singularity-ce version 4.1.0",
    "sbatch": "slurm 22.05.8",
}
ALL = tuple(VERSIONS)
E2FS = ("mke2fs", "debugfs", "e2fsck", "resize2fs", "dumpe2fs")

Tools = Callable[..., Path]
Kernel = Callable[[bool, bool], None]
AsUser = Callable[[bool], None]


def write_tool(bindir: Path, name: str, output: str, status: int = 0) -> Path:
    path = bindir / name
    path.write_text(f"#!/bin/sh\nprintf '%s\\n' '{output}' >&2\nexit {status}\n")
    path.chmod(0o755)
    return path


def init(shell: str) -> None:
    """`condatainer init SHELL` for real, into the test's HOME and XDG directories."""
    assert hostshell.init(shell, uninstall=False, dry_run=False)


@pytest.fixture
def tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Tools:
    """`tools("mke2fs", ...)` makes a PATH holding only those fake tools (and nothing else)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    monkeypatch.setenv("PATH", str(bindir))
    monkeypatch.setattr(runner, "SBIN", ())  # no fallback to the real /usr/sbin

    def make(*names: str, **overrides: str) -> Path:
        for name in names:
            write_tool(bindir, name, overrides.get(name, VERSIONS[name]))
        return bindir

    return make


@pytest.fixture
def kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[bool, bool], None]:
    """`kernel(loop, overlay)` fakes /dev/loop-control and /proc/filesystems."""

    def make(loop: bool, overlay: bool) -> None:
        loop_control = tmp_path / "loop-control"
        if loop:
            loop_control.touch()
        filesystems = tmp_path / "filesystems"
        filesystems.write_text("nodev\tsysfs\n\text4\n" + ("nodev\toverlay\n" if overlay else ""))
        monkeypatch.setattr(builtin, "LOOP_CONTROL", str(loop_control))
        monkeypatch.setattr(builtin, "PROC_FILESYSTEMS", str(filesystems))
        monkeypatch.setattr(builtin, "MODULES_DIR", str(tmp_path / "no-modules"))

    return make


@pytest.fixture
def as_user(monkeypatch: pytest.MonkeyPatch) -> Callable[[bool], None]:
    def make(root: bool) -> None:
        monkeypatch.setattr(builtin, "is_root", lambda: root)

    return make


def by_name(checks: Iterable[doctor.Check]) -> dict[str, doctor.Check]:
    return {c.name: c for c in checks}


def cfg_with(**values: str) -> config.Config:
    env = {"HOME": os.environ["HOME"], **{config.env_var(k): v for k, v in values.items()}}
    return config.load(env)


# --------------------------------------------------------------------------------------------
# check()


@pytest.fixture
def cached_base(monkeypatch: pytest.MonkeyPatch) -> Path:
    """condatainer's default base for base_source, in its cache (a sandbox directory will do:
    `base info`/doctor read it the same way; a real SIF in the base tests)."""
    from condatainer.run import baseimage

    path = baseimage.default_path(config.load())
    (path / "usr" / "bin").mkdir(parents=True)
    return path


def test_everything_present(
    tools: Tools, kernel: Kernel, as_user: AsUser, cached_base: Path
) -> None:
    tools(*ALL)
    kernel(True, True)
    as_user(False)
    rc = Path(os.environ["HOME"]) / ".bashrc"
    init("bash")
    checks = by_name(doctor.check())
    assert [c.status for c in checks.values()] == ["ok"] * len(checks)
    assert list(checks) == ["config", "e2fsprogs", "zstd", "apptainer", "runtime", "base image",
                            "micromamba", "sbatch", "shell hook", "leftovers"]  # fmt: skip
    assert checks["base image"].detail == f"{cached_base} (cached)"
    assert checks["e2fsprogs"].detail.startswith("1.47.0 (mke2fs, debugfs")
    assert "1.5.4" in checks["zstd"].detail
    assert checks["apptainer"].detail.startswith("apptainer 1.3.4 (")
    assert checks["runtime"].detail.startswith("apptainer (runtime: auto (default)")
    assert checks["micromamba"].detail.startswith(
        "not fetched yet: will be fetched from https://conda.anaconda.org/conda-forge (2.*, "
    )
    assert checks["sbatch"].detail.startswith("slurm 22.05.8")
    assert str(rc) in checks["shell hook"].detail
    assert doctor.exit_code(list(checks.values())) == 0


@pytest.mark.parametrize("missing", E2FS)
def test_missing_e2fsprogs_tool_is_required(tools: Tools, as_user: AsUser, missing: str) -> None:
    tools(*(t for t in ALL if t != missing))
    as_user(False)
    checks = doctor.check()
    e2fs = by_name(checks)["e2fsprogs"]
    assert e2fs.status == "FAIL"
    assert e2fs.detail == f"missing: {missing}"
    assert e2fs.fix is not None and "apt-get install e2fsprogs" in e2fs.fix
    assert doctor.exit_code(checks) == 1


def test_old_e2fsprogs_is_refused(tools: Tools, as_user: AsUser) -> None:
    tools(*ALL, mke2fs="mke2fs 1.42.9 (28-Dec-2013)")
    as_user(False)
    e2fs = by_name(doctor.check())["e2fsprogs"]
    assert e2fs.status == "FAIL"
    assert "1.42.9" in e2fs.detail and "1.43" in e2fs.detail


def fake_micromamba(bindir: Path, monkeypatch: pytest.MonkeyPatch, version: str = "2.3.3") -> Path:
    """A site's own micromamba (config `micromamba`) that reports `version`."""
    path = bindir / "site-micromamba"
    path.write_text(f"#!/bin/sh\necho {version}\n")
    path.chmod(0o755)
    monkeypatch.setenv("CNT_MICROMAMBA", str(path))
    return path


def test_missing_zstd_and_sbatch_are_warnings(
    tools: Tools, as_user: AsUser, cached_base: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_micromamba(tools(*(t for t in ALL if t not in ("zstd", "sbatch"))), monkeypatch)
    as_user(False)
    checks = doctor.check()
    named = by_name(checks)
    assert named["zstd"].status == "warn"
    assert "pack/unpack" in named["zstd"].detail
    assert named["zstd"].fix is not None and "apt-get install zstd" in named["zstd"].fix
    assert named["sbatch"].status == "warn"
    assert "SLURM submission unavailable" in named["sbatch"].detail
    assert named["sbatch"].fix is not None and "module load slurm" in named["sbatch"].fix
    assert doctor.exit_code(checks) == 0


def test_unconfigured_sbatch_is_a_warning_with_its_error(tools: Tools, as_user: AsUser) -> None:
    bindir = tools(*(t for t in ALL if t != "sbatch"))
    write_tool(bindir, "sbatch", "sbatch: fatal: Could not establish a configuration source", 1)
    as_user(False)
    sbatch = by_name(doctor.check())["sbatch"]
    assert sbatch.status == "warn"
    assert "installed but not configured" in sbatch.detail
    assert "SLURM submission unavailable" in sbatch.detail


def test_zstd_is_required_while_micromamba_is_still_to_be_fetched(
    tools: Tools, as_user: AsUser
) -> None:
    tools(*(t for t in ALL if t != "zstd"))
    as_user(False)
    checks = doctor.check()
    named = by_name(checks)
    assert named["zstd"].status == "FAIL"
    assert "micromamba cannot be fetched" in named["zstd"].detail
    assert named["micromamba"].status == "ok"  # the rest of what a fetch needs is there
    assert doctor.exit_code(checks) == 1


def test_micromamba_from_config(
    tools: Tools, as_user: AsUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = fake_micromamba(tools(*ALL), monkeypatch, "2.1.0")
    as_user(False)
    check = by_name(doctor.check())["micromamba"]
    assert check.status == "ok"
    assert check.detail == f"2.1.0 (config micromamba, {site})"


def test_a_broken_micromamba_path_fails(
    tools: Tools, as_user: AsUser, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    tools(*ALL)
    as_user(False)
    monkeypatch.setenv("CNT_MICROMAMBA", str(tmp_path / "nowhere" / "micromamba"))
    checks = doctor.check()
    check = by_name(checks)["micromamba"]
    assert check.status == "FAIL"
    assert "env CNT_MICROMAMBA" in check.detail and "not an executable file" in check.detail
    assert doctor.exit_code(checks) == 1


def test_a_missing_file_channel_fails_before_any_fetch(
    tools: Tools, as_user: AsUser, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    tools(*ALL)
    as_user(False)
    monkeypatch.setenv("CNT_MICROMAMBA_CHANNEL", f"file://{tmp_path}/no-channel")
    check = by_name(doctor.check())["micromamba"]
    assert check.status == "FAIL"
    assert (
        check.detail
        == f"cannot be fetched: its channel file://{tmp_path}/no-channel does not exist"
    )
    assert check.fix is not None and check.fix.startswith("condatainer micromamba")


def test_a_fetched_micromamba_is_reported_with_its_origin(tools: Tools, as_user: AsUser) -> None:
    """What a bootstrap leaves (tests/micromamba fetch for real): the binary and its origin."""
    cached = micromamba.cached_binary(config.Config())
    cached.parent.mkdir(parents=True)
    cached.write_text("#!/bin/sh\necho 2.3.3\n")
    cached.chmod(0o755)
    origin = info.Origin(
        version="2.3.3",
        build="0",
        filename="micromamba-2.3.3-0.conda",
        url="file:///c/linux-64/micromamba-2.3.3-0.conda",
        sha256="ab" * 32,
        channel="file:///c",
        subdir="linux-64",
        index="sharded index",
        fetched="2026-01-01T00:00:00Z",
    )
    (cached.parent / micromamba.ORIGIN).write_text(origin.text())
    tools(*(t for t in ALL if t != "zstd"))  # zstd is only needed to fetch it
    as_user(False)
    checks = by_name(doctor.check())
    assert checks["micromamba"].status == "ok"
    assert checks["micromamba"].detail == f"2.3.3 (cached in {cached}, from file:///c)"
    assert checks["zstd"].status == "warn"


def test_broken_slurm_says_run_refuses_to_submit(tools: Tools, as_user: AsUser) -> None:
    # The same probe `condatainer run` decides by (jobs.scheduler): configured but failing.
    bindir = tools(*(t for t in ALL if t != "sbatch"))
    write_tool(bindir, "sbatch", "sbatch: fatal: Unable to process configuration file", 1)
    as_user(False)
    sbatch = by_name(doctor.check())["sbatch"]
    assert sbatch.status == "warn"
    assert "does not work: sbatch: fatal: Unable to process configuration file" in sbatch.detail
    assert "refuses to submit" in sbatch.detail


def test_no_runtime_as_user_fails_and_names_both_ways_out(tools: Tools, as_user: AsUser) -> None:
    tools(*E2FS, "zstd")
    as_user(False)
    checks = doctor.check()
    named = by_name(checks)
    assert named["apptainer"].status == "FAIL"  # needed: nothing else can run containers
    assert named["apptainer"].fix is not None
    assert "module load apptainer" in named["apptainer"].fix
    runtime = named["runtime"]
    assert runtime.status == "FAIL"
    assert runtime.fix is not None
    assert "Apptainer" in runtime.fix and "root" in runtime.fix
    # Why the builtin fallback could not be used, as warnings under the failed runtime.
    assert named["builtin: root"].status == "warn"
    assert "sudo" in (named["builtin: root"].fix or "")
    assert doctor.exit_code(checks) == 1


def test_root_without_apptainer_uses_builtin(tools: Tools, kernel: Kernel, as_user: AsUser) -> None:
    tools(*E2FS, "zstd")
    kernel(True, True)
    as_user(True)
    checks = doctor.check()
    named = by_name(checks)
    assert named["apptainer"].status == "warn"
    assert named["runtime"].ok
    assert named["runtime"].detail.startswith("builtin (")
    builtin_checks = [c for name, c in named.items() if name.startswith("builtin: ")]
    assert [c.name for c in builtin_checks] == [
        "builtin: root",
        "builtin: loop devices",
        "builtin: overlayfs",
        "builtin: CAP_SYS_ADMIN",
    ]
    assert all(c.ok for c in builtin_checks)
    assert doctor.exit_code(checks) == 0


@pytest.mark.parametrize(
    ("loop", "overlay", "fragments"),
    [
        (False, True, ["loop-control is missing", "modprobe loop"]),
        (True, False, ["overlay is not listed", "modprobe overlay"]),
        (False, False, ["loop-control", "overlay"]),
    ],
)
@pytest.mark.parametrize("configured", [False, True], ids=["auto", "builtin"])
def test_builtin_without_loop_or_overlay_fails(
    tools: Tools,
    kernel: Kernel,
    as_user: AsUser,
    monkeypatch: pytest.MonkeyPatch,
    loop: bool,
    overlay: bool,
    fragments: list[str],
    configured: bool,
) -> None:
    """doctor reports the builtin runtime's own probes, so it never says ok where `e` fails."""
    tools(*E2FS)
    kernel(loop, overlay)
    as_user(True)
    if configured:
        monkeypatch.setenv("CNT_RUNTIME", "builtin")
    checks = doctor.check()
    named = by_name(checks)
    assert named["runtime"].status == "FAIL"
    failed = [c for name, c in named.items() if name.startswith("builtin: ") and not c.ok]
    assert {c.status for c in failed} == {"FAIL" if configured else "warn"}
    text = " ".join(f"{c.detail} {c.fix}" for c in failed)
    assert all(f in text for f in fragments)
    assert fragments[0] in named["runtime"].detail  # the first reason, in the runtime's words
    assert doctor.exit_code(checks) == 1


def test_bad_config_is_a_failed_check_and_the_rest_still_runs(
    tools: Tools, as_user: AsUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    tools(*ALL)
    as_user(False)
    monkeypatch.setenv("CNT_RUNTIME", "docker")
    checks = doctor.check()
    named = by_name(checks)
    assert named["config"].status == "FAIL"
    assert "CNT_RUNTIME" in named["config"].detail
    assert named["runtime"].ok  # with the defaults
    assert doctor.exit_code(checks) == 1


def test_config_check_names_overriding_variables(
    tools: Tools, as_user: AsUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    tools(*ALL)
    as_user(False)
    monkeypatch.setenv("CNT_GPU", "off")
    named = by_name(doctor.check())
    assert "defaults" in named["config"].detail and "CNT_GPU" in named["config"].detail


def test_hook_found_in_zdotdir_zshrc(
    tools: Tools, as_user: AsUser, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tools(*ALL)
    as_user(False)
    zdot = tmp_path / "zdot"
    zdot.mkdir()
    monkeypatch.setenv("ZDOTDIR", str(zdot))
    (zdot / ".zshrc").write_text("x\n")
    init("zsh")
    hook = by_name(doctor.check())["shell hook"]
    assert hook.ok and str(zdot / ".zshrc") in hook.detail


def test_hook_missing_is_a_warning(tools: Tools, as_user: AsUser) -> None:
    tools(*ALL)
    as_user(False)
    (Path(os.environ["HOME"]) / ".bashrc").write_text("alias ll='ls -l'\n")
    hook = by_name(doctor.check())["shell hook"]
    assert hook.status == "warn"
    assert hook.fix == "condatainer init"


def test_block_without_its_hook_file_is_a_warning(tools: Tools, as_user: AsUser) -> None:
    # The block sources the hook only if the file is there: a cleaned ~/.local/share turns
    # the integration off without a word, so doctor says so and names the repair.
    tools(*ALL)
    as_user(False)
    init("bash")
    rcfile.hook_path("bash").unlink()
    hook = by_name(doctor.check())["shell hook"]
    assert hook.status == "warn"
    assert str(rcfile.hook_path("bash")) in hook.detail and "missing" in hook.detail
    assert hook.fix == "condatainer init bash"
    init("bash")
    assert by_name(doctor.check())["shell hook"].ok


def test_real_e2fsprogs(need: Callable[[str], str]) -> None:
    need("mke2fs")
    e2fs = doctor._check_e2fsprogs()
    assert e2fs.ok, e2fs.detail
    assert e2fs.detail[0].isdigit()


# --------------------------------------------------------------------------------------------
# selection.select()


def test_auto_prefers_apptainer_then_singularity(tools: Tools, as_user: AsUser) -> None:
    as_user(True)
    bindir = tools("singularity")
    assert selection.select(cfg_with()).name == "singularity"
    tools("apptainer")
    assert selection.select(cfg_with()).name == "apptainer"
    (bindir / "apptainer").unlink()
    (bindir / "singularity").unlink()
    assert selection.select(cfg_with()).name == "builtin"


def test_auto_as_user_without_apptainer_raises(tools: Tools, as_user: AsUser) -> None:
    tools()
    as_user(False)
    with pytest.raises(RuntimeUnavailableError) as err:
        selection.select(cfg_with())
    assert "needs root" in err.value.message
    assert err.value.hint is not None
    assert "module load apptainer" in err.value.hint and "root" in err.value.hint


def test_explicit_runtime_is_never_a_silent_fallback(tools: Tools, as_user: AsUser) -> None:
    tools("singularity")
    as_user(True)
    with pytest.raises(RuntimeUnavailableError, match=r"runtime is set to apptainer \(env CNT_"):
        selection.select(cfg_with(runtime="apptainer"))
    assert selection.select(cfg_with(runtime="singularity")).name == "singularity"
    assert selection.select(cfg_with(runtime="builtin")).name == "builtin"
    as_user(False)
    with pytest.raises(RuntimeUnavailableError, match=r"builtin .* needs root") as err:
        selection.select(cfg_with(runtime="builtin"))
    assert err.value.hint is not None and "sudo" in err.value.hint


def test_apptainer_bin_from_config(tools: Tools, as_user: AsUser, tmp_path: Path) -> None:
    tools()
    as_user(False)
    site = tmp_path / "site" / "bin"
    site.mkdir(parents=True)
    write_tool(site, "singularity", VERSIONS["singularity"])
    write_tool(site, "apptainer-1.3", VERSIONS["apptainer"])
    assert selection.select(cfg_with(apptainer_bin=str(site / "singularity"))).name == "singularity"
    cfg = cfg_with(apptainer_bin=str(site / "apptainer-1.3"))
    assert selection.select(cfg).name == "apptainer"
    assert by_name(doctor.check())["apptainer"].status == "FAIL"  # nothing on PATH, no config

    missing = cfg_with(apptainer_bin=str(site / "nope"))
    with pytest.raises(RuntimeUnavailableError, match=r"apptainer_bin .*nope"):
        selection.select(missing)


# --------------------------------------------------------------------------------------------
# render()


def test_render_shows_status_fix_and_summary() -> None:
    checks = [
        doctor.Check("e2fsprogs", True, "1.47.0"),
        doctor.Check("runtime", False, "no container runtime", "module load apptainer"),
        doctor.Check("sbatch", False, "not found", "module load slurm", required=False),
    ]
    lines = doctor.render(checks).splitlines()
    assert lines[0].split() == ["ok", "e2fsprogs", "1.47.0"]
    assert lines[1].split()[:2] == ["FAIL", "runtime"]
    assert lines[2].strip() == "fix: module load apptainer"
    assert lines[3].split()[:2] == ["warn", "sbatch"]
    assert lines[4].strip() == "fix: module load slurm"
    assert lines[5] == "missing required pieces: runtime (optional, missing: sbatch)"
    assert doctor.exit_code(checks) == 1
    assert doctor.exit_code(checks[::2]) == 0
    assert doctor.render([checks[0]]).splitlines()[-1] == "everything required is present"


# --------------------------------------------------------------------------------------------
# The base image of the active runtime


def test_builtin_runtime_without_a_base_uses_the_host_root(
    tools: Tools, kernel: Kernel, as_user: AsUser
) -> None:
    tools(*E2FS)
    kernel(True, True)
    as_user(True)
    base = by_name(doctor.check())["base image"]
    assert (base.status, base.detail) == ("ok", "the host's root filesystem (builtin runtime)")


def test_missing_default_base_where_it_cannot_be_fetched_fails(
    tools: Tools, as_user: AsUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A registry that refuses connections (a local port nobody listens on: no clock in this
    test) stands for a compute node without network: the main job cannot work there."""
    tools(*E2FS, "apptainer")
    as_user(False)
    monkeypatch.setenv("CNT_BASE_SOURCE", f"docker://127.0.0.1:{refused_port()}/cnt/base:1")
    checks = doctor.check()
    base = by_name(checks)["base image"]
    assert base.status == "FAIL" and "missing; cannot reach the registry 127.0.0.1:" in base.detail
    assert base.fix is not None and "condatainer base pull" in base.fix
    assert doctor.exit_code(checks) == 1
    # ... and in a batch job it is not even tried
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    base = by_name(doctor.check())["base image"]
    assert base.status == "FAIL" and "batch job (SLURM_JOB_ID=42)" in base.detail
    assert base.fix == "on a login node, run: condatainer base pull"


def test_missing_default_base_with_a_reachable_registry_is_a_warning(
    tools: Tools, as_user: AsUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    tools(*E2FS, "apptainer", "zstd")
    as_user(False)
    with socket.socket() as registry:
        registry.bind(("127.0.0.1", 0))
        registry.listen()
        port = registry.getsockname()[1]
        monkeypatch.setenv("CNT_BASE_SOURCE", f"docker://127.0.0.1:{port}/cnt/base:1")
        checks = doctor.check()
    base = by_name(checks)["base image"]
    assert base.status == "warn" and "pulled from docker://127.0.0.1:" in base.detail
    assert base.fix == "fetch it now: condatainer base pull"
    assert doctor.exit_code(checks) == 0, [c for c in checks if not c.ok]


def test_a_configured_base_must_exist_and_be_an_image(
    tools: Tools, as_user: AsUser, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    tools(*E2FS, "apptainer")
    as_user(False)
    monkeypatch.setenv("CNT_BASE_IMAGE", str(tmp_path / "site.sif"))
    base = by_name(doctor.check())["base image"]
    origin = "base_image (env CNT_BASE_IMAGE)"
    assert (base.status, base.detail) == ("FAIL", f"{tmp_path}/site.sif ({origin}): no such file")
    assert base.fix is not None and "config set base_image" in base.fix
    (tmp_path / "site.sif").write_text("not an image\n")
    base = by_name(doctor.check())["base image"]
    assert base.status == "FAIL" and "neither a SIF file nor a squashfs" in base.detail


def refused_port() -> int:
    """A local TCP port nobody listens on (bound, then closed: connecting is refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --------------------------------------------------------------------------------------------
# condatainer doctor


def test_cli_doctor_exits_0_with_warnings_only(
    tools: Tools,
    kernel: Kernel,
    as_user: AsUser,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_micromamba(tools(*E2FS), monkeypatch)
    kernel(True, True)
    as_user(True)
    assert cli.main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "ok    runtime" in out
    assert "warn" in out and "fix: condatainer init" in out
    assert out.rstrip().endswith("shell hook)")


def test_cli_doctor_exits_1_when_a_required_piece_is_missing(
    tools: Tools, as_user: AsUser, capsys: pytest.CaptureFixture[str]
) -> None:
    tools("zstd", "apptainer")
    as_user(False)
    assert cli.main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  e2fsprogs" in out
    assert "fix: apt-get install e2fsprogs" in out
    assert "missing required pieces: e2fsprogs" in out
