"""overlay info on real images: env facts, sidecar, JSON shape, images in use, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from condatainer import runner
from condatainer.errors import ImageError
from condatainer.image import e2fs, envfile
from condatainer.image.info import ImageInfo, info, parse_channels, requested_specs
from tests.image.test_e2fs import HOSTILE, make_image

REPO = Path(__file__).resolve().parents[2]

HISTORY = """\
==> 2024-01-01 10:00:00 <==
# cmd: micromamba install -r /ext3/env -n base numpy scipy>=1
# conda version: 3.8.0
+conda-forge/noarch::numpy-1.0-0
+conda-forge/noarch::scipy-1.0-0
# update specs: ["numpy", "scipy>=1"]
==> 2024-01-02 10:00:00 <==
# cmd: micromamba install pandas
+conda-forge/noarch::pandas-2.0-0
# update specs: ["pandas"]
==> 2024-01-03 10:00:00 <==
# cmd: micromamba remove numpy
-conda-forge/noarch::numpy-1.0-0
# remove specs: ["numpy"]
==> 2024-01-04 10:00:00 <==
# cmd: micromamba update scipy
# update specs: ["SciPy>=1.11"]
"""


def _env_tree(
    root: Path, *, condarc: str | None = None, history: str | None = HISTORY, packages: int = 3
) -> None:
    env = root / "upper" / "ext3" / "env"
    env.mkdir(parents=True)
    (root / "work" / "work").mkdir(parents=True)
    if condarc is not None:
        (env / ".condarc").write_text(condarc)
    if history is not None or packages:
        meta = env / "conda-meta"
        meta.mkdir()
        for i in range(packages):
            (meta / f"pkg{i}-1.0-0.json").write_text("{}")
        if history is not None:
            (meta / "history").write_text(history)
        (meta / "pinned").write_text("numpy 1.*\n")
        (meta / "not-a-record.json.bak").write_text("")
    if os.geteuid() == 0:
        for dirpath, dirnames, filenames in os.walk(root / "upper"):
            for name in dirnames + filenames:
                os.lchown(os.path.join(dirpath, name), 1234, 1234)
        os.lchown(root / "upper", 1234, 1234)


@pytest.fixture(autouse=True)
def _e2fsprogs() -> None:
    if runner.which("mke2fs") is None:
        pytest.skip("needs e2fsprogs")


@pytest.fixture
def full(tmp_path: Path) -> Path:
    img = make_image(
        tmp_path,
        "env.img",
        lambda r: _env_tree(
            r, condarc="channels:\n  - conda-forge\n  - bioconda\nalways_yes: true\n"
        ),
    )
    envfile.sidecar_path(img).write_text(
        "#WHATIS:Go and numpy\nGOROOT=/ext3/env/go\n#ENVNOTE:GOROOT=Go installation path\n"
        f'RAW=$(id) "{HOSTILE}"\n'
    )
    return img


def test_full_image(full: Path) -> None:
    got = info(full)
    assert got.path == str(full)
    assert got.file_bytes == 256 * 1024 * 1024 == got.fs_bytes
    assert 0 < got.allocated_bytes <= got.file_bytes
    assert got.block_size == 4096
    assert got.used_bytes + got.free_bytes == got.fs_bytes
    assert got.inodes_used > 10 and got.inodes_total == got.inodes_used + got.inodes_free
    assert got.clean and got.state == "clean"
    assert got.in_use == ()
    expect_uid = 1234 if os.geteuid() == 0 else os.getuid()
    assert (got.owner_uid, got.owner_gid) == (expect_uid, expect_uid)
    assert got.profile == "small"  # mke2fs's default for a 256M image: 4096 bytes/inode
    assert got.has_env
    assert got.channels == ("conda-forge", "bioconda")
    assert got.specs == ("SciPy>=1.11", "pandas")
    assert got.packages == 3
    assert got.sidecar == str(envfile.sidecar_path(full))
    assert got.whatis == "Go and numpy"
    assert [(v.name, v.shown) for v in got.envs] == [
        ("GOROOT", "Go installation path"),
        ("RAW", f'$(id) "{HOSTILE}"'),
    ]
    assert got.warnings == ()
    text = got.render()
    for fact in (
        "256M filesystem",
        "state:    clean",
        "conda-forge, bioconda",
        "SciPy>=1.11, pandas",
        "packages: 3",
        "GOROOT: Go installation path",
        "what:     Go and numpy",
        f"{expect_uid}:{expect_uid}",
        "profile:  small",
    ):
        assert fact in text, (fact, text)


def test_json_shape(full: Path) -> None:
    data = info(full).to_json()
    assert set(data) == {
        "path",
        "size",
        "blocks",
        "inodes",
        "state",
        "clean",
        "owner",
        "profile",
        "env",
        "sidecar",
        "in_use",
        "leftovers",
        "warnings",
    }
    assert set(data["size"]) == {"file", "filesystem", "allocated"}
    assert set(data["blocks"]) == {"block_size", "used", "free", "reserved", "available"}
    assert set(data["inodes"]) == {"total", "used", "free"}
    assert set(data["owner"]) == {"uid", "gid", "user", "group"}
    assert data["profile"] == {"guess": "small", "bytes_per_inode": 4096}
    assert data["env"] == {
        "present": True,
        "channels": ["conda-forge", "bioconda"],
        "specs": ["SciPy>=1.11", "pandas"],
        "packages": 3,
    }
    assert data["sidecar"]["vars"][0] == {
        "name": "GOROOT",
        "value": "/ext3/env/go",
        "note": "Go installation path",
    }
    assert json.loads(json.dumps(data)) == data


def test_cli_json(full: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    res = subprocess.run(
        [sys.executable, "-m", "condatainer", "overlay", "info", str(full), "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == info(full).to_json()
    res = subprocess.run(
        [sys.executable, "-m", "condatainer", "overlay", "info", str(full)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == info(full).render()


def test_env_without_condarc_history_or_sidecar(tmp_path: Path) -> None:
    img = make_image(tmp_path, "bare.img", lambda r: _env_tree(r, history=None, packages=0))
    got = info(img)
    assert got.has_env
    assert got.channels is None and got.specs == () and got.packages is None
    assert got.sidecar is None and got.envs == ()
    assert got.to_json()["sidecar"] is None
    assert "channels: - (no .condarc)" in got.render()


def test_packages_without_history(tmp_path: Path) -> None:
    img = make_image(tmp_path, "nohist.img", lambda r: _env_tree(r, history=None, packages=5))
    got = info(img)
    assert got.packages == 5 and got.specs == ()


def test_empty_overlay_and_plain_filesystem(tmp_path: Path) -> None:
    def skeleton(root: Path) -> None:
        (root / "upper").mkdir()
        (root / "work" / "work").mkdir(parents=True)

    got = info(make_image(tmp_path, "empty.img", skeleton))
    assert not got.has_env and got.packages is None and got.warnings == ()
    assert "env:" in got.render()

    plain = info(make_image(tmp_path, "plain.img", lambda r: (r / "data").mkdir()))
    assert plain.owner_uid is None and plain.to_json()["owner"] is None
    assert any("no upper/" in w for w in plain.warnings)


def test_bad_condarc_is_a_warning_and_never_evaluated(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    condarc = f"!!python/object/apply:os.system ['touch {marker}']\n"
    img = make_image(tmp_path, "evil.img", lambda r: _env_tree(r, condarc=condarc))
    got = info(img)
    assert not marker.exists()
    assert got.channels == ()
    assert any(".condarc: cannot be parsed as YAML" in w for w in got.warnings)
    assert "warning: /ext3/env/.condarc" in got.render()


def test_escape_sequences_in_the_image_are_shown_not_sent(tmp_path: Path) -> None:
    # A channel name, a requested spec and a sidecar note from someone else's image reach
    # the terminal: the report shows their control characters as `?`; JSON escapes them.
    osc = "\x1b]0;owned\x07"
    history = f'==> 2024-01-01 10:00:00 <==\n# update specs: ["numpy{osc}"]\n'
    img = make_image(
        tmp_path,
        "loud.img",
        lambda r: _env_tree(
            r, condarc='channels:\n  - "conda-forge\\e]0;owned\\a"\n', history=history
        ),
    )
    envfile.sidecar_path(img).write_text(f"GOROOT=/ext3/env/go\n#ENVNOTE:GOROOT=Go{osc}\n")
    got = info(img)
    text = got.render()
    assert "\x1b" not in text and "\x07" not in text
    assert "conda-forge?]0;owned?" in text and "numpy?]0;owned?" in text
    assert "GOROOT: Go?]0;owned?" in text
    assert got.channels == (f"conda-forge{osc}",)  # the data itself is kept exactly
    dumped = json.dumps(got.to_json())
    assert "\x1b" not in dumped and json.loads(dumped)["env"]["channels"] == [f"conda-forge{osc}"]


def test_condarc_variants() -> None:
    assert parse_channels("") == ((), None)
    assert parse_channels("channels: conda-forge\n") == (("conda-forge",), None)
    assert parse_channels("channel_priority: strict\n") == ((), None)
    assert parse_channels("- a\n- b\n")[1] == "not a YAML mapping; no channels read"
    kept, problem = parse_channels("channels: [a, {x: 1}, b]\n")
    assert kept == ("a", "b") and problem and "skipped" in problem
    assert parse_channels("channels: {a: 1}\n")[1] == "channels: is not a list; ignored"
    assert parse_channels("a: [\n")[1] is not None


def test_requested_specs_rules() -> None:
    assert requested_specs(HISTORY) == ["SciPy>=1.11", "pandas"]
    conda_style = (
        "==> 2024 <==\n# update specs: ['python=3.11', 'conda-forge::numpy >=1.2']\n"
        "==> 2024 <==\n# remove specs: ['python']\n# update specs: ['python=3.12']\n"
        "==> 2024 <==\n# neutered specs: ['numpy[version=\\'>=1\\']']\n"
    )
    assert requested_specs(conda_style) == ["numpy[version=\\'>=1\\']", "python=3.12"]
    assert requested_specs("") == []
    assert requested_specs("# update specs: not a list\n# update specs: [1, 2]\n") == []


def test_history_not_a_regular_file(tmp_path: Path) -> None:
    def tree(root: Path) -> None:
        _env_tree(root, history=None)
        (root / "upper" / "ext3" / "env" / "conda-meta" / "history").mkdir()

    got = info(make_image(tmp_path, "weird.img", tree))
    assert got.specs == ()
    assert any("history is not a regular file" in w for w in got.warnings)


def test_bad_sidecar_is_a_warning(full: Path) -> None:
    envfile.sidecar_path(full).write_text("A=1\nnot a line\n")
    got = info(full)
    assert got.envs == () and got.sidecar == str(envfile.sidecar_path(full))
    assert any(":2: not a KEY=VALUE line" in w for w in got.warnings)


@pytest.fixture
def writer(full: Path) -> Iterator[subprocess.Popen[str]]:
    code = (
        "import sys\n"
        "from condatainer.image import locks\n"
        "lock = locks.acquire(sys.argv[1], write=True)\n"
        "print('ready', flush=True)\n"
        "sys.stdin.read()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(full)],
        cwd=REPO,
        text=True,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    try:
        yield proc
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=10)


def test_works_on_an_image_in_use(full: Path, writer: subprocess.Popen[str]) -> None:
    got = info(full)
    assert got.packages == 3
    assert len(got.in_use) == 1 and f"(PID {writer.pid}" in got.in_use[0]
    assert got.in_use[0].startswith("for writing by ")
    assert "in use:   for writing by " in got.render() and f"(PID {writer.pid}" in got.render()


def test_not_clean_state(full: Path) -> None:
    e2fs.debugfs_script(full, ["feature needs_recovery"], write=True)
    got = info(full)
    assert not got.clean
    assert got.state.startswith("not clean (journal needs recovery")
    assert got.to_json()["clean"] is False


def _corrupt_root_dir(img: Path) -> None:
    out = e2fs.debugfs_script(img, ["blocks <2>"], write=False)
    block = int(out.splitlines()[1].split()[0])
    with open(img, "r+b") as f:
        f.seek(block * 4096)
        f.write(b"\0" * 4096)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.img", "no such image file"),
        (lambda d: d, "is a directory"),
        (lambda d: _write(d / "text.img", b"hello\n" * 10_000), "not an ext3 image"),
        (
            lambda d: _write(d / "magic.img", b"\0" * 1080 + b"\x53\xef" + os.urandom(200_000)),
            "cannot read the superblock",
        ),
    ],
)
def test_bad_inputs_are_one_image_error(tmp_path: Path, make: Any, message: str) -> None:
    target = make(tmp_path)
    with pytest.raises(ImageError, match=message) as err:
        info(target)
    assert str(target) in str(err.value)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_truncated_and_corrupt_images(full: Path, tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.img"
    with open(full, "rb") as f:
        truncated.write_bytes(f.read(300 * 1024))
    with pytest.raises(ImageError, match=str(truncated)):
        info(truncated)
    _corrupt_root_dir(full)
    with pytest.raises(ImageError, match="directory corrupted") as err:
        info(full)
    assert "overlay check" in (err.value.hint or "")


def test_info_dataclass_is_plain_data(full: Path) -> None:
    got = info(full)
    assert isinstance(got, ImageInfo)
    assert got.available_bytes == got.free_bytes - got.reserved_bytes
    assert got.owner == f"{got.owner_uid}:{got.owner_gid}"
