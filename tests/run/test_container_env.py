"""The container's environment inside a real builtin container on the test world's SIF base:
the hygiene variables, the nesting level, and sidecar values that reference variables,
expanded in the container by the wrapper (shell/cnt-env.sh.j2) -- for exec, e, run and mm.

The base (`world_base`) has no /etc/ssl: the host's CA paths really are missing there, which
is why they are cleared.  Every command dumps its environment with the test interpreter (which
the base holds) as JSON, so values are compared byte for byte.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from tests.support import World, cnt, ok

pytestmark = [pytest.mark.root, pytest.mark.slow]

DUMP = (sys.executable, "-c", "import json, os; print(json.dumps(dict(os.environ)))")
HOST_CA = {
    "SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt",
    "SSL_CERT_DIR": "/etc/ssl/certs",
    "CURL_CA_BUNDLE": "/etc/ssl/certs/ca-certificates.crt",
    "REQUESTS_CA_BUNDLE": "/etc/ssl/certs/ca-certificates.crt",
}


@pytest.fixture
def image(world: World, world_base: Path, wd: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("CNT_BASE_IMAGE", str(world_base))
    ok(cnt("o", "x.img", "-s", "128M", cwd=wd))
    return "x.img"


def inside(*args: str, wd: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    res = ok(cnt(*args, cwd=wd, env=env))
    got: dict[str, str] = json.loads(res.stdout)
    return got


def test_hygiene_variables_in_a_builtin_container(image: str, wd: Path) -> None:
    host = {**HOST_CA, "R_LIBS_USER": "/home/u/R", "RETICULATE_PYTHON": "/usr/bin/python3"}
    env = inside("exec", "-o", image, "--", *DUMP, wd=wd, env=host)
    assert not set(HOST_CA) & set(env)
    assert Path(HOST_CA["SSL_CERT_FILE"]).exists()  # on the host, not in the base:
    probe = ("exec", "-o", image, "--", "ls", HOST_CA["SSL_CERT_FILE"])
    assert cnt(*probe, cwd=wd).returncode != 0
    assert env["PYTHONNOUSERSITE"] == "1"
    assert env["R_LIBS_USER"] == "/ext3/env/lib/R/library"
    assert env["RETICULATE_PYTHON"] == "/ext3/env/bin/python"
    assert (env["CNT_LEVEL"], env["IN_CONDATAINER"]) == ("1", "1")
    # PYTHONNOUSERSITE does what it says: the user's ~/.local site-packages are not imported
    code = "import site, sys; print(site.ENABLE_USER_SITE, site.USER_SITE in sys.path)"
    res = ok(cnt("exec", "-o", image, "--", sys.executable, "-c", code, cwd=wd))
    assert res.stdout == "False False\n"

    # the switches: the site keeps its CA paths; --env (or the sidecar) replaces a default
    kept = inside("exec", "--env", "PYTHONNOUSERSITE=", "--env", "R_LIBS_USER=/x", "-o", image,
                  "--", *DUMP, wd=wd, env={**HOST_CA, "CNT_HOST_CA_ENV": "keep"})  # fmt: skip
    assert {k: kept[k] for k in HOST_CA} == HOST_CA
    assert (kept["PYTHONNOUSERSITE"], kept["R_LIBS_USER"]) == ("", "/x")
    (wd / "x.img.env").write_text("RETICULATE_PYTHON=/ext3/env/bin/python3.12\n")
    env = inside("exec", "-o", image, "--", *DUMP, wd=wd)
    assert env["RETICULATE_PYTHON"] == "/ext3/env/bin/python3.12"

    # a container started from inside one: one level more
    nested = inside("exec", "-o", image, "--", *DUMP, wd=wd, env={"IN_CONDATAINER": "1"})
    assert (nested["CNT_LEVEL"], nested["IN_CONDATAINER"]) == ("2", "2")


SIDECAR = (
    "GOPATH=$HOME/go\n"
    "PATH=/ext3/env/go/bin:$PATH\n"
    "LIT=${X:-$(touch ran)} `touch ran` $1\n"
    "COST=$$5\n"
    "GOBIN=${GOPATH}/bin\n"
    "NOTHING=[$CNT_NOT_SET]\n"
)


def _check_expanded(env: dict[str, str], wd: Path) -> None:
    home = os.environ["HOME"]
    assert env["GOPATH"] == f"{home}/go"
    assert env["PATH"].startswith("/ext3/env/go/bin:/ext3/env/bin:/opt/condatainer/bin:")
    assert env["LIT"] == "${X:-$(touch ran)} `touch ran` $1"
    assert env["COST"] == "$5"
    assert env["GOBIN"] == f"{home}/go/bin"
    assert env["NOTHING"] == "[]"
    assert not (wd / "ran").exists()


def test_sidecar_values_expand_inside_for_exec_e_run_and_mm(image: str, wd: Path) -> None:
    (wd / "x.img.env").write_text(SIDECAR)
    _check_expanded(inside("exec", "-o", image, "--", *DUMP, wd=wd), wd)
    _check_expanded(inside("e", image, "--", *DUMP, wd=wd), wd)
    job = wd / "job.sh"
    job.write_text(f"#!/bin/sh\n#DEP: {image}\nexec {' '.join(DUMP[:2])} '{DUMP[2]}'\n")
    _check_expanded(inside("run", "--local", str(job), wd=wd), wd)
    # --env values stay byte-exact, and win over the sidecar's
    env = inside("exec", "--env", "GOPATH=$HOME/mine", "-o", image, "--", *DUMP, wd=wd)
    assert env["GOPATH"] == "$HOME/mine"
    assert env["GOBIN"] == "$HOME/mine/bin"  # the sidecar's GOBIN sees the --env value
    # the mm-* commands run with it too: PATH still leads to condatainer's tools
    res = ok(cnt("e", image, "--", "sh", "-c", "command -v mm-list; echo $GOPATH", cwd=wd))
    assert res.stdout == f"/opt/condatainer/bin/mm-list\n{os.environ['HOME']}/go\n"


def test_overlay_info_and_the_first_e_say_what_changed(image: str, wd: Path) -> None:
    (wd / "x.img.env").write_text(SIDECAR)
    shown = ok(cnt("overlay", "info", image, cwd=wd)).stdout
    assert "note: GOPATH: $HOME is expanded inside the container; write $$ for a literal $" in (
        shown
    )
    assert "note: LIT: ${X:-$(touch ran)} `touch ran` $1 stays literal text" in shown
    assert "COST" not in shown.split("note:", 1)[1]  # $$ alone: nothing to say
    data = json.loads(ok(cnt("overlay", "info", image, "--json", cwd=wd)).stdout)
    assert len(data["sidecar"]["notes"]) == 5  # GOPATH PATH GOBIN NOTHING expand; LIT literal
    first = ok(cnt("e", image, "--", "true", cwd=wd)).stderr
    assert "x.img.env: values with $NAME are expanded inside the container" in first
    assert "GOBIN: $GOPATH is expanded" in first
    again = ok(cnt("e", image, "--", "true", cwd=wd)).stderr
    assert "expanded" not in again
    (wd / "x.img.env").write_text(SIDECAR + "MORE=$USER\n")  # edited: said again
    assert "MORE: $USER is expanded" in ok(cnt("e", image, "--", "true", cwd=wd)).stderr
