"""`condatainer config show` and `config validate` with a site layer, as whole processes."""

from __future__ import annotations

import os
from pathlib import Path

from condatainer import config
from tests.support import cnt, ok


def _site(text: str) -> Path:
    site = Path(os.environ["CNT_SITE_CONFIG"])
    site.parent.mkdir(parents=True, exist_ok=True)
    site.write_text(text)
    return site


def test_show_names_the_layer_of_each_value() -> None:
    site = _site("channels: [https://mirror.example/conda-forge]\nbase_image: /shared/b.sif\n")
    ok(cnt("config", "set", "gpu", "off"))
    shown = ok(cnt("config", "show", env={"CNT_RUNTIME": "builtin"})).stdout
    rows = {line.split()[0]: line for line in shown.splitlines()}
    assert rows["channels"].endswith(f"site {site}")
    assert rows["base_image"].endswith(f"site {site}")
    assert rows["gpu"].endswith(f"file {config.paths()['config']}")
    assert rows["runtime"].endswith("env CNT_RUNTIME")
    assert rows["binds"].endswith("default")
    paths = ok(cnt("config", "paths")).stdout
    assert f"site     {site}" in paths


def test_validate_says_ok_for_each_layer() -> None:
    site = _site("binds: [/tmp]\n")
    out = ok(cnt("config", "validate")).stdout.splitlines()
    assert out[0] == f"ok      site {site}"
    assert out[1].startswith("ok      file ") and out[1].endswith("(absent)")
    assert out[2] == "ok      environment (CNT_<KEY> variables)"


def test_validate_reports_every_bad_layer_and_fails() -> None:
    site = _site("gpu: maybe\n")
    ok(cnt("config", "set", "runtime", "builtin"))
    res = ok(cnt("config", "validate", env={"CNT_SUBMIT": "sometimes"}), code=1)
    assert f"invalid site {site}" in res.stdout
    assert "ok      file " in res.stdout
    assert "invalid environment" in res.stdout
    assert f"condatainer: error: {site} line 1: invalid value 'maybe' for gpu" in res.stderr
    assert "hint: ask your site's admins to fix" in res.stderr
    assert "CNT_SUBMIT" in res.stderr
    assert "Traceback" not in res.stderr
